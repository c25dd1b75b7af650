//! Hashing, in one place: blake3 (mdl's own content id), and the digests
//! upstreams publish to check against — sha256 (Hub LFS files, torchvision's
//! file-name prefix) and the git blob id (Hub files stored in git).

use std::io::Read;
use std::path::Path;

use sha1::Digest as _;

/// blake3 of a file, read with a large buffer (memory-mapped and multi-threaded
/// for big files).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let len = std::fs::metadata(path)?.len();
    if len >= 16 << 20 {
        hasher.update_mmap_rayon(path)?;
    } else {
        hasher.update_reader(std::fs::File::open(path)?)?;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// blake3 of a file through a 64 MiB window mapped at a time (pre-faulted in
/// one call) and hashed on every core: as fast as [`hash_file`] from the page
/// cache, without a map of the whole file counting as this process's memory.
pub fn hash_file_windowed(path: &Path) -> std::io::Result<String> {
    const WINDOW: u64 = 64 << 20;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    let mut at = 0;
    while at < len {
        let n = WINDOW.min(len - at);
        // SAFETY: mdl's own partial file, written and not changed while it
        // is hashed; each map is dropped before the next.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(at)
                .len(n as usize)
                .populate()
                .map(&file)?
        };
        hasher.update_rayon(&map);
        at += n;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// sha256 of a file alone (blake3 is known otherwise, e.g. merged from pieces).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut h = sha2::Sha256::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    std::io::copy(&mut reader, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// blake3 always; sha256 and the git blob id only when there is something to
/// check them against (sha256 costs more CPU than blake3 and the copy together).
pub struct Hashers {
    blake3: blake3::Hasher,
    sha256: Option<sha2::Sha256>,
    git: Option<sha1::Sha1>,
}

/// Hex digests of one stream of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub blake3: String,
    pub sha256: Option<String>,
    pub git_oid: Option<String>,
}

impl Hashers {
    /// The git blob id needs the size up front (`blob {len}\0` is hashed first);
    /// without one it is not computed.
    pub fn new(sha256: bool, git: bool, size: Option<u64>) -> Hashers {
        let git = match (git, size) {
            (true, Some(size)) => {
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Some(h)
            }
            _ => None,
        };
        Hashers {
            blake3: blake3::Hasher::new(),
            sha256: sha256.then(sha2::Sha256::new),
            git,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        if let Some(s) = &mut self.sha256 {
            s.update(bytes);
        }
        if let Some(g) = &mut self.git {
            g.update(bytes);
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            blake3: self.blake3.finalize().to_hex().to_string(),
            sha256: self.sha256.map(|s| hex::encode(s.finalize())),
            git_oid: self.git.map(|g| hex::encode(g.finalize())),
        }
    }
}

/// Reads `path` once and returns its digests (sha256 and the git blob id only
/// when asked for).
pub fn digest_file(path: &Path, sha256: bool, git: bool) -> std::io::Result<Digests> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut hashers = Hashers::new(sha256, git, Some(size));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hashers.update(&buf[..n]);
    }
    Ok(hashers.finish())
}

// What a hash may look like where it enters from outside (a lock, a
// server's answer) and before it names a file or a URL.

/// `n` hex digits (either case: the Hub's API answers lowercase, but a value
/// is compared case-insensitively everywhere it is checked).
pub fn is_hex(value: &str, n: usize) -> bool {
    value.len() == n && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A blake3 as mdl writes it: 64 lowercase hex digits.
pub fn is_blake3(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An OCI digest mdl accepts: `sha256:` and 64 lowercase hex digits.
pub fn is_sha256_digest(value: &str) -> bool {
    value
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// A git commit id as the Hub answers it: 40 lowercase hex digits.
pub fn is_git_commit(value: &str) -> bool {
    value.len() == 40 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A Hub ETag: a git blob id (40 hex) or an LFS sha256 (64 hex). Never a
/// masked value (`****…`) or anything with a `/`: it names a file in the
/// Hugging Face cache.
pub fn is_hub_etag(value: &str) -> bool {
    is_hex(value, 40) || is_hex(value, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let mut h = Hashers::new(false, true, Some(6));
        h.update(b"hello\n");
        assert_eq!(h.finish().git_oid.unwrap(), "ce013625030ba8dba906f756967f9e9ca394464a");
    }

    #[test]
    fn digest_file_reads_once_for_all_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        let d = digest_file(&path, true, true).unwrap();
        assert_eq!(d.blake3, blake3::hash(b"hello\n").to_hex().to_string());
        assert_eq!(
            d.sha256.unwrap(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(hash_file(&path).unwrap(), d.blake3);
    }
}
