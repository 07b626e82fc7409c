//! Async jobs: the store of their records and results ([`store`]).

mod store;

pub use store::*;
