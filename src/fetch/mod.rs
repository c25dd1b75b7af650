//! Downloads: bounded concurrency across files, streaming into a temporary file
//! while hashing (blake3 always; sha256 and the git blob id when the source
//! publishes them), retries with backoff, resumption of interrupted downloads, and
//! an atomic, checked placement.
//!
//! A download's temporary file lives in `models/.mdl/tmp/` (same file system as
//! its destination, so the final `rename` is atomic) under a name derived from
//! the destination, with a small JSON sidecar recording what it is a prefix of
//! (URL, ETag, expected hashes). A later run that finds both continues with
//! `Range` + `If-Range`; if the upstream ETag changed, the server answers 200 and
//! the download restarts cleanly.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::fs::{is_disk_full, sync_dir, write_atomic, FileRecord};
use crate::hash::Hashers;
use crate::http::{content_range_start, describe_reqwest, pause_before_retry, response_etag, retry_after};
use crate::plan::{Download, Expected};
use crate::reporter::{Event, Reporter};

mod chunked;
mod location;
pub mod mirror;
pub mod partial;
pub mod tree_hash;
pub mod xet;

/// A file that is now in place.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub size: u64,
    pub blake3: String,
    /// Computed only when the source publishes one to check against.
    pub sha256: Option<String>,
    pub etag: Option<String>,
    pub final_url: String,
    pub record: FileRecord,
    /// Bytes that were already on disk from an interrupted download.
    pub resumed_from: u64,
    /// Bytes of a Xet file copied from chunks already on disk (an earlier
    /// revision's) instead of fetched.
    pub xet_reused: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading `{label}` failed: the server answered {status} for `{url}`{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Status {
        label: String,
        url: String,
        status: u16,
        message: Option<String>,
        /// A Hugging Face Hub file (the token is the fix for a refusal).
        hub: bool,
        /// A registry blob (a login is the fix for a refusal).
        registry: Option<String>,
    },
    #[error("downloading `{label}` failed: {source}")]
    Registry {
        label: String,
        #[source]
        source: crate::oci::OciError,
    },
    #[error("downloading `{label}` failed after {attempts} attempts: {reason}")]
    GaveUp {
        label: String,
        attempts: u32,
        reason: String,
    },
    #[error("`{label}` has {actual} bytes, but {expected} were expected")]
    Size { label: String, expected: u64, actual: u64 },
    #[error("`{label}` does not match its {algorithm}: expected `{expected}`, got `{actual}`")]
    Hash {
        label: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("downloading `{label}` failed: the certificate of `{url}` is not trusted ({reason})")]
    Untrusted { label: String, url: String, reason: String },
    #[error("the disk is full: writing `{}` needs {} for `{label}`", path.display(), crate::units::human_bytes(*needed))]
    DiskFull {
        label: String,
        path: PathBuf,
        needed: u64,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    pub fn hint(&self) -> Option<String> {
        match self {
            FetchError::Status { status: 401 | 403, hub: true, .. } => {
                Some("set `HF_TOKEN` (or run `hf auth login`) with a token that can read this repository".into())
            }
            FetchError::Status {
                status: 401 | 403,
                registry: Some(registry),
                ..
            } => Some(format!(
                "log in with `docker login {registry}` (mdl reads Docker's config.json: `$DOCKER_CONFIG`, else `~/.docker`)"
            )),
            FetchError::Registry { source, .. } => source.hint(),
            FetchError::Status { status: 401 | 403, hub: false, url, .. } => Some(format!(
                "the server refuses `{url}`: check that the URL in config.yaml is public and permanent (not a signed link that expires)"
            )),
            FetchError::Status { status: 404 | 410, .. } => {
                Some("the file is gone upstream; run `mdl lock --upgrade` to re-resolve the model".into())
            }
            FetchError::Untrusted { .. } => Some(crate::http::UNTRUSTED_CERTIFICATE_HINT.into()),
            FetchError::DiskFull { .. } => Some(
                "free space and run again: files already synced are untouched and this download resumes where it stopped; `mdl clean --partial` removes partial downloads".into(),
            ),
            FetchError::GaveUp { .. } => Some("check the network and run the command again; finished files are kept and partial ones resume".into()),
            FetchError::Size { .. } | FetchError::Hash { .. } => Some(
                "the upstream content differs from what was locked; nothing was replaced. If the change is expected, run `mdl lock --upgrade`".into(),
            ),
            FetchError::Io { source, .. } if is_disk_full(source) => Some(
                "the disk is full: free space and run again; files already synced are untouched and the partial download resumes".into(),
            ),
            _ => None,
        }
    }
}

/// How hard to try.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// Files downloaded at once.
    pub jobs: usize,
    pub attempts: u32,
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    pub verify_ssl: bool,
    /// Files of at least this size are fetched as parallel ranged pieces.
    pub chunked_min: u64,
    /// Piece size for chunked downloads (a power of two, see `tree_hash`).
    pub piece_size: u64,
    /// Ranged connections per chunked file.
    pub connections_per_file: usize,
    /// Fetch Xet-backed Hub files through the Xet protocol (off:
    /// `HF_HUB_DISABLE_XET=1`, the resolve bridge serves them whole).
    pub xet: bool,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            jobs: 8,
            attempts: 5,
            stall_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            verify_ssl: true,
            chunked_min: 32 << 20,
            piece_size: 8 << 20,
            connections_per_file: 16,
            xet: !crate::env::flag("HF_HUB_DISABLE_XET"),
        }
    }
}

/// The download engine: one HTTP client (one connection pool per host, HTTP/2
/// when offered), shared by every download.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    /// The same settings, following no redirect: to learn where a URL leads.
    locate_http: reqwest::Client,
    /// Without certificate checks, for `url:` models under
    /// `sources.url.verify_ssl: false` only: (following, not following).
    /// Never used for a download that carries a token.
    unverified: Option<(reqwest::Client, reqwest::Client)>,
    settings: FetchSettings,
    reporter: Arc<dyn Reporter>,
    tmp_dir: PathBuf,
    next_id: Arc<AtomicUsize>,
    /// OCI registries: `oci:` models' blobs and mirrors.
    registries: Arc<crate::oci::Registries>,
    /// Xet tokens and the chunk index, shared by a run's downloads.
    xet: Arc<xet::Session>,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct PartialState {
    url: String,
    etag: Option<String>,
    expect: Expected,
    /// For chunked downloads: the piece size and each finished piece's blake3
    /// chaining value (hex), so a resumed download skips them without re-reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pieces: Option<Pieces>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
struct Pieces {
    size: u64,
    done: Vec<Option<String>>,
}

/// Why one attempt failed, and whether another may succeed.
pub(crate) enum AttemptError {
    Retry { reason: String, wait: Option<Duration> },
    Fatal(FetchError),
}

impl Fetcher {
    /// `roots`: CAs to trust beyond the bundled and the system's ones
    /// ([`crate::http::extra_roots`]).
    pub fn new(
        settings: FetchSettings,
        reporter: Arc<dyn Reporter>,
        tmp_dir: PathBuf,
        roots: &[reqwest::Certificate],
    ) -> Fetcher {
        use crate::http::{client, Trust};
        let (timeout, stall) = (settings.connect_timeout, settings.stall_timeout);
        Fetcher {
            http: client(timeout, stall, Trust::Verified, roots, true),
            locate_http: client(timeout, stall, Trust::Verified, roots, false),
            unverified: (!settings.verify_ssl).then(|| {
                (
                    client(timeout, stall, Trust::Unverified, &[], true),
                    client(timeout, stall, Trust::Unverified, &[], false),
                )
            }),
            settings,
            reporter,
            tmp_dir,
            next_id: Arc::new(AtomicUsize::new(0)),
            registries: Arc::new(crate::oci::Registries::new(Default::default(), Default::default())),
            xet: Default::default(),
        }
    }

    /// Registries reached with these extra CAs, some over plain HTTP.
    pub fn with_registries(mut self, registries: Arc<crate::oci::Registries>) -> Fetcher {
        self.registries = registries;
        self
    }

    pub fn registries(&self) -> &crate::oci::Registries {
        &self.registries
    }

    /// The client that checks certificates (every token-bearing request).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The client without certificate checks, when `verify_ssl: false` made one.
    pub fn unverified_http(&self) -> Option<&reqwest::Client> {
        self.unverified.as_ref().map(|(follow, _)| follow)
    }

    /// The client for `job`'s requests: unverified only for a download that
    /// asked for it and carries no token.
    pub(crate) fn client_for(&self, job: &Download, follow_redirects: bool) -> &reqwest::Client {
        match (&self.unverified, job.insecure && job.authorization.is_none()) {
            (Some((follow, _)), true) if follow_redirects => follow,
            (Some((_, locate)), true) => locate,
            _ if follow_redirects => &self.http,
            _ => &self.locate_http,
        }
    }

    pub fn reporter(&self) -> &Arc<dyn Reporter> {
        &self.reporter
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    /// Records a file that just reached its final name in the journal beside
    /// the temporary directory (`models/.mdl/journal.jsonl`).
    fn journal(&self, job: &Download, record: &FileRecord) {
        if let Some(meta) = self.tmp_dir.parent() {
            let entry = crate::fs::JournalEntry {
                path: job.dest.clone(),
                record: record.clone(),
            };
            crate::fs::append_journal(&meta.join("journal.jsonl"), &entry);
        }
    }

    /// What a registry blob's requests carry: the registry's token (one token
    /// flow per repository, `renew`ed after a refusal), else the basic
    /// credentials Docker has for it.
    async fn registry_authorization(
        &self,
        job: &Download,
        repo: &crate::oci::OciRef,
        renew: bool,
    ) -> Result<Option<String>, FetchError> {
        let registry = |source| FetchError::Registry {
            label: job.label.clone(),
            source,
        };
        let client = self.registries.get(&repo.registry).await.map_err(registry)?;
        client.authorization(repo, renew).await.map_err(registry)
    }

    /// A registry blob's URL over the scheme its registry speaks: the plan
    /// derives `https://`; a loopback or `insecure` registry may need plain
    /// HTTP. The credentials go to that registry's host and nowhere else.
    async fn registry_url(&self, job: &Download, repo: &crate::oci::OciRef) -> Result<String, FetchError> {
        let client = (self.registries.get(&repo.registry).await).map_err(|source| FetchError::Registry {
            label: job.label.clone(),
            source,
        })?;
        // `://HOST/v2/REPO/blobs/`, whichever scheme the URL was made with.
        let blobs = repo.blob_url("", "");
        let rest = job
            .url
            .split_once("://")
            .map(|(_, rest)| format!("://{rest}"))
            .unwrap_or_default();
        if !rest.starts_with(&blobs) {
            // Not this registry's blob: no credentials for it.
            return Err(FetchError::GaveUp {
                label: job.label.clone(),
                attempts: 0,
                reason: format!("`{}` is not a blob of `{}`", crate::http::redact(&job.url), repo.repo()),
            });
        }
        let scheme = if client.plain_http() { "http" } else { "https" };
        Ok(format!("{scheme}{rest}"))
    }

    /// Downloads every job, at most `jobs` at once. Results are in job order.
    pub async fn fetch_all(&self, jobs: Vec<Download>) -> Vec<Result<Fetched, FetchError>> {
        let mut results: Vec<Option<Result<Fetched, FetchError>>> = (0..jobs.len()).map(|_| None).collect();
        let downloads: Vec<_> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, job)| async move { (i, self.fetch(&job).await) })
            .collect();
        let mut stream = futures_util::stream::iter(downloads).buffer_unordered(self.settings.jobs.max(1));
        while let Some((i, result)) = stream.next().await {
            results[i] = Some(result);
        }
        results.into_iter().map(|r| r.expect("every job ran")).collect()
    }

    /// Downloads one file into place, retrying and resuming as needed.
    pub async fn fetch(&self, job: &Download) -> Result<Fetched, FetchError> {
        let Some(repo) = job.registry.as_ref().filter(|_| job.authorization.is_none()) else {
            return self.fetch_as_is(job).await;
        };
        let mut authorized = Download {
            authorization: self.registry_authorization(job, repo, false).await?,
            url: self.registry_url(job, repo).await?,
            ..job.clone()
        };
        match self.fetch_as_is(&authorized).await {
            // A registry's bearer token lives minutes; one that expired during
            // a long transfer is renewed once, and the download resumes.
            Err(FetchError::Status { status: 401, .. }) => {
                authorized.authorization = self.registry_authorization(job, repo, true).await?;
                self.fetch_as_is(&authorized).await
            }
            other => other,
        }
    }

    /// [`Fetcher::fetch`] with the job's own `Authorization`.
    async fn fetch_as_is(&self, job: &Download) -> Result<Fetched, FetchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FetchError::Io { path, source }
        };
        fs_err::create_dir_all(&self.tmp_dir).map_err(io(&self.tmp_dir))?;
        let stem = blake3::hash(job.dest.as_os_str().as_encoded_bytes()).to_hex();
        let (part_path, state_path) = partial::claim(&self.tmp_dir, &stem[..32], self.settings.stall_timeout * 4);

        let mut attempt = 0;
        // Resolved once for all pieces and attempts of this file.
        let locator = location::Locator::new();
        // Chunked until the server shows it ignores `Range`.
        let mut chunked =
            job.expect.size.is_some_and(|s| s >= self.settings.chunked_min) && job.expect.git_oid.is_none();
        // Through Xet until the Hub shows it does not serve the file so.
        let mut xet = job.xet.as_ref().filter(|_| self.settings.xet);
        loop {
            attempt += 1;
            partial::renew(&part_path);
            let via_xet = match xet {
                Some(source) => match self.attempt_xet(id, job, source, &part_path, &state_path).await {
                    Ok(None) => {
                        xet = None;
                        None
                    }
                    other => other.transpose(),
                },
                None => None,
            };
            let result = if let Some(result) = via_xet {
                result
            } else if chunked {
                match self.attempt_chunked(id, job, &part_path, &state_path, &locator).await {
                    Ok(Some(fetched)) => Ok(fetched),
                    Ok(None) => {
                        chunked = false;
                        self.attempt(id, job, &part_path, &state_path).await
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.attempt(id, job, &part_path, &state_path).await
            };
            match result {
                Ok(fetched) => return Ok(fetched),
                Err(AttemptError::Fatal(e)) => {
                    self.reporter.report(Event::DownloadFinished {
                        id,
                        label: &job.label,
                        ok: false,
                    });
                    return Err(e);
                }
                Err(AttemptError::Retry { reason, wait }) => {
                    if attempt >= self.settings.attempts {
                        self.reporter.report(Event::DownloadFinished {
                            id,
                            label: &job.label,
                            ok: false,
                        });
                        return Err(FetchError::GaveUp {
                            label: job.label.clone(),
                            attempts: attempt,
                            reason,
                        });
                    }
                    pause_before_retry(self.reporter.as_ref(), &job.label, attempt, &reason, wait).await;
                }
            }
        }
    }

    /// One attempt at a whole-file download: resume the partial file if it
    /// is a prefix of the same thing, stream the rest while hashing, end.
    async fn attempt(
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

    /// How every download ends, whole-file or pieced: each published digest
    /// checked against the bytes (a mismatch discards them), the file
    /// fsynced, renamed to its name, the directory fsynced, the resume state
    /// removed, the file recorded and journaled.
    pub(crate) fn finish(
        &self,
        ending: Ending<'_>,
        file: std::fs::File,
        digests: crate::hash::Digests,
    ) -> Result<Fetched, AttemptError> {
        let Ending {
            id,
            job,
            part_path,
            state_path,
            ..
        } = ending;
        let fatal_io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| AttemptError::Fatal(io_error(job, path, source))
        };
        check_digests(job, &digests).inspect_err(|_| discard(part_path, state_path))?;
        file.sync_all().map_err(fatal_io(part_path))?;
        drop(file);
        let parent = job.dest.parent().expect("destination has a parent");
        fs_err::create_dir_all(parent).map_err(fatal_io(parent))?;
        crate::failpoint::kill_point(ending.before_rename);
        fs_err::rename(part_path, &job.dest).map_err(fatal_io(&job.dest))?;
        sync_dir(parent);
        crate::failpoint::kill_point("fetch::after_rename");
        let _ = std::fs::remove_file(state_path);
        let mut record = FileRecord::stat(&job.dest, digests.blake3.clone()).map_err(fatal_io(&job.dest))?;
        record.etag = ending.etag.clone();
        self.journal(job, &record);
        self.reporter.report(Event::DownloadFinished {
            id,
            label: &job.label,
            ok: true,
        });
        Ok(Fetched {
            size: ending.size,
            blake3: digests.blake3,
            sha256: digests.sha256,
            etag: ending.etag,
            final_url: ending.final_url,
            record,
            resumed_from: ending.resumed_from,
            xet_reused: 0,
        })
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

/// The partial file's length and the ETag it was fetched under, when it is a
/// prefix of this same download (same URL and expectations, and something to
/// check the whole against).
fn resumable_prefix(job: &Download, part_path: &Path, state_path: &Path) -> Option<(u64, Option<String>)> {
    let previous: PartialState = serde_json::from_slice(&crate::fs::read_nofollow(state_path, 1 << 20)?).ok()?;
    let part_len = std::fs::symlink_metadata(part_path).map(|m| m.len()).unwrap_or(0);
    let checkable = previous.etag.is_some() || job.expect.blake3.is_some() || job.expect.sha256.is_some();
    (previous.url == job.url && previous.expect == job.expect && checkable && part_len > 0)
        .then_some((part_len, previous.etag))
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
    let mut file = crate::fs::open_nofollow(part_path, crate::fs::Open::Keep).map_err(fatal_io(part_path))?;
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
        None => {
            file.set_len(0).map_err(fatal_io(part_path))?;
            0
        }
    };
    file.seek(SeekFrom::Start(written)).map_err(fatal_io(part_path))?;
    Ok((file, hashers, written))
}

/// A whole answer (200) announcing another length than the expected size is
/// other content than was locked: fatal at once, not a transfer to retry.
fn check_announced(job: &Download, response: &reqwest::Response) -> Result<(), AttemptError> {
    let encoded = (response.headers().get(reqwest::header::CONTENT_ENCODING)).is_some_and(|v| v != "identity");
    match (job.expect.size, response.content_length()) {
        (Some(expected), Some(announced)) if response.status() == StatusCode::OK && !encoded && announced != expected => {
            Err(AttemptError::Fatal(FetchError::Size {
                label: job.label.clone(),
                expected,
                actual: announced,
            }))
        }
        _ => Ok(()),
    }
}

/// The bytes a download holds against the size it must have: fewer than a
/// server promised is a broken transfer (retried), anything else that
/// differs is fatal.
fn check_size(job: &Download, written: u64, promised: Option<u64>) -> Result<(), AttemptError> {
    let Some(size) = job.expect.size.filter(|&size| size != written) else {
        return Ok(());
    };
    if written < size && promised == Some(size) {
        return Err(AttemptError::Retry {
            reason: format!("the connection closed after {written} of {size} bytes"),
            wait: None,
        });
    }
    Err(AttemptError::Fatal(FetchError::Size {
        label: job.label.clone(),
        expected: size,
        actual: written,
    }))
}

/// What a finished transfer hands to [`Fetcher::finish`].
pub(crate) struct Ending<'a> {
    pub id: usize,
    pub job: &'a Download,
    pub part_path: &'a Path,
    pub state_path: &'a Path,
    pub size: u64,
    pub etag: Option<String>,
    pub final_url: String,
    pub resumed_from: u64,
    /// The kill point just before the rename (crash tests name each path's).
    pub before_rename: &'static str,
}

/// Every digest the job expects, against what the bytes hash to.
fn check_digests(job: &Download, digests: &crate::hash::Digests) -> Result<(), AttemptError> {
    let mismatch = |algorithm: &'static str, expected: &str, actual: &str| {
        AttemptError::Fatal(FetchError::Hash {
            label: job.label.clone(),
            algorithm,
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    };
    let none = String::new();
    let checks = [
        ("blake3", job.expect.blake3.as_deref(), &digests.blake3),
        (
            "sha256",
            job.expect.sha256.as_deref(),
            digests.sha256.as_ref().unwrap_or(&none),
        ),
        // The git blob id needs the size up front; without one it is not checked.
        (
            "git blob id",
            job.expect.git_oid.as_deref().filter(|_| digests.git_oid.is_some()),
            digests.git_oid.as_ref().unwrap_or(&none),
        ),
    ];
    for (algorithm, expected, actual) in checks {
        if let Some(expected) = expected {
            if !expected.eq_ignore_ascii_case(actual) {
                return Err(mismatch(algorithm, expected, actual));
            }
        }
    }
    if let Some(prefix) = &job.expect.sha256_prefix {
        let sha256 = digests.sha256.clone().unwrap_or_default();
        if !sha256.starts_with(prefix.as_str()) {
            return Err(mismatch(
                "sha256 prefix",
                prefix,
                &sha256[..prefix.len().min(sha256.len())],
            ));
        }
    }
    Ok(())
}

/// An I/O error of a download, a full disk named as such (with what the file needs).
pub(crate) fn io_error(job: &Download, path: PathBuf, source: std::io::Error) -> FetchError {
    if is_disk_full(&source) {
        return FetchError::DiskFull {
            label: job.label.clone(),
            path,
            needed: job.expect.size.unwrap_or(0),
            source,
        };
    }
    FetchError::Io { path, source }
}

/// A failed request: an untrusted certificate ends the download (no retry
/// changes it), anything else is retried.
pub(crate) fn attempt_error(job: &Download, e: &reqwest::Error) -> AttemptError {
    if crate::http::is_untrusted_certificate(e) {
        return AttemptError::Fatal(FetchError::Untrusted {
            label: job.label.clone(),
            url: job.url.clone(),
            reason: describe_reqwest(e),
        });
    }
    if e.is_redirect() {
        // A redirect refused by policy (a downgrade to plain HTTP, too many):
        // asking again gets the same answer.
        return AttemptError::Fatal(FetchError::GaveUp {
            label: job.label.clone(),
            attempts: 1,
            reason: describe_reqwest(e),
        });
    }
    AttemptError::Retry {
        reason: describe_reqwest(e),
        wait: None,
    }
}

pub(crate) fn discard(part: &Path, state: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(state);
}

/// What every download request carries (see [`crate::http::request_headers`]).
pub(crate) fn request_headers(
    job: &Download,
    range: Option<String>,
    if_range_etag: Option<&str>,
) -> reqwest::header::HeaderMap {
    crate::http::request_headers(job.authorization.as_deref(), range, if_range_etag)
}

/// The error for an answer that no retry will change, with the server's message.
pub(crate) fn status_error(job: &Download, response: &reqwest::Response) -> FetchError {
    let message = crate::http::error_message(response.headers());
    FetchError::Status {
        label: job.label.clone(),
        url: job.url.clone(),
        status: response.status().as_u16(),
        message,
        hub: job.hub,
        registry: job.registry.as_ref().map(|r| r.registry.clone()),
    }
}
