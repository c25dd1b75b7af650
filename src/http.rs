//! HTTP, the bottom of resolve and fetch: the one client, the headers every
//! request carries, how answers are read (ETags, `Content-Range`, the Hub's
//! `X-Error-Message`), and the one retry pause shared by every retry loop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_RANGE, ETAG, IF_RANGE, RANGE, RETRY_AFTER};

use crate::reporter::{Event, Reporter};

/// Variables naming a PEM bundle of extra CA certificates to trust, in the
/// order they are read: what Python users behind a TLS-intercepting proxy or a
/// private CA already set (OpenSSL, requests, curl).
pub const CA_BUNDLE_VARS: [&str; 3] = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"];

/// A CA bundle named by the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the CA bundle `{path}` named by `{var}` cannot be used: {reason}")]
pub struct CaBundleError {
    pub var: &'static str,
    pub path: String,
    pub reason: String,
}

impl CaBundleError {
    pub fn hint(&self) -> String {
        format!(
            "point `{}` at a PEM file of CA certificates (`-----BEGIN CERTIFICATE-----`), or unset it",
            self.var
        )
    }
}

/// The extra CAs from [`CA_BUNDLE_VARS`], read once: as certificates for
/// mdl's HTTP client, and as the PEM bundles they came from for the OCI
/// client, which has a TLS stack of its own.
#[derive(Clone, Default)]
pub struct ExtraRoots {
    pub certificates: Vec<reqwest::Certificate>,
    pub pems: Vec<Vec<u8>>,
}

/// Every set variable's bundle.
pub fn extra_roots() -> Result<ExtraRoots, CaBundleError> {
    let mut roots = ExtraRoots::default();
    for var in CA_BUNDLE_VARS {
        let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
            continue;
        };
        let error = |reason: String| CaBundleError {
            var,
            path: path.to_string_lossy().into_owned(),
            reason,
        };
        let pem = std::fs::read(&path).map_err(|e| error(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| error(e.to_string()))?;
        if certs.is_empty() {
            return Err(error("it holds no PEM certificate".into()));
        }
        roots.certificates.extend(certs);
        roots.pems.push(pem);
    }
    Ok(roots)
}

/// How a client checks certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The bundled web roots, the operating system's store, and the bundles
    /// in [`CA_BUNDLE_VARS`]. Every request that may carry a token uses this.
    Verified,
    /// No certificate checks (`sources.url.verify_ssl: false`): only for
    /// `url:` models, never with a token.
    Unverified,
}

/// An HTTP client: one connection pool per host, HTTP/2 when TLS offers it.
/// `follow_redirects`: follow up to 10 (the real Hub redirects LFS files to a
/// CDN; reqwest drops the Authorization header when a redirect leaves the host,
/// as the Python client does), or none, to read where a URL leads.
///
/// Every wait has a deadline: `connect_timeout` for the connection, and
/// `stall` for the response's headers (counted from the request's start) and
/// then for each read of its body (counted again after every byte that
/// arrives). A server that accepts a request and then goes silent is a
/// timeout, retried like any transient failure ([`describe_reqwest`] says
/// which host stalled and where).
pub fn client(
    connect_timeout: Duration,
    stall: Duration,
    trust: Trust,
    roots: &[reqwest::Certificate],
    follow_redirects: bool,
) -> reqwest::Client {
    let policy = if follow_redirects {
        // At most 10, and never from HTTPS down to plain HTTP or to another
        // scheme: reqwest drops `Authorization` when the host or port
        // changes, not when only the scheme does.
        reqwest::redirect::Policy::custom(|attempt| {
            let downgrade =
                attempt.previous().last().is_some_and(|p| p.scheme() == "https") && attempt.url().scheme() != "https";
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if downgrade || !matches!(attempt.url().scheme(), "http" | "https") {
                attempt.error("a redirect from HTTPS to plain HTTP (or another scheme) is not followed")
            } else {
                attempt.follow()
            }
        })
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mdl/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .read_timeout(stall)
        .redirect(policy);
    match trust {
        Trust::Verified => {
            for root in roots {
                builder = builder.add_root_certificate(root.clone());
            }
        }
        Trust::Unverified => builder = builder.danger_accept_invalid_certs(true),
    }
    builder.build().expect("HTTP client")
}

/// Whether a request failed because the server's certificate is not trusted
/// (no retry changes that).
pub fn is_untrusted_certificate(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("invalid peer certificate") || text.contains("certificate verify failed") {
            return true;
        }
        source = s.source();
    }
    false
}

/// What to do about an untrusted certificate.
pub const UNTRUSTED_CERTIFICATE_HINT: &str = "the server's certificate is not signed by a CA mdl trusts (the bundled web roots and the operating system's store); behind a TLS-intercepting proxy or a private CA, set `SSL_CERT_FILE` (or `REQUESTS_CA_BUNDLE`) to the CA's PEM bundle";

/// Whether two URLs share scheme, host and port: a token may follow a
/// redirect only within one origin.
pub fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// [`same_origin`] of two URLs as text; false when either does not parse.
pub fn same_origin_str(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => same_origin(&a, &b),
        _ => false,
    }
}

/// Whether a credential may be sent to `endpoint`: over HTTPS, or over plain
/// HTTP only to this machine (the emulator, a local proxy). `Err` says why not.
pub fn credentials_may_go_to(endpoint: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("`{endpoint}` is not a URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host_str().is_some_and(is_loopback_host) => Ok(()),
        scheme => Err(format!(
            "`{endpoint}` is reached over {} and is not this machine",
            if scheme == "http" { "plain HTTP" } else { scheme }
        )),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A URL as messages and `-v` show it: without its query and fragment, which
/// for a signed CDN URL hold the signature (a bearer credential while it lasts).
pub fn redact(url: &str) -> String {
    const SIGNED: [&str; 7] = [
        "signature",
        "credential",
        "token",
        "sig",
        "expires",
        "policy",
        "key-pair-id",
    ];
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let signed = query.split(['&', '#']).any(|pair| {
        let key = pair.split('=').next().unwrap_or_default().to_ascii_lowercase();
        SIGNED.iter().any(|s| key.contains(s))
    });
    if signed {
        format!("{base}?…")
    } else {
        url.to_string()
    }
}

/// When a signed URL stops working, read from its query: S3's `X-Amz-Date` +
/// `X-Amz-Expires` (what the Hub's CDN and GitHub's release assets use), or
/// CloudFront's `Expires` (Unix seconds). `None`: it does not say.
pub fn expiry_of(url: &reqwest::Url) -> Option<SystemTime> {
    let mut date = None;
    let mut expires = None;
    let mut unix = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "X-Amz-Date" => date = parse_amz_date(&value),
            "X-Amz-Expires" => expires = value.parse::<u64>().ok(),
            "Expires" => unix = value.parse::<u64>().ok(),
            _ => {}
        }
    }
    match (date, expires, unix) {
        (Some(issued), Some(ttl), _) => Some(issued + Duration::from_secs(ttl)),
        (_, _, Some(unix)) => Some(UNIX_EPOCH + Duration::from_secs(unix)),
        _ => None,
    }
}

/// `20260101T120000Z` → that instant.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let ts = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", value)
        .ok()?
        .to_datetime()
        .ok()?;
    let ts = ts.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(ts.as_second()).ok()?))
}

/// What a request carries: its `Authorization` (the Hub token for the Hub's
/// own host, a registry's credentials for its blobs), and a `Range` with its
/// `If-Range` validator when resuming.
pub fn request_headers(authorization: Option<&str>, range: Option<String>, if_range_etag: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(mut v) = authorization.and_then(|a| HeaderValue::from_str(a).ok()) {
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
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

/// How long the server asks to wait: `Retry-After` in seconds or as an HTTP
/// date, else the reset of a spent `RateLimit` quota (`"resolvers";r=0;t=42`,
/// the IETF draft the Hub sends). Capped at 5 minutes, the Hub's window.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(300);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(value) = header(RETRY_AFTER.as_str()) {
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs).min(CAP));
        }
        if let Ok(when) = httpdate::parse_http_date(value) {
            return Some(
                when.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
                    .min(CAP),
            );
        }
    }
    let ratelimit = header("ratelimit")?;
    let field = |name: &str| {
        ratelimit
            .split(';')
            .find_map(|part| part.trim().strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (field("r"), field("t")) {
        (Some(0), Some(reset)) => Some(Duration::from_secs(reset).min(CAP)),
        _ => None,
    }
}

/// Why an answer is worth retrying, in words: a rate limit says so.
pub fn retry_reason(status: reqwest::StatusCode) -> String {
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        "the server is rate-limiting requests (429)".to_string()
    } else {
        format!("the server answered {status}")
    }
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

/// Why a body read was given up: `url`'s host sent nothing for `stall`.
pub fn stalled_body(url: &reqwest::Url, stall: Duration) -> String {
    format!(
        "`{}` stopped sending the answer's body: no data for {} s (stalled)",
        host_of(url),
        stall.as_secs()
    )
}

/// `host[:port]` of a URL, as messages name a server.
fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => "the server".to_string(),
    }
}

/// An error while reading the body of `url`'s answer, in words: a timeout is
/// the host having stopped sending.
pub fn describe_body(e: &reqwest::Error, url: &str) -> String {
    let host = reqwest::Url::parse(url).map(|u| host_of(&u));
    let host = host.as_deref().unwrap_or("the server");
    if e.is_timeout() {
        let mut text = format!("`{host}` stopped sending the answer's body (stalled)");
        chain(e, &mut text);
        return text;
    }
    describe_reqwest(e)
}

fn chain(e: &reqwest::Error, text: &mut String) {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(&format!(": {next}"));
        }
        source = s.source();
    }
}

/// A transport error in words: what went wrong, then reqwest's causes (the URL
/// is already in the caller's message). A timeout names the host that
/// stalled, and whether it was before its answer's headers or in its body.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let host = e.url().map(|u| format!("`{}`", host_of(u)));
    let host = host.as_deref().unwrap_or("the server");
    let mut text = if e.is_timeout() {
        format!("{host} sent no answer (no response headers before the stall deadline)")
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the connection broke during the transfer".to_string()
    } else {
        "the request failed".to_string()
    };
    chain(e, &mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_queries_are_redacted_and_others_kept() {
        let signed = "https://cdn/x?X-Amz-Date=1&X-Amz-Expires=60&X-Amz-Signature=abc";
        assert_eq!(redact(signed), "https://cdn/x?…");
        assert_eq!(
            redact("https://cdn/x?Expires=1&Signature=s&Key-Pair-Id=k"),
            "https://cdn/x?…"
        );
        assert_eq!(
            redact("https://hub/api/models/a/b?blobs=true"),
            "https://hub/api/models/a/b?blobs=true"
        );
        assert_eq!(redact("https://hub/x"), "https://hub/x");
    }

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
    fn retry_after_in_seconds_dates_and_ratelimit() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        let mut h = HeaderMap::new();
        h.insert("ratelimit", HeaderValue::from_static("\"resolvers\";r=0;t=42"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(42)));
        h.insert("ratelimit", HeaderValue::from_static("\"resolvers\";r=5;t=42"));
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("100000"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(300)));
    }

    #[test]
    fn signed_urls_say_when_they_expire() {
        let url = reqwest::Url::parse(
            "https://cas-bridge.xethub.hf.co/x?X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=ab",
        )
        .unwrap();
        assert_eq!(
            expiry_of(&url),
            Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3600))
        );
        let url = reqwest::Url::parse("https://d1.cloudfront.net/x?Expires=1767225600&Signature=x").unwrap();
        assert_eq!(expiry_of(&url), Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600)));
        assert_eq!(expiry_of(&reqwest::Url::parse("https://host/x?a=1").unwrap()), None);
    }

    #[test]
    fn tokens_stay_within_an_origin() {
        let u = |s| reqwest::Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://huggingface.co/a"),
            &u("https://huggingface.co:443/b")
        ));
        assert!(!same_origin(
            &u("https://huggingface.co/a"),
            &u("https://cdn-lfs.hf.co/b")
        ));
        assert!(!same_origin(&u("http://127.0.0.1:1/a"), &u("http://127.0.0.1:2/b")));
    }

    #[test]
    fn content_range_start_is_read() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!(content_range_start(&h), Some(100));
    }
}
