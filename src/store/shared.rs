//! The content-addressed store shared by every project on the machine (as
//! uv's cache): each file's bytes once, under its blake3, placed into each
//! project's `models/` by reflink, hard link or copy ([`super::link`]).
//!
//! ```text
//! $MDL_CACHE_DIR (default ~/.cache/mdl)
//! ├── blobs/ab/cdef…     one file per blake3, read-only, never rewritten
//! ├── records/ab/cdef…   inode, size and mtime of each blob when mdl hashed
//! │                      it: a blob whose record still matches is placed
//! │                      unread, any other is hashed first
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

    /// Where the blob of this blake3 lives; `None` for anything that is not a
    /// blake3 (a hostile lock's `xx/<absolute path>` must never become a path).
    pub fn blob(&self, blake3: &str) -> Option<PathBuf> {
        if !crate::hash::is_blake3(blake3) {
            return None;
        }
        let (a, b) = blake3.split_at(2);
        Some(self.root.join("blobs").join(a).join(b))
    }

    /// The blob with this content, if the store has it whole: a regular file
    /// (not a link to elsewhere) of `size` bytes under the store's root.
    pub fn get(&self, blake3: &str, size: u64) -> Option<PathBuf> {
        self.get_proven(blake3, size).map(|(path, _)| path)
    }

    /// [`SharedStore::get`], and whether the blob is provably the file mdl
    /// put there: its record (inode, size, mtime, written when mdl added it
    /// after hashing it) still matches. A blob restored from a CI cache, or
    /// edited through a hard link, is not: its bytes must be hashed before
    /// they are placed.
    pub fn get_proven(&self, blake3: &str, size: u64) -> Option<(PathBuf, bool)> {
        let path = self.blob(blake3)?;
        // Neither the blob nor the directories above it may be links out of the store.
        let dirs_ok = [self.root.join("blobs"), path.parent()?.to_path_buf()]
            .iter()
            .all(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_dir()));
        let meta = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| dirs_ok && m.file_type().is_file() && m.len() == size)?;
        let stat = crate::fs::FileStat::of(&meta);
        let proven = std::fs::read_to_string(self.record_path(blake3)?).is_ok_and(|text| text == record_text(&stat));
        Some((path, proven))
    }

    /// Records that the blob of `blake3` was hashed by mdl as it is now.
    pub fn prove(&self, blake3: &str) -> std::io::Result<()> {
        let (Some(blob), Some(record)) = (self.blob(blake3), self.record_path(blake3)) else {
            return Ok(());
        };
        let stat = crate::fs::FileStat::of(&std::fs::symlink_metadata(blob)?);
        crate::fs::write_atomic(&record, record_text(&stat).as_bytes())
    }

    fn record_path(&self, blake3: &str) -> Option<PathBuf> {
        self.blob(blake3)?;
        let (a, b) = blake3.split_at(2);
        Some(self.root.join("records").join(a).join(b))
    }

    /// Adds `file` (whose blake3 the caller checked) unless the store has it,
    /// placing it by `mode` (a hard link shares the file's inode, which is then
    /// made read-only). Returns the blob's path.
    /// Every error names the path that failed.
    pub fn insert(&self, file: &Path, blake3: &str, mode: LinkMode) -> Result<PathBuf, super::StoreError> {
        use super::StoreError;
        // A link is never followed into the store: the caller hands over the
        // file itself (a Hugging Face cache blob is resolved by `HfCache`).
        let meta = std::fs::symlink_metadata(file).map_err(StoreError::io(file))?;
        if !meta.is_file() {
            let not_a_file = std::io::Error::other("not a regular file");
            return Err(StoreError::io(file)(not_a_file));
        }
        if let Some(existing) = self.get(blake3, meta.len()) {
            return Ok(existing);
        }
        let blob = self.blob(blake3).ok_or_else(|| {
            StoreError::io(file)(std::io::Error::other(format!(
                "`{}` is not a blake3",
                blake3.escape_debug()
            )))
        })?;
        // Read-only whichever way it was placed: a blob is never rewritten, and
        // a hard-linked file in `models/` shares its inode.
        crate::failpoint::kill_point("shared::inserting");
        link::place(file, &blob, mode).map_err(StoreError::io(&blob))?;
        link::make_read_only(&blob).map_err(StoreError::io(&blob))?;
        let record = self.record_path(blake3).unwrap_or_else(|| self.root.join("records"));
        self.prove(blake3).map_err(StoreError::io(&record))?;
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
            if let Some(record) = self.record_path(&blake3) {
                let _ = std::fs::remove_file(record);
            }
            pruned.blobs += 1;
            pruned.bytes += meta.len();
        }
        Ok(pruned)
    }
}

/// A blob's record: what one `lstat` of it showed after mdl hashed it.
fn record_text(stat: &crate::fs::FileStat) -> String {
    format!("{} {} {}", stat.size, stat.mtime_ns, stat.inode)
}
