//! One file per command: each parses its arguments and calls the library.
pub mod config;
pub mod lock;
pub mod sync;
pub mod verify;
