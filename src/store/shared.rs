//! The content-addressed store shared by every project on the machine (as
//! uv's cache): each file's bytes once, under its blake3, placed into each
//! project's `models/` by reflink, hard link or copy ([`super::link`]).
//!
//! ```text
//! $MDL_CACHE_DIR (default ~/.cache/mdl)
//! ├── blobs/ab/cdef…     one file per blake3, read-only, never rewritten
//! ├── projects/<id>      the path of each models.lock that used the store,
//! │                      so `mdl cache prune` knows what is still wanted
//! ├── tmp/               blobs being written (renamed into blobs/ when whole)
//! └── .lock              shared by syncs, exclusive for prune
//! ```
//! A blob is only ever added whole (temporary name, then rename) and its name
//! is its content, so concurrent projects adding the same blob are safe: the
//! last rename replaces identical bytes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::link::{self, LinkMode};
use crate::lock::Lockfile;

/// The shared store at a directory.
#[derive(Clone, Debug)]
pub struct SharedStore {
    root: PathBuf,
}

/// What the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub blobs: u64,
    pub bytes: u64,
    pub projects: u64,
}

/// What `prune` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub blobs: u64,
    pub bytes: u64,
    pub kept: u64,
}

impl SharedStore {
    pub fn at(root: impl Into<PathBuf>) -> SharedStore {
        SharedStore { root: root.into() }
    }

    /// The store the environment names ([`crate::env::mdl_cache_dir`]), or
    /// none when `MDL_NO_CACHE` is set.
    pub fn from_env() -> Option<SharedStore> {
        crate::env::mdl_cache_dir().map(SharedStore::at)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob(&self, blake3: &str) -> PathBuf {
        let (a, b) = blake3.split_at(2.min(blake3.len()));
        self.root.join("blobs").join(a).join(b)
    }

    /// The blob with this content, if the store has it whole.
    pub fn get(&self, blake3: &str, size: u64) -> Option<PathBuf> {
        if blake3.len() < 16 {
            return None;
        }
        let path = self.blob(blake3);
        std::fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file() && m.len() == size)
            .map(|_| path)
    }

    /// Adds `file` (whose blake3 the caller checked) unless the store has it,
    /// placing it by `mode` (a hard link shares the file's inode, which is then
    /// made read-only). Returns the blob's path.
    pub fn insert(&self, file: &Path, blake3: &str, mode: LinkMode) -> std::io::Result<PathBuf> {
        let size = std::fs::metadata(file)?.len();
        if let Some(existing) = self.get(blake3, size) {
            return Ok(existing);
        }
        let blob = self.blob(blake3);
        // Read-only whichever way it was placed: a blob is never rewritten, and
        // a hard-linked file in `models/` shares its inode.
        crate::failpoint::kill_point("shared::inserting");
        link::place(file, &blob, mode)?;
        link::make_read_only(&blob)?;
        Ok(blob)
    }

    /// Places the blob at `dest` by `mode`; returns the mode used.
    pub fn place(&self, blob: &Path, dest: &Path, mode: LinkMode) -> std::io::Result<LinkMode> {
        link::place(blob, dest, mode)
    }

    /// Records that the project whose lock is `lock_path` uses the store.
    pub fn remember(&self, lock_path: &Path) -> std::io::Result<()> {
        let lock_path = std::path::absolute(lock_path)?;
        let id = blake3::hash(lock_path.as_os_str().as_encoded_bytes()).to_hex();
        let record = self.root.join("projects").join(&id[..32]);
        let text = lock_path.to_string_lossy().into_owned();
        if std::fs::read_to_string(&record).ok().as_deref() != Some(text.as_str()) {
            crate::fs::write_atomic(&record, text.as_bytes())?;
        } else {
            // When the project last synced: `prune --older-than` reads it.
            std::fs::File::options()
                .write(true)
                .open(&record)?
                .set_modified(SystemTime::now())?;
        }
        Ok(())
    }

    /// A lock on the store: shared while a sync adds and places blobs,
    /// exclusive while `prune` removes them. Released on drop.
    pub fn lock(&self, exclusive: bool) -> std::io::Result<std::fs::File> {
        fs_err::create_dir_all(&self.root)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".lock"))?;
        if exclusive {
            file.lock()?;
        } else {
            file.lock_shared()?;
        }
        Ok(file)
    }

    /// Every blob's path and size.
    fn blobs(&self) -> Vec<(String, PathBuf, std::fs::Metadata)> {
        let mut out = Vec::new();
        let Ok(prefixes) = std::fs::read_dir(self.root.join("blobs")) else {
            return out;
        };
        for prefix in prefixes.flatten() {
            let a = prefix.file_name().to_string_lossy().into_owned();
            for entry in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                if let Ok(meta) = entry.metadata() {
                    let b = entry.file_name().to_string_lossy().into_owned();
                    out.push((format!("{a}{b}"), entry.path(), meta));
                }
            }
        }
        out
    }

    /// The models.lock files that used the store and still exist, with when
    /// each project last synced.
    pub fn projects(&self) -> Vec<(PathBuf, SystemTime)> {
        let mut out: Vec<(PathBuf, SystemTime)> = std::fs::read_dir(self.root.join("projects"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let synced = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((PathBuf::from(std::fs::read_to_string(e.path()).ok()?), synced))
            })
            .filter(|(p, _)| p.is_file())
            .collect();
        out.sort();
        out
    }

    pub fn usage(&self) -> Usage {
        let blobs = self.blobs();
        Usage {
            blobs: blobs.len() as u64,
            bytes: blobs.iter().map(|(_, _, m)| m.len()).sum(),
            projects: self.projects().len() as u64,
        }
    }

    /// The blake3 of every file a project's lock on this machine names (of
    /// projects synced within `synced_within`, when given). A lock that cannot
    /// be read keeps everything (nothing is pruned blind).
    pub fn wanted(&self, synced_within: Option<Duration>) -> Option<BTreeSet<String>> {
        let now = SystemTime::now();
        let mut wanted = BTreeSet::new();
        for (lock, synced) in self.projects() {
            if synced_within.is_some_and(|age| now.duration_since(synced).unwrap_or_default() > age) {
                continue;
            }
            let parsed = Lockfile::read(&lock).ok()??;
            wanted.extend(
                parsed
                    .models
                    .values()
                    .flat_map(|m| m.files.iter().map(|f| f.blake3.clone())),
            );
        }
        Some(wanted)
    }

    /// Removes blobs no project's lock on this machine references — with
    /// `older_than`, counting only projects synced within that time (a project
    /// left alone longer gives its blobs up). Takes the store's lock
    /// exclusively, so no sync is placing a blob meanwhile.
    pub fn prune(&self, older_than: Option<Duration>) -> std::io::Result<Pruned> {
        let _guard = self.lock(true)?;
        let Some(wanted) = self.wanted(older_than) else {
            return Err(std::io::Error::other(
                "a project's models.lock could not be read, so what it needs is unknown; fix or remove it, then prune again",
            ));
        };
        let mut pruned = Pruned::default();
        for (blake3, path, meta) in self.blobs() {
            if wanted.contains(&blake3) {
                pruned.kept += 1;
                continue;
            }
            std::fs::remove_file(&path)?;
            pruned.blobs += 1;
            pruned.bytes += meta.len();
        }
        Ok(pruned)
    }
}
