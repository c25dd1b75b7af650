//! The Hugging Face cache, as `huggingface_hub` lays it out, read and written:
//!
//! ```text
//! $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
//! └── models--org--name/           (datasets--…, spaces--… for other types)
//!     ├── blobs/<etag>             bytes; etag = sha256 (LFS) or git blob id
//!     ├── refs/<revision>          the commit, no newline (only when revision ≠ commit)
//!     └── snapshots/<commit>/<path> -> ../../blobs/<etag>  (relative symlink)
//! ```
//! Reading: a Hub file `hf download` already fetched is taken from `blobs/`
//! instead of downloaded (still checked against the lock). Writing
//! (`download.hf_cache: true`): Python code with `HF_HUB_OFFLINE=1` then loads
//! the model by repo id, from the same bytes.

use std::path::{Path, PathBuf};

use super::link::{self, LinkMode};

/// One file of a snapshot, and where its bytes are now.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotFile<'a> {
    /// Its path in the repository.
    pub path: &'a str,
    pub etag: &'a str,
    pub size: u64,
    pub source: &'a Path,
}

/// The Hugging Face cache directory.
#[derive(Clone, Debug)]
pub struct HfCache {
    root: PathBuf,
}

impl HfCache {
    pub fn at(root: impl Into<PathBuf>) -> HfCache {
        HfCache { root: root.into() }
    }

    /// Where `huggingface_hub` looks ([`crate::env::hf_hub_cache`]).
    pub fn from_env() -> HfCache {
        HfCache::at(crate::env::hf_hub_cache())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name`, `datasets--org--name` for a repo id as mdl writes
    /// it (`org/name`, `datasets/org/name`).
    pub fn repo_folder(repo: &str) -> String {
        let (kind, id) = match repo.split_once('/') {
            Some(("datasets", rest)) => ("datasets", rest),
            Some(("spaces", rest)) => ("spaces", rest),
            _ => ("models", repo),
        };
        std::iter::once(kind)
            .chain(id.split('/'))
            .collect::<Vec<_>>()
            .join("--")
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(HfCache::repo_folder(repo))
    }

    /// The cached blob with this etag, if it has `size` bytes (a partial
    /// download is never named like a blob, but a damaged cache might be).
    pub fn blob(&self, repo: &str, etag: &str, size: u64) -> Option<PathBuf> {
        if !crate::hash::is_hub_etag(etag) {
            return None;
        }
        let path = self.repo_dir(repo).join("blobs").join(etag);
        std::fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file() && m.len() == size)
            .map(|_| path)
    }

    /// Adds one file of a Hub snapshot: `blobs/<etag>` (placed from `source` by
    /// `mode`, unless present), and `snapshots/<commit>/<path>` as a relative
    /// symlink to it — or, where symlinks cannot be made, a copy of the blob
    /// there, as `huggingface_hub` does.
    pub fn add_file(&self, repo: &str, commit: &str, file: &SnapshotFile<'_>, mode: LinkMode) -> std::io::Result<()> {
        let SnapshotFile {
            path,
            etag,
            size,
            source,
        } = *file;
        // Each name joined below was checked where it entered (lock, Hub
        // answer); checked again here, where it becomes a path to write.
        if !crate::hash::is_hub_etag(etag) || !crate::hash::is_hex(commit, 40) {
            return Err(std::io::Error::other(format!(
                "refusing to write the Hugging Face cache entry `{}` at `{}`: not a Hub ETag and commit",
                etag.escape_debug(),
                commit.escape_debug()
            )));
        }
        crate::fs::safe_relative_path(repo).map_err(std::io::Error::other)?;
        let dir = self.repo_dir(repo);
        let blob = dir.join("blobs").join(etag);
        if self.blob(repo, etag, size).is_none() {
            link::place(source, &blob, mode)?;
        }
        let rel = crate::fs::safe_relative_path(path).map_err(std::io::Error::other)?;
        let pointer = dir.join("snapshots").join(commit).join(&rel);
        let parent = pointer.parent().expect("a snapshot path has a parent");
        fs_err::create_dir_all(parent)?;
        // `../` for each directory between the pointer and the repo folder.
        let depth = rel.components().count() + 1;
        let target = PathBuf::from("../".repeat(depth)).join("blobs").join(etag);
        if std::fs::read_link(&pointer).ok().as_deref() == Some(target.as_path()) {
            return Ok(());
        }
        let tmp = parent.join(format!(".mdl-{}.tmp", crate::fs::unique_suffix()));
        let _ = std::fs::remove_file(&tmp);
        match std::os::unix::fs::symlink(&target, &tmp) {
            Ok(()) => {
                crate::failpoint::kill_point("hf_cache::linking");
                std::fs::rename(&tmp, &pointer)
            }
            Err(_) => link::place(&blob, &pointer, LinkMode::Copy).map(|_| ()),
        }
    }

    /// The snapshot directory of `repo` at `revision` (a branch or tag through
    /// `refs/`, or a commit), when the cache has one: what `huggingface_hub`
    /// loads from with `local_files_only=True`. A ref that does not hold a
    /// commit id is not followed.
    pub fn snapshot(&self, repo: &str, revision: &str) -> Option<PathBuf> {
        let dir = self.repo_dir(repo);
        let commit = if crate::hash::is_git_commit(revision) {
            revision.to_string()
        } else {
            let rel = crate::fs::safe_relative_path(revision).ok()?;
            let text = std::fs::read_to_string(dir.join("refs").join(rel)).ok()?;
            let commit = text.trim().to_string();
            crate::hash::is_git_commit(&commit).then_some(commit)?
        };
        let snapshot = dir.join("snapshots").join(commit);
        snapshot.is_dir().then_some(snapshot)
    }

    /// `refs/<revision>` holding `commit`, as `huggingface_hub` writes it: only
    /// for a revision that is not the commit itself, no trailing newline.
    pub fn set_ref(&self, repo: &str, revision: &str, commit: &str) -> std::io::Result<()> {
        if revision == commit {
            return Ok(());
        }
        let rel = crate::fs::safe_relative_path(revision).map_err(std::io::Error::other)?;
        let path = self.repo_dir(repo).join("refs").join(rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(commit) {
            return Ok(());
        }
        crate::fs::write_atomic(&path, commit.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_found_through_its_ref_and_a_bad_ref_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HfCache::at(dir.path());
        let commit = "a".repeat(40);
        let repo = dir.path().join("models--acme--tiny");
        std::fs::create_dir_all(repo.join("snapshots").join(&commit)).unwrap();
        assert_eq!(cache.snapshot("acme/tiny", "main"), None);
        cache.set_ref("acme/tiny", "main", &commit).unwrap();
        assert_eq!(
            cache.snapshot("acme/tiny", "main"),
            Some(repo.join("snapshots").join(&commit))
        );
        assert_eq!(
            cache.snapshot("acme/tiny", &commit),
            Some(repo.join("snapshots").join(&commit))
        );
        std::fs::write(repo.join("refs/v1"), "../../../../etc").unwrap();
        assert_eq!(cache.snapshot("acme/tiny", "v1"), None);
        assert_eq!(cache.snapshot("acme/tiny", "../refs/main"), None);
    }

    #[test]
    fn folders_and_symlinks_as_huggingface_hub_makes_them() {
        assert_eq!(HfCache::repo_folder("acme/tiny"), "models--acme--tiny");
        assert_eq!(HfCache::repo_folder("gpt2"), "models--gpt2");
        assert_eq!(HfCache::repo_folder("datasets/acme/c"), "datasets--acme--c");
        let dir = tempfile::tempdir().unwrap();
        let cache = HfCache::at(dir.path());
        let source = dir.path().join("src.bin");
        std::fs::write(&source, b"abc").unwrap();
        let commit = "c".repeat(40);
        let file = SnapshotFile {
            path: "sub/dir/f.bin",
            etag: &"e".repeat(40),
            size: 3,
            source: &source,
        };
        cache.add_file("acme/tiny", &commit, &file, LinkMode::Copy).unwrap();
        cache.set_ref("acme/tiny", "main", &commit).unwrap();
        let repo = dir.path().join("models--acme--tiny");
        let pointer = repo.join("snapshots").join(&commit).join("sub/dir/f.bin");
        assert_eq!(
            std::fs::read_link(&pointer).unwrap(),
            Path::new(&format!("../../../../blobs/{}", "e".repeat(40)))
        );
        assert_eq!(std::fs::read(&pointer).unwrap(), b"abc");
        assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), commit);
        let etag = "e".repeat(40);
        assert_eq!(cache.blob("acme/tiny", &etag, 3), Some(repo.join("blobs").join(&etag)));
        assert_eq!(cache.blob("acme/tiny", &etag, 4), None);
        // Names that are not hashes never become paths.
        assert_eq!(cache.blob("acme/tiny", "../../../x", 3), None);
        let escape = SnapshotFile {
            etag: "../../x",
            ..file
        };
        assert!(cache.add_file("acme/tiny", &commit, &escape, LinkMode::Copy).is_err());
    }
}
