//! The Hub's Xet storage, served as the Hub serves it (`Behaviour::xet`,
//! `mdl-hub --xet`), from the spec in huggingface/hub-docs `docs/xet/`:
//!
//! * `GET /api/{type}s/{repo}/xet-read-token/{rev}`: a short-lived CAS token
//!   (`X-Xet-Cas-Url`, `X-Xet-Access-Token`, `X-Xet-Token-Expiration`, and the
//!   same as JSON), behind the repo's own authorization;
//! * `GET /v1/reconstructions/{file_hash}` and `/v2/…` on the CAS origin (the
//!   emulator's second listener, not the Hub's): the terms (xorb, chunk range)
//!   that rebuild a file, with signed xorb URLs and their exact byte ranges;
//!   a `Range` header asks for part of the file; a token that expired is a 401;
//! * `GET /xorbs/default/{xorb_hash}` (signed): xorb bytes, one range or
//!   several (`multipart/byteranges`, as v2's multi-range URLs are fetched).
//!
//! Files are cut into content-defined chunks with the same rolling hash as
//! xet-core's chunker (gearhash, 64 KiB target, 8 KiB..128 KiB), and every
//! hash (chunk, xorb, file) and every xorb's bytes (chunk headers, LZ4 or
//! byte-grouped LZ4, footer) are made by xet-core's own code
//! (`xet-core-structures`), so what a client decodes is the Hub's format and
//! not ours. Chunks are deduplicated across everything the emulator holds: a
//! second revision of a file refers to the first one's xorbs for the chunks it
//! shares, as the Hub's storage does, so an upgrade can fetch only what changed.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use xet_core_structures::merklehash::{file_hash, MerkleHash};
use xet_core_structures::xorb_object::{Chunk, CompressionScheme, RawXorbData, SerializedXorbObject, XorbObject};

use crate::{error, json, sign, signature_refused, unix_now, Blob, Content, Shared};

const TARGET_CHUNK: usize = 64 * 1024;
const MIN_CHUNK: usize = TARGET_CHUNK / 8;
const MAX_CHUNK: usize = TARGET_CHUNK * 2;
/// The rolling hash's window: a boundary needs this many bytes of the chunk.
const WINDOW: usize = 64;
const MAX_XORB_CHUNKS: usize = 8 * 1024;

/// How the emulator's Xet storage behaves.
#[derive(Clone, Debug)]
pub struct XetSettings {
    /// How long a read token lives (the Hub's live about an hour).
    pub token_ttl: Duration,
    /// Serve `/v2/reconstructions` (multi-range URLs); off: 404, as a CAS
    /// that predates v2 answers, and clients fall back to v1.
    pub v2: bool,
    /// `none`, `lz4` or `bg4-lz4` for every chunk; `None` lets xet-core pick
    /// per block of chunks, as the Hub's uploads do.
    pub compression: Option<String>,
    /// The largest xorb, in bytes (the Hub's are at most 64 MiB).
    pub xorb_bytes: usize,
}

impl Default for XetSettings {
    fn default() -> Self {
        XetSettings {
            token_ttl: Duration::from_secs(3600),
            v2: true,
            compression: None,
            xorb_bytes: 64 << 20,
        }
    }
}

struct Xorb {
    /// The serialized xorb, footer included, as the CAS stores it.
    blob: Blob,
    object: XorbObject,
}

#[derive(Clone)]
struct Term {
    xorb: MerkleHash,
    /// Chunk indices `start..end` in the xorb.
    start: u32,
    end: u32,
}

#[derive(Clone)]
struct XetFile {
    size: u64,
    terms: Vec<Term>,
}

/// Every xorb, file and chunk the emulator's CAS holds.
#[derive(Default)]
pub(crate) struct Store {
    /// Chunk hash → where it is stored (global dedup).
    chunks: HashMap<MerkleHash, (MerkleHash, u32)>,
    xorbs: HashMap<MerkleHash, Xorb>,
    files: HashMap<MerkleHash, XetFile>,
    /// A blob's sha256 → its Xet file hash.
    by_sha256: HashMap<String, MerkleHash>,
    /// A secret for this emulator's tokens.
    secret: u64,
}

impl Store {
    /// The Xet hash of `blob`, cutting and storing it first if it is new.
    pub(crate) fn ingest(&mut self, blob: &Blob, settings: &XetSettings) -> String {
        if let Some(hash) = self.by_sha256.get(&blob.sha256) {
            return hash.hex();
        }
        let data = blob.content.slice(0, blob.content.len());
        let chunks: Vec<Chunk> = boundaries(&data)
            .windows(2)
            .map(|w| Chunk::new(data.slice(w[0]..w[1])))
            .collect();
        let sizes: Vec<(MerkleHash, u64)> = chunks.iter().map(|c| (c.hash, c.data.len() as u64)).collect();
        let hash = file_hash(&sizes);
        // Chunks not stored yet, each once, go into new xorbs.
        let mut fresh: Vec<Chunk> = Vec::new();
        let mut seen: HashMap<MerkleHash, usize> = HashMap::new();
        for c in &chunks {
            if !self.chunks.contains_key(&c.hash) && !seen.contains_key(&c.hash) {
                seen.insert(c.hash, fresh.len());
                fresh.push(c.clone());
            }
        }
        let mut group: Vec<Chunk> = Vec::new();
        let mut group_bytes = 0;
        for c in fresh {
            if !group.is_empty() && (group_bytes + c.data.len() > settings.xorb_bytes || group.len() == MAX_XORB_CHUNKS)
            {
                self.store_xorb(std::mem::take(&mut group), settings);
                group_bytes = 0;
            }
            group_bytes += c.data.len();
            group.push(c);
        }
        if !group.is_empty() {
            self.store_xorb(group, settings);
        }
        // The file as runs of consecutive chunks of one xorb.
        let mut terms: Vec<Term> = Vec::new();
        for c in &chunks {
            let (xorb, index) = self.chunks[&c.hash];
            match terms.last_mut() {
                Some(t) if t.xorb == xorb && t.end == index => t.end += 1,
                _ => terms.push(Term {
                    xorb,
                    start: index,
                    end: index + 1,
                }),
            }
        }
        self.files.insert(
            hash,
            XetFile {
                size: data.len() as u64,
                terms,
            },
        );
        self.by_sha256.insert(blob.sha256.clone(), hash);
        hash.hex()
    }

    fn store_xorb(&mut self, chunks: Vec<Chunk>, settings: &XetSettings) {
        let raw = RawXorbData::from_chunks(&chunks, vec![0]);
        let serialized = match &settings.compression {
            Some(scheme) => SerializedXorbObject::from_xorb_with_compression(
                raw,
                scheme.parse::<CompressionScheme>().expect("a compression scheme"),
                true,
                0,
            ),
            None => SerializedXorbObject::from_xorb(raw, true, "auto", 0),
        }
        .expect("xet-core serializes a xorb");
        let object = XorbObject::deserialize(&mut std::io::Cursor::new(&serialized.serialized_data))
            .expect("xet-core reads its own xorb");
        for (i, c) in chunks.iter().enumerate() {
            self.chunks.entry(c.hash).or_insert((serialized.hash, i as u32));
        }
        let hex = serialized.hash.hex();
        let blob = Blob {
            content: Content::Bytes(Bytes::from(serialized.serialized_data)),
            lfs: true,
            sha256: hex.clone(),
            git_oid: hex,
        };
        self.xorbs.insert(serialized.hash, Xorb { blob, object });
    }

    /// The Xet hash of a blob the store holds.
    pub(crate) fn hash_of(&self, blob: &Blob) -> Option<String> {
        self.by_sha256.get(&blob.sha256).map(|h| h.hex())
    }

    /// A token for the CAS that expires at `exp` (unix seconds).
    fn token(&self, exp: u64) -> String {
        use sha2::Digest;
        let mac = sha2::Sha256::digest(format!("{}:{exp}", self.secret).as_bytes());
        format!("xet_{exp}_{}", &hex::encode(mac)[..32])
    }

    fn token_valid(&self, token: &str) -> Result<(), &'static str> {
        let exp = token
            .strip_prefix("xet_")
            .and_then(|t| t.split_once('_'))
            .and_then(|(exp, _)| exp.parse::<u64>().ok())
            .ok_or("not a Xet token")?;
        if self.token(exp) != token {
            return Err("not a Xet token");
        }
        if unix_now() >= exp {
            return Err("the Xet token has expired");
        }
        Ok(())
    }
}

/// Chunk boundaries (`0, end₁, end₂, …, len`) as xet-core's chunker cuts
/// them: a gearhash match on the top bits of the hash, no chunk under
/// `MIN_CHUNK` (but the last) nor over `MAX_CHUNK`.
fn boundaries(data: &[u8]) -> Vec<usize> {
    let mask = (TARGET_CHUNK as u64 - 1) << (TARGET_CHUNK as u64 - 1).leading_zeros();
    let mut out = vec![0];
    let mut start = 0;
    while start < data.len() {
        let mut hasher = gearhash::Hasher::default();
        let read_end = data.len().min(start + MAX_CHUNK);
        let mut at = (start + MIN_CHUNK - WINDOW - 1).min(read_end);
        let mut end = read_end;
        while let Some(m) = hasher.next_match(&data[at..read_end], mask) {
            at += m;
            if at - start >= MIN_CHUNK {
                end = at;
                break;
            }
        }
        out.push(end);
        start = end;
    }
    out
}

/// Routes of the Xet protocol; `None` when `path` is not one of them.
pub(crate) fn route(state: &Shared, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> Option<Response> {
    if let Some(at) = path.find("/xet-read-token/") {
        let rest = path.strip_prefix("/api/")?;
        return Some(read_token(
            state,
            &rest[..at - "/api/".len()],
            &path[at + "/xet-read-token/".len()..],
            headers,
        ));
    }
    for (version, prefix) in [(1, "/v1/reconstructions/"), (2, "/v2/reconstructions/")] {
        if let Some(file) = path.strip_prefix(prefix) {
            return Some(reconstruction(state, version, file, headers));
        }
    }
    let xorb = path.strip_prefix("/xorbs/default/")?;
    if let Some(reason) = signature_refused(path, query) {
        return Some(error(StatusCode::FORBIDDEN, None, reason));
    }
    Some(serve_xorb(state, method, xorb, headers))
}

fn read_token(state: &Shared, repo_path: &str, revision: &str, headers: &HeaderMap) -> Response {
    // `models/org/name` is keyed `org/name`; datasets and spaces keep their type.
    let repo = crate::decode(repo_path.strip_prefix("models/").unwrap_or(repo_path));
    let mut inner = state.lock().unwrap();
    let Some(settings) = inner.behaviour.xet.clone() else {
        return error(StatusCode::NOT_FOUND, None, "this Hub does not speak Xet");
    };
    if let Err(r) = crate::find_commit(&inner, &repo, &crate::decode(revision), headers) {
        return r;
    }
    if inner.xet.secret == 0 {
        inner.xet.secret = unix_now() ^ 0x5eed_f7e7;
    }
    let exp = unix_now() + settings.token_ttl.as_secs();
    let token = inner.xet.token(exp);
    let cas = format!(
        "{}://{}",
        if inner.tls { "https" } else { "http" },
        inner.cdn.expect("the CAS listener")
    );
    drop(inner);
    let mut r = json(serde_json::json!({ "accessToken": token, "exp": exp, "casUrl": cas }));
    let h = r.headers_mut();
    h.insert("x-xet-cas-url", HeaderValue::from_str(&cas).unwrap());
    h.insert("x-xet-access-token", HeaderValue::from_str(&token).unwrap());
    h.insert("x-xet-token-expiration", HeaderValue::from(exp));
    r
}

fn reconstruction(state: &Shared, version: u32, file: &str, headers: &HeaderMap) -> Response {
    let inner = state.lock().unwrap();
    let Some(settings) = inner.behaviour.xet.clone() else {
        return error(StatusCode::NOT_FOUND, None, "this Hub does not speak Xet");
    };
    if version == 2 && !settings.v2 {
        return error(StatusCode::NOT_FOUND, None, "no such route");
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if let Err(reason) = inner.xet.token_valid(token) {
        return error(StatusCode::UNAUTHORIZED, None, reason);
    }
    let Ok(hash) = MerkleHash::from_hex(file) else {
        return error(StatusCode::BAD_REQUEST, None, "malformed file id");
    };
    let Some(entry) = inner.xet.files.get(&hash) else {
        return error(StatusCode::NOT_FOUND, None, "no such file");
    };
    let size = entry.size;
    let (first, last) = match headers.get("range").and_then(|v| v.to_str().ok()) {
        None => (0, size.saturating_sub(1)),
        Some(r) => match r
            .strip_prefix("bytes=")
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        {
            Some((a, b)) if a < size && a <= b => (a, b.min(size - 1)),
            Some(_) => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .body(Body::empty())
                    .unwrap()
            }
            None => return error(StatusCode::BAD_REQUEST, None, "malformed range"),
        },
    };
    // The chunks overlapping `first..=last`, as terms.
    let mut terms = Vec::new();
    let mut offset_into_first = 0;
    let mut at = 0u64;
    for term in &entry.terms {
        let object = &inner.xet.xorbs[&term.xorb].object;
        let (mut start, mut end, mut bytes) = (None, term.start, 0u64);
        for i in term.start..term.end {
            let len = u64::from(object.uncompressed_chunk_length(i).expect("chunk in xorb"));
            if at + len > first && at <= last {
                if start.is_none() {
                    start = Some(i);
                    if terms.is_empty() {
                        offset_into_first = first - at;
                    }
                }
                end = i + 1;
                bytes += len;
            }
            at += len;
        }
        if let Some(start) = start {
            terms.push((term.xorb, start, end, bytes));
        }
    }
    let origin = format!("{}://{}", scheme_of(&inner), inner.cdn.expect("the CAS listener"));
    let url = |xorb: &MerkleHash| {
        format!(
            "{origin}{}",
            sign(&format!("/xorbs/default/{}", xorb.hex()), Duration::from_secs(3600))
        )
    };
    let byte_range = |xorb: &MerkleHash, start: u32, end: u32| {
        let (a, b) = inner.xet.xorbs[xorb]
            .object
            .get_byte_offset(start, end)
            .expect("range in xorb");
        (u64::from(a), u64::from(b) - 1)
    };
    let json_terms: Vec<_> = terms
        .iter()
        .map(|(xorb, start, end, bytes)| {
            serde_json::json!({ "hash": xorb.hex(), "unpacked_length": bytes, "range": { "start": start, "end": end } })
        })
        .collect();
    // Each xorb's chunk ranges, merged where they touch.
    let mut per_xorb: std::collections::BTreeMap<String, (MerkleHash, Vec<(u32, u32)>)> = Default::default();
    for (xorb, start, end, _) in &terms {
        per_xorb
            .entry(xorb.hex())
            .or_insert((*xorb, Vec::new()))
            .1
            .push((*start, *end));
    }
    for (_, ranges) in per_xorb.values_mut() {
        ranges.sort();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for &(s, e) in ranges.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *ranges = merged;
    }
    let body = if version == 1 {
        let fetch_info: serde_json::Map<String, serde_json::Value> = per_xorb
            .iter()
            .map(|(hex, (xorb, ranges))| {
                let infos: Vec<_> = ranges
                    .iter()
                    .map(|&(s, e)| {
                        let (a, b) = byte_range(xorb, s, e);
                        serde_json::json!({ "range": { "start": s, "end": e }, "url": url(xorb), "url_range": { "start": a, "end": b } })
                    })
                    .collect();
                (hex.clone(), serde_json::Value::Array(infos))
            })
            .collect();
        serde_json::json!({ "offset_into_first_range": offset_into_first, "terms": json_terms, "fetch_info": fetch_info })
    } else {
        let xorbs: serde_json::Map<String, serde_json::Value> = per_xorb
            .iter()
            .map(|(hex, (xorb, ranges))| {
                let descriptors: Vec<_> = ranges
                    .iter()
                    .map(|&(s, e)| {
                        let (a, b) = byte_range(xorb, s, e);
                        serde_json::json!({ "chunks": { "start": s, "end": e }, "bytes": { "start": a, "end": b } })
                    })
                    .collect();
                (
                    hex.clone(),
                    serde_json::json!([{ "url": url(xorb), "ranges": descriptors }]),
                )
            })
            .collect();
        serde_json::json!({ "offset_into_first_range": offset_into_first, "terms": json_terms, "xorbs": xorbs })
    };
    json(body)
}

fn scheme_of(inner: &crate::Inner) -> &'static str {
    if inner.tls {
        "https"
    } else {
        "http"
    }
}

/// A xorb's bytes: one range through the ordinary file path (pacing, cuts and
/// stalls included), several as `multipart/byteranges`.
fn serve_xorb(state: &Shared, method: &Method, hex: &str, headers: &HeaderMap) -> Response {
    let (blob, behaviour) = {
        let inner = state.lock().unwrap();
        let Some(xorb) = MerkleHash::from_hex(hex).ok().and_then(|h| inner.xet.xorbs.get(&h)) else {
            return error(StatusCode::NOT_FOUND, None, "no such xorb");
        };
        (xorb.blob.clone(), inner.behaviour.clone())
    };
    let range = headers.get("range").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !range.contains(',') {
        return crate::serve_blob(state, method, headers, &blob, None);
    }
    let len = blob.content.len();
    const BOUNDARY: &str = "mdl-hub-xorb-ranges";
    let mut body = Vec::new();
    for spec in range.trim_start_matches("bytes=").split(',') {
        let Some((a, b)) = spec
            .trim()
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .filter(|&(a, b)| a <= b && b < len)
        else {
            return error(StatusCode::RANGE_NOT_SATISFIABLE, None, "bad range");
        };
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&blob.content.slice(a, b + 1));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let n = body.len() as u64;
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header("content-type", format!("multipart/byteranges; boundary={BOUNDARY}"))
        .header("content-length", n)
        .body(crate::body_stream(Content::Bytes(Bytes::from(body)), 0, n, behaviour))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_bounded_and_cover_the_data() {
        let data = crate::pseudo_random_bytes(7, 3 << 20);
        let b = boundaries(&data);
        assert_eq!(*b.last().unwrap(), data.len());
        for w in b.windows(2) {
            let len = w[1] - w[0];
            assert!(len <= MAX_CHUNK);
            assert!(len >= MIN_CHUNK || w[1] == data.len());
        }
        // Content-defined: about one chunk per 64 KiB.
        assert!((24..=96).contains(&(b.len() - 1)), "{} chunks", b.len() - 1);
    }

    #[test]
    fn an_edit_changes_only_the_chunks_around_it() {
        let mut data = crate::pseudo_random_bytes(9, 2 << 20).to_vec();
        let before = boundaries(&data);
        data[1 << 20] ^= 0xff;
        let after = boundaries(&data);
        let shared = after.iter().filter(|b| before.contains(b)).count();
        assert!(
            shared + 3 >= before.len(),
            "{shared} of {} boundaries kept",
            before.len()
        );
    }
}
