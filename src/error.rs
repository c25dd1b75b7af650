//! The top-level error: one variant per pipeline stage, each with a `hint`, and
//! the exit code the CLI maps it to.
//!
//! Exit codes: `0` success; `1` a failure of the world or of a model (network,
//! hash mismatch, disk, a model that does not load); `2` a usage or configuration
//! error the user must fix (bad config, `--locked` with a stale lock, unknown name).

use crate::{config, fetch, lock, resolve, store, verify};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    /// A mistake in how mdl was called.
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },
    /// Several independent failures (e.g. downloads of different files).
    #[error("{summary}")]
    Many { summary: String, errors: Vec<Error> },
}

impl Error {
    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Error {
        Error::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => e.hint(),
            Error::Lock(e) => e.hint(),
            Error::Resolve(e) => e.hint(),
            Error::Fetch(e) => e.hint(),
            Error::Store(e) => e.hint(),
            Error::Verify(e) => e.hint(),
            Error::Usage { hint, .. } => hint.clone(),
            Error::Many { .. } => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage { .. } => 2,
            // A lock that cannot be used as it is: the user must act (run `mdl lock`,
            // restore it from git, upgrade mdl).
            Error::Lock(
                lock::LockError::NeedsUpdate { .. }
                | lock::LockError::OfflineNeedsResolve { .. }
                | lock::LockError::Parse { .. }
                | lock::LockError::Version { .. },
            ) => 2,
            Error::Many { errors, .. } if errors.iter().all(|e| e.exit_code() == 2) => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
