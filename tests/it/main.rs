//! Integration tests: the real `mdl` binary against the hub emulator on
//! 127.0.0.1. One test binary, a module per area.

mod any_torch;
mod api;
mod cache;
mod common;
#[cfg(feature = "failpoints")]
mod crash;
mod examples;
mod gguf;
mod hf_cache;
mod hostile;
mod interop;
mod lock;
mod manage;
mod modelpack;
mod modelscope;
mod oci;
mod output;
mod realhub;
mod reliability;
mod resume;
mod sources;
mod stall;
mod sync;
mod tls;
mod verify;
mod watch;
mod writeback;
mod xet;
