//! The chunk index: which chunks the project's placed files hold (xorb and
//! chunk index → file, offset, hash), so a new revision's terms that name
//! chunks mdl already has are copied from disk, each hash checked again.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use super::codec::*;
use super::limits::*;
use super::protocol::Term;

// ---- the chunk index: which chunks the project's files hold ----

/// The places an index lists for a file of `size` bytes: (xorb, chunk
/// index) → (offset, length, chunk hash), only those inside the file, of at
/// most 128 KiB and at a chunk index a xorb can have.
#[allow(clippy::type_complexity)]
pub(super) fn places(body: &[u8], size: u64) -> impl Iterator<Item = ((Hash, u32), (u64, u32, Hash))> + '_ {
    body.chunks_exact(PLACE).filter_map(move |p| {
        let xorb: Hash = p[..32].try_into().unwrap();
        let i = u32::from_le_bytes(p[32..36].try_into().unwrap());
        let hash: Hash = p[36..68].try_into().unwrap();
        let offset = u64::from_le_bytes(p[68..76].try_into().unwrap());
        let len = u32::from_le_bytes(p[76..80].try_into().unwrap());
        let fits = offset.checked_add(u64::from(len)).is_some_and(|end| end <= size);
        (fits && len as usize <= MAX_CHUNK && i < MAX_XORB_CHUNKS).then_some(((xorb, i), (offset, len, hash)))
    })
}

#[derive(Clone, Copy)]
pub(super) struct ChunkPlace {
    pub(super) xorb: Hash,
    pub(super) index: u32,
    pub(super) hash: Hash,
    pub(super) offset: u64,
    pub(super) len: u32,
}

pub(super) const PLACE: usize = 32 + 4 + 32 + 8 + 4;

/// Where a chunk is: (file number, offset, length, chunk hash).
pub(super) type Located = (usize, u64, u32, Hash);

/// (xorb, chunk index) → where the project's files hold that chunk.
#[derive(Default)]
pub(crate) struct ChunkIndex {
    pub(super) files: Vec<PathBuf>,
    pub(super) chunks: Mutex<HashMap<(Hash, u32), Located>>,
}

/// The largest chunk index read (a 100 GiB file of 64 KiB chunks needs
/// ~130 MiB of places; more is not an index mdl wrote).
pub(super) const MAX_INDEX_BYTES: u64 = 256 << 20;

impl ChunkIndex {
    /// Every index in `dir` (`models/.mdl/xet/`) whose file is still there
    /// with its size. The folder is input like any other under `models/` (a
    /// pull request or a restored cache can plant one): an index or a file
    /// reached through a link is skipped, a file must be a regular file
    /// inside `models_root`, and a chunk must lie inside it and be at most
    /// 128 KiB before anything is allocated for it.
    pub(super) fn load(dir: Option<&Path>, models_root: Option<&Path>) -> ChunkIndex {
        let mut index = ChunkIndex::default();
        let (Some(entries), Some(root)) = (dir.and_then(|d| std::fs::read_dir(d).ok()), models_root) else {
            return index;
        };
        for entry in entries.flatten() {
            let is_small_file = entry
                .path()
                .symlink_metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= MAX_INDEX_BYTES);
            if let Some(bytes) = is_small_file.then(|| std::fs::read(entry.path()).ok()).flatten() {
                index.add(&bytes, root);
            }
        }
        index
    }

    /// One index file's bytes: a JSON header line, then fixed-size places.
    pub(super) fn add(&mut self, bytes: &[u8], root: &Path) {
        #[derive(Deserialize)]
        struct Header {
            path: PathBuf,
            size: u64,
        }
        let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
            return;
        };
        let Ok(header) = serde_json::from_slice::<Header>(&bytes[..nl]) else {
            return;
        };
        let inside = header.path.starts_with(root)
            && header
                .path
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir));
        let regular = std::fs::symlink_metadata(&header.path).is_ok_and(|m| m.is_file() && m.len() == header.size);
        if !inside || !regular {
            return;
        }
        let file = self.files.len();
        self.files.push(header.path);
        let chunks = self.chunks.get_mut().unwrap();
        for (key, (offset, len, hash)) in places(&bytes[nl + 1..], header.size) {
            chunks.insert(key, (file, offset, len, hash));
        }
    }

    pub(super) fn record(dir: &Path, xet_hash: &str, dest: &Path, places: &[ChunkPlace]) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let size = std::fs::metadata(dest)?.len();
        let mut buf = serde_json::to_vec(&serde_json::json!({ "path": dest, "size": size })).unwrap();
        buf.push(b'\n');
        for p in places {
            buf.extend_from_slice(&p.xorb);
            buf.extend_from_slice(&p.index.to_le_bytes());
            buf.extend_from_slice(&p.hash);
            buf.extend_from_slice(&p.offset.to_le_bytes());
            buf.extend_from_slice(&p.len.to_le_bytes());
        }
        crate::fs::write_atomic(&dir.join(xet_hash), &buf)
    }

    pub(super) fn has_term(&self, t: &Term) -> bool {
        let chunks = self.chunks.lock().unwrap();
        (t.start..t.end).all(|i| chunks.contains_key(&(t.xorb, i)))
    }

    pub(super) fn forget(&self, t: &Term) {
        let mut chunks = self.chunks.lock().unwrap();
        for i in t.start..t.end {
            chunks.remove(&(t.xorb, i));
        }
    }

    /// A term's chunks read from local files, each checked against its hash.
    pub(super) fn read_term(&self, t: &Term) -> Option<Vec<(Hash, bytes::Bytes)>> {
        let places: Vec<_> = {
            let chunks = self.chunks.lock().unwrap();
            (t.start..t.end)
                .map(|i| chunks.get(&(t.xorb, i)).copied())
                .collect::<Option<_>>()?
        };
        let mut open: Option<(usize, std::fs::File)> = None;
        let mut out = Vec::with_capacity(places.len());
        for (file, offset, len, hash) in places {
            if open.as_ref().is_none_or(|(f, _)| *f != file) {
                use std::os::unix::fs::OpenOptionsExt as _;
                let opened = (std::fs::OpenOptions::new().read(true))
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&self.files[file]);
                open = Some((file, opened.ok()?));
            }
            let f = &mut open.as_mut()?.1;
            f.seek(SeekFrom::Start(offset)).ok()?;
            let mut chunk = vec![0u8; len as usize];
            f.read_exact(&mut chunk).ok()?;
            if chunk_hash(&chunk) != hash {
                return None;
            }
            out.push((hash, bytes::Bytes::from(chunk)));
        }
        Some(out)
    }
}
