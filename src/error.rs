//! The top-level error: one variant per pipeline stage, each with a `hint`, and
//! the exit code the CLI maps it to.
//!
//! Exit codes: `0` success; `1` a failure of the world, of a model or of mdl
//! itself (network, hash mismatch, disk, a model that does not load, a bug); `2`
//! a usage or configuration error the user must fix (bad config, `--locked` with
//! a stale lock, an unknown name).
//!
//! A hint may span several lines: a line that starts with `hint: ` begins
//! another hint, any other line continues the one before (see the CLI's
//! printer).

use std::sync::Arc;

use crate::{config, fetch, lock, plan, sources as resolve, store, verify};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error(transparent)]
    CaBundle(#[from] crate::http::CaBundleError),
    /// A registry: a mirror, `mdl push`.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    /// A mistake in how mdl was called (exit code 2).
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },
    /// `mdl watch` could not watch the project's directory.
    #[error("cannot watch `{}`", path.display())]
    Watch {
        path: std::path::PathBuf,
        #[source]
        source: notify::Error,
    },
    /// A file outside the pipeline's stages could not be written or changed
    /// (`mdl init`'s config, `mdl cache prune`'s blobs).
    #[error("could not {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The async runtime of the blocking API could not start.
    #[error("could not start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// A synced model is missing from what sync recorded (the library API).
    #[error("`{id}` was synced but {what}")]
    Unrecorded { id: String, what: &'static str },
    /// `mdl doctor` found problems, each already shown with its hint.
    #[error("`mdl doctor` found problems (above)")]
    Doctor,
    /// Several independent failures (e.g. downloads of different files).
    #[error("{summary}")]
    Many { summary: String, errors: Vec<Error> },
    /// One failure that several results share (the library API's per-model
    /// results of one sync): the original error, its hint and exit code intact.
    #[error("{context}")]
    Shared {
        context: String,
        #[source]
        source: Arc<Error>,
    },
}

impl Error {
    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Error {
        Error::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// Several errors as one: the error itself when there is only one.
    pub fn many(summary: impl Into<String>, mut errors: Vec<Error>) -> Error {
        if errors.len() == 1 {
            return errors.pop().expect("one error");
        }
        Error::Many {
            summary: summary.into(),
            errors,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => e.hint(),
            Error::Lock(e) => e.hint(),
            Error::Resolve(e) => e.hint(),
            Error::Plan(e) => e.hint(),
            Error::Fetch(e) => e.hint(),
            Error::Store(e) => e.hint(),
            Error::Verify(e) => e.hint(),
            Error::CaBundle(e) => Some(e.hint()),
            Error::Oci(e) => e.hint(),
            Error::Usage { hint, .. } => hint.clone(),
            Error::Watch { .. } => Some("raise `fs.inotify.max_user_watches`, or run `mdl sync` instead".into()),
            Error::Unrecorded { .. } => Some("run `mdl sync --check` to repair it".into()),
            Error::Doctor => Some("fix them as their hints say, then run `mdl doctor` again".into()),
            Error::Io { .. } | Error::Runtime(_) => None,
            Error::Many { .. } => None,
            Error::Shared { source, .. } => source.hint(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage { .. } | Error::CaBundle(_) => 2,
            Error::Oci(crate::oci::OciError::BadReference { .. } | crate::oci::OciError::Credentials { .. }) => 2,
            // A lock that cannot be used as it is: the user must act (run `mdl lock`,
            // restore it from git, upgrade mdl).
            Error::Lock(
                lock::LockError::NeedsUpdate { .. }
                | lock::LockError::OfflineNeedsResolve { .. }
                | lock::LockError::Parse { .. }
                | lock::LockError::Invalid { .. }
                | lock::LockError::Version { .. }
                | lock::LockError::Unconfirmed { .. },
            ) => 2,
            Error::Verify(e) if e.is_setup() => 2,
            Error::Many { errors, .. } if errors.iter().all(|e| e.exit_code() == 2) => 2,
            Error::Shared { source, .. } => source.exit_code(),
            _ => 1,
        }
    }
}

impl From<plan::Refusal> for Error {
    fn from(refusal: plan::Refusal) -> Error {
        Error::many(refusal.summary, refusal.errors.into_iter().map(Error::from).collect())
    }
}

impl From<crate::fs::UnsafePath> for Error {
    fn from(e: crate::fs::UnsafePath) -> Error {
        Error::Store(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_errors_keep_hint_and_exit_code() {
        let original = Error::usage("bad", Some("do this".to_string()));
        let shared = Error::Shared {
            context: "syncing `x` failed".into(),
            source: Arc::new(original),
        };
        assert_eq!(shared.exit_code(), 2);
        assert_eq!(shared.hint().as_deref(), Some("do this"));
        assert_eq!(Error::Runtime(std::io::Error::other("no threads")).exit_code(), 1);
    }
}
