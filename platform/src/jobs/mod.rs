//! Async jobs: the store of their records and results ([`store`]) and how they run ([`runner`]).

mod runner;
mod store;

pub use runner::{Finished, QueryJobs};
pub use store::*;
