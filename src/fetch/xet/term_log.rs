//! The resume log beside a partial Xet file: per finished term, its chunks'
//! hashes and lengths, so a killed run keeps every whole term.

use std::io::Write;
use std::path::Path;

use super::codec::Hash;
use super::limits::MAX_XORB_CHUNKS;

// ---- the resume log: per finished term, its chunks' hashes and lengths ----

pub(super) const RECORD: usize = 32 + 8;

/// Every whole entry of the log: (term, [(chunk hash, length)]). An entry
/// cut by a kill is dropped with everything after it.
pub(super) fn read_log(path: &Path) -> Vec<(usize, Vec<(Hash, u64)>)> {
    let bytes = crate::fs::read_nofollow(path, 1 << 30).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + 8) {
        let term = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let n = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
        if n > MAX_XORB_CHUNKS as usize {
            break;
        }
        let Some(body) = bytes.get(at + 8..at + 8 + n * RECORD) else {
            break;
        };
        let records = body
            .chunks_exact(RECORD)
            .map(|r| {
                (
                    r[..32].try_into().unwrap(),
                    u64::from_le_bytes(r[32..].try_into().unwrap()),
                )
            })
            .collect();
        out.push((term, records));
        at += 8 + n * RECORD;
    }
    out
}

pub(super) fn append_log(f: &mut std::fs::File, term: usize, records: &[(Hash, u64)]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8 + records.len() * RECORD);
    buf.extend_from_slice(&(term as u32).to_le_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for (h, len) in records {
        buf.extend_from_slice(h);
        buf.extend_from_slice(&len.to_le_bytes());
    }
    f.write_all(&buf)
}
