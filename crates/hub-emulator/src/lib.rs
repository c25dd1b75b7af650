//! A Hugging Face Hub emulator: a real HTTP server on 127.0.0.1 that speaks the
//! subset of the Hub protocol that `mdl` (and the real Python `huggingface_hub`
//! client) use, plus plain file serving for `url:` and torchvision-style models.
//!
//! It exists so that every test, benchmark and the demo run against a real
//! socket instead of a mocked client. The protocol facts it follows are those in
//! `shared/docs/hub-protocol.md` (read from the clients' own source):
//!
//! * `GET /api/models/{repo}[/revision/{rev}]` with `siblings` (and `size`, `lfs`
//!   with `?blobs=true`), `GET /api/models/{repo}/tree/{rev}` for newer clients;
//! * `HEAD|GET /{repo}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag`,
//!   `X-Linked-Etag`/`X-Linked-Size` for LFS files, `Range` and 206 answers;
//! * `X-Error-Code` errors, bearer tokens for gated repos;
//! * `GET /files/{path}` for plain files and `/redirect/{path}` that 302s to it.
//!
//! Misbehaviours of real mirrors and networks are switches in [`Behaviour`], which
//! a test may flip while the server runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use sha2::Digest;

mod modelscope;
mod xet;
pub use xet::XetSettings;

/// The bytes of a file the emulator serves.
#[derive(Clone)]
pub enum Content {
    /// Bytes held in memory.
    Bytes(Bytes),
    /// `size` deterministic pseudo-random bytes derived from `seed`, generated as
    /// they are served, so that benchmarks can serve gigabytes without holding them.
    Synthetic { size: u64, seed: u64 },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Synthetic { size, .. } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in `start..end`.
    pub fn slice(&self, start: u64, end: u64) -> Bytes {
        match self {
            Content::Bytes(b) => b.slice(start as usize..end as usize),
            Content::Synthetic { seed, .. } => synthetic_range(*seed, start, end),
        }
    }

    /// Every byte, for hashing (synthetic content is generated in pieces).
    fn for_each_piece(&self, mut f: impl FnMut(&[u8])) {
        const PIECE: u64 = 4 << 20;
        let len = self.len();
        let mut at = 0;
        while at < len {
            let end = (at + PIECE).min(len);
            f(&self.slice(at, end));
            at = end;
        }
    }
}

/// A 64 KiB block of splitmix64 output per seed, XOR-ed with the block number:
/// deterministic, incompressible, any range producible on its own, and cheap
/// enough (~GB/s) that the emulator is not what a benchmark measures.
fn synthetic_range(seed: u64, start: u64, end: u64) -> Bytes {
    const WORDS: u64 = 8192;
    let block: Vec<u64> = (0..WORDS)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect();
    let word_at = |w: u64| block[(w % WORDS) as usize] ^ (w / WORDS).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut out = Vec::with_capacity((end - start) as usize);
    let first = start / 8;
    let last = end.div_ceil(8);
    for w in first..last {
        out.extend_from_slice(&word_at(w).to_le_bytes());
    }
    let skip = (start - first * 8) as usize;
    Bytes::from(out).slice(skip..skip + (end - start) as usize)
}

/// A file in a repository or in the plain file area.
#[derive(Clone)]
pub struct Blob {
    pub content: Content,
    /// Stored with git-lfs upstream: the Hub then reports its sha256 and size.
    pub lfs: bool,
    pub sha256: String,
    /// The git blob id the Hub lists as `blobId`: `sha1("blob {len}\0" +
    /// bytes)` of the file (the ETag of a non-LFS file), or of its Git LFS
    /// pointer for an LFS file, as git stores it.
    pub git_oid: String,
}

impl Blob {
    pub fn new(content: Content, lfs: bool) -> Blob {
        let mut sha256 = sha2::Sha256::new();
        let mut git = sha1::Sha1::new();
        git.update(format!("blob {}\0", content.len()).as_bytes());
        // An LFS file's git blob id is its pointer's, made from the sha256.
        let need_git = !lfs;
        content.for_each_piece(|piece| {
            sha256.update(piece);
            if need_git {
                git.update(piece);
            }
        });
        let sha256 = hex::encode(sha256.finalize());
        let git_oid = if need_git {
            hex::encode(git.finalize())
        } else {
            let pointer = format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {}\n",
                content.len()
            );
            hex::encode(sha1::Sha1::digest(format!("blob {}\0{pointer}", pointer.len())))
        };
        Blob {
            content,
            lfs,
            sha256,
            git_oid,
        }
    }

    /// A small file kept in git (its ETag is the git blob id).
    pub fn regular(bytes: impl Into<Bytes>) -> Blob {
        Blob::new(Content::Bytes(bytes.into()), false)
    }

    /// A file stored with git-lfs (its ETag is its sha256).
    pub fn lfs(bytes: impl Into<Bytes>) -> Blob {
        Blob::new(Content::Bytes(bytes.into()), true)
    }

    /// The ETag the Hub sends for this file.
    pub fn etag(&self) -> &str {
        if self.lfs {
            &self.sha256
        } else {
            &self.git_oid
        }
    }
}

#[derive(Clone, Default)]
struct Commit {
    sha: String,
    files: BTreeMap<String, Blob>,
}

#[derive(Default)]
struct Repo {
    /// Branch and tag names → commit sha.
    refs: BTreeMap<String, String>,
    /// Which of `refs` are tags (ModelScope lists branches and tags apart).
    tags: std::collections::BTreeSet<String>,
    commits: BTreeMap<String, Commit>,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    token: Option<String>,
}

/// A bandwidth cap shared by every connection: each piece of a body waits
/// for its slot on one timeline, so the bodies together never exceed `rate`.
#[derive(Clone, Debug)]
pub struct Uplink {
    rate: u64,
    next_free: Arc<Mutex<Option<Instant>>>,
}

impl Uplink {
    /// An uplink of `rate` bytes per second.
    pub fn new(rate: u64) -> Uplink {
        Uplink {
            rate: rate.max(1),
            next_free: Arc::new(Mutex::new(None)),
        }
    }

    /// Waits until `n` more bytes have crossed the uplink.
    async fn carry(&self, n: u64) {
        let done = {
            let mut next = self.next_free.lock().unwrap();
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            let done = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            *next = Some(done);
            done
        };
        tokio::time::sleep_until(done.into()).await;
    }
}

/// Switches for behaviours of real mirrors and networks. All off by default.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Answer `GET` with a chunked body and no `Content-Length`.
    pub no_content_length: bool,
    /// Ignore `Range` and always answer 200 with the whole body.
    pub ignore_range: bool,
    /// Put `X-Repo-Commit`, `ETag` and `X-Linked-*` only on `HEAD` answers.
    pub metadata_only_on_head: bool,
    /// Answer LFS `resolve` requests with a 302 to a pre-signed `/cdn/` URL.
    pub lfs_redirect: bool,
    /// Added before every answer.
    pub latency: Duration,
    /// Bytes per second for each response body (each connection, as every
    /// download connection carries one body at a time).
    pub bandwidth: Option<u64>,
    /// A cap on the bytes per second of all bodies together: one site's
    /// uplink, which every runner of a fleet shares.
    pub uplink: Option<Uplink>,
    /// The next N body requests (`GET` on a file) fail with 503 and this
    /// `Retry-After` (seconds).
    pub fail_next: u32,
    pub retry_after: Option<u64>,
    /// The next N body requests send this many bytes, then stop sending while
    /// keeping the connection open (a stalled transfer).
    pub stall_next: u32,
    pub stall_after: u64,
    /// The next N body requests send this many bytes, then drop the connection.
    pub cut_next: u32,
    pub cut_after: u64,
    /// The real Hub's manners for large files: LFS `resolve` (and `/redirect/`)
    /// answer 302 to the CDN origin with a URL signed to expire after this long
    /// (`X-Amz-Date`, `X-Amz-Expires`, `X-Amz-Signature`), with `X-Linked-*`,
    /// `X-Xet-Hash` and a `Link: …; rel="xet-auth"` on the 302. The CDN refuses
    /// unsigned, forged and expired URLs with 403, as S3 does.
    pub signed_urls: Option<Duration>,
    /// At most this many `resolve` requests per window (the Hub's "resolvers"
    /// quota); beyond it 429 with `RateLimit`, `RateLimit-Policy` and
    /// `Retry-After`. Every resolve answer carries `RateLimit`.
    pub resolve_limit: Option<(u32, Duration)>,
    /// Send `Retry-After` on 429 as an HTTP date instead of seconds.
    pub retry_after_as_date: bool,
    /// Answer every API request with this many bytes (JSON whitespace,
    /// streamed, no `Content-Length`): a hostile or broken mirror.
    pub api_answer_bytes: Option<u64>,
    /// Answer every model API request with this JSON instead (a hostile Hub
    /// or mirror: malformed hashes, names that escape, …).
    pub api_answer: Option<String>,
    /// Redirect every LFS `resolve` (under `lfs_redirect`) here instead of
    /// to the CDN: a hostile Hub pointing a client at another origin.
    pub redirect_location: Option<String>,
    /// Serve LFS files through Xet storage as the Hub does (see [`xet`]):
    /// read tokens, reconstructions, xorbs, `X-Xet-Hash` and `xetHash`,
    /// with the resolve redirect kept as the bridge for clients without Xet.
    /// Set before committing: files are cut into xorbs when committed.
    pub xet: Option<XetSettings>,
    /// Requests that meet a server gone silent (see [`Silence`]).
    pub silences: Vec<Silence>,
    /// Answer `?blobs=true` with bare `siblings` (`rfilename` only: no size,
    /// `blobId`, `lfs` or `xetHash`), as some mirrors do.
    pub bare_listing: bool,
    /// ModelScope's listings are cut at this many entries (default 3,000,
    /// as the real server does).
    pub modelscope_listing_cap: Option<usize>,
}

/// A server that accepts a request and then goes quiet, keeping the
/// connection open: the hang today's clients meet most. Matches requests by
/// method and path prefix (`/api/models/`, `/cdn/`, `/v2/reconstructions/`,
/// `/xorbs/`, …), on either origin.
#[derive(Clone, Debug)]
pub struct Silence {
    /// `GET`, `HEAD`, …; `None`: any.
    pub method: Option<String>,
    pub path_prefix: String,
    /// `None`: no response headers ever; `Some(n)`: the headers and `n` bytes
    /// of the body, then nothing.
    pub after_bytes: Option<u64>,
    /// How many matching requests go silent (then it answers again).
    pub times: u32,
}

impl Silence {
    /// Every matching request, before its response headers.
    pub fn before_headers(method: &str, path_prefix: &str) -> Silence {
        Silence {
            method: Some(method.to_string()),
            path_prefix: path_prefix.to_string(),
            after_bytes: None,
            times: u32::MAX,
        }
    }

    /// Every matching request, after its headers and `n` bytes of its body.
    pub fn mid_body(method: &str, path_prefix: &str, n: u64) -> Silence {
        Silence {
            after_bytes: Some(n),
            ..Silence::before_headers(method, path_prefix)
        }
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method.as_str())
            && path.starts_with(&self.path_prefix)
    }
}

/// One request the emulator answered, for tests that count traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    /// When set, each answered request is also appended here as a line.
    log_file: Option<std::fs::File>,
    repos: BTreeMap<String, Repo>,
    files: BTreeMap<String, Blob>,
    behaviour: Behaviour,
    log: Vec<RequestRecord>,
    next_commit: u64,
    /// The CDN listener's address: another origin, like the real Hub's CDN.
    cdn: Option<SocketAddr>,
    /// GitHub repositories for PyTorch Hub: `owner/repo` → refs and archives.
    github: BTreeMap<String, GitHubRepo>,
    /// The current rate-limit window: when it started and resolves counted.
    window: Option<(Instant, u32)>,
    /// Both origins serve HTTPS (with the certificate given at start).
    tls: bool,
    /// The Xet CAS: xorbs, files and chunks (with `Behaviour::xet`).
    xet: xet::Store,
}

fn scheme(state: &Shared) -> &'static str {
    if state.lock().unwrap().tls {
        "https"
    } else {
        "http"
    }
}

/// A certificate chain and its private key, PEM: what an HTTPS emulator serves.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The key the emulator signs CDN URLs with (stands in for the Hub's).
const SIGNING_KEY: [u8; 32] = *b"mdl-hub-emulator-signing-key-v1!";

fn signature(path: &str, date: &str, expires: u64) -> String {
    let message = format!("{path}\n{date}\n{expires}");
    blake3::keyed_hash(&SIGNING_KEY, message.as_bytes()).to_hex()[..32].to_string()
}

/// `20260101T120000Z` (AWS's `X-Amz-Date`) for a Unix time.
pub fn amz_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The Unix time of an `X-Amz-Date` (`20260101T120000Z`).
fn parse_amz_date(date: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| date.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A URL path signed to expire `ttl` from now, as the Hub's CDN URLs are.
fn sign(path: &str, ttl: Duration) -> String {
    let date = amz_date(unix_now());
    let expires = ttl.as_secs().max(1);
    let sig = signature(path, &date, expires);
    format!("{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}")
}

/// Why a CDN request's signature is refused, if it is.
fn signature_refused(path: &str, query: &str) -> Option<&'static str> {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let (Some(date), Some(expires), Some(sig)) =
        (param("X-Amz-Date"), param("X-Amz-Expires"), param("X-Amz-Signature"))
    else {
        return Some("Request is missing a signature");
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return Some("X-Amz-Expires is not a number");
    };
    if signature(path, date, expires) != sig {
        return Some("The request signature we calculated does not match the signature you provided");
    }
    match parse_amz_date(date) {
        Some(t) if unix_now() < t + expires => None,
        _ => Some("Request has expired"),
    }
}

#[derive(Default)]
struct GitHubRepo {
    refs: BTreeMap<String, String>,
    archives: BTreeMap<String, Blob>,
}

/// A running emulator. Dropping it stops the server.
pub struct Hub {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    /// Starts a server on 127.0.0.1 with an ephemeral port, on its own runtime
    /// thread so that synchronous tests can use it.
    pub fn start() -> Hub {
        Hub::start_on(0)
    }

    pub fn start_on(port: u16) -> Hub {
        Hub::start_with(port, None)
    }

    /// An emulator whose two origins speak HTTPS with `identity` (a certificate
    /// for `127.0.0.1`), as the real Hub and a TLS-intercepting proxy do.
    #[cfg(feature = "tls")]
    pub fn start_tls(identity: TlsIdentity) -> Hub {
        Hub::start_with(0, Some(identity))
    }

    fn start_with(port: u16, tls: Option<TlsIdentity>) -> Hub {
        let inner = Arc::new(Mutex::new(Inner {
            tls: tls.is_some(),
            ..Inner::default()
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::Builder::new()
            .name("hub-emulator".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async move {
                    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
                    let cdn = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1");
                    for l in [&listener, &cdn] {
                        l.set_nonblocking(true).expect("nonblocking listener");
                    }
                    state.lock().unwrap().cdn = Some(cdn.local_addr().unwrap());
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    let app = axum::Router::new().fallback(handle).with_state(state);
                    let handle = axum_server::Handle::new();
                    let stop = {
                        let handle = handle.clone();
                        async move {
                            let _ = shutdown_rx.await;
                            handle.shutdown();
                        }
                    };
                    let serve = |listener: std::net::TcpListener, app: axum::Router| {
                        let handle = handle.clone();
                        let tls = tls.clone();
                        async move {
                            match tls {
                                None => {
                                    axum_server::from_tcp(listener)
                                        .expect("listener")
                                        .handle(handle)
                                        .serve(app.into_make_service())
                                        .await
                                }
                                #[cfg(not(feature = "tls"))]
                                Some(_) => unreachable!("TLS needs the emulator's `tls` feature"),
                                #[cfg(feature = "tls")]
                                Some(id) => {
                                    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                                        id.cert_pem.into_bytes(),
                                        id.key_pem.into_bytes(),
                                    )
                                    .await
                                    .expect("TLS identity");
                                    axum_server::from_tcp_rustls(listener, config)
                                        .expect("listener")
                                        .handle(handle)
                                        .serve(app.into_make_service())
                                        .await
                                }
                            }
                        }
                    };
                    let (a, b, ()) = tokio::join!(serve(listener, app.clone()), serve(cdn, app), stop);
                    a.expect("serve");
                    b.expect("serve cdn");
                });
            })
            .expect("spawn emulator thread");
        let addr = addr_rx.recv().expect("emulator address");
        Hub {
            addr,
            inner,
            _shutdown: shutdown_tx,
            _thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, what `HF_ENDPOINT` should be set to.
    pub fn url(&self) -> String {
        let scheme = if self.inner.lock().unwrap().tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a commit on `branch` of `repo` (creating both as needed) holding
    /// the parent's files with `changes` applied (`None` deletes a file).
    /// Returns the new commit sha.
    pub fn commit(&self, repo: &str, branch: &str, changes: Vec<(&str, Option<Blob>)>) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next_commit += 1;
        let counter = inner.next_commit;
        let xet_settings = inner.behaviour.xet.clone();
        if let Some(settings) = &xet_settings {
            for blob in changes.iter().filter_map(|(_, b)| b.as_ref()).filter(|b| b.lfs) {
                inner.xet.ingest(blob, settings);
            }
        }
        let repo_state = inner.repos.entry(repo.to_string()).or_default();
        let mut files = repo_state
            .refs
            .get(branch)
            .and_then(|sha| repo_state.commits.get(sha))
            .map(|c| c.files.clone())
            .unwrap_or_default();
        for (path, blob) in changes {
            match blob {
                Some(blob) => files.insert(path.to_string(), blob),
                None => files.remove(path),
            };
        }
        let mut id = sha1::Sha1::new();
        id.update(format!("{repo}\n{branch}\n{counter}\n").as_bytes());
        for (path, blob) in &files {
            id.update(format!("{path} {}\n", blob.etag()).as_bytes());
        }
        let sha = hex::encode(id.finalize());
        repo_state.commits.insert(
            sha.clone(),
            Commit {
                sha: sha.clone(),
                files,
            },
        );
        repo_state.refs.insert(branch.to_string(), sha.clone());
        sha
    }

    /// Points `tag` at what `target` (a branch, tag or sha) points at now.
    pub fn tag(&self, repo: &str, tag: &str, target: &str) {
        let mut inner = self.inner.lock().unwrap();
        let repo_state = inner.repos.get_mut(repo).expect("repo exists");
        let sha = repo_state
            .refs
            .get(target)
            .cloned()
            .unwrap_or_else(|| target.to_string());
        repo_state.refs.insert(tag.to_string(), sha);
        repo_state.tags.insert(tag.to_string());
    }

    /// Makes `repo` gated: requests need `Authorization: Bearer {token}`.
    pub fn gate(&self, repo: &str, token: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.repos.entry(repo.to_string()).or_default().token = Some(token.to_string());
    }

    /// A GitHub repository for PyTorch Hub: `reference` (branch or tag) points
    /// at a new commit whose `/zipball/{sha}` archive is `archive`. Serves
    /// `GET /repos/{owner}/{repo}/commits/{ref}` as GitHub's API does.
    pub fn github_repo(&self, repo: &str, reference: &str, archive: Blob) -> String {
        let mut id = sha1::Sha1::new();
        id.update(format!("{repo}\n{reference}\n{}", archive.sha256).as_bytes());
        let sha = hex::encode(id.finalize());
        let mut inner = self.inner.lock().unwrap();
        let entry = inner.github.entry(repo.to_string()).or_default();
        entry.refs.insert(reference.to_string(), sha.clone());
        entry.archives.insert(sha.clone(), archive);
        sha
    }

    /// Serves `blob` at `/files/{path}` (and `/redirect/{path}`).
    pub fn put_file(&self, path: &str, blob: Blob) {
        self.inner.lock().unwrap().files.insert(path.to_string(), blob);
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.inner.lock().unwrap().behaviour = behaviour;
    }

    pub fn update_behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.inner.lock().unwrap().behaviour);
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().unwrap().log.clone()
    }

    /// Also appends each request as a line `METHOD STATUS RANGE PATH` to `path`.
    pub fn log_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        self.inner.lock().unwrap().log_file = Some(file);
        Ok(())
    }

    /// How many `resolve` requests named `file` (any repo, any method).
    pub fn resolves_of(&self, file: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.path.contains("/resolve/") && r.path.split('?').next().unwrap_or("").ends_with(&format!("/{file}"))
            })
            .count()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().unwrap().log.clear();
    }
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn error(status: StatusCode, code: Option<&str>, message: &str) -> Response {
    let mut response = (status, message.to_string()).into_response();
    if let Some(code) = code {
        response
            .headers_mut()
            .insert("x-error-code", HeaderValue::from_str(code).unwrap());
    }
    response
        .headers_mut()
        .insert("x-error-message", HeaderValue::from_str(message).unwrap());
    response
}

type Shared = Arc<Mutex<Inner>>;

async fn handle(State(state): State<Shared>, request: Request) -> Response {
    let method = request.method().clone();
    let raw_path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let headers = request.headers().clone();
    let latency = state.lock().unwrap().behaviour.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let silence = take_silence(&state, &method, &raw_path);
    if let Some(Silence { after_bytes: None, .. }) = silence {
        // Recorded with status 0 (no answer), then silent for good.
        record(&state, &method, &raw_path, &query, &headers, 0);
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
    let mut response = route(&state, &method, &raw_path, &query, &headers);
    if let Some(Silence {
        after_bytes: Some(n), ..
    }) = silence
    {
        let body = std::mem::replace(response.body_mut(), Body::empty());
        *response.body_mut() = silent_after(body, n);
    }
    record(&state, &method, &raw_path, &query, &headers, response.status().as_u16());
    response
}

/// The first silence that matches this request, counted down.
fn take_silence(state: &Shared, method: &Method, path: &str) -> Option<Silence> {
    let mut inner = state.lock().unwrap();
    let silence = inner.behaviour.silences.iter_mut().find(|s| s.matches(method, path))?;
    silence.times = silence.times.saturating_sub(1);
    Some(silence.clone())
}

/// `body`'s first `n` bytes, then nothing (the connection stays open).
fn silent_after(body: Body, n: u64) -> Body {
    use futures_util::StreamExt;
    let stream = body.into_data_stream().scan(n, |left, piece| {
        let piece = match piece {
            Ok(bytes) if *left == 0 => {
                let _ = bytes;
                return futures_util::future::Either::Left(async {
                    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                    None
                });
            }
            Ok(bytes) => {
                let keep = bytes.slice(..(*left).min(bytes.len() as u64) as usize);
                *left -= keep.len() as u64;
                Ok::<Bytes, axum::Error>(keep)
            }
            Err(e) => Err(e),
        };
        futures_util::future::Either::Right(futures_util::future::ready(Some(piece)))
    });
    let tail = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        Ok::<Bytes, axum::Error>(Bytes::new())
    });
    Body::from_stream(stream.chain(tail))
}

fn record(state: &Shared, method: &Method, raw_path: &str, query: &str, headers: &HeaderMap, status: u16) {
    let raw_path = raw_path.to_string();
    let record = RequestRecord {
        method: method.to_string(),
        path: if query.is_empty() {
            raw_path
        } else {
            format!("{raw_path}?{query}")
        },
        range: headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_string),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status,
    };
    let mut inner = state.lock().unwrap();
    if let Some(file) = &mut inner.log_file {
        use std::io::Write;
        let range = record.range.as_deref().unwrap_or("-");
        let _ = writeln!(file, "{} {} {range} {}", record.method, record.status, record.path);
    }
    inner.log.push(record);
}

fn route(state: &Shared, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> Response {
    if let Some(response) = xet::route(state, method, path, query, headers) {
        return response;
    }
    if let Some(response) = modelscope::route(state, method, path, query, headers) {
        return response;
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        return api_models(state, rest, query, headers);
    }
    // Other repository types mirror the model routes (`/datasets/{repo}/resolve/…`
    // needs nothing more: the type is part of the repo key).
    for kind in ["datasets", "spaces"] {
        if let Some(rest) = path.strip_prefix(&format!("/api/{kind}/")) {
            return api_models(state, &format!("{kind}/{rest}"), query, headers);
        }
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    if let Some(rest) = path.strip_prefix("/repos/") {
        // GitHub API: /repos/{owner}/{repo}/commits/{ref}
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        if let [owner, repo, "commits", reference] = parts.as_slice() {
            let inner = state.lock().unwrap();
            let sha = inner.github.get(&format!("{owner}/{repo}")).and_then(|r| {
                let reference = decode(reference);
                r.refs
                    .get(&reference)
                    .cloned()
                    .or_else(|| r.archives.contains_key(&reference).then_some(reference))
            });
            return match sha {
                Some(sha) => json(serde_json::json!({ "sha": sha })),
                None => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json(serde_json::json!({ "message": "No commit found" })),
                )
                    .into_response(),
            };
        }
        return error(StatusCode::NOT_FOUND, None, "not found");
    }
    if let Some(at) = path.find("/zipball/") {
        let repo = decode(&path[1..at]);
        let sha = decode(&path[at + "/zipball/".len()..]);
        let blob = state
            .lock()
            .unwrap()
            .github
            .get(&repo)
            .and_then(|r| r.archives.get(&sha).cloned());
        return match blob {
            Some(blob) => serve_blob(state, method, headers, &blob, None),
            None => error(StatusCode::NOT_FOUND, None, "no such archive"),
        };
    }
    if let Some(rest) = path.strip_prefix("/files/") {
        let blob = state.lock().unwrap().files.get(&decode(rest)).cloned();
        return match blob {
            Some(blob) => serve_blob(state, method, headers, &blob, None),
            None => error(StatusCode::NOT_FOUND, None, "no such file"),
        };
    }
    if let Some(rest) = path.strip_prefix("/redirect/") {
        // A release-asset style redirect: to a signed URL on the CDN origin in
        // Hub-like mode, else to `/files/` on this origin.
        let (signed, cdn) = {
            let inner = state.lock().unwrap();
            (inner.behaviour.signed_urls, inner.cdn)
        };
        let location = match (signed, cdn) {
            (Some(ttl), Some(cdn)) => format!(
                "{}://{cdn}{}",
                scheme(state),
                sign(&format!("/signed/files/{rest}"), ttl)
            ),
            _ => format!("/files/{rest}"),
        };
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", location)
            .body(Body::empty())
            .unwrap();
    }
    if let Some(rest) = path.strip_prefix("/signed/files/") {
        if let Some(reason) = signature_refused(path, query) {
            return error(StatusCode::FORBIDDEN, None, reason);
        }
        let blob = state.lock().unwrap().files.get(&decode(rest)).cloned();
        return match blob {
            Some(blob) => serve_blob(state, method, headers, &blob, None),
            None => error(StatusCode::NOT_FOUND, None, "no such file"),
        };
    }
    if let Some(rest) = path.strip_prefix("/cdn/") {
        // `/cdn/{repo}/{sha}/{path}`: a pre-signed download URL (no token needed).
        let signed = state.lock().unwrap().behaviour.signed_urls.is_some();
        if signed {
            if let Some(reason) = signature_refused(path, query) {
                return error(StatusCode::FORBIDDEN, None, reason);
            }
        }
        return cdn(state, method, headers, rest);
    }
    if let Some(at) = path.find("/resolve/") {
        let repo = decode(&path[1..at]);
        let rest = &path[at + "/resolve/".len()..];
        let Some((revision, file)) = rest.split_once('/') else {
            return error(StatusCode::NOT_FOUND, Some("EntryNotFound"), "no file in URL");
        };
        let (limited, ratelimit) = take_resolve_quota(state);
        let mut response = match limited {
            Some(response) => response,
            None => resolve(state, method, headers, &host, &repo, &decode(revision), &decode(file)),
        };
        if let Some(value) = ratelimit {
            response.headers_mut().insert("ratelimit", value);
        }
        return response;
    }
    error(StatusCode::NOT_FOUND, None, "not found")
}

/// Counts one resolve against the rate limit. Returns the 429 to send when the
/// quota is spent, and the `RateLimit` header for the answer.
fn take_resolve_quota(state: &Shared) -> (Option<Response>, Option<HeaderValue>) {
    let mut inner = state.lock().unwrap();
    let Some((quota, window)) = inner.behaviour.resolve_limit else {
        return (None, None);
    };
    let as_date = inner.behaviour.retry_after_as_date;
    let now = Instant::now();
    let (started, used) = match inner.window {
        Some((started, used)) if now.duration_since(started) < window => (started, used),
        _ => (now, 0),
    };
    let reset = window.saturating_sub(now.duration_since(started)).as_secs().max(1);
    let used = used + 1;
    inner.window = Some((started, used));
    let remaining = quota.saturating_sub(used);
    let ratelimit = HeaderValue::from_str(&format!("\"resolvers\";r={remaining};t={reset}")).ok();
    if used <= quota {
        return (None, ratelimit);
    }
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "You have exceeded our hourly quotas for action: resolve. We invite you to retry later.",
    );
    let h = r.headers_mut();
    h.insert(
        "ratelimit-policy",
        HeaderValue::from_str(&format!(
            "\"fixed window\";\"resolvers\";q={quota};w={}",
            window.as_secs()
        ))
        .unwrap(),
    );
    let retry_after = if as_date {
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(reset))
    } else {
        reset.to_string()
    };
    h.insert("retry-after", HeaderValue::from_str(&retry_after).unwrap());
    (Some(r), ratelimit)
}

/// The commit a revision points at, or the error the Hub would send.
#[allow(clippy::result_large_err)] // an axum `Response` is the natural error of a handler helper
fn find_commit(inner: &Inner, repo: &str, revision: &str, headers: &HeaderMap) -> Result<Commit, Response> {
    let Some(repo_state) = inner.repos.get(repo) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            Some("RepoNotFound"),
            &format!("Repository Not Found for url: {repo}"),
        ));
    };
    if let Some(token) = &repo_state.token {
        let sent = headers.get("authorization").and_then(|v| v.to_str().ok());
        match sent {
            Some(value) if value == format!("Bearer {token}") => {}
            Some(_) => {
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "Invalid credentials in Authorization header",
                ))
            }
            None => {
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    Some("GatedRepo"),
                    &format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it."),
                ))
            }
        }
    }
    let sha = repo_state
        .refs
        .get(revision)
        .cloned()
        .unwrap_or_else(|| revision.to_string());
    repo_state.commits.get(&sha).cloned().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {revision}"),
        )
    })
}

fn json(value: serde_json::Value) -> Response {
    let mut response = value.to_string().into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn api_models(state: &Shared, rest: &str, query: &str, headers: &HeaderMap) -> Response {
    let inner = state.lock().unwrap();
    if let Some(size) = inner.behaviour.api_answer_bytes {
        const PIECE: u64 = 1 << 20;
        let pieces = size.div_ceil(PIECE);
        let stream = futures_util::stream::iter(
            (0..pieces).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; PIECE as usize]))),
        );
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    if let Some(answer) = &inner.behaviour.api_answer {
        return json(serde_json::from_str(answer).unwrap_or(serde_json::Value::Null));
    }
    let blobs = query
        .split('&')
        .any(|kv| matches!(kv.to_ascii_lowercase().as_str(), "blobs=true" | "blobs=1"));
    if let Some(at) = rest.find("/tree/") {
        let repo = decode(&rest[..at]);
        let after = &rest[at + "/tree/".len()..];
        let (revision, prefix) = match after.split_once('/') {
            Some((rev, path)) => (decode(rev), decode(path)),
            None => (decode(after), String::new()),
        };
        let commit = match find_commit(&inner, &repo, &revision, headers) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let entries: Vec<_> = commit
            .files
            .iter()
            .filter(|(path, _)| prefix.is_empty() || path.starts_with(&format!("{prefix}/")))
            .map(|(path, blob)| {
                let mut entry = serde_json::json!({
                    "type": "file", "oid": blob.git_oid, "size": blob.content.len(), "path": path,
                });
                if blob.lfs {
                    entry["lfs"] = serde_json::json!({
                        "oid": blob.sha256, "size": blob.content.len(), "pointerSize": 134,
                    });
                }
                if let Some(hash) = inner.behaviour.xet.as_ref().and_then(|_| inner.xet.hash_of(blob)) {
                    entry["xetHash"] = hash.into();
                }
                entry
            })
            .collect();
        return json(serde_json::Value::Array(entries));
    }
    let (repo, revision) = match rest.find("/revision/") {
        Some(at) => (decode(&rest[..at]), decode(&rest[at + "/revision/".len()..])),
        None => (decode(rest), "main".to_string()),
    };
    let commit = match find_commit(&inner, &repo, &revision, headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let siblings: Vec<_> = commit
        .files
        .iter()
        .map(|(path, blob)| {
            let mut sibling = serde_json::json!({ "rfilename": path });
            if blobs && !inner.behaviour.bare_listing {
                sibling["size"] = blob.content.len().into();
                sibling["blobId"] = blob.git_oid.clone().into();
                if blob.lfs {
                    sibling["lfs"] = serde_json::json!({
                        "sha256": blob.sha256, "size": blob.content.len(), "pointerSize": 134,
                    });
                }
                if let Some(hash) = inner.behaviour.xet.as_ref().and_then(|_| inner.xet.hash_of(blob)) {
                    sibling["xetHash"] = hash.into();
                }
            }
            sibling
        })
        .collect();
    json(serde_json::json!({
        "id": repo, "modelId": repo, "sha": commit.sha, "private": false,
        "gated": inner.repos[&repo].token.is_some(), "siblings": siblings,
    }))
}

fn resolve(
    state: &Shared,
    method: &Method,
    headers: &HeaderMap,
    host: &str,
    repo: &str,
    revision: &str,
    file: &str,
) -> Response {
    let (commit, behaviour) = {
        let inner = state.lock().unwrap();
        match find_commit(&inner, repo, revision, headers) {
            Ok(c) => (c, inner.behaviour.clone()),
            Err(r) => return r,
        }
    };
    let Some(blob) = commit.files.get(file).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            &format!("{file} does not exist on \"{revision}\""),
        );
    };
    let xet_hash = behaviour
        .xet
        .as_ref()
        .and_then(|_| state.lock().unwrap().xet.hash_of(&blob));
    let mut response = if blob.lfs && (behaviour.lfs_redirect || behaviour.signed_urls.is_some() || xet_hash.is_some())
    {
        // To another origin, as the real Hub's CDN redirects are: clients read
        // the metadata from this 302, follow it only for the body, and do not
        // send the token there.
        let cdn = state
            .lock()
            .unwrap()
            .cdn
            .map(|a| a.to_string())
            .unwrap_or_else(|| host.to_string());
        let path = format!("/cdn/{repo}/{}/{file}", commit.sha);
        let location = match (&behaviour.redirect_location, behaviour.signed_urls) {
            (Some(location), _) => location.clone(),
            (None, Some(ttl)) => format!("{}://{cdn}{}", scheme(state), sign(&path, ttl)),
            (None, None) => format!("{}://{cdn}{path}", scheme(state)),
        };
        let mut r = Response::builder()
            .status(StatusCode::FOUND)
            .header("location", location)
            .body(Body::empty())
            .unwrap();
        let h = r.headers_mut();
        h.insert("x-linked-size", HeaderValue::from(blob.content.len()));
        if behaviour.signed_urls.is_some() || xet_hash.is_some() {
            // Xet-backed files also name their content hash and a token route
            // (a stand-in hash when only the redirect manners are emulated).
            let xet = xet_hash
                .clone()
                .unwrap_or_else(|| blake3::hash(blob.sha256.as_bytes()).to_hex().to_string());
            h.insert("x-xet-hash", HeaderValue::from_str(&xet).unwrap());
            h.insert(
                "link",
                HeaderValue::from_str(&format!(
                    "<{}://{host}/api/models/{repo}/xet-read-token/{}>; rel=\"xet-auth\"",
                    scheme(state),
                    commit.sha
                ))
                .unwrap(),
            );
        }
        r
    } else {
        serve_blob(state, method, headers, &blob, Some(&commit.sha))
    };
    let metadata = *method == Method::HEAD || !behaviour.metadata_only_on_head;
    if metadata {
        let h = response.headers_mut();
        h.insert("x-repo-commit", HeaderValue::from_str(&commit.sha).unwrap());
        h.insert("etag", HeaderValue::from_str(&format!("\"{}\"", blob.etag())).unwrap());
        if blob.lfs {
            h.insert(
                "x-linked-etag",
                HeaderValue::from_str(&format!("\"{}\"", blob.sha256)).unwrap(),
            );
            h.insert("x-linked-size", HeaderValue::from(blob.content.len()));
        }
    }
    response
}

fn cdn(state: &Shared, method: &Method, headers: &HeaderMap, rest: &str) -> Response {
    // rest = {ns}/{name}/{sha}/{path...} or {name}/{sha}/{path}; find the 40-hex segment.
    let segments: Vec<&str> = rest.split('/').collect();
    let Some(at) = segments
        .iter()
        .position(|s| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()))
    else {
        return error(StatusCode::NOT_FOUND, None, "bad cdn url");
    };
    let repo = decode(&segments[..at].join("/"));
    let file = decode(&segments[at + 1..].join("/"));
    let blob = {
        let inner = state.lock().unwrap();
        inner
            .repos
            .get(&repo)
            .and_then(|r| r.commits.get(segments[at]))
            .and_then(|c| c.files.get(&file))
            .cloned()
    };
    match blob {
        Some(blob) => serve_blob(state, method, headers, &blob, None),
        None => error(StatusCode::NOT_FOUND, None, "no such object"),
    }
}

/// Parses `bytes=A-B` / `bytes=A-` against a length.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let suffix: u64 = b.parse().ok()?;
        return Some((len.saturating_sub(suffix), len));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() {
        len
    } else {
        (b.parse::<u64>().ok()? + 1).min(len)
    };
    (start < end || (start == 0 && len == 0)).then_some((start, end))
}

fn serve_blob(state: &Shared, method: &Method, headers: &HeaderMap, blob: &Blob, commit: Option<&str>) -> Response {
    let _ = commit;
    let len = blob.content.len();
    let mut behaviour = state.lock().unwrap().behaviour.clone();
    let etag = format!("\"{}\"", blob.etag());
    let mut builder = Response::builder()
        .header("accept-ranges", if behaviour.ignore_range { "none" } else { "bytes" })
        .header("content-type", "application/octet-stream");
    if *method == Method::HEAD {
        return builder
            .header("content-length", len)
            .header("etag", etag)
            .body(Body::empty())
            .unwrap();
    }
    // One-shot failures, taken from the shared switches.
    {
        let mut inner = state.lock().unwrap();
        let b = &mut inner.behaviour;
        if b.fail_next > 0 {
            b.fail_next -= 1;
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, None, "temporarily unavailable");
            if let Some(secs) = b.retry_after {
                r.headers_mut().insert("retry-after", HeaderValue::from(secs));
            }
            return r;
        }
        behaviour.stall_next = u32::from(b.stall_next > 0);
        b.stall_next = b.stall_next.saturating_sub(1);
        behaviour.cut_next = u32::from(b.cut_next > 0);
        b.cut_next = b.cut_next.saturating_sub(1);
    }
    let range = headers.get("range").and_then(|v| v.to_str().ok());
    let if_range_ok = match headers.get("if-range").and_then(|v| v.to_str().ok()) {
        Some(tag) => tag == etag,
        None => true,
    };
    let (start, end, status) = match range {
        Some(r) if !behaviour.ignore_range && if_range_ok => match parse_range(r, len) {
            Some((s, e)) => (s, e, StatusCode::PARTIAL_CONTENT),
            None => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("content-range", format!("bytes */{len}"))
                    .body(Body::empty())
                    .unwrap()
            }
        },
        _ => (0, len, StatusCode::OK),
    };
    builder = builder.status(status).header("etag", etag);
    if status == StatusCode::PARTIAL_CONTENT {
        let last = if end == 0 { 0 } else { end - 1 };
        builder = builder.header("content-range", format!("bytes {start}-{last}/{len}"));
    }
    if !behaviour.no_content_length {
        builder = builder.header("content-length", end - start);
    }
    let body = body_stream(blob.content.clone(), start, end, behaviour);
    builder.body(body).unwrap()
}

fn body_stream(content: Content, start: u64, end: u64, behaviour: Behaviour) -> Body {
    const PIECE: u64 = 256 * 1024;
    let stream = futures_util::stream::unfold((start, Instant::now(), 0u64), move |(at, began, sent)| {
        let content = content.clone();
        let behaviour = behaviour.clone();
        async move {
            if at >= end {
                return None;
            }
            let mut piece_end = (at + PIECE).min(end);
            let limit = if behaviour.stall_next > 0 {
                Some(behaviour.stall_after)
            } else if behaviour.cut_next > 0 {
                Some(behaviour.cut_after)
            } else {
                None
            };
            if let Some(limit) = limit {
                if sent >= limit {
                    if behaviour.stall_next > 0 {
                        // Keep the connection open and send nothing.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    return Some((
                        Err(std::io::Error::other("connection cut by emulator")),
                        (end, began, sent),
                    ));
                }
                piece_end = piece_end.min(at + (limit - sent));
            }
            if let Some(rate) = behaviour.bandwidth {
                let due = Duration::from_secs_f64((sent + (piece_end - at)) as f64 / rate as f64);
                let elapsed = began.elapsed();
                if due > elapsed {
                    tokio::time::sleep(due - elapsed).await;
                }
            }
            if let Some(uplink) = &behaviour.uplink {
                uplink.carry(piece_end - at).await;
            }
            let bytes = content.slice(at, piece_end);
            let n = bytes.len() as u64;
            Some((Ok::<Bytes, std::io::Error>(bytes), (at + n, began, sent + n)))
        }
    });
    Body::from_stream(stream)
}

/// Content for tests: `size` bytes derived from `seed`, in memory.
pub fn pseudo_random_bytes(seed: u64, size: usize) -> Bytes {
    synthetic_range(seed, 0, size as u64)
}

/// A torchvision-style file name `{stem}-{sha256[:8]}.{ext}` for `blob`, so that
/// the hash-prefix check torchvision performs holds for generated content.
pub fn hashed_name(stem: &str, ext: &str, blob: &Blob) -> String {
    format!("{stem}-{}.{ext}", &blob.sha256[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_ranges_agree_with_whole() {
        let whole = synthetic_range(7, 0, 200_000);
        assert_ne!(whole.slice(0..65536), whole.slice(65536..131072), "blocks differ");
        for (a, b) in [
            (0, 1),
            (3, 17),
            (8, 16),
            (999, 1000),
            (5, 1000),
            (65530, 65546),
            (100_001, 200_000),
        ] {
            assert_eq!(synthetic_range(7, a, b), whole.slice(a as usize..b as usize));
        }
    }

    #[test]
    fn amz_dates_round_trip() {
        for t in [0, 951_782_400, 1_767_225_600, 1_798_761_599] {
            assert_eq!(parse_amz_date(&amz_date(t)), Some(t), "{}", amz_date(t));
        }
        assert_eq!(amz_date(1_767_225_600), "20260101T000000Z");
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=0-0", 10), Some((0, 1)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 10)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 10)));
        assert_eq!(parse_range("bytes=10-", 10), None);
    }
}
