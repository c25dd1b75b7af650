//! OCI registries (Harbor, GHCR, ECR, Artifactory, CNCF distribution): the
//! bottom of the `oci:` source, of `download.mirrors` and of `mdl push`.
//!
//! The distribution protocol is `oci-client`'s: the token flow
//! (`WWW-Authenticate: Bearer realm=…` → token) and basic auth, manifests,
//! blob existence, cross-repository mounts and chunked uploads. Blob
//! *downloads* go through mdl's own engine ([`crate::fetch`]) with the
//! `Authorization` this module obtains, because that engine already resumes,
//! fetches large files in parallel ranged pieces, checks blake3 and places
//! files atomically; oci-client's `pull_blob_stream_partial` could stream and
//! resume too, but would need all of that written again around it.
//!
//! HTTPS always, but for a registry on the loopback interface or one the
//! config marks `insecure: true`: those are asked over HTTPS first and spoken
//! to over plain HTTP only when they do not speak TLS, as docker does.
//! Credentials come from Docker's `config.json` ([`credentials`]) and are
//! never printed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference, RegistryOperation};

pub mod artifact;
pub mod credentials;
pub mod lease;

pub use credentials::Credentials;

/// `HOST[:PORT]/REPO[:TAG|@sha256:…]`, with or without `oci://` in front.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciRef {
    /// As written (`ghcr.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl OciRef {
    /// Where a blob of this repository is fetched from over `scheme`.
    pub fn blob_url(&self, scheme: &str, digest: &str) -> String {
        let host = self.reference().resolve_registry().to_string();
        format!("{scheme}://{host}/v2/{}/blobs/{digest}", self.repository)
    }

    pub fn parse(text: &str) -> Result<OciRef, OciError> {
        let bare = text.strip_prefix("oci://").unwrap_or(text);
        let bad = |reason: &str| OciError::BadReference {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let (host, _) = bare.split_once('/').ok_or_else(|| bad("it names no repository"))?;
        // An explicit registry host, never Docker Hub by default: a model
        // published to the team's registry must not be looked up elsewhere.
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad(
                "it names no registry host (write `HOST/REPO`, e.g. `ghcr.io/acme/models`)",
            ));
        }
        let reference: Reference = bare.parse().map_err(|e: oci_client::ParseError| bad(&e.to_string()))?;
        // The parser fills in `latest`; a tag counts only when written.
        let last = bare.rsplit('/').next().unwrap_or_default();
        let tag_written = last.split('@').next().unwrap_or_default().contains(':');
        Ok(OciRef {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            tag: reference.tag().filter(|_| tag_written).map(str::to_string),
            digest: reference.digest().map(str::to_string),
        })
    }

    /// The same repository at another tag.
    pub fn at_tag(&self, tag: &str) -> OciRef {
        OciRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at a digest.
    pub fn at_digest(&self, digest: &str) -> OciRef {
        OciRef {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// `HOST/REPO`, without tag or digest.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => Reference::with_digest(self.registry.clone(), self.repository.clone(), digest.clone()),
            (None, Some(tag)) => Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.clone()),
            (None, None) => Reference::with_tag(self.registry.clone(), self.repository.clone(), "latest".into()),
        }
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{text}` is not an OCI reference: {reason}")]
    BadReference { text: String, reason: String },
    #[error("the credentials for `{registry}` cannot be read: {reason}")]
    Credentials { registry: String, reason: String },
    #[error("the registry `{registry}` refused the credentials{}", username.as_deref().map(|u| format!(" of user `{u}`")).unwrap_or_default())]
    Unauthorized { registry: String, username: Option<String> },
    #[error("the registry `{registry}` denied access to `{reference}`")]
    Denied { registry: String, reference: String },
    #[error("`{reference}` does not exist on its registry")]
    NotFound { reference: String },
    #[error("could not reach the registry `{registry}`: {reason}")]
    Network { registry: String, reason: String },
    #[error("the certificate of the registry `{registry}` is not trusted ({reason})")]
    Untrusted { registry: String, reason: String },
    #[error("the registry `{registry}` answered: {message}")]
    Registry { registry: String, message: String },
    #[error("`{reference}` is not a model mdl can use: {reason}")]
    BadArtifact { reference: String, reason: String },
    #[error("`{reference}` is an index of {} model(s), not one model", models.len())]
    IsAnIndex { reference: String, models: Vec<String> },
}

impl OciError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            OciError::BadReference { .. } => "write `oci://HOST/REPO[:TAG]` (a mirror, `mdl push`) or `oci:HOST/REPO[:TAG|@sha256:…]` (a model)".into(),
            OciError::Credentials { .. } => "fix Docker's config.json (`$DOCKER_CONFIG`, else `~/.docker`) or log in again with `docker login`".into(),
            OciError::Unauthorized { registry, username: Some(_) } => format!(
                "log in again with `docker login {registry}` (mdl reads Docker's config.json: `$DOCKER_CONFIG`, else `~/.docker`)"
            ),
            OciError::Unauthorized { registry, username: None } => format!(
                "log in with `docker login {registry}` (mdl reads Docker's config.json: `$DOCKER_CONFIG`, else `~/.docker`)"
            ),
            OciError::Denied { .. } => "ask the registry's administrators for pull (or push) access to this repository".into(),
            OciError::NotFound { .. } => "check the repository and tag (`mdl push` publishes a lock's models)".into(),
            OciError::Network { .. } => "check that the registry is up and reachable; a registry on another host over plain HTTP needs `insecure: true`".into(),
            OciError::Untrusted { .. } => crate::http::UNTRUSTED_CERTIFICATE_HINT.into(),
            OciError::Registry { .. } => return None,
            OciError::IsAnIndex { models, .. } => format!(
                "set the model's `name:` to one of them (the part after the last `/` will do), or pin one by digest: {}",
                models.join(", ")
            ),
            OciError::BadArtifact { .. } => "publish the model with `mdl push`, or as a ModelPack or ORAS artifact: one raw layer per file, named by `org.cncf.model.filepath` or `org.opencontainers.image.title`".into(),
        })
    }
}

/// Whether `registry` (`host[:port]`) is on this machine, where plain HTTP is
/// what registries started for development and tests speak.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One client per registry host, made on first use and shared.
pub struct Registries {
    /// Extra CAs (`SSL_CERT_FILE` and friends).
    roots: crate::http::ExtraRoots,
    /// Hosts that may be reached over plain HTTP although not on loopback
    /// (`insecure: true`).
    insecure: BTreeSet<String>,
    /// The deadline for an answer's headers, and for each read of its body
    /// (`download.stall_timeout_seconds`): manifests, tokens, pushes.
    stall: std::time::Duration,
    /// Tries of a manifest request (`download.retries`).
    attempts: u32,
    clients: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Registries {
    pub fn new(roots: crate::http::ExtraRoots, insecure: BTreeSet<String>) -> Registries {
        Registries {
            roots,
            insecure,
            stall: std::time::Duration::from_secs(30),
            attempts: 5,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Registries whose requests stall out after `stall` with no answer, a
    /// manifest request tried `attempts` times.
    pub fn with_deadlines(mut self, stall: std::time::Duration, attempts: u32) -> Registries {
        self.stall = stall;
        self.attempts = attempts.max(1);
        self
    }

    pub async fn get(&self, registry: &str) -> Result<Arc<Registry>, OciError> {
        if let Some(client) = self.clients.lock().unwrap().get(registry) {
            return Ok(client.clone());
        }
        let may_be_http = is_loopback(registry) || self.insecure.contains(registry);
        let http = may_be_http && !self.speaks_tls(registry).await;
        let client = Arc::new(Registry::new(
            registry,
            http,
            &self.roots.pems,
            (self.stall, self.attempts),
        )?);
        let mut clients = self.clients.lock().unwrap();
        Ok(clients.entry(registry.to_string()).or_insert(client).clone())
    }

    /// Whether `registry` answers over HTTPS (any HTTP status will do; a
    /// certificate mdl does not trust counts too, so that the real request
    /// says so instead of falling back to plain HTTP).
    async fn speaks_tls(&self, registry: &str) -> bool {
        let timeout = std::time::Duration::from_secs(5);
        let client = crate::http::client(
            timeout,
            timeout,
            crate::http::Trust::Verified,
            &self.roots.certificates,
            false,
        );
        match client
            .get(format!("https://{registry}/v2/"))
            .timeout(timeout)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) => crate::http::is_untrusted_certificate(&e),
        }
    }
}

/// A registry, with the credentials Docker has for it.
pub struct Registry {
    client: Client,
    /// The deadline each answer had (for messages).
    stall: std::time::Duration,
    /// Tries of a manifest request that failed on the network.
    attempts: u32,
    credentials: Credentials,
    registry: String,
    scheme: &'static str,
    /// The `Authorization` for blob GETs, per repository: one token flow for
    /// all of a sync's files (renewed when a download is refused).
    authorizations: tokio::sync::Mutex<HashMap<String, Option<String>>>,
}

const MANIFEST_TYPES: [&str; 4] = [
    artifact::OCI_MANIFEST,
    artifact::OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl Registry {
    fn new(
        registry: &str,
        http: bool,
        roots: &[Vec<u8>],
        (stall, attempts): (std::time::Duration, u32),
    ) -> Result<Registry, OciError> {
        // oci-client's reqwest is built without a TLS provider of its own: use
        // the ring provider mdl's other client uses (a no-op when one is set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = credentials::for_registry(registry).map_err(|reason| OciError::Credentials {
            registry: registry.to_string(),
            reason,
        })?;
        // `insecure: true` allows plain HTTP, not credentials over it: an
        // HTTPS attempt that failed (or was made to fail on the network path)
        // must not turn a password into clear text on the wire.
        if http && !is_loopback(registry) && !matches!(credentials, Credentials::Anonymous) {
            return Err(OciError::Credentials {
                registry: registry.to_string(),
                reason: "it did not answer over HTTPS, and mdl sends registry credentials over plain HTTP only to this machine".into(),
            });
        }
        let config = ClientConfig {
            protocol: if http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: roots
                .iter()
                .flat_map(|bundle| split_pem(bundle))
                .map(|data| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                })
                .collect(),
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            // Each PATCH of a push is one 4 MiB chunk: an answer that takes
            // longer than the stall deadline is a stalled registry.
            read_timeout: Some(stall),
            ..ClientConfig::default()
        };
        Ok(Registry {
            client: Client::new(config),
            stall,
            attempts,
            credentials,
            registry: registry.to_string(),
            scheme: if http { "http" } else { "https" },
            authorizations: Default::default(),
        })
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The manifest (or index) `at` names, with its digest; `None` when the
    /// registry has no such tag, digest or repository. A failure of the
    /// network (a stall, a broken connection) is tried again, as downloads are.
    pub async fn manifest(&self, at: &OciRef) -> Result<Option<(Vec<u8>, String)>, OciError> {
        let auth = self.credentials.to_registry_auth();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pulled = (self.client)
                .pull_manifest_raw(&at.reference(), &auth, &MANIFEST_TYPES)
                .await;
            return match pulled {
                Ok((bytes, digest)) => Ok(Some((bytes.to_vec(), digest))),
                Err(e) => match self.error(e, &at.to_string()) {
                    OciError::NotFound { .. } => Ok(None),
                    OciError::Network { .. } if attempt < self.attempts => {
                        tokio::time::sleep(crate::http::backoff(attempt)).await;
                        continue;
                    }
                    e => Err(e),
                },
            };
        }
    }

    /// The `Authorization` value for plain GETs of `repo`'s blobs: the
    /// registry's bearer token, else basic credentials, else none. The token
    /// flow runs once per repository (files fetched at the same time wait for
    /// it), again only when `renew` says the last token was refused.
    pub async fn authorization(&self, repo: &OciRef, renew: bool) -> Result<Option<String>, OciError> {
        use base64::Engine as _;
        let mut known = self.authorizations.lock().await;
        if let Some(authorization) = known.get(&repo.repo()).filter(|_| !renew) {
            return Ok(authorization.clone());
        }
        let auth = self.credentials.to_registry_auth();
        let authorization = match self
            .client
            .auth(&repo.reference(), &auth, RegistryOperation::Pull)
            .await
        {
            Ok(Some(token)) => Some(format!("Bearer {token}")),
            Ok(None) => match &auth {
                oci_client::secrets::RegistryAuth::Basic(user, password) => Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )),
                _ => None,
            },
            Err(e) => return Err(self.error(e, &repo.repo())),
        };
        known.insert(repo.repo(), authorization.clone());
        Ok(authorization)
    }

    /// Where a blob of `repo` is fetched from.
    pub fn blob_url(&self, repo: &OciRef, digest: &str) -> String {
        repo.blob_url(self.scheme, digest)
    }

    /// Whether this registry is spoken to over plain HTTP.
    pub fn plain_http(&self) -> bool {
        self.scheme == "http"
    }

    pub async fn has_blob(&self, repo: &OciRef, digest: &str) -> Result<bool, OciError> {
        self.ensure_auth(repo).await;
        (self.client.blob_exists(&repo.reference(), digest).await).map_err(|e| self.error(e, &repo.repo()))
    }

    /// Mounts a blob `from` another repository of the same registry; false
    /// when the registry declines (it then has to be uploaded).
    pub async fn mount(&self, repo: &OciRef, from: &OciRef, digest: &str) -> bool {
        self.ensure_auth(repo).await;
        self.client
            .mount_blob(&repo.reference(), &from.reference(), digest)
            .await
            .is_ok()
    }

    /// Uploads a file as the blob `digest`, in chunked PATCHes, streamed from
    /// disk; `progress` is told of every chunk sent.
    pub async fn push_blob(
        &self,
        repo: &OciRef,
        path: &std::path::Path,
        digest: &str,
        size: u64,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<(), OciError> {
        self.ensure_auth(repo).await;
        let file = tokio::fs::File::open(path).await.map_err(|e| OciError::Registry {
            registry: self.registry.clone(),
            message: format!("`{}` cannot be read: {e}", path.display()),
        })?;
        let progress = Arc::new(progress);
        let stream = futures_util::stream::unfold(file, move |mut file| {
            let progress = progress.clone();
            async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 4 << 20];
                let mut filled = 0;
                // Full chunks: the registry sees fewer, larger PATCHes.
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => return Some((Err(OciDistributionError::IoError(e)), file)),
                    }
                }
                if filled == 0 {
                    return None;
                }
                buf.truncate(filled);
                progress(filled as u64);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
        });
        self.client
            .push_blob_stream(&repo.reference(), stream, digest, Some(size))
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &repo.repo()))
    }

    /// Uploads a small blob held in memory (the empty config).
    pub async fn push_small_blob(&self, repo: &OciRef, data: Vec<u8>, digest: &str) -> Result<(), OciError> {
        self.ensure_auth(repo).await;
        self.client
            .push_blob(&repo.reference(), data, digest)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &repo.repo()))
    }

    /// Puts a manifest or index at `at` (a tag); its digest.
    pub async fn push_manifest(&self, at: &OciRef, body: Vec<u8>, media_type: &str) -> Result<String, OciError> {
        use sha2::Digest as _;
        self.ensure_auth(at).await;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)));
        let content_type = reqwest13_header(media_type);
        self.client
            .push_manifest_raw(&at.reference(), body, content_type)
            .await
            .map_err(|e| self.error(e, &at.to_string()))?;
        Ok(digest)
    }

    /// Hands oci-client the credentials for this registry; it runs the token
    /// flow on the first request of each kind (pull, push) and caches the
    /// token, so nothing here goes on the network.
    async fn ensure_auth(&self, repo: &OciRef) {
        let auth = self.credentials.to_registry_auth();
        self.client
            .store_auth_if_needed(repo.reference().resolve_registry(), &auth)
            .await;
    }

    /// oci-client's error, in mdl's terms. Its messages hold URLs, never the
    /// credentials.
    fn error(&self, e: OciDistributionError, reference: &str) -> OciError {
        let registry = self.registry.clone();
        let unauthorized = || OciError::Unauthorized {
            registry: self.registry.clone(),
            username: self.credentials.username().map(str::to_string),
        };
        match e {
            OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
                unauthorized()
            }
            OciDistributionError::ImageManifestNotFoundError(_) => OciError::NotFound {
                reference: reference.to_string(),
            },
            OciDistributionError::RegistryError { envelope, .. } => self.envelope_error(&envelope, reference),
            OciDistributionError::ServerError { code: 401, .. } => unauthorized(),
            OciDistributionError::ServerError { code: 404, .. } => OciError::NotFound {
                reference: reference.to_string(),
            },
            OciDistributionError::ServerError { code: 403, .. } => OciError::Denied {
                registry,
                reference: reference.to_string(),
            },
            OciDistributionError::RequestError(e) if e.status().is_some_and(|s| s.as_u16() == 401) => unauthorized(),
            OciDistributionError::RequestError(e) if e.status().is_some_and(|s| s.as_u16() == 403) => {
                OciError::Denied {
                    registry,
                    reference: reference.to_string(),
                }
            }
            OciDistributionError::RequestError(e) if e.status().is_some_and(|s| s.as_u16() == 404) => {
                OciError::NotFound {
                    reference: reference.to_string(),
                }
            }
            OciDistributionError::RequestError(e) if e.status().is_some() => OciError::Registry {
                registry,
                message: error_chain(&e),
            },
            OciDistributionError::RequestError(e) if error_chain(&e).contains("certificate") => OciError::Untrusted {
                registry,
                reason: error_chain(&e),
            },
            OciDistributionError::RequestError(e) if e.is_timeout() => OciError::Network {
                registry,
                reason: format!(
                    "it stalled: no answer to a request for `{reference}` within {} s ({})",
                    self.stall.as_secs(),
                    error_chain(&e)
                ),
            },
            OciDistributionError::RequestError(e) => OciError::Network {
                registry,
                reason: error_chain(&e),
            },
            other => OciError::Registry {
                registry,
                message: error_chain(&other),
            },
        }
    }
}

impl Registry {
    /// A registry's error envelope, by its codes (the OCI distribution spec's).
    fn envelope_error(&self, envelope: &oci_client::errors::OciEnvelope, reference: &str) -> OciError {
        let registry = self.registry.clone();
        let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
        let not_found = |c: &&OciErrorCode| {
            matches!(
                c,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound
            )
        };
        if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized)) {
            OciError::Unauthorized {
                registry,
                username: self.credentials.username().map(str::to_string),
            }
        } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
            OciError::Denied {
                registry,
                reference: reference.to_string(),
            }
        } else if codes.iter().any(not_found) {
            OciError::NotFound {
                reference: reference.to_string(),
            }
        } else {
            let message = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            OciError::Registry { registry, message }
        }
    }
}

/// A media type as a header value (`http` 1, shared by both reqwest versions).
fn reqwest13_header(media_type: &str) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(media_type).expect("media types are ASCII")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(&format!(": {next}"));
        }
        source = s.source();
    }
    text
}

/// Each certificate of a PEM bundle on its own (oci-client takes them one by one).
fn split_pem(bundle: &[u8]) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(bundle);
    text.split_inclusive(END)
        .filter(|part| part.contains("-----BEGIN CERTIFICATE-----"))
        .map(|part| part.trim_start().as_bytes().to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_registry_and_a_repository() {
        let r = OciRef::parse("oci://127.0.0.1:5000/team/models").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/models");
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, None));
        let r = OciRef::parse("ghcr.io/acme/bert:v1").unwrap();
        assert_eq!((r.registry.as_str(), r.tag.as_deref()), ("ghcr.io", Some("v1")));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = OciRef::parse(&format!("localhost/x@{digest}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.to_string(), format!("localhost/x@{digest}"));
        for bad in ["acme/bert", "ghcr.io", "oci://", "ghcr.io/Upper/Case"] {
            assert!(OciRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_this_machine_is_loopback() {
        for host in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["ghcr.io", "10.0.0.1:5000", "localhost.example.com", "registry:5000"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = Credentials::Basic {
            username: "ci".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
