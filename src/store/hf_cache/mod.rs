//! The Hugging Face cache, as `huggingface_hub` lays it out, read and written:
//!
//! ```text
//! $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
//! ├── blobs/<xet[:2]>/<xet hash>   2.5: each Xet file once per cache (`shared_blobs`)
//! └── models--org--name/           (datasets--…, spaces--… for other types)
//!     ├── blobs/<etag>             bytes (≤ 2.4), or 2.5's link into `../../blobs/`;
//!     │                            etag = sha256 (LFS) or git blob id
//!     ├── refs/<revision>          the commit, no newline (only when revision ≠ commit)
//!     ├── snapshots/<commit>/<path> -> ../../blobs/<etag>  (relative symlink)
//!     └── trees/<commit>.json      2.5: the commit's whole file list (`tree`)
//! ```
//! Reading: a Hub file `hf download` already fetched is taken from `blobs/`
//! instead of downloaded (still checked against the lock). Writing
//! (`download.hf_cache: true`): Python code with `HF_HUB_OFFLINE=1` then loads
//! the model by repo id, from the same bytes. Both layouts are read; Xet
//! files are written in 2.5's (one copy for `hf`, transformers and mdl)
//! unless `HF_HUB_DISABLE_SHARED_BLOBS` is set, as huggingface_hub does.

mod shared_blobs;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::link::{self, LinkMode};
use shared_blobs::SharedBlobs;
pub use tree::TreeEntry;

/// One file of a snapshot, and where its bytes are now.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotFile<'a> {
    /// Its path in the repository.
    pub path: &'a str,
    pub etag: &'a str,
    pub size: u64,
    pub source: &'a Path,
    /// The source's blake3 (checked against the lock).
    pub blake3: &'a str,
    /// The Hub's Xet hash: such a file goes to the cache-wide store.
    pub xet_hash: Option<&'a str>,
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
    /// download is never named like a blob, but a damaged cache might be):
    /// the repo's own file, or the cache-wide store's entry its link names.
    /// No other link is followed.
    pub fn blob(&self, repo: &str, etag: &str, size: u64) -> Option<PathBuf> {
        if !crate::hash::is_hub_etag(etag) {
            return None;
        }
        self.blob_of(repo, etag)
            .filter(|(_, len)| *len == size)
            .map(|(path, _)| path)
    }

    /// [`HfCache::blob`] of any size: the file and its size.
    pub fn blob_of(&self, repo: &str, etag: &str) -> Option<(PathBuf, u64)> {
        if !crate::hash::is_hub_etag(etag) {
            return None;
        }
        let path = self.repo_dir(repo).join("blobs").join(etag);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if meta.file_type().is_symlink() {
            return SharedBlobs::of(&self.root).target_of(&path);
        }
        meta.is_file().then_some((path, meta.len()))
    }

    /// The commit `revision` names in the cache: itself when it is a commit
    /// id, else what `refs/<revision>` holds (when that is a commit id).
    pub fn commit_of(&self, repo: &str, revision: &str) -> Option<String> {
        if crate::hash::is_git_commit(revision) {
            return Some(revision.to_string());
        }
        let rel = crate::fs::safe_relative_path(revision).ok()?;
        let path = self.repo_dir(repo).join("refs").join(rel);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > 1024 {
            return None;
        }
        let commit = std::fs::read_to_string(path).ok()?.trim().to_string();
        crate::hash::is_git_commit(&commit).then_some(commit)
    }

    /// The ETag of the file `path` of `repo` at `commit`, by the cache's own
    /// map: the snapshot's link (`snapshots/<commit>/<path>` ->
    /// `../…/blobs/<etag>`), else `trees/<commit>.json`. A hint: the blob it
    /// names is checked by content before it is used.
    pub fn etag_at(&self, repo: &str, commit: &str, path: &str) -> Option<String> {
        if !crate::hash::is_git_commit(commit) {
            return None;
        }
        let rel = crate::fs::safe_relative_path(path).ok()?;
        let pointer = self.repo_dir(repo).join("snapshots").join(commit).join(&rel);
        let from_link = std::fs::read_link(&pointer).ok().and_then(|target| {
            let depth = rel.components().count() + 1;
            let parts: Vec<Component<'_>> = target.components().collect();
            let (ups, rest) = parts.split_at_checked(depth)?;
            let etag = match rest {
                [Component::Normal(b), Component::Normal(e)] if *b == "blobs" => e.to_str()?,
                _ => return None,
            };
            let ups_ok = ups.iter().all(|c| *c == Component::ParentDir);
            (ups_ok && crate::hash::is_hub_etag(etag)).then(|| etag.to_string())
        });
        from_link.or_else(|| Some(self.tree(repo, commit)?.get(path)?.etag().to_string()))
    }

    /// `trees/<commit>.json`: the commit's whole file list, when the cache
    /// holds a valid one.
    pub fn tree(&self, repo: &str, commit: &str) -> Option<BTreeMap<String, TreeEntry>> {
        if !crate::hash::is_git_commit(commit) {
            return None;
        }
        tree::read(&self.repo_dir(repo).join("trees").join(format!("{commit}.json")))
    }

    /// Records a commit's whole file list as huggingface_hub 2.5 does.
    pub fn write_tree(&self, repo: &str, commit: &str, files: BTreeMap<String, TreeEntry>) -> std::io::Result<()> {
        if !crate::hash::is_git_commit(commit) {
            return Err(std::io::Error::other(format!(
                "`{}` is not a commit",
                commit.escape_debug()
            )));
        }
        crate::fs::safe_relative_path(repo).map_err(std::io::Error::other)?;
        let path = self.repo_dir(repo).join("trees").join(format!("{commit}.json"));
        tree::write(&path, files).map_err(|e| std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display())))
    }

    /// The files of a snapshot directory, by path: each a link to
    /// `blobs/<etag>` (what huggingface_hub ≤ 2.4 leaves without a tree
    /// listing). Entries that are not such links are skipped.
    pub fn snapshot_etags(&self, repo: &str, commit: &str) -> BTreeMap<String, String> {
        let mut found = BTreeMap::new();
        let Some(root) = self.snapshot(repo, commit) else {
            return found;
        };
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let Ok(kind) = entry.file_type() else { continue };
                let path = entry.path();
                if kind.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let Some(rel) = path.strip_prefix(&root).ok().and_then(|r| r.to_str()) else {
                    continue;
                };
                if let Some(etag) = self.etag_at(repo, commit, rel).filter(|_| kind.is_symlink()) {
                    found.insert(rel.to_string(), etag);
                }
            }
        }
        found
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
            blake3,
            xet_hash,
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
            let reference = format!("{}/blobs/{etag}", HfCache::repo_folder(repo));
            let shared = match xet_hash {
                Some(xet) if SharedBlobs::enabled() => {
                    SharedBlobs::of(&self.root).publish(xet, (source, blake3, size), &blob, &reference)?
                }
                _ => false,
            };
            if !shared {
                link::place(source, &blob, mode)?;
            }
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
        let commit = self.commit_of(repo, revision)?;
        let snapshot = self.repo_dir(repo).join("snapshots").join(commit);
        std::fs::symlink_metadata(&snapshot)
            .is_ok_and(|m| m.is_dir())
            .then_some(snapshot)
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

/// Resolution's view of the cache (`resolve::HubCache`): every blob it
/// names is checked by content against its ETag before it is used.
impl crate::sources::HubCache for HfCache {
    fn commit_of(&self, repo: &str, revision: &str) -> Option<String> {
        HfCache::commit_of(self, repo, revision)
    }

    fn listed(&self, repo: &str, commit: &str) -> Vec<String> {
        match self.tree(repo, commit) {
            Some(tree) => tree.into_keys().collect(),
            None => self.snapshot_etags(repo, commit).into_keys().collect(),
        }
    }

    fn cached(&self, repo: &str, commit: &str, path: &str) -> Option<crate::sources::Cached> {
        let etag = self.etag_at(repo, commit, path)?;
        let (blob, size) = self.blob_of(repo, &etag)?;
        let lfs = etag.len() == 64;
        let digests = crate::hash::digest_file(&blob, lfs, !lfs).ok()?;
        let actual = if lfs { digests.sha256 } else { digests.git_oid };
        if actual.as_deref() != Some(etag.as_str()) {
            return None;
        }
        let xet_hash =
            (self.tree(repo, commit)).and_then(|tree| tree.get(path).filter(|e| e.etag() == etag)?.xet_hash.clone());
        Some(crate::sources::Cached { etag, size, xet_hash })
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
            blake3: "",
            xet_hash: None,
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
