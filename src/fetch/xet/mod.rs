//! The Hub's own storage protocol, Xet (huggingface/hub-docs `docs/xet/`),
//! written against the spec and checked against xet-core's code in the tests
//! below. A Xet-backed file is rebuilt from content-defined chunks:
//!
//! 1. a read token from the Hub (`/api/{type}s/{repo}/xet-read-token/{commit}`,
//!    derived from `HF_ENDPOINT`, carrying the Hub token to the Hub only);
//! 2. the file's reconstruction from the CAS the token names
//!    (`/v2/reconstructions/{hash}`, else `/v1/…`): terms (xorb, chunk range)
//!    and signed xorb URLs with the exact byte ranges to ask for;
//! 3. those ranges, decoded chunk by chunk (none, LZ4, byte-grouped LZ4),
//!    written in order while hashing; each chunk's hash feeds the Merkle
//!    root that must equal the file's Xet hash, and the whole file's blake3
//!    must equal the lock's.
//!
//! What this adds over a plain download:
//! * **Resume by term.** After each term the chunks' hashes and lengths are
//!   appended to a log beside the partial file; a run that was killed keeps
//!   every whole term and asks only for the rest.
//! * **Upgrades by chunk.** Each placed file leaves an index of its chunks
//!   (xorb hash and chunk index → offset in the file, and the chunk's hash) in
//!   `models/.mdl/xet/`. A new revision's terms that name chunks mdl already
//!   has are copied from the old file (each chunk's hash checked again) and
//!   never fetched: the Hub stores a revision's unchanged chunks in the xorbs
//!   of the revision that first had them.
//!
//! Every value from the Hub or the CAS is checked where it enters: URLs are
//! http(s) without credentials, hashes are 64 hex, ranges and lengths are
//! bounded by what a xorb can hold before anything is allocated, and a chunk's
//! header must agree with its bytes.

//!
//! One file per part: `codec.rs` (hashes, chunks), `protocol.rs` (token,
//! reconstruction, ranges), `term_log.rs` (resume), `chunk_index.rs`
//! (upgrades), `limits.rs`; this file is the attempt that uses them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use crate::fetch::{
    check_size, discard, io_error, resumable_prefix, AttemptError, Ending, FetchError, Fetched, Fetcher,
};
use crate::plan::{Download, XetSource};
use crate::reporter::Event;

mod chunk_index;
mod codec;
mod limits;
mod protocol;
mod term_log;

use chunk_index::*;
pub use codec::{chunk_hash, file_hash, from_hex, to_hex, Hash};
use protocol::*;
use term_log::*;

/// Tokens per token URL and the chunk index, shared by a run's downloads.
#[derive(Default)]
pub(crate) struct Session {
    pub(super) tokens: Mutex<HashMap<String, Access>>,
    pub(super) index: tokio::sync::OnceCell<Arc<ChunkIndex>>,
    /// The CAS answered 404 for v2: ask v1 from now on.
    pub(super) v1_only: std::sync::atomic::AtomicBool,
}

/// Every parser of what a CAS answers and what `models/.mdl/xet/` holds, on
/// any bytes, for the fuzz target (`fuzz/fuzz_targets/xet.rs`) and its
/// regression inputs: a reconstruction (checked as for a file of any size
/// and of 1 GiB), a term log, and a chunk index's places. Never a panic, a
/// hang or unbounded memory.
#[doc(hidden)]
pub fn fuzz_xet(data: &[u8]) {
    if let Ok(json) = serde_json::from_slice::<ReconstructionJson>(data) {
        let _ = json.check(Some(1 << 30));
    }
    if let Ok(json) = serde_json::from_slice::<ReconstructionJson>(data) {
        let _ = json.check(None);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log");
    if std::fs::write(&log, data).is_ok() {
        let _ = read_log(&log);
    }
    let _ = places(data, u64::MAX).count();
    let mut index = ChunkIndex::default();
    index.add(data, dir.path());
}

impl Fetcher {
    /// The chunk index of files this project holds (loaded once per run).
    async fn xet_index(&self) -> Arc<ChunkIndex> {
        let dir = self.xet_dir();
        self.xet
            .index
            .get_or_init(|| async move {
                let root = dir.as_ref().and_then(|d| d.parent()?.parent()).map(Path::to_path_buf);
                tokio::task::spawn_blocking(move || ChunkIndex::load(dir.as_deref(), root.as_deref()))
                    .await
                    .map(Arc::new)
                    .unwrap_or_default()
            })
            .await
            .clone()
    }

    fn xet_dir(&self) -> Option<PathBuf> {
        self.tmp_dir.parent().map(|meta| meta.join("xet"))
    }

    /// One attempt at a Xet download. `Ok(None)`: not served through Xet;
    /// the caller falls back to the resolve bridge.
    ///
    /// The partial file is sized up front and every term is written at its
    /// own offset as soon as its range arrives and decodes (ranges in
    /// parallel, decoding and chunk hashing on blocking threads), then the
    /// term is appended to the log. The file's blake3 (and sha256 when one is
    /// published) is computed once at the end from the page cache, on every
    /// core, as the chunked HTTP path's merge would.
    pub(super) async fn attempt_xet(
        &self,
        id: usize,
        job: &Download,
        xet: &XetSource,
        part_path: &Path,
        state_path: &Path,
    ) -> Result<Option<Fetched>, AttemptError> {
        let Some(plan) = self.xet_reconstruction(job, xet).await? else {
            return Ok(None);
        };
        let (starts, size) = offsets(&plan);
        let log_path = state_path.with_extension("xet");
        let (mut done, mut log) = resume(job, xet, &plan, part_path, state_path, &log_path)?;
        let file = Arc::new(open_sized(job, part_path, size)?);
        let resumed_from: u64 = done.keys().map(|&t| plan.terms[t].len).sum();
        // blake3 by aligned pieces, each hashed from the page cache as soon as
        // every term over it is written, beside the download (`tree_hash`).
        let mut pieces = Pieces::new(size, self.settings.piece_size, part_path);
        done.keys().for_each(|&t| pieces.written(starts[t], plan.terms[t].len));
        self.reporter.report(Event::DownloadStarted {
            id,
            label: &job.label,
            size: Some(size),
            resumed_from,
        });

        // Terms left: from chunks already on disk, else from a xorb range.
        let index = self.xet_index().await;
        let units = units_left(&plan, &done, &index);
        let (plan, starts) = (Arc::new(plan), Arc::new(starts));
        let mut placed = futures_util::stream::iter(units)
            .map(|unit| self.place_unit(job, part_path, unit, &plan, &starts, &file, &index))
            // As many ranges at once as the HTTP path opens connections per
            // file: a CDN caps each connection, and with 4 a 1 GiB file took
            // 2.8× the bridge's time at 50 MB/s per connection (benchmark 10).
            .buffer_unordered(self.settings.connections_per_file.max(1));
        let mut reused = 0u64;
        while let Some((terms, from_disk)) = placed.next().await.transpose()? {
            let mut bytes = 0;
            for (term, records) in terms {
                (append_log(&mut log, term, &records))
                    .map_err(|e| AttemptError::Fatal(io_error(job, log_path.clone(), e)))?;
                let len = record_term(&mut pieces, &file, starts[term], plan.terms[term].len, from_disk);
                (bytes, reused) = (bytes + len, reused + if from_disk { len } else { 0 });
                done.insert(term, records);
            }
            crate::failpoint::kill_point("fetch::bytes_written");
            self.reporter.report(Event::DownloadProgress { id, bytes });
        }
        drop(placed);
        let file = Arc::into_inner(file).expect("every placing task ended");
        let ending = Ending {
            id,
            job,
            part_path,
            state_path,
            size,
            etag: None,
            final_url: job.url.clone(),
            resumed_from,
            before_rename: "fetch::before_rename",
        };
        let mut fetched = self
            .finish_xet(ending, xet, file, pieces, &plan, &starts, &done)
            .await?;
        fetched.xet_reused = reused;
        Ok(Some(fetched))
    }

    /// The file, checked: its chunks' Merkle root, then (in `finish`) its
    /// size and digests against the lock; its chunks then go in the index.
    #[allow(clippy::too_many_arguments)]
    async fn finish_xet(
        &self,
        ending: Ending<'_>,
        xet: &XetSource,
        file: std::fs::File,
        pieces: Pieces,
        plan: &Reconstruction,
        starts: &[u64],
        done: &HashMap<usize, Vec<(Hash, u64)>>,
    ) -> Result<Fetched, AttemptError> {
        let (job, part_path, state_path) = (ending.job, ending.part_path, ending.state_path);
        let log_path = state_path.with_extension("xet");
        let places = check_root(job, xet, plan, starts, done).inspect_err(|_| {
            discard(part_path, state_path);
            let _ = std::fs::remove_file(&log_path);
        })?;
        check_size(job, ending.size, Some(ending.size))?;
        let blake3 =
            (pieces.root().await).map_err(|e| AttemptError::Fatal(io_error(job, part_path.to_path_buf(), e)))?;
        let fetched = self.finish_pieced(ending, file, blake3).await?;
        let _ = std::fs::remove_file(&log_path);
        if let Some(dir) = self.xet_dir() {
            // Best effort: without it the next upgrade fetches these chunks.
            let _ = ChunkIndex::record(&dir, &xet.hash, &job.dest, &places);
        }
        Ok(fetched)
    }

    /// Places one unit: a xorb range fetched and decoded, or a term copied
    /// from chunks on disk (a copy whose chunks changed is forgotten and the
    /// attempt retried). Returns the terms placed, with their chunks, and
    /// whether they came from disk.
    #[allow(clippy::too_many_arguments)]
    async fn place_unit(
        &self,
        job: &Download,
        part_path: &Path,
        unit: Unit,
        plan: &Arc<Reconstruction>,
        starts: &Arc<Vec<u64>>,
        file: &Arc<std::fs::File>,
        index: &Arc<ChunkIndex>,
    ) -> Result<(Placed, bool), AttemptError> {
        let term = match unit {
            Unit::Range(r, terms) => {
                let placed = self.stream_range(job, plan, r, &terms, starts, file, part_path).await?;
                return Ok((placed, false));
            }
            Unit::Local(term) => term,
        };
        let (p, s, f, i) = (plan.clone(), starts.clone(), file.clone(), index.clone());
        let placed = tokio::task::spawn_blocking(move || place_local(term, &p, &s, &f, &i))
            .await
            .expect("placing does not panic");
        placed
            .map(|records| (vec![(term, records)], true))
            .map_err(|e| match e {
                Some(e) => AttemptError::Fatal(io_error(job, part_path.to_path_buf(), e)),
                None => {
                    index.forget(&plan.terms[term]);
                    AttemptError::Retry {
                        reason: "a local copy of some chunks changed".into(),
                        wait: Some(Duration::ZERO),
                    }
                }
            })
    }
}

/// Where each term starts in the file, and the file's size.
fn offsets(plan: &Reconstruction) -> (Vec<u64>, u64) {
    let starts = (plan.terms.iter())
        .scan(0u64, |at, t| Some(std::mem::replace(at, *at + t.len)))
        .collect();
    (starts, plan.terms.iter().map(|t| t.len).sum())
}

/// The partial file, sized to the whole file: every term is written at its
/// own offset.
fn open_sized(job: &Download, part_path: &Path, size: u64) -> Result<std::fs::File, AttemptError> {
    // What a resumed partial file holds is kept: its terms are in the log.
    crate::fetch::partial::open(part_path, false, Some(size))
        .map_err(|e| AttemptError::Fatal(io_error(job, part_path.to_path_buf(), e)))
}

/// A term placed at `at` (`len` bytes): its pieces may be hashed, and a
/// term copied from disk is sent on to disk now (a range's own bytes went out
/// as it wrote them). Returns `len`.
fn record_term(pieces: &mut Pieces, file: &std::fs::File, at: u64, len: u64, from_disk: bool) -> u64 {
    pieces.written(at, len);
    if from_disk {
        crate::fs::start_writeback(file, at, len);
    }
    len
}

/// The terms a partial file of this same reconstruction already holds (the
/// log's records that fit), and the log rewritten with only those (a torn
/// last record dropped). A partial file of something else is discarded and
/// the resume state written anew.
#[allow(clippy::type_complexity)]
fn resume(
    job: &Download,
    xet: &XetSource,
    plan: &Reconstruction,
    part_path: &Path,
    state_path: &Path,
    log_path: &Path,
) -> Result<(HashMap<usize, Vec<(Hash, u64)>>, std::fs::File), AttemptError> {
    let fatal_io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| AttemptError::Fatal(io_error(job, path, source))
    };
    let as_xet = Download {
        url: format!("xet:{}", xet.hash),
        ..job.clone()
    };
    let mut done: HashMap<usize, Vec<(Hash, u64)>> = HashMap::new();
    if resumable_prefix(&as_xet, part_path, state_path).is_some() {
        for (term, records) in read_log(log_path) {
            let fits = plan.terms.get(term).is_some_and(|t| {
                records.len() == (t.end - t.start) as usize && records.iter().map(|r| r.1).sum::<u64>() == t.len
            });
            if fits {
                done.insert(term, records);
            }
        }
    } else {
        discard(part_path, state_path);
        let state = crate::fetch::PartialState {
            url: as_xet.url.clone(),
            etag: None,
            expect: job.expect.clone(),
            pieces: None,
        };
        crate::fs::write_atomic(state_path, &serde_json::to_vec(&state).unwrap()).map_err(fatal_io(state_path))?;
    }
    let mut log = crate::fs::open_nofollow(log_path, crate::fs::Open::Truncate).map_err(fatal_io(log_path))?;
    for (term, records) in &done {
        append_log(&mut log, *term, records).map_err(fatal_io(log_path))?;
    }
    Ok((done, log))
}

/// The terms not `done`: each from chunks on disk when the index has them
/// all, else grouped by the xorb range that covers it (one request each).
fn units_left(plan: &Reconstruction, done: &HashMap<usize, Vec<(Hash, u64)>>, index: &ChunkIndex) -> Vec<Unit> {
    let mut local: Vec<usize> = Vec::new();
    let mut by_range: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut slot_of_range: HashMap<usize, usize> = HashMap::new();
    for (i, t) in plan.terms.iter().enumerate() {
        if done.contains_key(&i) {
            continue;
        }
        if index.has_term(t) {
            local.push(i);
            continue;
        }
        let r = plan.cover[i];
        match slot_of_range.get(&r) {
            Some(&slot) => by_range[slot].1.push(i),
            None => {
                slot_of_range.insert(r, by_range.len());
                by_range.push((r, vec![i]));
            }
        }
    }
    (local.into_iter().map(Unit::Local))
        .chain(by_range.into_iter().map(|(r, terms)| Unit::Range(r, terms)))
        .collect()
}

/// The file's chunks, checked: their Merkle root must be the file's Xet
/// hash. Returns where each chunk sits in the file, for the chunk index.
fn check_root(
    job: &Download,
    xet: &XetSource,
    plan: &Reconstruction,
    starts: &[u64],
    done: &HashMap<usize, Vec<(Hash, u64)>>,
) -> Result<Vec<ChunkPlace>, AttemptError> {
    let mut records = Vec::new();
    let mut places = Vec::new();
    for (i, t) in plan.terms.iter().enumerate() {
        let mut offset = starts[i];
        for (k, &(hash, len)) in done[&i].iter().enumerate() {
            records.push((hash, len));
            places.push(ChunkPlace {
                xorb: t.xorb,
                index: t.start + k as u32,
                hash,
                offset,
                len: len as u32,
            });
            offset += len;
        }
    }
    let got = to_hex(&file_hash(&records));
    if got != xet.hash {
        return Err(AttemptError::Fatal(FetchError::Hash {
            label: job.label.clone(),
            algorithm: "Xet hash",
            expected: xet.hash.clone(),
            actual: got,
        }));
    }
    Ok(places)
}

/// The file's blake3, hashed piece by piece while it downloads: a piece
/// (a power of two in size, aligned) is read back from the page cache and
/// hashed on a blocking thread once all its bytes are written; the root is
/// merged from the pieces' chaining values at the end.
struct Pieces {
    size: u64,
    piece: u64,
    part: PathBuf,
    /// Bytes not yet written, per piece.
    left: Vec<u64>,
    hashing: Vec<(
        usize,
        tokio::task::JoinHandle<std::io::Result<blake3::hazmat::ChainingValue>>,
    )>,
}

impl Pieces {
    fn new(size: u64, piece: u64, part: &Path) -> Pieces {
        let n = size.div_ceil(piece) as usize;
        let left = (0..n as u64).map(|i| piece.min(size - i * piece)).collect();
        Pieces {
            size,
            piece,
            part: part.to_path_buf(),
            left,
            hashing: Vec::new(),
        }
    }

    /// `len` bytes at `offset` are written: hash every piece that is now whole.
    fn written(&mut self, offset: u64, len: u64) {
        if self.size <= self.piece {
            return; // one piece: hashed whole at the end
        }
        let (mut at, end) = (offset, offset + len);
        while at < end {
            let i = (at / self.piece) as usize;
            let piece_end = ((i as u64 + 1) * self.piece).min(end);
            self.left[i] -= piece_end - at;
            if self.left[i] == 0 {
                let (part, start, n) = (
                    self.part.clone(),
                    i as u64 * self.piece,
                    self.piece.min(self.size - i as u64 * self.piece),
                );
                self.hashing.push((
                    i,
                    tokio::task::spawn_blocking(move || {
                        let file = std::fs::File::open(&part)?;
                        // SAFETY: mdl's own partial file; this piece's bytes
                        // are all written and no longer change.
                        let map = unsafe {
                            memmap2::MmapOptions::new()
                                .offset(start)
                                .len(n as usize)
                                .populate()
                                .map(&file)?
                        };
                        let mut hasher = crate::fetch::tree_hash::piece_hasher(start);
                        hasher.update(&map);
                        Ok(crate::fetch::tree_hash::piece_cv(&hasher))
                    }),
                ));
            }
            at = piece_end;
        }
    }

    async fn root(self) -> std::io::Result<String> {
        if self.size <= self.piece {
            let part = self.part.clone();
            return tokio::task::spawn_blocking(move || crate::hash::hash_file_windowed(&part))
                .await
                .expect("hashing does not panic");
        }
        if self.left.iter().any(|&l| l != 0) {
            return Err(std::io::Error::other("a piece of the file was never written"));
        }
        let mut cvs = vec![[0u8; 32]; self.left.len()];
        for (i, handle) in self.hashing {
            cvs[i] = handle.await.expect("hashing does not panic")?;
        }
        Ok(crate::fetch::tree_hash::root(&cvs, self.piece, self.size)
            .to_hex()
            .to_string())
    }
}

/// What one placing task does: a term from chunks on disk, or the terms a
/// xorb range serves.
enum Unit {
    Local(usize),
    Range(usize, Vec<usize>),
}

/// Writes a term from chunks already on disk at its offset; `Err(None)`: a
/// local chunk no longer hashes to what the index recorded.
fn place_local(
    term: usize,
    plan: &Reconstruction,
    starts: &[u64],
    file: &std::fs::File,
    index: &ChunkIndex,
) -> Result<Vec<(Hash, u64)>, Option<std::io::Error>> {
    use std::os::unix::fs::FileExt;
    let chunks = index.read_term(&plan.terms[term]).ok_or(None)?;
    let mut at = starts[term];
    let mut records = Vec::with_capacity(chunks.len());
    for (hash, chunk) in chunks {
        file.write_all_at(&chunk, at).map_err(Some)?;
        at += chunk.len() as u64;
        records.push((hash, chunk.len() as u64));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::codec::*;
    use super::*;
    use xet_core_structures::merklehash::{self, MerkleHash};
    use xet_core_structures::xorb_object::{Chunk, CompressionScheme, RawXorbData, SerializedXorbObject};

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn ours(h: &MerkleHash) -> Hash {
        let mut out = [0u8; 32];
        out.copy_from_slice(h.as_bytes());
        out
    }

    #[test]
    fn hashes_agree_with_xet_core() {
        for n in [0usize, 1, 2, 3, 9, 10, 100, 1000] {
            let chunks: Vec<(MerkleHash, u64)> = (0..n)
                .map(|i| {
                    let data = bytes(i as u64, 100 + i);
                    (merklehash::compute_data_hash(&data), data.len() as u64)
                })
                .collect();
            let mine: Vec<(Hash, u64)> = chunks.iter().map(|(h, l)| (ours(h), *l)).collect();
            for (i, (h, _)) in chunks.iter().enumerate() {
                assert_eq!(chunk_hash(&bytes(i as u64, 100 + i)), ours(h));
                assert_eq!(to_hex(&ours(h)), h.hex());
                assert_eq!(from_hex(&h.hex()), Some(ours(h)));
            }
            assert_eq!(
                to_hex(&file_hash(&mine)),
                merklehash::file_hash(&chunks).hex(),
                "{n} chunks"
            );
        }
    }

    #[test]
    fn chunks_decode_as_xet_core_wrote_them() {
        for scheme in [
            CompressionScheme::None,
            CompressionScheme::LZ4,
            CompressionScheme::ByteGrouping4LZ4,
        ] {
            // Compressible, float-like data and odd lengths (byte grouping's tail).
            let datas: Vec<Vec<u8>> = (0..5)
                .map(|i| {
                    let mut d: Vec<u8> = (0..(4000 + i * 333) as u32)
                        .flat_map(|v| (v as f32 * 0.5).to_le_bytes())
                        .collect();
                    d.truncate(d.len() - i);
                    d
                })
                .collect();
            let chunks: Vec<Chunk> = datas.iter().map(|d| Chunk::new(d.clone().into())).collect();
            let raw = RawXorbData::from_chunks(&chunks, vec![0]);
            let xorb = SerializedXorbObject::from_xorb_with_compression(raw, scheme, false, 0).unwrap();
            let decoded = decode_chunks(&xorb.serialized_data.into(), datas.len()).unwrap();
            assert_eq!(decoded, datas, "{scheme:?}");
        }
    }

    #[test]
    fn hostile_chunks_are_refused() {
        let chunk = Chunk::new(bytes(1, 1000).into());
        let raw = RawXorbData::from_chunks(&[chunk], vec![0]);
        let good: bytes::Bytes =
            SerializedXorbObject::from_xorb_with_compression(raw, CompressionScheme::LZ4, false, 0)
                .unwrap()
                .serialized_data
                .into();
        assert!(decode_chunks(&good, 1).is_ok());
        assert!(decode_chunks(&good, 2).is_err(), "fewer chunks than promised");
        assert!(decode_chunks(&good.slice(..good.len() - 1), 1).is_err(), "cut short");
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.to_vec();
            f(&mut v);
            bytes::Bytes::from(v)
        };
        let huge = edit(&|v| v[5..8].copy_from_slice(&[0xff, 0xff, 0xff]));
        assert!(decode_chunks(&huge, 1).unwrap_err().contains("limit"));
        let lying = edit(&|v| v[5] ^= 1);
        assert!(decode_chunks(&lying, 1).is_err(), "length disagrees with the frame");
        let scheme = edit(&|v| v[4] = 9);
        assert!(decode_chunks(&scheme, 1).is_err());
    }

    #[test]
    fn hostile_reconstructions_are_refused() {
        let parse = |v: serde_json::Value| serde_json::from_value::<ReconstructionJson>(v).unwrap().check(Some(10));
        let h = "a".repeat(64);
        let ok = serde_json::json!({"offset_into_first_range": 0,
            "terms": [{"hash": h, "unpacked_length": 10, "range": {"start": 0, "end": 1}}],
            "fetch_info": {h.clone(): [{"range": {"start": 0, "end": 1}, "url": "http://127.0.0.1/x", "url_range": {"start": 0, "end": 17}}]}});
        assert!(parse(ok.clone()).is_ok());
        let mut v = ok.clone();
        v["terms"][0]["hash"] = "../../x".into();
        assert!(parse(v).is_err());
        let mut v = ok.clone();
        v["fetch_info"][&h][0]["url"] = "file:///etc/passwd".into();
        assert!(parse(v).is_err());
        let mut v = ok.clone();
        v["fetch_info"][&h][0]["url_range"]["end"] = (1u64 << 40).into();
        assert!(parse(v).is_err());
        let mut v = ok.clone();
        v["terms"][0]["unpacked_length"] = 11.into();
        assert!(parse(v).is_err(), "terms must add up to the locked size");
        let mut v = ok;
        v["fetch_info"][&h][0]["range"]["start"] = 1.into();
        v["fetch_info"][&h][0]["range"]["end"] = 2.into();
        assert!(parse(v).is_err(), "a term no range covers");
    }

    /// Each term finds the range that covers it through the index: many
    /// terms, many ranges of one xorb, the covering one listed last, and
    /// overlapping ranges where only a later, longer one reaches far enough.
    #[test]
    fn terms_find_their_covering_range_through_the_index() {
        let h = "a".repeat(64);
        let n = 40_000u32;
        let terms: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"hash": h, "unpacked_length": 1, "range": {"start": i % 8000, "end": i % 8000 + 1}}))
            .collect();
        let mut ranges: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"range": {"start": 8000 + i % 100, "end": 8001 + i % 100}, "url": "http://127.0.0.1/x", "url_range": {"start": 0, "end": 1}}))
            .collect();
        ranges.push(serde_json::json!({"range": {"start": 0, "end": 4000}, "url": "http://127.0.0.1/x", "url_range": {"start": 0, "end": 1}}));
        ranges.push(serde_json::json!({"range": {"start": 0, "end": 8000}, "url": "http://127.0.0.1/x", "url_range": {"start": 0, "end": 1}}));
        let answer =
            serde_json::json!({"offset_into_first_range": 0, "terms": terms, "fetch_info": {h.clone(): ranges}});
        let plan = serde_json::from_value::<ReconstructionJson>(answer)
            .unwrap()
            .check(Some(u64::from(n)))
            .unwrap();
        assert_eq!(plan.cover.len(), n as usize);
        for (t, &r) in plan.terms.iter().zip(&plan.cover) {
            let range = &plan.ranges[r];
            assert!(range.xorb == t.xorb && range.start <= t.start && t.end <= range.end);
        }
        // Covered only by a range of another xorb: refused.
        let other = serde_json::json!({"offset_into_first_range": 0,
            "terms": [{"hash": h, "unpacked_length": 1, "range": {"start": 0, "end": 1}}],
            "fetch_info": {"b".repeat(64): [{"range": {"start": 0, "end": 9}, "url": "http://127.0.0.1/x", "url_range": {"start": 0, "end": 1}}]}});
        assert!(serde_json::from_value::<ReconstructionJson>(other)
            .unwrap()
            .check(Some(1))
            .is_err());
    }

    /// A planted chunk index: a file outside `models/`, a file reached
    /// through a link, chunks past the file or over 128 KiB are all left out
    /// before anything is allocated for them.
    #[test]
    fn a_hostile_chunk_index_names_nothing_outside_and_allocates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let file = models.join("m.bin");
        std::fs::write(&file, vec![0u8; 1000]).unwrap();
        std::os::unix::fs::symlink("/dev/zero", models.join("zero")).unwrap();
        let place = |index: u32, offset: u64, len: u32| {
            let mut p = vec![1u8; 32];
            p.extend_from_slice(&index.to_le_bytes());
            p.extend_from_slice(&[7u8; 32]);
            p.extend_from_slice(&offset.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
            p
        };
        let index_of = |path: &Path, size: u64, places: &[Vec<u8>]| {
            let mut bytes = serde_json::to_vec(&serde_json::json!({"path": path, "size": size})).unwrap();
            bytes.push(b'\n');
            places.iter().for_each(|p| bytes.extend_from_slice(p));
            let mut index = ChunkIndex::default();
            index.add(&bytes, &models);
            index
        };
        let good = index_of(
            &file,
            1000,
            &[place(0, 0, 100), place(1, 900, 200), place(2, 0, u32::MAX)],
        );
        let chunks = good.chunks.lock().unwrap();
        assert_eq!(chunks.len(), 1, "only the chunk inside the file");
        assert!(chunks.contains_key(&([1u8; 32], 0)));
        drop(chunks);
        for (path, size) in [
            (Path::new("/etc/hostname"), 1u64),
            (&models.join("zero"), 0),
            (&models.join("../models/m.bin"), 1000),
        ] {
            let index = index_of(path, size, &[place(0, 0, 1)]);
            assert!(index.files.is_empty(), "{}", path.display());
        }
    }
}
