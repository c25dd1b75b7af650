//! mdl: a lockfile-driven, verifying package manager for ML model weights.
//!
//! The pipeline, one module per stage:
//!
//! config → resolve → lock → plan → fetch → store → verify
//!
//! * [`config`] parses and validates `config.yaml` into [`config::ModelSpec`]s;
//! * [`sources`] (resolve) asks each model's source what it is now: one
//!   file or folder per source, each a [`sources::SourceKind`];
//! * [`lock`] reads and writes `models.lock`;
//! * [`plan`] decides what is cached, what to fetch and what is extraneous;
//! * [`fetch`] downloads, hashing while streaming, resumably;
//! * [`store`] owns the models directory and atomic placement;
//! * [`verify`] proves each model loads with libtorch on its device;
//! * [`registry`] records what is synced and verified (`model_registry.json`).
//!
//! Each stage imports only stages before it and the bottom-level helpers
//! below, never a later stage: [`fs`] (files on disk), [`http`] (client, headers, retry),
//! [`hash`], [`report`] (what verification found), [`reporter`] (progress
//! events) and [`progress`] (drawing them on a terminal), [`env`].
//!
//! The verbs live in [`ops`], one file each, as thin sequencers over the
//! stages; [`ops::Project`] is what they share. [`api`] is the blocking facade
//! for programs, and the `mdl` binary a thin CLI over all of it.

// The pipeline, in order.
pub mod config;
pub mod fetch;
pub mod lock;
pub mod plan;
pub mod registry;
pub mod sources;
pub mod store;
pub mod verify;

// Bottom-level helpers: no stage below them.
pub mod env;
pub mod failpoint;
pub mod fs;
pub mod hash;
pub mod http;
pub mod oci;
pub mod progress;
pub mod report;
pub mod reporter;
pub mod units;

// The verbs and the library API over them.
pub mod api;
pub mod config_edit;
pub mod error;
pub mod ops;

pub use error::{Error, Result};
pub use units::human_bytes;
