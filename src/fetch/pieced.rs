//! Large files as parallel ranged pieces (like hf_transfer and aria2), written
//! in place into one pre-allocated temporary file and hashed as they arrive.
//!
//! * Pieces are a power-of-two size, so each one's blake3 chaining value is
//!   computed from its own bytes while they stream in and the file's hash is
//!   merged from them at the end (`tree_hash`): no second read of the file.
//!   Only when the source publishes a sha256 that must be checked (locking a Hub
//!   LFS file for the first time) is the file read back once, from the page cache,
//!   since sha256 cannot be computed out of order. `mdl sync` checks blake3 only.
//! * The sidecar records each finished piece's chaining value, so an interrupted
//!   download (Ctrl-C, kill -9, lost connection) resumes with only its unfinished
//!   pieces — at most one piece per connection is fetched twice.
//! * The first piece's response tells whether the server honours `Range`; if it
//!   answers 200 instead, the caller falls back to a single stream.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blake3::hazmat::ChainingValue;
use futures_util::StreamExt;
use reqwest::StatusCode;

use super::location::Locator;
use super::{discard, status_error, tree_hash, AttemptError, FetchError, Fetched, Fetcher, PartialState, Pieces};
use crate::http::{content_range_start, pause_before_retry, response_etag, retry_after};
use crate::plan::Download;
use crate::reporter::Event;

struct Shared {
    done: Vec<Option<ChainingValue>>,
    etag: Option<String>,
    /// Set when a piece answer shows `Range` is not honoured.
    range_ignored: bool,
    failure: Option<AttemptError>,
}

enum PieceError {
    RangeIgnored,
    Retry { reason: String, wait: Option<Duration> },
    Fatal(FetchError),
}

/// How the pieces ended: every piece's chaining value and the ETag, `None`
/// when the server ignored `Range`, or the first failure (a fatal one
/// discards the partial file).
#[allow(clippy::type_complexity)]
fn settle(
    shared: &Mutex<Shared>,
    part_path: &Path,
    state_path: &Path,
) -> Result<Option<(Vec<ChainingValue>, Option<String>)>, AttemptError> {
    let mut state = shared.lock().unwrap();
    if state.range_ignored {
        discard(part_path, state_path);
        return Ok(None);
    }
    if let Some(failure) = state.failure.take() {
        if let AttemptError::Fatal(_) = failure {
            discard(part_path, state_path);
        }
        return Err(failure);
    }
    let cvs = state.done.iter().map(|d| d.expect("every piece finished")).collect();
    Ok(Some((cvs, state.etag.clone())))
}

impl Fetcher {
    /// `Ok(None)`: the server ignores `Range`; use a single stream instead.
    pub(super) async fn attempt_pieced(
        &self,
        id: usize,
        job: &Download,
        part_path: &Path,
        state_path: &Path,
        locator: &Locator,
    ) -> Result<Option<Fetched>, AttemptError> {
        let size = job.expect.size.expect("chunked downloads know their size");
        let piece = self.settings.piece_size;
        let count = size.div_ceil(piece) as usize;
        let (done, etag) = finished_pieces(job, part_path, state_path, piece, size).await;
        let file = Arc::new(open_pieced(job, part_path, state_path, &done, &etag, piece, size)?);
        let kept = (0..count).filter(|&i| done[i].is_some());
        let resumed_from: u64 = kept.map(|i| piece_len(i, piece, size)).sum();
        let queue: VecDeque<usize> = (0..count).filter(|i| done[*i].is_none()).collect();
        let shared = Arc::new(Mutex::new(Shared {
            done,
            etag,
            range_ignored: false,
            failure: None,
        }));
        let queue = Arc::new(Mutex::new(queue));
        self.reporter.report(Event::DownloadStarted {
            id,
            label: &job.label,
            size: Some(size),
            resumed_from,
        });

        let pieces = Pieced {
            id,
            job,
            locator,
            part_path,
            state_path,
            piece,
            size,
        };
        self.run_pieces(&pieces, &file, &shared, queue).await;

        let Some((cvs, etag)) = settle(&shared, part_path, state_path)? else {
            return Ok(None);
        };
        let blake3 = tree_hash::root(&cvs, piece, size).to_hex().to_string();

        let file = Arc::try_unwrap(file).map_err(|_| {
            AttemptError::Fatal(FetchError::Io {
                path: part_path.to_path_buf(),
                source: std::io::Error::other("a piece still holds the file"),
            })
        })?;
        let ending = super::Ending {
            id,
            job,
            part_path,
            state_path,
            size,
            etag,
            final_url: job.url.clone(),
            resumed_from,
            before_rename: "fetch::pieces_before_rename",
        };
        self.finish_pieced(ending, file, blake3).await.map(Some)
    }

    /// Downloads piece `index` with retries, hashing it as it arrives.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_piece(
        &self,
        id: usize,
        job: &Download,
        locator: &Locator,
        part_path: &Path,
        file: &std::fs::File,
        index: usize,
        piece: u64,
        size: u64,
        shared: &Mutex<Shared>,
        announce: Option<&tokio::sync::watch::Sender<Option<bool>>>,
    ) -> Result<ChainingValue, PieceError> {
        let start = index as u64 * piece;
        let end = start + piece_len(index, piece, size);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let etag = shared.lock().unwrap().etag.clone();
            let location = match locator.get(self, job).await {
                Ok(location) => location,
                Err(AttemptError::Fatal(e)) => return Err(PieceError::Fatal(e)),
                Err(AttemptError::Retry { reason, wait }) if attempt < self.settings.attempts => {
                    pause_before_retry(self.reporter.as_ref(), &job.label, attempt, &reason, wait).await;
                    continue;
                }
                Err(AttemptError::Retry { reason, wait }) => return Err(PieceError::Retry { reason, wait }),
            };
            let outcome = match self.request_piece(job, locator, &location, start, end, etag).await {
                Ok(response) => {
                    if let Some(etag) = response_etag(response.headers()) {
                        shared.lock().unwrap().etag.get_or_insert(etag);
                    }
                    if let Some(tx) = announce {
                        let _ = tx.send(Some(true));
                    }
                    self.stream_piece(id, job, part_path, response, file, start, end).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(cv) => return Ok(cv),
                Err(PieceError::Retry { reason, wait }) if attempt < self.settings.attempts => {
                    pause_before_retry(self.reporter.as_ref(), &job.label, attempt, &reason, wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks `location` for bytes `start..end` (`If-Range` on `etag`); `Ok`
    /// only for the 206 of exactly that range. A refused signed location is
    /// resolved again; 200 means `Range` was ignored (or the ETag changed).
    async fn request_piece(
        &self,
        job: &Download,
        locator: &Locator,
        location: &Arc<super::location::Location>,
        start: u64,
        end: u64,
        etag: Option<String>,
    ) -> Result<reqwest::Response, PieceError> {
        let token = if location.token {
            job.authorization.as_deref()
        } else {
            None
        };
        let range = Some(format!("bytes={start}-{}", end - 1));
        let headers = crate::http::request_headers(token, range, etag.as_deref());
        self.reporter.report(Event::Request {
            method: "GET",
            url: &location.url,
        });
        let sent = self
            .client_for(job, true)
            .get(&location.url)
            .headers(headers)
            .send()
            .await;
        let response = sent.map_err(|e| match super::attempt_error(job, &e) {
            AttemptError::Fatal(e) => PieceError::Fatal(e),
            AttemptError::Retry { reason, wait } => PieceError::Retry { reason, wait },
        })?;
        let status = response.status();
        if status == StatusCode::OK {
            // `Range` ignored, or `If-Range` failed because the ETag changed.
            return Err(PieceError::RangeIgnored);
        }
        if matches!(status, StatusCode::FORBIDDEN | StatusCode::GONE) && !location.is_origin {
            // The signed location expired (or the CDN refused it): resolve
            // again and go on with the pieces still missing.
            locator.refused(location).await;
            return Err(PieceError::Retry {
                reason: format!("the signed download location was refused ({status})"),
                wait: Some(Duration::ZERO),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(PieceError::Retry {
                reason: crate::http::retry_reason(status),
                wait: retry_after(response.headers()),
            });
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(PieceError::Fatal(status_error(job, &response)));
        }
        if content_range_start(response.headers()) != Some(start) {
            return Err(PieceError::RangeIgnored);
        }
        Ok(response)
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream_piece(
        &self,
        id: usize,
        job: &Download,
        part_path: &Path,
        response: reqwest::Response,
        file: &std::fs::File,
        start: u64,
        end: u64,
    ) -> Result<ChainingValue, PieceError> {
        let mut hasher = tree_hash::piece_hasher(start);
        let mut at = start;
        let from = response.url().clone();
        let mut body = response.bytes_stream();
        while at < end {
            let next = match tokio::time::timeout(self.settings.stall_timeout, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(PieceError::Retry {
                        reason: crate::http::stalled_body(&from, self.settings.stall_timeout),
                        wait: Some(Duration::ZERO),
                    })
                }
            };
            match next {
                Some(Ok(chunk)) => {
                    let take = chunk.len().min((end - at) as usize);
                    let bytes = &chunk[..take];
                    file.write_all_at(bytes, at)
                        .map_err(|source| PieceError::Fatal(super::io_error(job, part_path.to_path_buf(), source)))?;
                    hasher.update(bytes);
                    at += take as u64;
                    self.reporter.report(Event::DownloadProgress { id, bytes: take as u64 });
                }
                Some(Err(e)) => {
                    return Err(PieceError::Retry {
                        reason: crate::http::describe_body(&e, from.as_str()),
                        wait: None,
                    })
                }
                None => break,
            }
        }
        if at != end {
            // The bytes of this piece so far are re-fetched; their progress is not undone
            // in the bar, which is cosmetic.
            return Err(PieceError::Retry {
                reason: format!("the connection closed {} bytes into a piece", at - start),
                wait: None,
            });
        }
        Ok(tree_hash::piece_cv(&hasher))
    }
}

/// The pieced partial file, `size` bytes long (emptied first when no piece is
/// finished). The resume state is written before the partial file exists, so
/// an interruption at any point leaves a partial file the next run can continue.
fn open_pieced(
    job: &Download,
    part_path: &Path,
    state_path: &Path,
    done: &[Option<ChainingValue>],
    etag: &Option<String>,
    piece: u64,
    size: u64,
) -> Result<std::fs::File, AttemptError> {
    let fatal_io = |source| AttemptError::Fatal(super::io_error(job, part_path.to_path_buf(), source));
    let shared = Shared {
        done: done.to_vec(),
        etag: etag.clone(),
        range_ignored: false,
        failure: None,
    };
    save_state(state_path, job, &shared, piece);
    super::partial::open(part_path, done.iter().all(Option::is_none), Some(size)).map_err(fatal_io)
}

/// The pieces of an earlier attempt or run of this same download that are
/// finished, and the ETag they were fetched under.
async fn finished_pieces(
    job: &Download,
    part_path: &Path,
    state_path: &Path,
    piece: u64,
    size: u64,
) -> (Vec<Option<ChainingValue>>, Option<String>) {
    let count = size.div_ceil(piece) as usize;
    let previous: Option<PartialState> =
        crate::fs::read_nofollow(state_path, 64 << 20).and_then(|b| serde_json::from_slice(&b).ok());
    let part_len = std::fs::symlink_metadata(part_path).map(|m| m.len()).ok();
    let mut done: Vec<Option<ChainingValue>> = vec![None; count];
    let mut etag = None;
    if let Some(p) = previous {
        if p.url == job.url && p.expect == job.expect && part_len == Some(size) {
            if let Some(pieces) = p.pieces.filter(|ps| ps.size == piece && ps.done.len() == count) {
                for (slot, cv) in done.iter_mut().zip(pieces.done) {
                    *slot = cv.and_then(|h| hex::decode(h).ok()).and_then(|b| b.try_into().ok());
                }
                etag = p.etag;
            }
        }
    }
    // A piece counts as finished only if its bytes on disk say so: the
    // sidecar is written before the pieces reach the disk (a power loss, a
    // lost write), so each recorded piece is read back and hashed again,
    // and one that differs is fetched again. The final hash is then of
    // the bytes on disk.
    if done.iter().any(Option::is_some) {
        let recorded = done.clone();
        let path = part_path.to_path_buf();
        let confirmed = tokio::task::spawn_blocking(move || confirm_pieces(&path, &recorded, piece, size))
            .await
            .unwrap_or_else(|_| vec![None; count]);
        done = confirmed;
    }
    (done, etag)
}

/// One pieced download's fixed facts, shared by its connections.
struct Pieced<'a> {
    id: usize,
    job: &'a Download,
    locator: &'a Locator,
    part_path: &'a Path,
    state_path: &'a Path,
    piece: u64,
    size: u64,
}

impl Fetcher {
    /// Fetches the queued pieces over the download's connections, recording
    /// each finished one; a failure or a sign that `Range` is ignored stops
    /// them all (see `Shared`).
    async fn run_pieces(
        &self,
        pieces: &Pieced<'_>,
        file: &Arc<std::fs::File>,
        shared: &Arc<Mutex<Shared>>,
        queue: Arc<Mutex<VecDeque<usize>>>,
    ) {
        let Pieced {
            id,
            job,
            locator,
            part_path,
            state_path: _,
            piece,
            size,
        } = *pieces;
        // The first piece goes alone until its headers show that `Range` works;
        // then the other connections start.
        let (ranges_ok_tx, ranges_ok_rx) = tokio::sync::watch::channel(None::<bool>);
        let ranges_ok_tx = Arc::new(ranges_ok_tx);
        let workers = (0..self.settings.connections_per_file.max(1)).map(|worker| {
            let queue = queue.clone();
            let shared = shared.clone();
            let file = file.clone();
            let tx = ranges_ok_tx.clone();
            let mut rx = ranges_ok_rx.clone();
            async move {
                if worker > 0 {
                    match rx.wait_for(|v| v.is_some()).await.map(|v| *v) {
                        Ok(Some(true)) => {}
                        _ => return,
                    }
                }
                let mut first = worker == 0;
                loop {
                    if shared.lock().unwrap().failure.is_some() {
                        return;
                    }
                    let Some(index) = queue.lock().unwrap().pop_front() else {
                        if first {
                            let _ = tx.send(Some(true));
                        }
                        return;
                    };
                    let result = self
                        .fetch_piece(
                            id,
                            job,
                            locator,
                            part_path,
                            &file,
                            index,
                            piece,
                            size,
                            &shared,
                            first.then_some(&*tx),
                        )
                        .await;
                    first = false;
                    if !record_piece(pieces, &file, &shared, &tx, index, result) {
                        return;
                    }
                }
            }
        });
        futures_util::future::join_all(workers).await;
    }
}

/// Records how piece `index` ended: done (its chaining value saved in the
/// state file) or the attempt's end, which stops the other connections.
/// `false`: this worker stops.
fn record_piece(
    pieces: &Pieced<'_>,
    file: &std::fs::File,
    shared: &Mutex<Shared>,
    ranges_ok: &tokio::sync::watch::Sender<Option<bool>>,
    index: usize,
    result: Result<ChainingValue, PieceError>,
) -> bool {
    let (piece, size) = (pieces.piece, pieces.size);
    let failure = match result {
        Ok(cv) => {
            let start = index as u64 * piece;
            crate::fs::start_writeback(file, start, piece.min(size - start));
            let mut s = shared.lock().unwrap();
            s.done[index] = Some(cv);
            save_state(pieces.state_path, pieces.job, &s, piece);
            crate::failpoint::kill_point("fetch::piece_written");
            return true;
        }
        Err(PieceError::RangeIgnored) => None,
        Err(PieceError::Fatal(e)) => Some(AttemptError::Fatal(e)),
        Err(PieceError::Retry { reason, wait }) => Some(AttemptError::Retry { reason, wait }),
    };
    let _ = ranges_ok.send(Some(false));
    let mut s = shared.lock().unwrap();
    match failure {
        None => s.range_ignored = true,
        Some(failure) => {
            s.failure.get_or_insert(failure);
        }
    }
    false
}

/// The recorded pieces whose bytes on disk hash to what was recorded; `None`
/// for every other (or all, when the file cannot be read).
fn confirm_pieces(
    path: &Path,
    recorded: &[Option<ChainingValue>],
    piece: u64,
    size: u64,
) -> Vec<Option<ChainingValue>> {
    let Ok(file) = crate::fs::open_nofollow(path, crate::fs::Open::Keep) else {
        return vec![None; recorded.len()];
    };
    let mut buf = vec![0u8; piece as usize];
    recorded
        .iter()
        .enumerate()
        .map(|(i, cv)| {
            let cv = (*cv)?;
            let start = i as u64 * piece;
            let len = piece_len(i, piece, size) as usize;
            file.read_exact_at(&mut buf[..len], start).ok()?;
            let mut hasher = tree_hash::piece_hasher(start);
            hasher.update(&buf[..len]);
            (tree_hash::piece_cv(&hasher) == cv).then_some(cv)
        })
        .collect()
}

fn piece_len(index: usize, piece: u64, size: u64) -> u64 {
    let start = index as u64 * piece;
    (start + piece).min(size) - start
}

/// Records finished pieces. Not fsync'd, and not trusted on its own: a later
/// run hashes each recorded piece's bytes again before it counts
/// (`confirm_pieces`).
fn save_state(state_path: &Path, job: &Download, s: &Shared, piece: u64) {
    let state = PartialState {
        url: job.url.clone(),
        etag: s.etag.clone(),
        expect: job.expect.clone(),
        pieces: Some(Pieces {
            size: piece,
            done: s.done.iter().map(|d| d.map(hex::encode)).collect(),
        }),
    };
    use std::io::Write as _;
    let tmp = state_path.with_extension("json.tmp");
    let written = crate::fs::open_nofollow(&tmp, crate::fs::Open::Truncate)
        .and_then(|mut f| f.write_all(&serde_json::to_vec(&state).unwrap()));
    if written.is_ok() {
        let _ = std::fs::rename(&tmp, state_path);
    }
}
