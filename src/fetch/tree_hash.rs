//! blake3 of a file downloaded as parallel pieces, without reading it back.
//!
//! blake3 is a tree hash: a subtree that starts at a multiple of its (power of
//! two) size can be hashed on its own into a chaining value, and chaining values
//! merge into parents. With pieces of a power-of-two size aligned at multiples of
//! it, every split of the tree above piece level falls on a piece boundary, so
//! each piece is hashed as its bytes stream in — in any order, on any connection —
//! and the root is a handful of merges at the end. Nothing is re-read from disk.

use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};

/// A hasher for the piece that starts at `offset`.
pub fn piece_hasher(offset: u64) -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    if offset > 0 {
        hasher.set_input_offset(offset);
    }
    hasher
}

/// The chaining value of a finished piece (for files of more than one piece).
pub fn piece_cv(hasher: &blake3::Hasher) -> ChainingValue {
    hasher.finalize_non_root()
}

/// The root hash of a `len`-byte input from the chaining values of its pieces of
/// `piece` bytes (a power of two of at least 1 KiB); `len` must exceed `piece`.
pub fn root(cvs: &[ChainingValue], piece: u64, len: u64) -> blake3::Hash {
    assert!(piece.is_power_of_two() && piece >= blake3::CHUNK_LEN as u64 && len > piece);
    let left = left_subtree_len(len);
    let l = subtree(cvs, piece, 0, left);
    let r = subtree(cvs, piece, left, len - left);
    merge_subtrees_root(&l, &r, Mode::Hash)
}

fn subtree(cvs: &[ChainingValue], piece: u64, start: u64, len: u64) -> ChainingValue {
    if len <= piece {
        return cvs[(start / piece) as usize];
    }
    let left = left_subtree_len(len);
    let l = subtree(cvs, piece, start, left);
    let r = subtree(cvs, piece, start + left, len - left);
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_in_any_order_give_the_plain_hash() {
        let piece = 4096u64;
        for len in [4097u64, 8192, 8193, 3 * 4096, 5 * 4096 + 17, 16 * 4096, 37 * 4096 - 1] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let n = len.div_ceil(piece) as usize;
            let mut cvs = vec![[0u8; 32]; n];
            for i in (0..n).rev() {
                let start = i as u64 * piece;
                let end = (start + piece).min(len);
                let mut h = piece_hasher(start);
                h.update(&data[start as usize..end as usize]);
                cvs[i] = piece_cv(&h);
            }
            assert_eq!(root(&cvs, piece, len), blake3::hash(&data), "len {len}");
        }
    }
}
