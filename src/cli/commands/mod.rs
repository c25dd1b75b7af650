//! One file per command: each parses its arguments and calls the library.
pub mod add;
pub mod cache;
pub mod clean;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod du;
pub mod init;
pub mod list;
pub mod lock;
pub mod push;
pub mod remove;
pub mod schema;
pub mod sync;
pub mod verify;
pub mod watch;
