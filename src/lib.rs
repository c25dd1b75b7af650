//! mdl: a lockfile-driven, verifying package manager for ML model weights.
//!
//! The pipeline, one module per stage:
//!
//! config → resolve → lock → plan → fetch → store → verify
//!
//! * [`config`] parses and validates `config.yaml` into [`config::ModelSpec`]s;
//! * [`resolve`] asks the Hub (or a URL) what each model is now;
//! * [`lock`] reads and writes `models.lock`;
//! * [`plan`] decides what is cached, what to fetch and what is extraneous;
//! * [`fetch`] downloads, hashing while streaming, resumably;
//! * [`store`] owns the models directory and atomic placement;
//! * [`verify`] proves each model loads with libtorch on its device.
//!
//! [`project::Project`] runs the pipeline for `mdl lock` / `mdl sync`.

pub mod api;
pub mod config;
pub mod config_edit;
pub mod env;
pub mod error;
pub mod fetch;
pub mod lock;
pub mod manage;
pub mod model_id;
pub mod plan;
pub mod project;
pub mod registry;
pub mod reporter;
pub mod resolve;
pub mod source;
pub mod store;
pub mod verify;
pub mod watch;

pub use error::{Error, Result};

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
