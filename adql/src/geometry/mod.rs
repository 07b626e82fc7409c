//! Spherical geometry (`sphere`), its Arrow representation (`values`) and STC-S region text (`stcs`).

pub mod fastmath;
pub mod sphere;
pub mod stcs;
#[cfg(feature = "engine")]
pub mod values;
