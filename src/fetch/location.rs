//! Where a large download's bytes are: its URL resolved once.
//!
//! The real Hub answers `resolve` for LFS/Xet files with a 302 to a signed CDN
//! URL that expires, and counts every `resolve` against a rate limit (about
//! 3,000 per 5 minutes anonymous). A download fetched in many ranged pieces
//! must therefore ask once where the file is — one `HEAD` that does not follow
//! the redirect — and send every piece there, asking again only when the
//! signed location expires or is refused (403/410). The signed URL lives only
//! in memory for this one download: it is never written to the lock or to the
//! resume state, which name the URL the lock holds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, Url};

use super::{status_error, AttemptError, Fetcher};
use crate::http::{expiry_of, request_headers, retry_after, retry_reason, same_origin};
use crate::plan::Download;
use crate::reporter::Event;

/// Where the pieces of one download go.
#[derive(Debug)]
pub(crate) struct Location {
    pub url: String,
    /// Send the download's token there (only within the URL's own origin).
    pub token: bool,
    /// Ask again from this moment on: shortly before a signed URL expires.
    pub refresh_at: Option<SystemTime>,
    /// This is the download's own URL (no redirect was taken): a 403 from it
    /// is an answer, not an expired signature.
    pub is_origin: bool,
}

impl Location {
    fn fresh(&self) -> bool {
        self.refresh_at.is_none_or(|at| SystemTime::now() < at)
    }
}

/// A download's current location, shared by its connections.
pub(crate) struct Locator {
    current: tokio::sync::Mutex<Option<Arc<Location>>>,
    /// Locations refused so far, bounded so a CDN that refuses every fresh
    /// signature ends the download instead of looping. (Resolving again
    /// because a signature is about to lapse is not a refusal: a download may
    /// outlive any number of them.)
    refusals: AtomicU32,
}

/// How many refused locations one download tolerates.
const MAX_REFUSALS: u32 = 3;

impl Locator {
    pub fn new() -> Locator {
        Locator {
            current: tokio::sync::Mutex::new(None),
            refusals: AtomicU32::new(0),
        }
    }

    /// The location to fetch from: the one resolved before while it is fresh,
    /// else a new resolve (one request, by one connection while the others wait).
    pub async fn get(&self, fetcher: &Fetcher, job: &Download) -> Result<Arc<Location>, AttemptError> {
        let mut current = self.current.lock().await;
        if let Some(location) = current.as_ref().filter(|l| l.fresh()) {
            return Ok(location.clone());
        }
        if self.refusals.load(Ordering::Relaxed) > MAX_REFUSALS {
            return Err(AttemptError::Retry {
                reason: "the signed download location is refused even when fresh".into(),
                wait: None,
            });
        }
        let location = Arc::new(resolve(fetcher, job).await?);
        *current = Some(location.clone());
        Ok(location)
    }

    /// `location` was refused (its signature expired early, or the CDN said no):
    /// the next [`Locator::get`] resolves again, unless another connection
    /// already did.
    pub async fn refused(&self, location: &Arc<Location>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, location)) {
            *current = None;
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One `HEAD` of the download's URL without following redirects: a redirect
/// names the location (and the token goes there only within the same origin),
/// a success means the URL serves the bytes itself. A server that refuses
/// `HEAD` is fetched from its URL, following redirects on every request, as
/// before this existed.
async fn resolve(fetcher: &Fetcher, job: &Download) -> Result<Location, AttemptError> {
    let origin = |refresh_at| Location {
        url: job.url.clone(),
        token: true,
        refresh_at,
        is_origin: true,
    };
    fetcher.reporter.report(Event::Request {
        method: "HEAD",
        url: &job.url,
    });
    let response = fetcher
        .client_for(job, false)
        .head(&job.url)
        .headers(request_headers(job.authorization.as_deref(), None, None))
        .send()
        .await
        .map_err(|e| super::attempt_error(job, &e))?;
    crate::failpoint::kill_point("fetch::located");
    let status = response.status();
    if status.is_redirection() {
        let from = Url::parse(&job.url).map_err(|e| bad_location(job, &e.to_string()))?;
        let target = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| bad_location(job, "a redirect without `Location`"))?;
        let to = from.join(target).map_err(|e| bad_location(job, &e.to_string()))?;
        if !matches!(to.scheme(), "http" | "https") {
            return Err(bad_location(job, &format!("`{}` is not an HTTP(S) URL", to.scheme())));
        }
        if from.scheme() == "https" && to.scheme() == "http" {
            return Err(bad_location(job, "a redirect from HTTPS to plain HTTP is not followed"));
        }
        let refresh_at = expiry_of(&to).map(|expires| {
            // Ask again a little before the signature lapses: a tenth of its
            // remaining life, at most 30 s.
            let left = expires.duration_since(SystemTime::now()).unwrap_or_default();
            expires - (left / 10).min(Duration::from_secs(30))
        });
        return Ok(Location {
            token: same_origin(&from, &to),
            url: to.into(),
            refresh_at,
            is_origin: false,
        });
    }
    if status.is_success() || matches!(status, StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED) {
        return Ok(origin(None));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Err(AttemptError::Retry {
            reason: retry_reason(status),
            wait: retry_after(response.headers()),
        });
    }
    if status == StatusCode::FORBIDDEN && job.authorization.is_none() {
        // Some servers refuse `HEAD` alone (signed GET-only URLs): let the GETs
        // follow redirects themselves.
        return Ok(origin(None));
    }
    Err(AttemptError::Fatal(status_error(job, &response)))
}

fn bad_location(job: &Download, why: &str) -> AttemptError {
    AttemptError::Fatal(super::FetchError::GaveUp {
        label: job.label.clone(),
        attempts: 1,
        reason: format!("the server's redirect cannot be followed: {why}"),
    })
}
