//! huggingface_hub 2.5's cache-wide store of Xet files, read and written as
//! `huggingface_hub/utils/_shared_blobs.py` does:
//!
//! ```text
//! $HF_HUB_CACHE/blobs/.huggingface-shared-blobs   "1\n": the store is owned and of layout 1
//! $HF_HUB_CACHE/blobs/<xet[:2]>/<xet hash>        the bytes, read-only, once per cache
//! $HF_HUB_CACHE/blobs/<xet[:2]>/<xet hash>.refs   a line per repo blob linked to it
//! $HF_HUB_CACHE/blobs/<xet[:2]>/<xet hash>.lock   flock'd while an entry is published
//! $HF_HUB_CACHE/models--org--name/blobs/<etag> -> ../../blobs/<xet[:2]>/<xet hash>
//! ```
//!
//! Reading follows a repo blob's link only when it is exactly a link into
//! this store (never elsewhere, never through another link); the bytes are
//! then checked against the lock as any cache hit is. Writing takes the same
//! lock huggingface_hub takes, appends the `.refs` line before the link
//! appears (its garbage collection counts on that), and never opens a path
//! that is a link.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// The marker's name and content (`SHARED_BLOBS_MARKER_NAME`, layout "1").
const MARKER: &str = ".huggingface-shared-blobs";
const LAYOUT: &str = "1\n";
/// How long publishing waits for another process's lock on one entry.
const LOCK_DEADLINE: Duration = Duration::from_secs(60);

/// The store of one Hugging Face cache (`<root>/blobs`).
pub(super) struct SharedBlobs<'a> {
    root: &'a Path,
}

impl<'a> SharedBlobs<'a> {
    pub(super) fn of(root: &'a Path) -> SharedBlobs<'a> {
        SharedBlobs { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where the entry for `xet_hash` lives (the hash was checked: 64 hex).
    fn entry(&self, xet_hash: &str) -> PathBuf {
        self.dir().join(&xet_hash[..2]).join(xet_hash)
    }

    /// Whether huggingface_hub may use the store: it honours these too.
    pub(super) fn enabled() -> bool {
        !crate::env::flag("HF_HUB_DISABLE_SHARED_BLOBS") && !crate::env::flag("HF_HUB_DISABLE_XET")
    }

    /// Whether the store exists and is marked as huggingface_hub marks it
    /// (each path checked without following links).
    fn is_marked(&self) -> bool {
        let dir = self.dir();
        is_dir(&dir)
            && is_file(&dir.join(MARKER))
            && std::fs::read_to_string(dir.join(MARKER)).is_ok_and(|t| t == LAYOUT)
    }

    /// The store's entry a repo blob links to, and its size, when the blob is
    /// exactly such a link (`../../blobs/ab/ab…`, or that path absolute) and
    /// the entry is a regular file; `None` for every other link.
    pub(super) fn target_of(&self, repo_blob: &Path) -> Option<(PathBuf, u64)> {
        let link = std::fs::read_link(repo_blob).ok()?;
        let parts: Vec<Component<'_>> = link.components().collect();
        let names = match parts.as_slice() {
            [Component::ParentDir, Component::ParentDir, Component::Normal(b), Component::Normal(p), Component::Normal(h)] => {
                [*b, *p, *h]
            }
            _ if link.is_absolute() => {
                let rest = link.strip_prefix(self.root).ok()?;
                let names: Vec<_> = rest.components().collect();
                match names.as_slice() {
                    [Component::Normal(b), Component::Normal(p), Component::Normal(h)] => [*b, *p, *h],
                    _ => return None,
                }
            }
            _ => return None,
        };
        let [blobs, prefix, hash] = names.map(|n| n.to_str().unwrap_or_default());
        if blobs != "blobs" || !crate::hash::is_blake3(hash) || prefix != &hash[..2] || !self.is_marked() {
            return None;
        }
        let entry = self.entry(hash);
        let len = regular_len(&entry).filter(|_| is_dir(&self.dir().join(prefix)))?;
        Some((entry, len))
    }

    /// Publishes `source`'s bytes (checked by the caller against the lock:
    /// `blake3`) as the entry for `xet_hash`, and makes `repo_blob` (named
    /// `reference` relative to the cache) a link to it. An entry already
    /// there is used only if it holds those bytes. `Ok(false)`: the store is
    /// not usable here (an unmarked folder someone else owns), nothing changed.
    pub(super) fn publish(
        &self,
        xet_hash: &str,
        source: (&Path, &str, u64),
        repo_blob: &Path,
        reference: &str,
    ) -> std::io::Result<bool> {
        let (source, blake3, size) = source;
        if !crate::hash::is_blake3(xet_hash) || !self.ensure_marked()? {
            return Ok(false);
        }
        let prefix = self.dir().join(&xet_hash[..2]);
        create_dir(&prefix)?;
        let entry = self.entry(xet_hash);
        let _lock = lock(&entry.with_file_name(format!("{xet_hash}.lock")))?;
        let holds_it = regular_len(&entry) == Some(size)
            && (same_file(&entry, source) || crate::hash::hash_file(&entry).is_ok_and(|h| h == blake3));
        if !holds_it {
            super::link::place(source, &entry, super::LinkMode::Auto).map_err(at(&entry))?;
            super::link::make_read_only(&entry).map_err(at(&entry))?;
        }
        add_reference(&entry.with_file_name(format!("{xet_hash}.refs")), reference)?;
        let target = Path::new("../..").join("blobs").join(&xet_hash[..2]).join(xet_hash);
        replace_with_link(&target, repo_blob)?;
        Ok(true)
    }

    /// Makes and marks the store if it does not exist (or is empty), as
    /// huggingface_hub does; an unmarked folder with content is left alone.
    fn ensure_marked(&self) -> std::io::Result<bool> {
        if self.is_marked() {
            return Ok(true);
        }
        let dir = self.dir();
        fs_err::create_dir_all(self.root)?;
        match std::fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dir(&dir)?,
            Ok(m) if m.is_dir() && std::fs::read_dir(&dir).map_err(at(&dir))?.next().is_none() => {}
            _ => return Ok(false),
        }
        crate::fs::write_atomic(&dir.join(MARKER), LAYOUT.as_bytes()).map_err(at(&dir.join(MARKER)))?;
        Ok(self.is_marked())
    }
}

/// Appends `reference` to a `.refs` manifest unless it is listed, and makes
/// it durable before the link it names appears. The file is opened without
/// following a link.
fn add_reference(manifest: &Path, reference: &str) -> std::io::Result<()> {
    if reference.contains(['\n', '\r']) {
        return Err(std::io::Error::other(format!(
            "`{}` cannot be a reference",
            reference.escape_debug()
        )));
    }
    let listed = std::fs::read_to_string(manifest).unwrap_or_default();
    if is_file(manifest) && listed.lines().any(|l| l == reference) {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW)
        .open(manifest)
        .map_err(at(manifest))?;
    if !file.metadata().map_err(at(manifest))?.is_file() {
        return Err(at(manifest)(std::io::Error::other("not a regular file")));
    }
    file.write_all(format!("{reference}\n").as_bytes())
        .map_err(at(manifest))?;
    file.sync_all().map_err(at(manifest))
}

/// `path` as a symbolic link to `target`, through a temporary name and a
/// rename (a reader sees the old entry or the link).
fn replace_with_link(target: &Path, path: &Path) -> std::io::Result<()> {
    if std::fs::read_link(path).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let dir = path.parent().expect("a repo blob has a parent");
    fs_err::create_dir_all(dir)?;
    let tmp = dir.join(format!(".mdl-{}.shared", crate::fs::unique_suffix()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(at(&tmp))?;
    std::fs::rename(&tmp, path).map_err(at(path))
}

/// An exclusive `flock` on `path` (created without following a link, 0666
/// so other users of a shared cache can take it), waited for up to
/// [`LOCK_DEADLINE`]. Released on drop.
fn lock(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(at(path))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_DEADLINE => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(at(path)(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("another process held this lock for {} s", LOCK_DEADLINE.as_secs()),
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(at(path)(e)),
        }
    }
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_dir(dir) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(at(dir)(std::io::Error::other(
            "exists and is not a directory (a link is not followed)",
        ))),
        Err(e) => Err(at(dir)(e)),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::symlink_metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn is_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn regular_len(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// An I/O error that names its path (the callers' errors name the cache).
fn at(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display()))
}
