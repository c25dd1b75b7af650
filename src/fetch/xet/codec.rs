//! Xet's hashes and chunk encoding (spec: `hashing.md`, `xorb.md`): chunk
//! hashes, the Merkle root a file's chunks must hash to, and chunks decoded
//! from a xorb range (none, LZ4, byte-grouped LZ4), each header checked
//! against its bytes before anything is allocated.

use std::io::Read;

use super::limits::MAX_CHUNK;

// ---- hashes (spec: hashing.md) ----

/// blake3 keys of the spec: chunk data, internal Merkle nodes.
pub(super) const DATA_KEY: [u8; 32] = [
    102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16, 155, 235, 43, 88, 180,
    208, 176, 75, 147, 173, 242, 41,
];
pub(super) const INTERNAL_NODE_KEY: [u8; 32] = [
    1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111, 55, 199, 109, 210, 248,
    99, 82, 230, 74, 83, 113, 63,
];

pub type Hash = [u8; 32];

pub fn chunk_hash(data: &[u8]) -> Hash {
    *blake3::keyed_hash(&DATA_KEY, data).as_bytes()
}

/// The spec's hex form: four little-endian u64 words, each as 16 hex digits.
pub fn to_hex(h: &Hash) -> String {
    h.chunks_exact(8)
        .map(|w| format!("{:016x}", u64::from_le_bytes(w.try_into().unwrap())))
        .collect()
}

pub fn from_hex(s: &str) -> Option<Hash> {
    if !crate::hash::is_hex(s, 64) {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, w) in h.chunks_exact_mut(8).enumerate() {
        let word = u64::from_str_radix(&s[i * 16..i * 16 + 16], 16).ok()?;
        w.copy_from_slice(&word.to_le_bytes());
    }
    Some(h)
}

/// The Merkle root of `(chunk hash, length)` pairs: groups of 2 to 9 nodes,
/// cut after a node whose last word is divisible by 4, hashed as their
/// `hex : length` lines, until one node is left.
pub(super) fn merkle_root(chunks: &[(Hash, u64)]) -> Hash {
    if chunks.is_empty() {
        return [0; 32];
    }
    let mut level = chunks.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / 4 + 1);
        let mut at = 0;
        while at < level.len() {
            let rest = &level[at..];
            let cut = if rest.len() <= 2 {
                rest.len()
            } else {
                let end = rest.len().min(9);
                (2..end)
                    .find(|&i| u64::from_le_bytes(rest[i].0[24..].try_into().unwrap()) % 4 == 0)
                    .map_or(end, |i| i + 1)
            };
            let mut text = String::with_capacity(cut * 88);
            let mut total = 0u64;
            for (h, len) in &rest[..cut] {
                text.push_str(&to_hex(h));
                text.push_str(" : ");
                text.push_str(&len.to_string());
                text.push('\n');
                total += len;
            }
            next.push((
                *blake3::keyed_hash(&INTERNAL_NODE_KEY, text.as_bytes()).as_bytes(),
                total,
            ));
            at += cut;
        }
        level = next;
    }
    level[0].0
}

/// A file's Xet hash: its chunks' Merkle root, keyed once more with zeros.
pub fn file_hash(chunks: &[(Hash, u64)]) -> Hash {
    if chunks.is_empty() {
        return [0; 32];
    }
    *blake3::keyed_hash(&[0; 32], &merkle_root(chunks)).as_bytes()
}

// ---- chunks (spec: xorb.md) ----

/// Decodes the chunks of one xorb range: 8-byte headers (version 0, 3-byte
/// compressed length, scheme, 3-byte uncompressed length), each followed by
/// its bytes. `count` chunks must fill `data` exactly.
#[cfg(test)]
pub(super) fn decode_chunks(data: &bytes::Bytes, count: usize) -> Result<Vec<bytes::Bytes>, String> {
    let mut buf = bytes::BytesMut::from(&data[..]);
    let mut out = Vec::with_capacity(count);
    while let Some(chunk) = next_chunk(&mut buf)? {
        out.push(chunk);
        if out.len() > count {
            break;
        }
    }
    if !buf.is_empty() {
        return Err("a chunk's bytes are cut short".into());
    }
    if out.len() != count {
        return Err(format!("the range holds {} chunks, {count} were promised", out.len()));
    }
    Ok(out)
}

/// The next whole chunk at the front of `buf`, decoded and taken off it;
/// `None` while its header or bytes have not all arrived.
pub(super) fn next_chunk(buf: &mut bytes::BytesMut) -> Result<Option<bytes::Bytes>, String> {
    let Some(header) = buf.get(..8) else {
        return Ok(None);
    };
    if header[0] != 0 {
        return Err(format!("chunk version {} is not one mdl reads", header[0]));
    }
    let stored = u32::from_le_bytes([header[1], header[2], header[3], 0]) as usize;
    let scheme = header[4];
    let len = u32::from_le_bytes([header[5], header[6], header[7], 0]) as usize;
    if len > MAX_CHUNK || stored > MAX_CHUNK + 1024 {
        return Err(format!(
            "a chunk claims {len} bytes ({stored} stored), over the 128 KiB limit"
        ));
    }
    if buf.len() < 8 + stored {
        return Ok(None);
    }
    let _ = buf.split_to(8);
    let body = buf.split_to(stored).freeze();
    let chunk = match scheme {
        // Stored as is: the received bytes themselves, not a copy.
        0 => body,
        1 | 2 => {
            let mut plain = Vec::with_capacity(len);
            lz4_flex::frame::FrameDecoder::new(&body[..])
                .take(len as u64 + 1)
                .read_to_end(&mut plain)
                .map_err(|e| format!("a chunk's LZ4 frame is corrupt: {e}"))?;
            bytes::Bytes::from(if scheme == 2 { bg4_regroup(&plain) } else { plain })
        }
        other => return Err(format!("chunk compression {other} is not one the spec defines")),
    };
    if chunk.len() != len {
        return Err(format!(
            "a chunk decodes to {} bytes, its header says {len}",
            chunk.len()
        ));
    }
    Ok(Some(chunk))
}

/// Undoes byte grouping: the bytes were split into 4 groups (byte 0 of each
/// 4, byte 1, …; the first groups one longer when the length is not a
/// multiple of 4).
pub(super) fn bg4_regroup(grouped: &[u8]) -> Vec<u8> {
    let n = grouped.len();
    let (split, rem) = (n / 4, n % 4);
    let lens = [
        split + usize::from(rem > 0),
        split + usize::from(rem > 1),
        split + usize::from(rem > 2),
        split,
    ];
    let mut starts = [0usize; 4];
    for g in 1..4 {
        starts[g] = starts[g - 1] + lens[g - 1];
    }
    let mut out = vec![0u8; n];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = grouped[starts[i % 4] + i / 4];
    }
    out
}
