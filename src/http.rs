//! HTTP, the bottom of resolve and fetch: the one client, the headers every
//! request carries, how answers are read (ETags, `Content-Range`, the Hub's
//! `X-Error-Message`), and the one retry pause shared by every retry loop.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_RANGE, ETAG, IF_RANGE, RANGE, RETRY_AFTER};

use crate::reporter::{Event, Reporter};

/// The HTTP client: one connection pool per host, HTTP/2 when TLS offers it.
pub fn client(connect_timeout: Duration, verify_ssl: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("mdl/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .danger_accept_invalid_certs(!verify_ssl)
        // The real Hub redirects LFS files to a CDN; reqwest drops the
        // Authorization header when a redirect leaves the host, as the Python
        // client does.
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .expect("HTTP client")
}

/// What a request carries: the bearer token (set only for the Hub's own host),
/// and a `Range` with its `If-Range` validator when resuming.
pub fn request_headers(token: Option<&str>, range: Option<String>, if_range_etag: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(AUTHORIZATION, v);
        }
    }
    if let Some(range) = range.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert(RANGE, range);
        if let Some(v) = if_range_etag.and_then(|e| HeaderValue::from_str(&format!("\"{e}\"")).ok()) {
            headers.insert(IF_RANGE, v);
        }
    }
    headers
}

/// `W/"abc"` → `abc`, as the Python client normalises ETags.
pub fn normalize_etag(raw: &str) -> String {
    raw.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// The answer's ETag: the Hub's `X-Linked-Etag` for LFS files, else `ETag`.
pub fn response_etag(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-linked-etag")
        .or_else(|| headers.get(ETAG))
        .and_then(|v| v.to_str().ok())
        .map(normalize_etag)
}

/// The Hub's human-readable reason for a refusal (`X-Error-Message`).
pub fn error_message(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-error-message")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.parse().ok()
}

pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(120)))
}

/// Reports a failed attempt and waits before the next one: the server's
/// `Retry-After` when it gave one, else [`backoff`]. Shared by every retry loop.
pub async fn pause_before_retry(
    reporter: &dyn Reporter,
    label: &str,
    attempt: u32,
    reason: &str,
    wait: Option<Duration>,
) {
    let wait = wait.unwrap_or_else(|| backoff(attempt));
    reporter.report(Event::Retrying {
        label,
        attempt,
        reason,
        wait,
    });
    tokio::time::sleep(wait).await;
}

/// Exponential backoff with jitter: ~0.5 s, 1 s, 2 s, … capped at 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let base = 500u64
        .saturating_mul(1 << (attempt.saturating_sub(1)).min(6))
        .min(30_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = u64::from(nanos) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

/// A transport error in words: what went wrong, then reqwest's causes (the URL
/// is already in the caller's message).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "the request timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the connection broke during the transfer".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_normalise() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(500));
        assert!(backoff(4) >= Duration::from_millis(2000));
        assert!(backoff(30) <= Duration::from_secs(30));
    }

    #[test]
    fn content_range_start_is_read() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!(content_range_start(&h), Some(100));
    }
}
