//! The whole-file transport: one stream from the start (or from the end of
//! a partial file that is a prefix of the same download, `Range` +
//! `If-Range`), hashed as it arrives. What a server that ignores `Range`, a
//! small file, or a file of unknown size gets.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;

use super::{
    attempt_error, check_size, discard, io_error, request_headers, resumable_prefix, status_error, AttemptError,
    Ending, FetchError, Fetched, Fetcher, PartialState,
};
use crate::fs::write_atomic;
use crate::hash::Hashers;
use crate::http::{content_range_start, response_etag, retry_after};
use crate::plan::Download;
use crate::reporter::Event;

impl Fetcher {
    /// One attempt at a whole-file download: resume the partial file if it
    /// is a prefix of the same thing, stream the rest while hashing, end.
    pub(super) async fn attempt(
        &self,
        id: usize,
        job: &Download,
        part_path: &Path,
        state_path: &Path,
    ) -> Result<Fetched, AttemptError> {
        let prefix = resumable_prefix(job, part_path, state_path);
        let headers = match &prefix {
            Some((len, etag)) => request_headers(job, Some(format!("bytes={len}-")), etag.as_deref()),
            None => request_headers(job, None, None),
        };
        let response = self.get(job, part_path, state_path, headers).await?;
        let final_url = response.url().to_string();
        let etag = response_etag(response.headers());
        // 206 continues the partial file; 200 (Range ignored, or the ETag changed
        // so If-Range failed) starts it over.
        let continuing = prefix.as_ref().map(|(len, _)| *len).filter(|&len| {
            response.status() == StatusCode::PARTIAL_CONTENT && content_range_start(response.headers()) == Some(len)
        });
        let (file, hashers, resumed_from) = open_partial(job, part_path, state_path, continuing, &etag)?;
        check_announced(job, &response).inspect_err(|_| discard(part_path, state_path))?;
        let total = (job.expect.size).or_else(|| response.content_length().map(|l| l + resumed_from));
        self.reporter.report(Event::DownloadStarted {
            id,
            label: &job.label,
            size: total,
            resumed_from,
        });
        let body = Body {
            id,
            job,
            part_path,
            state_path,
        };
        let (hashers, written) = self.stream_body(&body, response, &file, hashers, resumed_from).await?;
        check_size(job, written, total).inspect_err(|e| {
            if matches!(e, AttemptError::Fatal(_)) {
                discard(part_path, state_path)
            }
        })?;
        let ending = Ending {
            id,
            job,
            part_path,
            state_path,
            size: written,
            etag,
            final_url,
            resumed_from,
            before_rename: "fetch::before_rename",
        };
        self.finish(ending, file, hashers.finish())
    }

    /// Sends the download's GET; an answer no retry changes is fatal, one a
    /// retry may change (429, 5xx, a partial file that no longer fits) is
    /// retried.
    async fn get(
        &self,
        job: &Download,
        part_path: &Path,
        state_path: &Path,
        headers: reqwest::header::HeaderMap,
    ) -> Result<reqwest::Response, AttemptError> {
        self.reporter.report(Event::Request {
            method: "GET",
            url: &job.url,
        });
        let response = (self.client_for(job, true).get(&job.url).headers(headers).send().await)
            .map_err(|e| attempt_error(job, &e))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(AttemptError::Retry {
                reason: crate::http::retry_reason(status),
                wait: retry_after(response.headers()),
            });
        }
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            // Our partial file is not a prefix of what is there now: start over.
            discard(part_path, state_path);
            return Err(AttemptError::Retry {
                reason: "the partial download no longer fits upstream".into(),
                wait: Some(Duration::ZERO),
            });
        }
        if !status.is_success() {
            return Err(AttemptError::Fatal(status_error(job, &response)));
        }
        Ok(response)
    }

    /// Streams the answer's body onto the end of the partial file, hashing
    /// it; returns the hashers and the bytes the file now holds. What arrived
    /// before a stall or a broken connection is kept: the next attempt
    /// resumes from it.
    async fn stream_body(
        &self,
        body: &Body<'_>,
        response: reqwest::Response,
        file: &std::fs::File,
        mut hashers: Hashers,
        mut written: u64,
    ) -> Result<(Hashers, u64), AttemptError> {
        let Body {
            id,
            job,
            part_path,
            state_path,
        } = *body;
        let fatal_io = |source| AttemptError::Fatal(io_error(job, part_path.to_path_buf(), source));
        let from = response.url().clone();
        let mut stream = response.bytes_stream();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        loop {
            let Ok(next) = tokio::time::timeout(self.settings.stall_timeout, stream.next()).await else {
                out.flush().map_err(fatal_io)?;
                return Err(AttemptError::Retry {
                    reason: crate::http::stalled_body(&from, self.settings.stall_timeout),
                    wait: Some(Duration::ZERO),
                });
            };
            match next {
                None => break,
                Some(Ok(chunk)) => {
                    hashers.update(&chunk);
                    out.write_all(&chunk).map_err(fatal_io)?;
                    written += chunk.len() as u64;
                    crate::failpoint::kill_point("fetch::bytes_written");
                    self.reporter.report(Event::DownloadProgress {
                        id,
                        bytes: chunk.len() as u64,
                    });
                    if job.expect.size.is_some_and(|size| written > size) {
                        drop(out);
                        discard(part_path, state_path);
                        return Err(check_size(job, written, None).unwrap_err());
                    }
                }
                Some(Err(e)) => {
                    out.flush().map_err(fatal_io)?;
                    return Err(AttemptError::Retry {
                        reason: crate::http::describe_body(&e, from.as_str()),
                        wait: None,
                    });
                }
            }
        }
        out.flush().map_err(fatal_io)?;
        Ok((hashers, written))
    }
}

/// Who a body being streamed belongs to.
#[derive(Clone, Copy)]
struct Body<'a> {
    id: usize,
    job: &'a Download,
    part_path: &'a Path,
    state_path: &'a Path,
}

/// The partial file, ready for bytes: continued (`Some(len)`: its hash state
/// rebuilt from the prefix on disk, one sequential read) or emptied. Order
/// matters for resumption after a crash at any point: an old partial file is
/// emptied first, then the state naming what it will hold is written, and
/// only then do bytes arrive.
fn open_partial(
    job: &Download,
    part_path: &Path,
    state_path: &Path,
    continuing: Option<u64>,
    etag: &Option<String>,
) -> Result<(std::fs::File, Hashers, u64), AttemptError> {
    let fatal_io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| AttemptError::Fatal(io_error(job, path, source))
    };
    if continuing.is_none() && std::fs::symlink_metadata(part_path).is_ok_and(|m| m.len() > 0) {
        crate::fs::open_nofollow(part_path, crate::fs::Open::Truncate).map_err(fatal_io(part_path))?;
    }
    let state = PartialState {
        url: job.url.clone(),
        etag: etag.clone(),
        expect: job.expect.clone(),
        pieces: None,
    };
    write_atomic(state_path, &serde_json::to_vec(&state).unwrap()).map_err(fatal_io(state_path))?;
    crate::failpoint::kill_point("fetch::sidecar_written");
    let mut file = super::partial::open(part_path, continuing.is_none(), None).map_err(fatal_io(part_path))?;
    let want_sha256 = job.expect.sha256.is_some() || job.expect.sha256_prefix.is_some();
    let mut hashers = Hashers::new(want_sha256, job.expect.git_oid.is_some(), job.expect.size);
    let written = match continuing {
        Some(len) => {
            file.seek(SeekFrom::Start(0)).map_err(fatal_io(part_path))?;
            let mut buf = vec![0u8; 1 << 20];
            let mut reader = (&file).take(len);
            loop {
                let n = reader.read(&mut buf).map_err(fatal_io(part_path))?;
                if n == 0 {
                    break;
                }
                hashers.update(&buf[..n]);
            }
            len
        }
        None => 0,
    };
    file.seek(SeekFrom::Start(written)).map_err(fatal_io(part_path))?;
    Ok((file, hashers, written))
}

/// A whole answer (200) announcing another length than the expected size is
/// other content than was locked: fatal at once, not a transfer to retry.
fn check_announced(job: &Download, response: &reqwest::Response) -> Result<(), AttemptError> {
    let encoded = (response.headers().get(reqwest::header::CONTENT_ENCODING)).is_some_and(|v| v != "identity");
    match (job.expect.size, response.content_length()) {
        (Some(expected), Some(announced))
            if response.status() == StatusCode::OK && !encoded && announced != expected =>
        {
            Err(AttemptError::Fatal(FetchError::Size {
                label: job.label.clone(),
                expected,
                actual: announced,
            }))
        }
        _ => Ok(()),
    }
}
