//! `trees/<commit>.json` in a repo's folder: huggingface_hub 2.5's record of a
//! commit's whole file list (`huggingface_hub/_tree_cache.py`), which it reads
//! instead of asking the Hub again and, offline, to tell a complete snapshot
//! from a partial one.
//!
//! ```json
//! {"format_version": 1, "files": {"model.safetensors": {"size": 1234,
//!   "blob_id": "<git sha1>", "lfs_sha256": "…", "lfs_size": 1234, "xet_hash": "…"}}}
//! ```
//! Read as hostile input: bounded in size, every path a safe relative path
//! and every hash the hex it claims to be, or the file is not used.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

const FORMAT_VERSION: u32 = 1;
/// A listing larger than this is not read (the Hub's largest repos list
/// some 100,000 files in a few MiB).
const MAX_BYTES: u64 = 64 << 20;

/// One file of a commit, as the Hub's tree listing describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    pub size: u64,
    /// The git blob id: of the file itself, or of its LFS pointer.
    pub blob_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet_hash: Option<String>,
}

impl TreeEntry {
    /// The ETag the Hub sends for this file: the LFS sha256, else the blob id.
    pub fn etag(&self) -> &str {
        self.lfs_sha256.as_deref().unwrap_or(&self.blob_id)
    }

    fn is_valid(&self) -> bool {
        crate::hash::is_hex(&self.blob_id, 40)
            && self.lfs_sha256.as_deref().is_none_or(|s| crate::hash::is_hex(s, 64))
            && self.lfs_size.is_none_or(|s| s == self.size)
            && self.xet_hash.as_deref().is_none_or(crate::hash::is_blake3)
    }
}

#[derive(Serialize, Deserialize)]
struct TreeFile {
    format_version: u32,
    files: BTreeMap<String, TreeEntry>,
}

/// The listing at `path`, when it is a valid one (else `None`, as
/// huggingface_hub ignores a corrupt or unknown one).
pub fn read(path: &Path) -> Option<BTreeMap<String, TreeEntry>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_BYTES {
        return None;
    }
    let tree: TreeFile = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let valid = tree.format_version == FORMAT_VERSION
        && tree
            .files
            .iter()
            .all(|(p, e)| crate::fs::safe_relative_path(p).is_ok() && e.is_valid());
    valid.then_some(tree.files)
}

/// Writes the listing atomically, unless an identical one is there.
pub fn write(path: &Path, files: BTreeMap<String, TreeEntry>) -> std::io::Result<()> {
    if read(path).as_ref() == Some(&files) {
        return Ok(());
    }
    let tree = TreeFile {
        format_version: FORMAT_VERSION,
        files,
    };
    let text = serde_json::to_vec_pretty(&tree).expect("a tree listing serializes");
    crate::fs::write_atomic(path, &text)
}

/// The git blob id of the Git LFS pointer the Hub keeps for an LFS file (the
/// listing's `blobId` for such a file): `sha1("blob {len}\0{pointer}")`.
pub fn lfs_pointer_oid(sha256: &str, size: u64) -> String {
    use sha1::Digest as _;
    let pointer = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n");
    let mut git = sha1::Sha1::new();
    git.update(format!("blob {}\0", pointer.len()).as_bytes());
    git.update(pointer.as_bytes());
    hex::encode(git.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pointer_oid_is_gits() {
        // `printf 'version …\noid sha256:…\nsize 3\n' | git hash-object --stdin`
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let pointer = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize 3\n");
        use sha1::Digest as _;
        let mut git = sha1::Sha1::new();
        git.update(format!("blob {}\0{pointer}", pointer.len()).as_bytes());
        assert_eq!(lfs_pointer_oid(sha, 3), hex::encode(git.finalize()));
    }

    #[test]
    fn a_hostile_listing_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let entry = |blob: &str| serde_json::json!({"size": 1, "blob_id": blob});
        let good = serde_json::json!({"format_version": 1, "files": {"a/b.bin": entry(&"a".repeat(40))}});
        std::fs::write(&path, good.to_string()).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        for bad in [
            serde_json::json!({"format_version": 2, "files": {}}),
            serde_json::json!({"format_version": 1, "files": {"../x": entry(&"a".repeat(40))}}),
            serde_json::json!({"format_version": 1, "files": {"x": entry("../../etc")}}),
        ] {
            std::fs::write(&path, bad.to_string()).unwrap();
            assert_eq!(read(&path), None, "{bad}");
        }
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read(&link), None, "a link is not followed");
    }
}
