//! Spherical geometry (`sphere`) and its Arrow representation (`values`).

pub mod fastmath;
pub mod sphere;
#[cfg(feature = "engine")]
pub mod values;
