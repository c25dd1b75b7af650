//! The verbs, one file each (as cargo's `ops`): `lock`, `sync`, `verify`,
//! `list`, `add`, `remove`, `clean`, `du`, `watch`. Each is a thin sequencer
//! over the stages — config → resolve → lock → plan → fetch → store → verify —
//! and the registry; the decisions live in the stages, so a verb reads like the
//! pipeline it runs.
//!
//! [`Project`] is what they share: a loaded config, its models directory, and
//! how to reach the network.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fetch::{FetchSettings, Fetcher};
use crate::lock::Lockfile;
use crate::plan::Origin;
use crate::reporter::Reporter;
use crate::sources::Resolver;
use crate::sources::Source;
use crate::store::{Caches, HfCache, SharedStore, Store, TorchHub};

mod acquire;
mod add;
mod clean;
mod confirm;
mod doctor;
mod du;
mod list;
mod lock;
mod push;
mod remove;
mod sync;
mod verify;
pub mod watch;

pub use self::acquire::{Count, Moved};
pub use self::add::add;
pub use self::doctor::Finding;
pub use self::du::DiskUsage;
pub use self::list::{ModelStatus, State};
pub use self::lock::LockOutcome;
pub use self::push::PushOutcome;
pub use self::sync::{SyncOptions, SyncOutcome};
pub use crate::lock::{LockMode, Upgrade};
pub use crate::verify::ModelCheck;

/// A loaded project: a `config.yaml`, its `models.lock` and its models directory.
pub struct Project {
    pub config: Config,
    pub store: Store,
    pub settings: FetchSettings,
    pub reporter: Arc<dyn Reporter>,
    /// `HF_ENDPOINT` (or the config's override).
    pub endpoint: String,
    pub token: Option<String>,
    /// The `verify_ssl: false` warning was given in this run.
    warned_unverified: std::sync::atomic::AtomicBool,
    /// Where files may already be: the shared store, the Hugging Face cache.
    pub caches: Caches,
    /// Refuse to start downloads that cannot fit (`--no-space-check` turns it off).
    pub check_free_space: bool,
    /// OCI registry clients, made on first use (see `fetcher`).
    registries: std::sync::OnceLock<Arc<crate::oci::Registries>>,
    /// Leases this run holds on writable mirrors (`oci::lease`), released
    /// after the write-back.
    leases: std::sync::Mutex<Vec<crate::oci::lease::Held>>,
}

impl Project {
    pub fn new(config: Config, reporter: Arc<dyn Reporter>) -> Project {
        let download = &config.models.download;
        let url = download.sources.table::<crate::sources::url::UrlTable>();
        let settings = FetchSettings {
            jobs: config.concurrency(),
            attempts: download.retries.unwrap_or(5).max(1),
            stall_timeout: Duration::from_secs(download.stall_timeout_seconds.unwrap_or(30).max(1)),
            connect_timeout: Duration::from_secs(url.timeout_seconds.max(1)),
            verify_ssl: url.verify_ssl,
            connections_per_file: download.connections_per_file.unwrap_or(16).max(1),
            ..FetchSettings::default()
        };
        let hub = download
            .sources
            .table::<crate::sources::huggingface::HuggingfaceTable>();
        let endpoint = crate::env::hf_endpoint(hub.endpoint.as_deref());
        let token = hub_token(&hub, &endpoint, reporter.as_ref());
        let download = download.clone();
        Project {
            store: Store::new(config.models_dir()).with_project_dir(config.project_dir()),
            config,
            settings,
            reporter,
            endpoint,
            token,
            warned_unverified: Default::default(),
            caches: Caches {
                shared: SharedStore::from_env(),
                hf: HfCache::from_env(),
                mode: download.link_mode.unwrap_or_default(),
                write_hf: download.hf_cache.unwrap_or(false),
                torch_hub: download.torch_hub.unwrap_or(false).then(TorchHub::from_env),
            },
            check_free_space: true,
            registries: Default::default(),
            leases: Default::default(),
        }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.config.lock_path()
    }

    pub fn registry_path(&self) -> PathBuf {
        self.store.root().join(self.config.registry_file_name())
    }

    /// The OCI mirrors to try, in order: `MDL_MIRROR`'s, then
    /// `download.mirrors` (each with whether plain HTTP is allowed).
    pub fn mirrors(&self) -> Result<Vec<(crate::oci::OciRef, bool)>> {
        let from_env = crate::env::mirrors().into_iter().map(|url| (url, false));
        let from_config = (self.config.models.download.mirrors.iter()).map(|m| (m.url().to_string(), m.insecure()));
        let mut mirrors = Vec::new();
        for (url, insecure) in from_env.chain(from_config) {
            let mirror = crate::oci::OciRef::parse(&url)?;
            if !mirrors.iter().any(|(m, _)| *m == mirror) {
                mirrors.push((mirror, insecure));
            }
        }
        Ok(mirrors)
    }

    /// The mirrors marked `push: true`, which syncs fill.
    pub fn writable_mirrors(&self) -> Vec<crate::oci::OciRef> {
        (self.config.models.download.mirrors.iter())
            .filter(|m| m.push())
            .filter_map(|m| crate::oci::OciRef::parse(m.url()).ok())
            .collect()
    }

    pub fn read_lock(&self) -> Result<Option<Lockfile>> {
        Ok(Lockfile::read(&self.lock_path())?)
    }

    /// The download engine, trusting the CA bundles the environment names.
    /// With `sources.url.verify_ssl: false` it warns, every run, that `url:`
    /// models skip certificate checks.
    fn fetcher(&self) -> Result<Fetcher> {
        let roots = crate::http::extra_roots()?;
        let unverified_urls = !self.settings.verify_ssl
            && (self.config.specs.iter()).any(|s| s.id.source().is_some_and(Source::id_is_the_file_url));
        if unverified_urls && !self.warned_unverified.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.reporter.report(crate::reporter::Event::Warning {
                message: "`sources.url.verify_ssl: false`: certificates of `url:` models are not checked (anyone on the network path can change those files before they are hashed); the Hub and every token-bearing request stay verified",
            });
        }
        // One set of registry clients per project: a sync that locks and then
        // fetches asks each registry for a token, and whether it speaks TLS, once.
        let registries = self.registries.get_or_init(|| {
            let download = &self.config.models.download;
            let oci = download.sources.table::<crate::sources::oci::OciTable>();
            let insecure = (oci.insecure_registries.iter().cloned())
                .chain(
                    (self.mirrors().unwrap_or_default().into_iter())
                        .filter(|(_, insecure)| *insecure)
                        .map(|(mirror, _)| mirror.registry),
                )
                .collect();
            Arc::new(
                crate::oci::Registries::new(roots.clone(), insecure)
                    .with_deadlines(self.settings.stall_timeout, self.settings.attempts),
            )
        });
        Ok(Fetcher::new(
            self.settings.clone(),
            self.reporter.clone(),
            self.store.tmp_dir(),
            &roots.certificates,
        )
        .with_registries(registries.clone()))
    }

    fn resolver<'a>(&'a self, fetcher: &'a Fetcher) -> Resolver<'a> {
        Resolver {
            http: fetcher.http(),
            unverified_http: fetcher.unverified_http(),
            endpoint: self.endpoint.clone(),
            token: self.token.clone(),
            reporter: self.reporter.as_ref(),
            attempts: self.settings.attempts,
            sources: &self.config.models.download.sources,
            project_dir: self.config.project_dir(),
            registries: fetcher.registries(),
            hf_cache: &self.caches.hf,
            offline: false,
            cache_hints: true,
        }
    }

    /// What deriving a locked file's URL needs ([`crate::lock::derive`]).
    fn url_context(&self) -> crate::lock::derive::UrlContext<'_> {
        crate::lock::derive::UrlContext {
            hub_endpoint: &self.endpoint,
            sources: &self.config.models.download.sources,
        }
    }

    fn origin(&self) -> Origin<'_> {
        Origin {
            models_root: self.store.root(),
            hub_endpoint: &self.endpoint,
            token: self.token.as_deref(),
            insecure_urls: !self.settings.verify_ssl,
            sources: &self.config.models.download.sources,
        }
    }

    /// Before downloading: the bytes still to fetch must fit the free space of
    /// the models directory's file system, or nothing starts.
    fn check_space<'a>(&self, downloads: impl Iterator<Item = &'a crate::plan::Download>) -> Result<()> {
        let needed: u64 = downloads.map(|d| d.expect.size.unwrap_or(0)).sum();
        if !self.check_free_space || needed == 0 {
            return Ok(());
        }
        let root = self.store.root();
        let Some(free) = crate::fs::free_space(root) else {
            return Ok(());
        };
        if needed > free {
            return Err(crate::store::StoreError::NoSpace {
                path: root.to_path_buf(),
                needed,
                free,
            }
            .into());
        }
        Ok(())
    }

    /// Refuses names that designate no model of the config.
    fn check_names(&self, names: &[String]) -> Result<()> {
        for name in names {
            if !self.config.specs.iter().any(|s| s.matches(name)) {
                let known: Vec<_> = self.config.specs.iter().map(|s| format!("`{}`", s.name)).collect();
                return Err(Error::usage(
                    format!("no model named `{name}` is in `{}`", self.config.path.display()),
                    Some(format!(
                        "models in the config: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )),
                ));
            }
        }
        Ok(())
    }
}

/// The Hub token, if it may go to `endpoint`: `HF_ENDPOINT` is the caller's
/// choice, but an endpoint named in config.yaml (a file a pull request can
/// change) gets the token only with `send_token: true`; and no endpoint gets
/// it over plain HTTP unless it is this machine. A withheld token is said.
fn hub_token(
    hub: &crate::sources::huggingface::HuggingfaceTable,
    endpoint: &str,
    reporter: &dyn Reporter,
) -> Option<String> {
    let token = crate::env::hf_token()?;
    let configured = hub.endpoint.is_some() && endpoint != crate::env::DEFAULT_HF_ENDPOINT;
    let refusal = if configured && !hub.send_token {
        Some(format!(
            "config.yaml points the Hub at `{endpoint}`: the Hub token is not sent there (set `sources.huggingface.send_token: true` if that host should have it)"
        ))
    } else {
        crate::http::credentials_may_go_to(endpoint)
            .err()
            .map(|why| format!("the Hub token is not sent: {why}; use HTTPS"))
    };
    match refusal {
        Some(message) => {
            reporter.report(crate::reporter::Event::Warning { message: &message });
            None
        }
        None => Some(token),
    }
}
