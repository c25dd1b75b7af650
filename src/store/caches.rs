//! The caches a file may already be in, asked before anything is fetched: the
//! content store shared by all projects ([`SharedStore`]), then the Hugging
//! Face cache ([`HfCache`]). A file taken from a cache is checked like a
//! download (size, and blake3 — or for a file being locked, upstream's sha256
//! or git blob id) before it is placed under its name.

use std::path::Path;

use super::{HfCache, LinkMode, SharedStore, StoreError};
use crate::fs::FileRecord;
use crate::hash::{digest_file, hash_file};
use crate::lock::Lockfile;
use crate::plan::Download;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct Caches {
    pub shared: Option<SharedStore>,
    pub hf: HfCache,
    pub mode: LinkMode,
    /// Also lay Hub models out in the Hugging Face cache (`download.hf_cache`).
    pub write_hf: bool,
    /// Also place torchvision and PyTorch Hub files where `torch.hub` looks
    /// (`download.torch_hub`).
    pub torch_hub: Option<super::TorchHub>,
}

/// A file placed from a cache.
#[derive(Clone, Debug)]
pub struct Placed {
    pub blake3: String,
    pub record: FileRecord,
    /// Which cache it came from, for messages.
    pub from: &'static str,
}

impl Caches {
    /// Places `download`'s bytes from a cache, if one holds them. `check`:
    /// re-hash a shared blob before trusting it (`sync --check`, or a file
    /// that changed on disk: with hard links, the blob may be what changed).
    /// A blob found by the lock's content address is placed only if it also
    /// hashes to the source's own digest, when the source confirmed one
    /// (`download.source_digest`): an edited blake3 selects nothing.
    pub fn place(&self, download: &Download, check: bool) -> Result<Option<Placed>, StoreError> {
        let (Some(blake3), Some(size)) = (download.expect.blake3.as_deref(), download.expect.size) else {
            return Ok(None);
        };
        if download.unconfirmed {
            return Ok(None);
        }
        let dest = &download.dest;
        if let Some(shared) = &self.shared {
            let _guard = shared.lock(false).map_err(StoreError::io(shared.root()))?;
            if let Some((blob, proven)) = shared.get_proven(blake3, size) {
                // A blob mdl cannot prove it wrote (restored from a cache,
                // changed through a hard link) is hashed before it is placed.
                let trusted = proven && !check;
                if trusted || hash_file(&blob).map_err(StoreError::io(&blob))? == blake3 {
                    if !trusted {
                        let _ = shared.prove(blake3);
                    }
                    if !source_says(download, &blob)? {
                        return Ok(None);
                    }
                    shared.place(&blob, dest, self.mode).map_err(StoreError::io(dest))?;
                    crate::failpoint::kill_point("caches::placed");
                    return Ok(Some(placed(dest, blake3, "the shared store")?));
                }
                // Damaged (edited through a hard link): never placed again.
                let _ = std::fs::remove_file(&blob);
            }
        }
        if let Some((repo, etag)) = &download.hub_blob {
            if let Some(blob) = self.hf.blob(repo, etag, size) {
                if hash_file(&blob).map_err(StoreError::io(&blob))? == blake3 && source_says(download, &blob)? {
                    self.place_checked(&blob, dest, blake3)?;
                    return Ok(Some(placed(dest, blake3, "the Hugging Face cache")?));
                }
            }
        }
        Ok(None)
    }

    /// [`Caches::place`] for a locked file (its blake3 known), else
    /// [`Caches::place_for_lock`].
    pub fn place_any(&self, download: &Download, check: bool) -> Result<Option<Placed>, StoreError> {
        match download.expect.blake3 {
            Some(_) => self.place(download, check),
            None => self.place_for_lock(download),
        }
    }

    /// For a file being locked (its blake3 not known yet): a Hugging Face
    /// cache blob that matches upstream's sha256 or git blob id.
    pub fn place_for_lock(&self, download: &Download) -> Result<Option<Placed>, StoreError> {
        let (Some((repo, etag)), Some(size)) = (&download.hub_blob, download.expect.size) else {
            return Ok(None);
        };
        let Some(blob) = self.hf.blob(repo, etag, size) else {
            return Ok(None);
        };
        let want_sha = download.expect.sha256.is_some();
        let digests = digest_file(&blob, want_sha, !want_sha).map_err(StoreError::io(&blob))?;
        let matches = match (&download.expect.sha256, &download.expect.git_oid) {
            (Some(want), _) => digests.sha256.as_deref() == Some(want.as_str()),
            (None, Some(want)) => digests.git_oid.as_deref() == Some(want.as_str()),
            _ => false,
        };
        if !matches {
            return Ok(None);
        }
        self.place_checked(&blob, &download.dest, &digests.blake3)?;
        Ok(Some(placed(&download.dest, &digests.blake3, "the Hugging Face cache")?))
    }

    /// A checked file from outside the shared store: into the store first (so
    /// every later project has it), then into place from there.
    fn place_checked(&self, source: &Path, dest: &Path, blake3: &str) -> Result<(), StoreError> {
        let from = match &self.shared {
            Some(shared) => {
                let _guard = shared.lock(false).map_err(StoreError::io(shared.root()))?;
                shared.insert(source, blake3, self.mode)?
            }
            None => source.to_path_buf(),
        };
        super::link::place(&from, dest, self.mode).map_err(StoreError::io(dest))?;
        Ok(())
    }

    /// After a download: the shared store keeps the file's bytes (by hard link
    /// where it can, which makes the file read-only; else a reflink or copy).
    pub fn keep(&self, file: &Path, blake3: &str) -> Result<(), StoreError> {
        if let Some(shared) = &self.shared {
            let _guard = shared.lock(false).map_err(StoreError::io(shared.root()))?;
            shared.insert(file, blake3, self.mode)?;
        }
        Ok(())
    }

    /// With `download.hf_cache: true`: every Hub model of the lock laid out in
    /// the Hugging Face cache (blobs shared with the store where possible),
    /// its revision's ref pointing at the locked commit.
    pub fn write_hf(&self, store: &Store, lock: &Lockfile) -> Result<(), StoreError> {
        if !self.write_hf {
            return Ok(());
        }
        for model in lock.models.values().filter(|m| m.source.fetched_from_hub_endpoint()) {
            let Some(commit) = &model.commit else { continue };
            let repo_dir = self.hf.root().join(HfCache::repo_folder(&model.id));
            for file in &model.files {
                let Some(etag) = &file.etag else { continue };
                let in_place = store.locate(model, file);
                let source = self
                    .shared
                    .as_ref()
                    .and_then(|s| s.get(&file.blake3, file.size))
                    .unwrap_or(in_place);
                let snapshot_file = super::hf_cache::SnapshotFile {
                    path: &file.path,
                    etag,
                    size: file.size,
                    source: &source,
                    blake3: &file.blake3,
                    xet_hash: file.xet_hash.as_deref(),
                };
                self.hf
                    .add_file(&model.id, commit, &snapshot_file, self.mode)
                    .map_err(StoreError::io(&repo_dir))?;
            }
            if let Some(tree) = tree_of(model) {
                self.hf
                    .write_tree(&model.id, commit, tree)
                    .map_err(StoreError::io(&repo_dir))?;
            }
            let revision = model.revision.as_deref().unwrap_or("main");
            self.hf
                .set_ref(&model.id, revision, commit)
                .map_err(StoreError::io(&repo_dir.join("refs")))?;
        }
        Ok(())
    }
}

impl Caches {
    /// With `download.torch_hub: true`: torchvision and PyTorch Hub weights in
    /// `checkpoints/` under their upstream names, PyTorch Hub repositories
    /// extracted where `torch.hub.load` looks.
    pub fn write_torch_hub(&self, store: &Store, lock: &Lockfile) -> Result<(), StoreError> {
        let Some(hub) = &self.torch_hub else {
            return Ok(());
        };
        for model in lock.models.values() {
            if !model.source.feeds_torch_hub() {
                continue;
            }
            for file in &model.files {
                let path = store.locate(model, file);
                let repo = (model.source.kind()).torch_hub_repo(&model.pinned(), &file.pinned());
                match (repo, &model.commit) {
                    (Some((owner, repo, reference)), Some(commit)) => {
                        hub.add_repo(&owner, &repo, &reference, commit, &path)
                            .map_err(StoreError::io(hub.dir()))?;
                    }
                    _ => hub
                        .add_checkpoint(&file.path, &path, file.size, self.mode)
                        .map_err(StoreError::io(hub.dir()))?,
                }
            }
        }
        Ok(())
    }
}

/// A locked Hub model's `trees/<commit>.json`, when the lock holds the
/// commit's whole file list (no `include:`/`exclude:`) with every file's
/// ETag: huggingface_hub reads it as the complete list, so a partial one
/// would hide files from it.
fn tree_of(model: &crate::lock::LockedModel) -> Option<std::collections::BTreeMap<String, super::hf_cache::TreeEntry>> {
    if !model.include.is_empty() || !model.exclude.is_empty() {
        return None;
    }
    let entry = |file: &crate::lock::LockedFile| {
        let etag = file.etag.as_deref()?;
        let lfs = file.sha256.as_deref().filter(|s| *s == etag);
        Some(super::hf_cache::TreeEntry {
            size: file.size,
            blob_id: match lfs {
                Some(sha) => super::hf_cache::tree::lfs_pointer_oid(sha, file.size),
                None => etag.to_string(),
            },
            lfs_sha256: lfs.map(str::to_string),
            lfs_size: lfs.map(|_| file.size),
            xet_hash: file.xet_hash.clone(),
        })
    };
    model.files.iter().map(|f| Some((f.path.clone(), entry(f)?))).collect()
}

/// Whether `blob` hashes to the source's own digest for the download's file,
/// when the source confirmed one (else the lock's blake3 is all there is).
fn source_says(download: &Download, blob: &Path) -> Result<bool, StoreError> {
    match &download.source_digest {
        Some(digest) => digest.matches_file(blob).map_err(StoreError::io(blob)),
        None => Ok(true),
    }
}

fn placed(dest: &Path, blake3: &str, from: &'static str) -> Result<Placed, StoreError> {
    Ok(Placed {
        blake3: blake3.to_string(),
        record: FileRecord::stat(dest, blake3.to_string()).map_err(StoreError::io(dest))?,
        from,
    })
}
