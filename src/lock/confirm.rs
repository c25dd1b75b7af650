//! The lock caches what the source said; it never decides what the source
//! serves. A locked file's content addresses — its size, ETag, sha256 and
//! Xet hash — select bytes (a Xet reconstruction, a shared-store blob, a
//! Hugging Face cache blob, a mirror's layer) only once the source's own
//! statement for the locked commit and path agrees with them. A pull
//! request that edits only those fields (the commit untouched) is refused,
//! naming the field, the file and its line in `models.lock`.

use super::{LockedFile, LockedModel, Stale};
use crate::sources::RemoteFile;

/// What the source's statement allows for one locked file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The source's own digest of the file, which bytes from a cache or a
    /// mirror must hash to; `None` when it states none (a bare listing):
    /// then no content address of the lock may select its bytes.
    pub digest: Option<SourceDigest>,
    /// The source states the lock's Xet hash (else the file is fetched
    /// through the resolve bridge: a mirror without Xet, say).
    pub xet: bool,
}

/// How `file` of `model` differs from what the source states for it at the
/// locked commit (`stated`: its listing's entry for that path), if it does;
/// else what the statement allows.
pub fn compare(model: &LockedModel, file: &LockedFile, stated: Option<&RemoteFile>) -> Result<Confirmed, Stale> {
    let stale = |field: &'static str, why: String| Stale {
        model: model.name.clone(),
        file: Some(file.path.clone()),
        field,
        why,
    };
    let commit = model.commit.as_deref().unwrap_or("?");
    let Some(stated) = stated else {
        return Err(stale(
            "path",
            format!("the source lists no such file at commit {commit}"),
        ));
    };
    let differs = |field: &'static str, locked: Option<&str>, said: Option<&str>| match (locked, said) {
        (Some(l), Some(s)) if !l.eq_ignore_ascii_case(s) => Err(stale(
            field,
            format!("the lock says `{l}`, the source states `{s}` at commit {commit}"),
        )),
        _ => Ok(()),
    };
    if let Some(size) = stated.size.filter(|s| *s != file.size) {
        return Err(stale(
            "size",
            format!(
                "the lock says {}, the source states {size} at commit {commit}",
                file.size
            ),
        ));
    }
    differs("etag", file.etag.as_deref(), stated.etag.as_deref())?;
    differs("sha256", file.sha256.as_deref(), stated.sha256.as_deref())?;
    differs("xet_hash", file.xet_hash.as_deref(), stated.xet_hash.as_deref())?;
    Ok(Confirmed {
        digest: digest(stated),
        xet: file.xet_hash.is_some() && stated.xet_hash.is_some(),
    })
}

/// The source's own digest of a file it confirmed: what bytes taken from a
/// cache or a mirror must hash to.
pub fn digest(stated: &RemoteFile) -> Option<SourceDigest> {
    match (&stated.sha256, &stated.git_oid) {
        (Some(sha), _) => Some(SourceDigest::Sha256(sha.to_ascii_lowercase())),
        (None, Some(oid)) => Some(SourceDigest::GitOid(oid.to_ascii_lowercase())),
        _ => None,
    }
}

/// The digest of a file this run has just locked from the source's listing
/// (its entry is the source's statement): the LFS sha256, else the git blob
/// id its ETag is.
pub fn digest_of_fresh(file: &LockedFile) -> Option<SourceDigest> {
    match (&file.sha256, &file.etag) {
        (Some(sha), _) => Some(SourceDigest::Sha256(sha.to_ascii_lowercase())),
        (None, Some(etag)) if crate::hash::is_hex(etag, 40) => Some(SourceDigest::GitOid(etag.to_ascii_lowercase())),
        _ => None,
    }
}

/// A digest the source publishes for a file at a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceDigest {
    /// An LFS file's sha256.
    Sha256(String),
    /// A git-stored file's blob id.
    GitOid(String),
}

impl SourceDigest {
    /// Whether `path`'s bytes hash to it (one read of the file).
    pub fn matches_file(&self, path: &std::path::Path) -> std::io::Result<bool> {
        let sha = matches!(self, SourceDigest::Sha256(_));
        let digests = crate::hash::digest_file(path, sha, !sha)?;
        Ok(match self {
            SourceDigest::Sha256(want) => digests.sha256.as_deref() == Some(want.as_str()),
            SourceDigest::GitOid(want) => digests.git_oid.as_deref() == Some(want.as_str()),
        })
    }
}
