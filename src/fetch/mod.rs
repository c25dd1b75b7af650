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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::fs::{is_disk_full, sync_dir, FileRecord};
use crate::http::{describe_reqwest, pause_before_retry};
use crate::plan::{Download, Expected};
use crate::reporter::{Event, Reporter};

mod location;
pub mod mirror;
pub mod partial;
mod pieced;
pub mod tree_hash;
mod whole;
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

/// How a file travels, chosen once per file from what the plan says of it:
/// rebuilt from Xet chunks (`xet.rs`) for a Xet-backed Hub file, in ranged
/// pieces over several connections (`pieced.rs`) for a large file of known
/// size, else one stream (`whole.rs`). Each may find the server does not
/// serve the file its way and hand it to the next one down.
#[derive(Clone, Copy, Debug)]
enum Transport<'a> {
    Xet(&'a crate::plan::XetSource),
    Pieced,
    Whole,
}

impl<'a> Transport<'a> {
    fn of(job: &'a Download, settings: &FetchSettings) -> Transport<'a> {
        match job.xet.as_ref().filter(|_| settings.xet) {
            Some(source) => Transport::Xet(source),
            None => Transport::after_xet(job, settings),
        }
    }

    /// Pieces where the size is known and large (and no git blob id is to
    /// be hashed, which needs the bytes in order), else one stream.
    fn after_xet(job: &Download, settings: &FetchSettings) -> Transport<'a> {
        match job.expect.size.is_some_and(|s| s >= settings.chunked_min) && job.expect.git_oid.is_none() {
            true => Transport::Pieced,
            false => Transport::Whole,
        }
    }

    /// The transport after this one.
    fn next(self, job: &Download, settings: &FetchSettings) -> Transport<'a> {
        match self {
            Transport::Xet(_) => Transport::after_xet(job, settings),
            Transport::Pieced | Transport::Whole => Transport::Whole,
        }
    }
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
        let mut transport = Transport::of(job, &self.settings);
        loop {
            attempt += 1;
            partial::renew(&part_path);
            let paths = (part_path.as_path(), state_path.as_path());
            let result = self.attempt_by(&mut transport, id, job, paths, &locator).await;
            let (reason, wait) = match result {
                Ok(fetched) => return Ok(fetched),
                Err(AttemptError::Retry { reason, wait }) if attempt < self.settings.attempts => Ok((reason, wait)),
                Err(AttemptError::Retry { reason, .. }) => Err(FetchError::GaveUp {
                    label: job.label.clone(),
                    attempts: attempt,
                    reason,
                }),
                Err(AttemptError::Fatal(e)) => Err(e),
            }
            .inspect_err(|_| {
                let (label, ok) = (&job.label, false);
                self.reporter.report(Event::DownloadFinished { id, label, ok });
            })?;
            pause_before_retry(self.reporter.as_ref(), &job.label, attempt, &reason, wait).await;
        }
    }

    /// One attempt through `transport`; a transport that finds the file is
    /// not served its way (no Xet for it, `Range` ignored) hands it to the
    /// next one down, for this attempt and the ones after.
    async fn attempt_by(
        &self,
        transport: &mut Transport<'_>,
        id: usize,
        job: &Download,
        (part_path, state_path): (&Path, &Path),
        locator: &location::Locator,
    ) -> Result<Fetched, AttemptError> {
        loop {
            let served = match *transport {
                Transport::Xet(source) => self.attempt_xet(id, job, source, part_path, state_path).await,
                Transport::Pieced => self.attempt_pieced(id, job, part_path, state_path, locator).await,
                Transport::Whole => return self.attempt(id, job, part_path, state_path).await,
            };
            match served? {
                Some(fetched) => return Ok(fetched),
                None => *transport = transport.next(job, &self.settings),
            }
        }
    }

    /// [`Fetcher::finish`] for a file written in pieces whose blake3 was
    /// merged from them: sha256 cannot be merged, so the file is read back
    /// once (from the page cache, on a blocking thread) only when there is a
    /// published sha256 to check.
    pub(crate) async fn finish_pieced(
        &self,
        ending: Ending<'_>,
        file: std::fs::File,
        blake3: String,
    ) -> Result<Fetched, AttemptError> {
        let (job, part_path) = (ending.job, ending.part_path);
        let sha256 = if job.expect.sha256.is_some() || job.expect.sha256_prefix.is_some() {
            let part = part_path.to_path_buf();
            let hashed = tokio::task::spawn_blocking(move || crate::hash::sha256_file(&part));
            let sha256 = hashed.await.expect("hashing does not panic");
            Some(sha256.map_err(|e| AttemptError::Fatal(io_error(job, part_path.to_path_buf(), e)))?)
        } else {
            None
        };
        let digests = crate::hash::Digests {
            blake3,
            sha256,
            git_oid: None,
        };
        self.finish(ending, file, digests)
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
