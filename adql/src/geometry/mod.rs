//! Spherical geometry (`sphere`) and its Arrow representation (`values`).

pub mod sphere;
pub mod values;
