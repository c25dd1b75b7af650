//! Xet's protocol: a read token from the Hub, the file's reconstruction from
//! the CAS (terms, xorb ranges, signed URLs), each value checked where it
//! enters, and one xorb range streamed, decoded and written at its terms'
//! offsets.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::fetch::{io_error, AttemptError, FetchError, Fetcher};
use crate::plan::{Download, XetSource};
use crate::reporter::Event;

use super::codec::*;
use super::limits::*;

// ---- the protocol ----

/// A CAS the Hub sent us to, and the token for it.
#[derive(Clone)]
pub(crate) struct Access {
    pub(super) cas: String,
    pub(super) token: String,
    pub(super) expires: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Term {
    pub(super) xorb: Hash,
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) len: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Range {
    pub(super) xorb: Hash,
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) url: String,
    pub(super) bytes: (u64, u64),
}

pub(super) struct Reconstruction {
    pub(super) terms: Vec<Term>,
    pub(super) ranges: Vec<Range>,
    /// For each term, the range that covers it (checked: one does).
    pub(super) cover: Vec<usize>,
}

/// The ranges of each xorb sorted by first chunk, each with the
/// furthest-reaching range among it and those before: the range covering a
/// term is found in O(log n), not by scanning every range (a hostile answer
/// may list 320,000 terms and ranges).
pub(super) struct RangeIndex {
    pub(super) by_xorb: HashMap<Hash, Vec<(u32, u32, usize)>>,
}

impl RangeIndex {
    pub(super) fn of(ranges: &[Range]) -> RangeIndex {
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
    pub(super) fn covering(&self, t: &Term) -> Option<usize> {
        let list = self.by_xorb.get(&t.xorb)?;
        let last = list.partition_point(|(start, _, _)| *start <= t.start).checked_sub(1)?;
        let (_, reach, index) = list[last];
        (reach >= t.end).then_some(index)
    }
}

#[derive(Deserialize)]
pub(super) struct ChunkRange {
    pub(super) start: u32,
    pub(super) end: u32,
}

#[derive(Deserialize)]
pub(super) struct ByteRange {
    pub(super) start: u64,
    pub(super) end: u64,
}

#[derive(Deserialize)]
pub(super) struct TermJson {
    pub(super) hash: String,
    pub(super) unpacked_length: u64,
    pub(super) range: ChunkRange,
}

#[derive(Deserialize)]
pub(super) struct FetchInfoJson {
    pub(super) range: ChunkRange,
    pub(super) url: String,
    pub(super) url_range: ByteRange,
}

#[derive(Deserialize)]
pub(super) struct MultiRangeJson {
    pub(super) url: String,
    pub(super) ranges: Vec<DescriptorJson>,
}

#[derive(Deserialize)]
pub(super) struct DescriptorJson {
    pub(super) chunks: ChunkRange,
    pub(super) bytes: ByteRange,
}

#[derive(Deserialize)]
pub(super) struct ReconstructionJson {
    pub(super) offset_into_first_range: u64,
    pub(super) terms: Vec<TermJson>,
    #[serde(default)]
    pub(super) fetch_info: Option<HashMap<String, Vec<FetchInfoJson>>>,
    #[serde(default)]
    pub(super) xorbs: Option<HashMap<String, Vec<MultiRangeJson>>>,
}

/// An http(s) URL without credentials in it: where a CAS or a xorb may be.
pub(super) fn checked_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("`{}` is not a URL", crate::http::redact(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("`{}` is not an http(s) URL", crate::http::redact(url)));
    }
    Ok(url.to_string())
}

pub(super) fn check_chunk_range(r: &ChunkRange) -> Result<(), String> {
    if r.start >= r.end || r.end > MAX_XORB_CHUNKS {
        return Err(format!("chunk range {}..{} is not inside a xorb", r.start, r.end));
    }
    Ok(())
}

pub(super) fn check_byte_range(r: &ByteRange) -> Result<(u64, u64), String> {
    if r.start > r.end || r.end - r.start >= MAX_XORB_BYTES + (MAX_XORB_CHUNKS as u64) * 8 {
        return Err(format!("byte range {}-{} is not inside a xorb", r.start, r.end));
    }
    Ok((r.start, r.end))
}

impl ReconstructionJson {
    /// The checked terms and ranges of a whole-file reconstruction.
    pub(super) fn check(self, size: Option<u64>) -> Result<Reconstruction, String> {
        if self.offset_into_first_range != 0 {
            return Err("the reconstruction of a whole file starts inside its first term".into());
        }
        let ranges = self.ranges()?;
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

    /// Every fetch range, checked: v1's `fetch_info` and v2's `xorbs` (one
    /// range per descriptor: a multi-range answer would have to be buffered
    /// whole, and the URL serves each range alone).
    fn ranges(&self) -> Result<Vec<Range>, String> {
        let mut ranges = Vec::new();
        for (hash, infos) in self.fetch_info.iter().flatten() {
            let xorb = from_hex(hash).ok_or("a xorb hash is not 64 hex digits")?;
            for info in infos {
                check_chunk_range(&info.range)?;
                let (url, bytes) = (checked_url(&info.url)?, check_byte_range(&info.url_range)?);
                let (start, end) = (info.range.start, info.range.end);
                ranges.push(Range {
                    xorb,
                    start,
                    end,
                    url,
                    bytes,
                });
            }
        }
        for (hash, fetches) in self.xorbs.iter().flatten() {
            let xorb = from_hex(hash).ok_or("a xorb hash is not 64 hex digits")?;
            for fetch in fetches {
                let url = checked_url(&fetch.url)?;
                for d in &fetch.ranges {
                    check_chunk_range(&d.chunks)?;
                    let (start, end, bytes) = (d.chunks.start, d.chunks.end, check_byte_range(&d.bytes)?);
                    ranges.push(Range {
                        xorb,
                        start,
                        end,
                        url: url.clone(),
                        bytes,
                    });
                }
            }
        }
        Ok(ranges)
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A retryable or fatal error from one of the protocol's answers.
pub(super) fn answer_error(job: &Download, url: &str, response: &reqwest::Response) -> AttemptError {
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

pub(super) fn bad_answer(job: &Download, url: &str, why: String) -> AttemptError {
    AttemptError::Fatal(FetchError::GaveUp {
        label: job.label.clone(),
        attempts: 1,
        reason: format!(
            "the Xet storage answered `{}` with something mdl refuses: {why}",
            crate::http::redact(url)
        ),
    })
}

pub(super) async fn bounded_body(
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
    pub(super) async fn xet_access(
        &self,
        job: &Download,
        xet: &XetSource,
        renew: bool,
    ) -> Result<Option<Access>, AttemptError> {
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
            .headers(crate::fetch::request_headers(job, None, None))
            .send()
            .await)
            .map_err(|e| crate::fetch::attempt_error(job, &e))?;
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
    pub(super) async fn xet_reconstruction(
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
                .map_err(|e| crate::fetch::attempt_error(job, &e))?;
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
    pub(super) async fn stream_range(
        &self,
        job: &Download,
        plan: &Reconstruction,
        r: usize,
        terms: &[usize],
        starts: &[u64],
        file: &std::fs::File,
        part_path: &Path,
    ) -> Result<Placed, AttemptError> {
        let range = &plan.ranges[r];
        let response = self.request_range(job, range).await?;
        let bad = |why: String| bad_answer(job, &range.url, why);
        let mut out = RangeWriter::new(plan, range, terms, starts, file);
        let mut buf = bytes::BytesMut::with_capacity(512 << 10);
        let (mut received, want) = (0u64, range.bytes.1 - range.bytes.0 + 1);
        let from = response.url().clone();
        let mut stream = response.bytes_stream();
        while let Some(piece) = self.next_piece(&mut stream, &from).await? {
            received += piece.len() as u64;
            if received > want {
                return Err(bad(format!("more than the {want} bytes asked for")));
            }
            buf.extend_from_slice(&piece);
            while let Some(chunk) = next_chunk(&mut buf).map_err(bad)? {
                out.write(&chunk).map_err(|e| match e {
                    Some(e) => AttemptError::Fatal(io_error(job, part_path.to_path_buf(), e)),
                    None => bad(format!("more than the {} chunks promised", out.users.len())),
                })?;
            }
        }
        if received < want {
            return Err(AttemptError::Retry {
                reason: format!("a xorb range ended after {received} of {want} bytes"),
                wait: None,
            });
        }
        if !buf.is_empty() {
            return Err(bad("the range ends inside a chunk".into()));
        }
        out.finish(plan, terms).map_err(bad)
    }

    /// Asks for exactly the range's bytes; an expired signature is retried
    /// (a new reconstruction signs new URLs).
    async fn request_range(&self, job: &Download, range: &Range) -> Result<reqwest::Response, AttemptError> {
        let (a, b) = range.bytes;
        let sent = self
            .http
            .get(&range.url)
            .header("range", format!("bytes={a}-{b}"))
            .send()
            .await;
        let response = sent.map_err(|e| crate::fetch::attempt_error(job, &e))?;
        if response.status() == StatusCode::FORBIDDEN {
            return Err(AttemptError::Retry {
                reason: "a signed xorb URL expired".into(),
                wait: Some(Duration::ZERO),
            });
        }
        if response.status() != StatusCode::PARTIAL_CONTENT && response.status() != StatusCode::OK {
            return Err(answer_error(job, &range.url, &response));
        }
        Ok(response)
    }

    /// The body's next piece, within the stall deadline; `None` at its end.
    async fn next_piece(
        &self,
        stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
        from: &reqwest::Url,
    ) -> Result<Option<bytes::Bytes>, AttemptError> {
        match tokio::time::timeout(self.settings.stall_timeout, stream.next()).await {
            Err(_) => Err(AttemptError::Retry {
                reason: crate::http::stalled_body(from, self.settings.stall_timeout),
                wait: Some(Duration::ZERO),
            }),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(AttemptError::Retry {
                reason: crate::http::describe_body(&e, from.as_str()),
                wait: None,
            }),
            Ok(Some(Ok(piece))) => Ok(Some(piece)),
        }
    }
}

/// The terms a range placed, each with its chunks' hashes and lengths.
pub(super) type Placed = Vec<(usize, Vec<(Hash, u64)>)>;

/// Where a xorb range's chunks go: each term (`terms`, the k-th at
/// `cursor[k]`) that names a chunk gets it written at its offset, and
/// its hash and length recorded; bytes are sent on to disk every
/// [`WRITEBACK_BYTES`] (the ranges in flight all end near the end of the
/// file's download).
struct RangeWriter<'a> {
    file: &'a std::fs::File,
    /// Per chunk of the range, the terms that hold it (a file may repeat one).
    users: Vec<Vec<usize>>,
    next: usize,
    cursor: Vec<u64>,
    flushed: Vec<u64>,
    records: Vec<Vec<(Hash, u64)>>,
}

impl<'a> RangeWriter<'a> {
    fn new(plan: &Reconstruction, range: &Range, terms: &[usize], starts: &[u64], file: &'a std::fs::File) -> Self {
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); (range.end - range.start) as usize];
        for (k, &term) in terms.iter().enumerate() {
            let t = &plan.terms[term];
            for c in t.start..t.end {
                users[(c - range.start) as usize].push(k);
            }
        }
        let cursor: Vec<u64> = terms.iter().map(|&t| starts[t]).collect();
        RangeWriter {
            file,
            users,
            next: 0,
            flushed: cursor.clone(),
            cursor,
            records: vec![Vec::new(); terms.len()],
        }
    }

    /// Writes the range's next chunk; `Err(None)`: more chunks than promised.
    fn write(&mut self, chunk: &[u8]) -> Result<(), Option<std::io::Error>> {
        use std::os::unix::fs::FileExt;
        let holders = self.users.get(self.next).ok_or(None)?;
        let hash = chunk_hash(chunk);
        for &k in holders {
            self.file.write_all_at(chunk, self.cursor[k]).map_err(Some)?;
            self.cursor[k] += chunk.len() as u64;
            self.records[k].push((hash, chunk.len() as u64));
            if self.cursor[k] - self.flushed[k] >= WRITEBACK_BYTES {
                crate::fs::start_writeback(self.file, self.flushed[k], self.cursor[k] - self.flushed[k]);
                self.flushed[k] = self.cursor[k];
            }
        }
        self.next += 1;
        Ok(())
    }

    /// Every chunk promised arrived and each term is its length: the
    /// terms' records, the rest of their bytes sent on to disk.
    fn finish(self, plan: &Reconstruction, terms: &[usize]) -> Result<Placed, String> {
        let count = self.users.len();
        if self.next != count {
            return Err(format!(
                "the range holds {} whole chunks, {count} were promised",
                self.next
            ));
        }
        for (k, &term) in terms.iter().enumerate() {
            let len: u64 = self.records[k].iter().map(|r| r.1).sum();
            if len != plan.terms[term].len {
                return Err(format!("a term decodes to {len} bytes, not {}", plan.terms[term].len));
            }
        }
        for (k, &at) in self.flushed.iter().enumerate() {
            crate::fs::start_writeback(self.file, at, self.cursor[k] - at);
        }
        Ok(terms.iter().copied().zip(self.records).collect())
    }
}
