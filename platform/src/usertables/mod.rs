//! User tables: tables users keep in their own schema (`user_NAME`) or their group's (`group_NAME`), read by
//! those the space's owners share them with ([`crate::access`]). Here, what a user table job does ([`index`]).

mod index;

pub use index::run_index;
