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

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde::Deserialize;

use super::{check_size, discard, io_error, resumable_prefix, AttemptError, Ending, FetchError, Fetched, Fetcher};
use crate::plan::{Download, XetSource};
use crate::reporter::Event;

/// The spec's limits: a xorb holds at most 64 MiB and 8 Ki chunks, a chunk
/// at most 128 KiB (xet-core's maximum chunk); anything past them is refused
/// before it is allocated.
const MAX_XORB_BYTES: u64 = 64 << 20;
const MAX_XORB_CHUNKS: u32 = 8 * 1024;
const MAX_CHUNK: usize = 128 << 10;
/// A reconstruction's JSON (a file of 1 TiB has ~16 M chunks but far fewer terms).
const MAX_ANSWER: usize = 64 << 20;
/// Bytes of a range written before they are sent on to disk.
const WRITEBACK_BYTES: u64 = 8 << 20;

// ---- hashes (spec: hashing.md) ----

/// blake3 keys of the spec: chunk data, internal Merkle nodes.
const DATA_KEY: [u8; 32] = [
    102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16, 155, 235, 43, 88, 180,
    208, 176, 75, 147, 173, 242, 41,
];
const INTERNAL_NODE_KEY: [u8; 32] = [
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
fn merkle_root(chunks: &[(Hash, u64)]) -> Hash {
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
fn decode_chunks(data: &bytes::Bytes, count: usize) -> Result<Vec<bytes::Bytes>, String> {
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
fn next_chunk(buf: &mut bytes::BytesMut) -> Result<Option<bytes::Bytes>, String> {
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
fn bg4_regroup(grouped: &[u8]) -> Vec<u8> {
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

// ---- the protocol ----

/// A CAS the Hub sent us to, and the token for it.
#[derive(Clone)]
struct Access {
    cas: String,
    token: String,
    expires: u64,
}

/// Tokens per token URL and the chunk index, shared by a run's downloads.
#[derive(Default)]
pub(crate) struct Session {
    tokens: Mutex<HashMap<String, Access>>,
    index: tokio::sync::OnceCell<Arc<ChunkIndex>>,
    /// The CAS answered 404 for v2: ask v1 from now on.
    v1_only: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Debug)]
struct Term {
    xorb: Hash,
    start: u32,
    end: u32,
    len: u64,
}

#[derive(Clone, Debug)]
struct Range {
    xorb: Hash,
    start: u32,
    end: u32,
    url: String,
    bytes: (u64, u64),
}

struct Reconstruction {
    terms: Vec<Term>,
    ranges: Vec<Range>,
    /// For each term, the range that covers it (checked: one does).
    cover: Vec<usize>,
}

/// The ranges of each xorb sorted by first chunk, each with the
/// furthest-reaching range among it and those before: the range covering a
/// term is found in O(log n), not by scanning every range (a hostile answer
/// may list 320,000 terms and ranges).
struct RangeIndex {
    by_xorb: HashMap<Hash, Vec<(u32, u32, usize)>>,
}

impl RangeIndex {
    fn of(ranges: &[Range]) -> RangeIndex {
        let mut by_xorb: HashMap<Hash, Vec<(u32, u32, usize)>> = HashMap::new();
        for (i, r) in ranges.iter().enumerate() {
            by_xorb.entry(r.xorb).or_default().push((r.start, r.end, i));
        }
        for list in by_xorb.values_mut() {
            list.sort_unstable();
            // Each entry's end and index become the furthest reach so far.
            let mut best = (0u32, usize::MAX);
            for entry in list.iter_mut() {
                if entry.1 > best.0 || best.1 == usize::MAX {
                    best = (entry.1, entry.2);
                }
                (entry.1, entry.2) = best;
            }
        }
        RangeIndex { by_xorb }
    }

    /// A range of `t`'s xorb that starts at or before it and reaches its end.
    fn covering(&self, t: &Term) -> Option<usize> {
        let list = self.by_xorb.get(&t.xorb)?;
        let last = list.partition_point(|(start, _, _)| *start <= t.start).checked_sub(1)?;
        let (_, reach, index) = list[last];
        (reach >= t.end).then_some(index)
    }
}

#[derive(Deserialize)]
struct ChunkRange {
    start: u32,
    end: u32,
}

#[derive(Deserialize)]
struct ByteRange {
    start: u64,
    end: u64,
}

#[derive(Deserialize)]
struct TermJson {
    hash: String,
    unpacked_length: u64,
    range: ChunkRange,
}

#[derive(Deserialize)]
struct FetchInfoJson {
    range: ChunkRange,
    url: String,
    url_range: ByteRange,
}

#[derive(Deserialize)]
struct MultiRangeJson {
    url: String,
    ranges: Vec<DescriptorJson>,
}

#[derive(Deserialize)]
struct DescriptorJson {
    chunks: ChunkRange,
    bytes: ByteRange,
}

#[derive(Deserialize)]
struct ReconstructionJson {
    offset_into_first_range: u64,
    terms: Vec<TermJson>,
    #[serde(default)]
    fetch_info: Option<HashMap<String, Vec<FetchInfoJson>>>,
    #[serde(default)]
    xorbs: Option<HashMap<String, Vec<MultiRangeJson>>>,
}

/// An http(s) URL without credentials in it: where a CAS or a xorb may be.
fn checked_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("`{}` is not a URL", crate::http::redact(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("`{}` is not an http(s) URL", crate::http::redact(url)));
    }
    Ok(url.to_string())
}

fn check_chunk_range(r: &ChunkRange) -> Result<(), String> {
    if r.start >= r.end || r.end > MAX_XORB_CHUNKS {
        return Err(format!("chunk range {}..{} is not inside a xorb", r.start, r.end));
    }
    Ok(())
}

fn check_byte_range(r: &ByteRange) -> Result<(u64, u64), String> {
    if r.start > r.end || r.end - r.start >= MAX_XORB_BYTES + (MAX_XORB_CHUNKS as u64) * 8 {
        return Err(format!("byte range {}-{} is not inside a xorb", r.start, r.end));
    }
    Ok((r.start, r.end))
}

impl ReconstructionJson {
    /// The checked terms and ranges of a whole-file reconstruction.
    fn check(self, size: Option<u64>) -> Result<Reconstruction, String> {
        if self.offset_into_first_range != 0 {
            return Err("the reconstruction of a whole file starts inside its first term".into());
        }
        let mut terms = Vec::with_capacity(self.terms.len());
        let mut total = 0u64;
        for t in self.terms {
            let xorb = from_hex(&t.hash).ok_or("a term's xorb hash is not 64 hex digits")?;
            check_chunk_range(&t.range)?;
            if t.unpacked_length > MAX_XORB_BYTES {
                return Err("a term is longer than a xorb".into());
            }
            total = total.checked_add(t.unpacked_length).ok_or("the terms overflow")?;
            terms.push(Term {
                xorb,
                start: t.range.start,
                end: t.range.end,
                len: t.unpacked_length,
            });
        }
        if size.is_some_and(|s| s != total) {
            return Err(format!(
                "the terms add up to {total} bytes, not the {} locked",
                size.unwrap_or(0)
            ));
        }
        let mut ranges = Vec::new();
        for (hash, infos) in self.fetch_info.into_iter().flatten() {
            let xorb = from_hex(&hash).ok_or("a xorb hash is not 64 hex digits")?;
            for info in infos {
                check_chunk_range(&info.range)?;
                ranges.push(Range {
                    xorb,
                    start: info.range.start,
                    end: info.range.end,
                    url: checked_url(&info.url)?,
                    bytes: check_byte_range(&info.url_range)?,
                });
            }
        }
        for (hash, fetches) in self.xorbs.into_iter().flatten() {
            let xorb = from_hex(&hash).ok_or("a xorb hash is not 64 hex digits")?;
            for fetch in fetches {
                let url = checked_url(&fetch.url)?;
                // One request per descriptor: a multi-range answer would have
                // to be buffered whole, and the URL serves each range alone.
                for d in fetch.ranges {
                    check_chunk_range(&d.chunks)?;
                    ranges.push(Range {
                        xorb,
                        start: d.chunks.start,
                        end: d.chunks.end,
                        url: url.clone(),
                        bytes: check_byte_range(&d.bytes)?,
                    });
                }
            }
        }
        let index = RangeIndex::of(&ranges);
        let mut cover = Vec::with_capacity(terms.len());
        for t in &terms {
            cover.push(index.covering(t).ok_or_else(|| {
                format!(
                    "no fetch range covers xorb {} chunks {}..{}",
                    to_hex(&t.xorb),
                    t.start,
                    t.end
                )
            })?);
        }
        Ok(Reconstruction { terms, ranges, cover })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A retryable or fatal error from one of the protocol's answers.
fn answer_error(job: &Download, url: &str, response: &reqwest::Response) -> AttemptError {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return AttemptError::Retry {
            reason: crate::http::retry_reason(status),
            wait: crate::http::retry_after(response.headers()),
        };
    }
    AttemptError::Fatal(FetchError::Status {
        label: job.label.clone(),
        url: crate::http::redact(url),
        status: status.as_u16(),
        message: crate::http::error_message(response.headers()),
        hub: true,
        registry: None,
    })
}

fn bad_answer(job: &Download, url: &str, why: String) -> AttemptError {
    AttemptError::Fatal(FetchError::GaveUp {
        label: job.label.clone(),
        attempts: 1,
        reason: format!(
            "the Xet storage answered `{}` with something mdl refuses: {why}",
            crate::http::redact(url)
        ),
    })
}

async fn bounded_body(
    job: &Download,
    url: &str,
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, AttemptError> {
    if response.content_length().is_some_and(|l| l > limit as u64) {
        return Err(bad_answer(job, url, format!("an answer of more than {limit} bytes")));
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(limit as u64) as usize);
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| AttemptError::Retry {
            reason: crate::http::describe_body(&e, url),
            wait: None,
        })?;
        if body.len() + piece.len() > limit {
            return Err(bad_answer(job, url, format!("an answer of more than {limit} bytes")));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

impl Fetcher {
    /// The CAS and a token for it, from the cache while it has 30 s left.
    /// `None`: the Hub does not serve this file through Xet (404/501).
    async fn xet_access(&self, job: &Download, xet: &XetSource, renew: bool) -> Result<Option<Access>, AttemptError> {
        if !renew {
            let tokens = self.xet.tokens.lock().unwrap();
            if let Some(a) = tokens.get(&xet.token_url).filter(|a| a.expires > unix_now() + 30) {
                return Ok(Some(a.clone()));
            }
        }
        let url = &xet.token_url;
        self.reporter.report(Event::Request { method: "GET", url });
        let response = (self
            .http
            .get(url)
            .headers(super::request_headers(job, None, None))
            .send()
            .await)
            .map_err(|e| super::attempt_error(job, &e))?;
        if matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::NOT_IMPLEMENTED) {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(answer_error(job, url, &response));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let from_headers = (
            header("x-xet-cas-url"),
            header("x-xet-access-token"),
            header("x-xet-token-expiration").and_then(|e| e.parse::<u64>().ok()),
        );
        let (cas, token, expires) = match from_headers {
            (Some(c), Some(t), Some(e)) => (c, t, e),
            _ => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct TokenJson {
                    access_token: String,
                    exp: u64,
                    cas_url: String,
                }
                let body = bounded_body(job, url, response, 64 << 10).await?;
                let t: TokenJson = serde_json::from_slice(&body).map_err(|e| bad_answer(job, url, e.to_string()))?;
                (t.cas_url, t.access_token, t.exp)
            }
        };
        let cas = checked_url(&cas).map_err(|why| bad_answer(job, url, why))?;
        if token.is_empty() || token.len() > 8192 || reqwest::header::HeaderValue::from_str(&token).is_err() {
            return Err(bad_answer(job, url, "a token that cannot be sent as a header".into()));
        }
        let access = Access {
            cas: cas.trim_end_matches('/').to_string(),
            token,
            expires,
        };
        self.xet.tokens.lock().unwrap().insert(url.clone(), access.clone());
        Ok(Some(access))
    }

    /// The file's reconstruction: v2 unless the CAS lacks it, with one token
    /// renewal on 401. `None`: the Hub does not serve the file through Xet.
    async fn xet_reconstruction(
        &self,
        job: &Download,
        xet: &XetSource,
    ) -> Result<Option<Reconstruction>, AttemptError> {
        use std::sync::atomic::Ordering;
        let mut renewed = false;
        loop {
            let Some(access) = self.xet_access(job, xet, renewed).await? else {
                return Ok(None);
            };
            let version = if self.xet.v1_only.load(Ordering::Relaxed) { 1 } else { 2 };
            let url = format!("{}/v{version}/reconstructions/{}", access.cas, xet.hash);
            self.reporter.report(Event::Request {
                method: "GET",
                url: &url,
            });
            // The CAS token goes to the CAS the Hub named, and nothing else does.
            let response = (self.http.get(&url).bearer_auth(&access.token).send().await)
                .map_err(|e| super::attempt_error(job, &e))?;
            match response.status() {
                StatusCode::NOT_FOUND | StatusCode::NOT_IMPLEMENTED if version == 2 => {
                    self.xet.v1_only.store(true, Ordering::Relaxed);
                    continue;
                }
                StatusCode::UNAUTHORIZED if !renewed => {
                    renewed = true;
                    continue;
                }
                s if s.is_success() => {
                    let body = bounded_body(job, &url, response, MAX_ANSWER).await?;
                    let parsed: ReconstructionJson =
                        serde_json::from_slice(&body).map_err(|e| bad_answer(job, &url, e.to_string()))?;
                    return parsed
                        .check(job.expect.size)
                        .map(Some)
                        .map_err(|why| bad_answer(job, &url, why));
                }
                _ => return Err(answer_error(job, &url, &response)),
            }
        }
    }

    /// One xorb range, fetched with exactly its byte range and placed as it
    /// streams in: each chunk decoded, hashed and written at its offset in
    /// every term that names it, through a buffer of a few chunks (no
    /// allocation of the range's size). Returns each term's chunk records.
    #[allow(clippy::too_many_arguments)]
    async fn stream_range(
        &self,
        job: &Download,
        plan: &Reconstruction,
        r: usize,
        terms: &[usize],
        starts: &[u64],
        file: &std::fs::File,
        part_path: &Path,
    ) -> Result<Vec<(usize, Vec<(Hash, u64)>)>, AttemptError> {
        use std::os::unix::fs::FileExt;
        let range = &plan.ranges[r];
        let (a, b) = range.bytes;
        let response = (self
            .http
            .get(&range.url)
            .header("range", format!("bytes={a}-{b}"))
            .send()
            .await)
            .map_err(|e| super::attempt_error(job, &e))?;
        if response.status() == StatusCode::FORBIDDEN {
            // A signed URL that expired: a new reconstruction signs new ones.
            return Err(AttemptError::Retry {
                reason: "a signed xorb URL expired".into(),
                wait: Some(Duration::ZERO),
            });
        }
        if response.status() != StatusCode::PARTIAL_CONTENT && response.status() != StatusCode::OK {
            return Err(answer_error(job, &range.url, &response));
        }
        let bad = |why: String| bad_answer(job, &range.url, why);
        let count = (range.end - range.start) as usize;
        // Which of `terms` hold each chunk of the range (a file may repeat one).
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (k, &term) in terms.iter().enumerate() {
            let t = &plan.terms[term];
            for c in t.start..t.end {
                users[(c - range.start) as usize].push(k);
            }
        }
        let mut cursor: Vec<u64> = terms.iter().map(|&t| starts[t]).collect();
        // Written out as the range goes, every WRITEBACK_BYTES and its tail at
        // the end (see `crate::fs::start_writeback`): the ranges in flight all
        // end near the end of the file's download.
        let mut flushed = cursor.clone();
        let mut records: Vec<Vec<(Hash, u64)>> = vec![Vec::new(); terms.len()];
        let mut buf = bytes::BytesMut::with_capacity(512 << 10);
        let (mut next, mut received, want) = (0usize, 0u64, b - a + 1);
        let from = response.url().clone();
        let mut stream = response.bytes_stream();
        loop {
            let piece = match tokio::time::timeout(self.settings.stall_timeout, stream.next()).await {
                Err(_) => {
                    return Err(AttemptError::Retry {
                        reason: crate::http::stalled_body(&from, self.settings.stall_timeout),
                        wait: Some(Duration::ZERO),
                    })
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(AttemptError::Retry {
                        reason: crate::http::describe_body(&e, from.as_str()),
                        wait: None,
                    })
                }
                Ok(Some(Ok(piece))) => piece,
            };
            received += piece.len() as u64;
            if received > want {
                return Err(bad(format!("more than the {want} bytes asked for")));
            }
            buf.extend_from_slice(&piece);
            while let Some(chunk) = next_chunk(&mut buf).map_err(bad)? {
                let holders = users
                    .get(next)
                    .ok_or_else(|| bad(format!("more than the {count} chunks promised")))?;
                let hash = chunk_hash(&chunk);
                for &k in holders {
                    file.write_all_at(&chunk, cursor[k])
                        .map_err(|e| AttemptError::Fatal(io_error(job, part_path.to_path_buf(), e)))?;
                    cursor[k] += chunk.len() as u64;
                    records[k].push((hash, chunk.len() as u64));
                    if cursor[k] - flushed[k] >= WRITEBACK_BYTES {
                        crate::fs::start_writeback(file, flushed[k], cursor[k] - flushed[k]);
                        flushed[k] = cursor[k];
                    }
                }
                next += 1;
            }
        }
        if received < want {
            return Err(AttemptError::Retry {
                reason: format!("a xorb range ended after {received} of {want} bytes"),
                wait: None,
            });
        }
        if next != count || !buf.is_empty() {
            return Err(bad(format!(
                "the range holds {next} whole chunks, {count} were promised"
            )));
        }
        for (k, &term) in terms.iter().enumerate() {
            let len: u64 = records[k].iter().map(|r| r.1).sum();
            if len != plan.terms[term].len {
                return Err(bad(format!(
                    "a term decodes to {len} bytes, not {}",
                    plan.terms[term].len
                )));
            }
        }
        for (k, &at) in flushed.iter().enumerate() {
            crate::fs::start_writeback(file, at, cursor[k] - at);
        }
        Ok(terms.iter().copied().zip(records).collect())
    }

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
        let fatal_io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| AttemptError::Fatal(io_error(job, path, source))
        };
        let mut starts = Vec::with_capacity(plan.terms.len());
        let mut size = 0u64;
        for t in &plan.terms {
            starts.push(size);
            size += t.len;
        }
        // The partial file holds these same terms: keep the ones the log lists.
        let as_xet = Download {
            url: format!("xet:{}", xet.hash),
            ..job.clone()
        };
        let log_path = state_path.with_extension("xet");
        let mut done: HashMap<usize, Vec<(Hash, u64)>> = HashMap::new();
        if resumable_prefix(&as_xet, part_path, state_path).is_some() {
            for (term, records) in read_log(&log_path) {
                let t = plan.terms.get(term);
                let fits = t.is_some_and(|t| {
                    records.len() == (t.end - t.start) as usize && records.iter().map(|r| r.1).sum::<u64>() == t.len
                });
                if fits {
                    done.insert(term, records);
                }
            }
        } else {
            discard(part_path, state_path);
            let state = super::PartialState {
                url: as_xet.url.clone(),
                etag: None,
                expect: job.expect.clone(),
                pieces: None,
            };
            crate::fs::write_atomic(state_path, &serde_json::to_vec(&state).unwrap()).map_err(fatal_io(state_path))?;
        }
        // The log again, with only what is kept (a torn last record dropped).
        let mut log = crate::fs::open_nofollow(&log_path, crate::fs::Open::Truncate).map_err(fatal_io(&log_path))?;
        for (term, records) in &done {
            append_log(&mut log, *term, records).map_err(fatal_io(&log_path))?;
        }
        let file = crate::fs::open_nofollow(part_path, crate::fs::Open::Keep).map_err(fatal_io(part_path))?;
        file.set_len(size).map_err(fatal_io(part_path))?;
        let file = Arc::new(file);
        let resumed_from: u64 = done.keys().map(|&t| plan.terms[t].len).sum();
        // blake3 by aligned pieces, each hashed from the page cache as soon as
        // every term over it is written, beside the download (`tree_hash`).
        let mut pieces = Pieces::new(size, self.settings.piece_size, part_path);
        for &t in done.keys() {
            pieces.written(starts[t], plan.terms[t].len);
        }
        self.reporter.report(Event::DownloadStarted {
            id,
            label: &job.label,
            size: Some(size),
            resumed_from,
        });

        // Terms left: from chunks already on disk, else from a xorb range.
        let index = self.xet_index().await;
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
        let plan = Arc::new(plan);
        let starts = Arc::new(starts);
        let units = local
            .into_iter()
            .map(Unit::Local)
            .chain(by_range.into_iter().map(|(r, terms)| Unit::Range(r, terms)));
        let mut placed = futures_util::stream::iter(units)
            .map(|unit| {
                let (plan, starts, file, index) = (plan.clone(), starts.clone(), file.clone(), index.clone());
                async move {
                    let term = match unit {
                        Unit::Range(r, terms) => {
                            let placed = self
                                .stream_range(job, &plan, r, &terms, &starts, &file, part_path)
                                .await?;
                            return Ok((placed, false));
                        }
                        Unit::Local(term) => term,
                    };
                    let (p, i) = (plan.clone(), index.clone());
                    let placed = tokio::task::spawn_blocking(move || place_local(term, &p, &starts, &file, &i))
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
            })
            // As many ranges at once as the HTTP path opens connections per
            // file: a CDN caps each connection, and with 4 a 1 GiB file took
            // 2.8× the bridge's time at 50 MB/s per connection (benchmark 10).
            .buffer_unordered(self.settings.connections_per_file.max(1));
        let mut reused = 0u64;
        while let Some(result) = placed.next().await {
            let (terms, from_disk) = result?;
            let mut bytes = 0;
            for (term, records) in terms {
                append_log(&mut log, term, &records).map_err(fatal_io(&log_path))?;
                bytes += plan.terms[term].len;
                pieces.written(starts[term], plan.terms[term].len);
                if from_disk {
                    // A range's own bytes went out to disk as it wrote them.
                    crate::fs::start_writeback(&file, starts[term], plan.terms[term].len);
                    reused += plan.terms[term].len;
                }
                done.insert(term, records);
            }
            crate::failpoint::kill_point("fetch::bytes_written");
            self.reporter.report(Event::DownloadProgress { id, bytes });
        }
        drop(placed);
        let file = Arc::into_inner(file).expect("every placing task ended");

        // The file, checked: its chunks' Merkle root, then (in `finish`) its
        // size and digests against the lock.
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
        let got = file_hash(&records);
        if to_hex(&got) != xet.hash {
            discard(part_path, state_path);
            let _ = std::fs::remove_file(&log_path);
            return Err(AttemptError::Fatal(FetchError::Hash {
                label: job.label.clone(),
                algorithm: "Xet hash",
                expected: xet.hash.clone(),
                actual: to_hex(&got),
            }));
        }
        check_size(job, size, Some(size))?;
        let want_sha256 = job.expect.sha256.is_some() || job.expect.sha256_prefix.is_some();
        let blake3 = pieces.root().await.map_err(fatal_io(part_path))?;
        let part = part_path.to_path_buf();
        let digests = tokio::task::spawn_blocking(move || -> std::io::Result<crate::hash::Digests> {
            Ok(crate::hash::Digests {
                blake3,
                sha256: if want_sha256 {
                    Some(crate::hash::sha256_file(&part)?)
                } else {
                    None
                },
                git_oid: None,
            })
        })
        .await
        .expect("hashing does not panic")
        .map_err(fatal_io(part_path))?;
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
        let mut fetched = self.finish(ending, file, digests)?;
        let _ = std::fs::remove_file(&log_path);
        fetched.xet_reused = reused;
        if let Some(dir) = self.xet_dir() {
            // Best effort: without it the next upgrade fetches these chunks.
            let _ = ChunkIndex::record(&dir, &xet.hash, &job.dest, &places);
        }
        Ok(Some(fetched))
    }
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

// ---- the resume log: per finished term, its chunks' hashes and lengths ----

const RECORD: usize = 32 + 8;

/// Every whole entry of the log: (term, [(chunk hash, length)]). An entry
/// cut by a kill is dropped with everything after it.
fn read_log(path: &Path) -> Vec<(usize, Vec<(Hash, u64)>)> {
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

fn append_log(f: &mut std::fs::File, term: usize, records: &[(Hash, u64)]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8 + records.len() * RECORD);
    buf.extend_from_slice(&(term as u32).to_le_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for (h, len) in records {
        buf.extend_from_slice(h);
        buf.extend_from_slice(&len.to_le_bytes());
    }
    f.write_all(&buf)
}

// ---- the chunk index: which chunks the project's files hold ----

/// The places an index lists for a file of `size` bytes: (xorb, chunk
/// index) → (offset, length, chunk hash), only those inside the file, of at
/// most 128 KiB and at a chunk index a xorb can have.
#[allow(clippy::type_complexity)]
fn places(body: &[u8], size: u64) -> impl Iterator<Item = ((Hash, u32), (u64, u32, Hash))> + '_ {
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

#[derive(Clone, Copy)]
struct ChunkPlace {
    xorb: Hash,
    index: u32,
    hash: Hash,
    offset: u64,
    len: u32,
}

const PLACE: usize = 32 + 4 + 32 + 8 + 4;

/// Where a chunk is: (file number, offset, length, chunk hash).
type Located = (usize, u64, u32, Hash);

/// (xorb, chunk index) → where the project's files hold that chunk.
#[derive(Default)]
pub(crate) struct ChunkIndex {
    files: Vec<PathBuf>,
    chunks: Mutex<HashMap<(Hash, u32), Located>>,
}

/// The largest chunk index read (a 100 GiB file of 64 KiB chunks needs
/// ~130 MiB of places; more is not an index mdl wrote).
const MAX_INDEX_BYTES: u64 = 256 << 20;

impl ChunkIndex {
    /// Every index in `dir` (`models/.mdl/xet/`) whose file is still there
    /// with its size. The folder is input like any other under `models/` (a
    /// pull request or a restored cache can plant one): an index or a file
    /// reached through a link is skipped, a file must be a regular file
    /// inside `models_root`, and a chunk must lie inside it and be at most
    /// 128 KiB before anything is allocated for it.
    fn load(dir: Option<&Path>, models_root: Option<&Path>) -> ChunkIndex {
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
    fn add(&mut self, bytes: &[u8], root: &Path) {
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

    fn record(dir: &Path, xet_hash: &str, dest: &Path, places: &[ChunkPlace]) -> std::io::Result<()> {
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

    fn has_term(&self, t: &Term) -> bool {
        let chunks = self.chunks.lock().unwrap();
        (t.start..t.end).all(|i| chunks.contains_key(&(t.xorb, i)))
    }

    fn forget(&self, t: &Term) {
        let mut chunks = self.chunks.lock().unwrap();
        for i in t.start..t.end {
            chunks.remove(&(t.xorb, i));
        }
    }

    /// A term's chunks read from local files, each checked against its hash.
    fn read_term(&self, t: &Term) -> Option<Vec<(Hash, bytes::Bytes)>> {
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

#[cfg(test)]
mod tests {
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
