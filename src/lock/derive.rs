//! Where each locked file is fetched from: derived from config.yaml's sources
//! and the lock's pins, never read from the lock's `url` (which a pull request
//! can point at any host — with the Hub token or a registry password in tow).
//!
//! * Hub files: the current endpoint, the repo, the locked commit and the
//!   file's path (so a lock made against the Hub syncs from a mirror named by
//!   `HF_ENDPOINT`);
//! * `url:` models: the model's id, which is the URL config.yaml names;
//! * `oci:` models: the configured repository's blob of the file's digest
//!   (`https://`; the fetcher speaks plain HTTP to a registry that needs it);
//! * torchvision and PyTorch Hub: the catalog and URLs config.yaml configures;
//! * `local:` files: the model's path joined with the file's.
//!
//! The lock still records a `url` for people reading it; [`stale_url`] says
//! when it is not what the derivation gives, which makes the entry stale (a
//! lock for another config, or an edited one).

use crate::lock::{LockedFile, LockedModel};
pub use crate::sources::UrlContext;
use crate::sources::{Pinned, PinnedFile};

/// The URL to fetch `file` of `model` from now; `Err` says why none can be
/// derived (the lock names a file the configured source does not serve).
pub fn file_url(model: &LockedModel, file: &LockedFile, cx: UrlContext<'_>) -> Result<String, String> {
    model.source.kind().file_url(&model.pinned(), &file.pinned(), &cx)
}

/// Why the lock's recorded `url` of `file` is not where config.yaml's source
/// serves it (`None`: it is). Each source says how far the recorded URL may
/// differ (a Hub file's may name the endpoint it was locked against).
pub fn stale_url(model: &LockedModel, file: &LockedFile, cx: UrlContext<'_>) -> Option<String> {
    let derived = match file_url(model, file, cx) {
        Ok(url) => url,
        Err(why) => return Some(why),
    };
    let accepted = (model.source.kind()).accepts_recorded_url(&model.pinned(), &file.pinned(), &derived);
    (!accepted).then(|| {
        format!(
            "config.yaml's {} source serves it at `{}`",
            model.source,
            crate::http::redact(&derived)
        )
    })
}

impl LockedModel {
    /// This entry, as its source answers about it.
    pub fn pinned(&self) -> Pinned<'_> {
        Pinned {
            name: &self.name,
            id: &self.id,
            revision: self.revision.as_deref(),
            commit: self.commit.as_deref(),
            files: self.files.len(),
        }
    }
}

impl LockedFile {
    /// This file, as its source answers about it.
    pub fn pinned(&self) -> PinnedFile<'_> {
        PinnedFile {
            path: &self.path,
            url: &self.url,
            sha256: self.sha256.as_deref(),
        }
    }
}
