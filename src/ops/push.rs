//! `mdl push oci://HOST/REPO[:TAG]`: publishes the locked models, as they are
//! in `models/`, to an OCI registry — the team's mirror (`download.mirrors`)
//! or a place to share private weights from (`oci:` models).
//!
//! Each file is one blob under its sha256 digest; a blob the repository
//! already has is not sent again (HEAD first), one that another mirror
//! repository of the same registry has is mounted from there, and the rest
//! are streamed from disk in chunks. Then one manifest per model (tagged with
//! its [`model_tag`], so mirrors find it from any lock holding the same
//! files) and one index for the whole lock, at `TAG` (default `latest`).
//! An interrupted push is resumed by running it again: every blob that
//! arrived is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::lock::Lockfile;
use crate::oci::artifact::{self, model_tag, Layer};
use crate::oci::{OciRef, Registry};
use crate::plan::Plan;
use crate::reporter::Event;

use super::Project;

/// What `push` did.
#[derive(Clone, Debug, Default)]
pub struct PushOutcome {
    /// `HOST/REPO:TAG`
    pub target: String,
    /// The digest of the lock's index at the tag.
    pub index_digest: String,
    /// Per model: name, mirror tag, manifest digest, manifest size.
    pub models: Vec<(String, String, String, u64)>,
    pub uploaded_files: usize,
    pub uploaded_bytes: u64,
    /// Blobs the repository already had.
    pub present_files: usize,
    pub present_bytes: u64,
    /// Blobs mounted from another repository of the same registry.
    pub mounted_files: usize,
    pub elapsed_ms: u64,
}

/// What a sync pushed to one writable mirror.
#[derive(Clone, Debug, Default)]
pub struct WriteBack {
    pub mirror: String,
    pub models: usize,
    pub uploaded_files: usize,
    pub uploaded_bytes: u64,
    /// Blobs the mirror already had (another runner pushed them first).
    pub present_files: usize,
    pub elapsed_ms: u64,
}

/// A blob to publish: the file it is read from.
struct Blob {
    digest: String,
    size: u64,
    path: PathBuf,
    label: String,
}

/// How a blob reached the registry.
enum Sent {
    Present,
    Mounted,
    Uploaded,
}

/// Blobs sent at once.
const PARALLEL_BLOBS: usize = 4;

impl Project {
    /// `mdl push`: publishes every locked model, read from `models/`.
    pub async fn push(&self, target: &OciRef) -> Result<PushOutcome> {
        let started = std::time::Instant::now();
        if target.digest.is_some() {
            return Err(Error::usage(
                format!("`{target}` names a digest; a push needs a tag (or none, for `latest`)"),
                Some("write `oci://HOST/REPO[:TAG]`".to_string()),
            ));
        }
        let target = target.at_tag(target.tag.as_deref().unwrap_or("latest"));
        let lock = self.read_lock()?.ok_or_else(|| {
            Error::usage(
                "there is no models.lock to push",
                Some("run `mdl lock` (or `mdl sync`) first".to_string()),
            )
        })?;

        self.check_on_disk(&lock)?;
        let mut outcome = self.publish(&target, &lock, &|_| true).await?;
        outcome.index_digest = {
            let fetcher = self.fetcher()?;
            let registry = fetcher.registries().get(&target.registry).await?;
            let index: Vec<(String, String, u64)> = (outcome.models.iter())
                .map(|(name, _, digest, size)| (name.clone(), digest.clone(), *size))
                .collect();
            registry
                .push_manifest(&target, artifact::lock_index(&index), artifact::OCI_INDEX)
                .await?
        };
        outcome.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(outcome)
    }

    /// Publishes the locked models `wanted` names, read from disk, to
    /// `target`: blobs, then each model's config and manifest at its mirror
    /// tag. The caller knows the files are as locked.
    async fn publish(
        &self,
        target: &OciRef,
        lock: &Lockfile,
        wanted: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<PushOutcome> {
        let (layers, blobs) = self.layers(lock, wanted).await?;
        let fetcher = self.fetcher()?;
        let registry = fetcher.registries().get(&target.registry).await?;
        let mount_from: Vec<OciRef> = (self.mirrors()?.into_iter())
            .map(|(m, _)| m)
            .filter(|m| m.registry == target.registry && m.repository != target.repository)
            .collect();
        // One request first: an untrusted certificate or refused login is
        // one clear error, not one per blob.
        registry.has_blob(target, artifact::EMPTY_CONFIG_DIGEST).await?;
        let mut outcome = PushOutcome {
            target: target.to_string(),
            ..PushOutcome::default()
        };
        self.send_blobs(&registry, target, &mount_from, &blobs, &mut outcome)
            .await?;
        self.push_manifests(&registry, target, lock, &layers, &mut outcome)
            .await?;
        Ok(outcome)
    }

    /// A mirror that fills itself (`download.mirrors: [{ url: …, push: true }]`):
    /// after a sync fetched `models` from upstream and they verified, each is
    /// pushed to every writable mirror as `mdl push` would (its manifest at
    /// its mirror tag, so the next runner finds it). A push that fails is a
    /// warning, never a failed sync: the models are on disk and correct.
    pub(crate) async fn write_back(&self, lock: &Lockfile, models: &BTreeSet<String>) -> Vec<WriteBack> {
        let mut done = Vec::new();
        for mirror in self.writable_mirrors().into_iter().filter(|_| !models.is_empty()) {
            let started = std::time::Instant::now();
            let result = self.publish(&mirror, lock, &|name| models.contains(name)).await;
            match result {
                Ok(outcome) => done.push(WriteBack {
                    mirror: mirror.to_string(),
                    models: outcome.models.len(),
                    uploaded_files: outcome.uploaded_files,
                    uploaded_bytes: outcome.uploaded_bytes,
                    present_files: outcome.present_files,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                }),
                Err(e) => {
                    let message = format!(
                        "the models fetched from upstream could not be pushed to the mirror `oci://{mirror}` ({}); the sync itself succeeded, and the next sync that fetches them tries again",
                        e.to_string().trim_end_matches('.')
                    );
                    self.reporter.report(Event::Warning { message: &message });
                }
            }
        }
        // Pushed or not, the models this run led are done: its followers
        // stop waiting now.
        let held: Vec<_> = std::mem::take(&mut *self.leases.lock().unwrap());
        for lease in held {
            crate::oci::lease::release(lease).await;
        }
        done
    }

    /// One blob: already there, mounted, or uploaded with progress.
    async fn send_blob(
        &self,
        registry: &Registry,
        target: &OciRef,
        mount_from: &[OciRef],
        blob: &Blob,
    ) -> (u64, Result<Sent>) {
        let result = async {
            if registry.has_blob(target, &blob.digest).await? {
                return Ok(Sent::Present);
            }
            for from in mount_from {
                if registry.has_blob(from, &blob.digest).await.unwrap_or(false)
                    && registry.mount(target, from, &blob.digest).await
                {
                    return Ok(Sent::Mounted);
                }
            }
            static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
            // Apart from the download ids the same printer may show.
            let id = usize::MAX / 2 + NEXT_ID.fetch_add(1, Ordering::Relaxed);
            self.reporter.report(Event::UploadStarted {
                id,
                label: &blob.label,
                size: blob.size,
            });
            let progress = {
                let reporter = self.reporter.clone();
                move |bytes| reporter.report(Event::DownloadProgress { id, bytes })
            };
            let result = registry
                .push_blob(target, &blob.path, &blob.digest, blob.size, progress)
                .await;
            self.reporter.report(Event::UploadFinished {
                id,
                label: &blob.label,
                ok: result.is_ok(),
            });
            result?;
            Ok(Sent::Uploaded)
        }
        .await;
        (blob.size, result)
    }
}

impl Project {
    /// Only what the lock says, as it is on disk: a file missing or changed
    /// is refused before anything is sent.
    fn check_on_disk(&self, lock: &crate::lock::Lockfile) -> Result<()> {
        let _guard = self.store.lock()?;
        let mut state = self.store.load_state();
        let survey = self.store.survey(lock, &mut state, false, &*self.reporter)?;
        self.store.save_state(&state)?;
        let plan = Plan::new(lock, &survey, &BTreeSet::new());
        if let Some((first, _)) = plan.fetch.first() {
            return Err(Error::usage(
                format!(
                    "{} file(s) of the lock are not in the models directory as locked (`{}/{}` first)",
                    plan.fetch.len(),
                    first.model,
                    first.file.path
                ),
                Some("run `mdl sync` first: a push publishes what the lock says, read from disk".to_string()),
            ));
        }
        Ok(())
    }

    /// Each model's layers and the distinct blobs behind them, each file's
    /// sha256 from the lock where upstream published it, else read.
    async fn layers(
        &self,
        lock: &crate::lock::Lockfile,
        wanted: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(BTreeMap<String, Vec<Layer>>, BTreeMap<String, Blob>)> {
        let mut layers: BTreeMap<String, Vec<Layer>> = BTreeMap::new();
        let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
        let mut to_hash = Vec::new();
        for model in lock.models.values().filter(|m| wanted(&m.name)) {
            for file in &model.files {
                let path = self.store.locate(model, file);
                to_hash.push((model.name.clone(), file.clone(), path, file.sha256.clone()));
            }
        }
        let hashed = futures_util::stream::iter(to_hash.into_iter().map(|(name, file, path, sha256)| async move {
            let sha256 = match sha256 {
                Some(known) => Ok(known),
                None => {
                    let p = path.clone();
                    tokio::task::spawn_blocking(move || crate::hash::sha256_file(&p))
                        .await
                        .expect("hashing does not panic")
                }
            };
            (name, file, path, sha256)
        }))
        .buffered(2)
        .collect::<Vec<_>>()
        .await;
        for (name, file, path, sha256) in hashed {
            let sha256 = sha256.map_err(crate::store::StoreError::io(&path))?;
            let digest = format!("sha256:{sha256}");
            layers.entry(name.clone()).or_default().push(Layer {
                path: file.path.clone(),
                digest: digest.clone(),
                size: file.size,
                blake3: Some(file.blake3.clone()),
            });
            blobs.entry(digest.clone()).or_insert(Blob {
                digest,
                size: file.size,
                path,
                label: format!("{name}/{}", file.path),
            });
        }
        Ok((layers, blobs))
    }

    /// The blobs, a few at a time: each already there, mounted from a
    /// mirror's repository, or uploaded.
    async fn send_blobs(
        &self,
        registry: &crate::oci::Registry,
        target: &OciRef,
        mount_from: &[OciRef],
        blobs: &BTreeMap<String, Blob>,
        outcome: &mut PushOutcome,
    ) -> Result<()> {
        // Collected first: a lazy `map` over borrowed blobs would make the
        // future not `Send` when a sync (spawned by `watch`) writes back.
        let sends: Vec<_> = blobs
            .values()
            .map(|blob| self.send_blob(registry, target, mount_from, blob))
            .collect();
        let results: Vec<(u64, Result<Sent>)> = futures_util::stream::iter(sends)
            .buffer_unordered(PARALLEL_BLOBS)
            .collect()
            .await;
        let mut errors = Vec::new();
        for (size, result) in results {
            match result {
                Ok(Sent::Present) => {
                    outcome.present_files += 1;
                    outcome.present_bytes += size;
                }
                Ok(Sent::Mounted) => outcome.mounted_files += 1,
                Ok(Sent::Uploaded) => {
                    outcome.uploaded_files += 1;
                    outcome.uploaded_bytes += size;
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(Error::many(
                "some files could not be pushed; run `mdl push` again to send only what is missing",
                errors,
            ));
        }
        Ok(())
    }

    /// One manifest per model (its ModelPack config blob first), each at its
    /// mirror tag.
    async fn push_manifests(
        &self,
        registry: &crate::oci::Registry,
        target: &OciRef,
        lock: &crate::lock::Lockfile,
        layers: &BTreeMap<String, Vec<Layer>>,
        outcome: &mut PushOutcome,
    ) -> Result<()> {
        for (name, model_layers) in layers {
            let model = &lock.models[name];
            let tag = model_tag(model.files.iter().map(|f| (f.path.as_str(), f.size, f.blake3.as_str())));
            let entry = serde_json::to_value(model).expect("a lock entry serialises");
            let facts = model_facts(model, |file| self.store.locate(model, file));
            let config = artifact::model_config(name, &facts, model_layers);
            let config_digest = artifact::sha256_digest(&config);
            if !registry.has_blob(target, &config_digest).await? {
                registry.push_small_blob(target, config.clone(), &config_digest).await?;
            }
            let manifest = artifact::model_manifest(name, &entry, model_layers, &config);
            let size = manifest.len() as u64;
            let digest = registry
                .push_manifest(&target.at_tag(&tag), manifest, artifact::OCI_MANIFEST)
                .await?;
            outcome.models.push((name.clone(), tag, digest, size));
        }
        Ok(())
    }
}

/// What the ModelPack config says of a model, read from its files on disk
/// (headers and pickles only, as the structure check reads them): the format
/// holding most bytes, parameters, precision, GGUF quantization and
/// architecture, config.json's `model_type`.
pub fn model_facts(
    model: &crate::lock::LockedModel,
    locate: impl Fn(&crate::lock::LockedFile) -> PathBuf,
) -> artifact::ModelFacts {
    let mut tally = Tally::default();
    for file in &model.files {
        tally.add(file, &locate(file));
    }
    let format = (tally.bytes_by_format.iter())
        .max_by_key(|(_, bytes)| **bytes)
        .map(|(f, _)| f.to_string());
    artifact::ModelFacts {
        format,
        parameters: tally.counted.then_some(tally.parameters),
        precision: match tally.precisions.len() {
            0 => None,
            1 => tally.precisions.into_iter().next().map(str::to_string),
            _ => Some("mixed".into()),
        },
        quantization: (!tally.quantized.is_empty()).then(|| tally.quantized.into_iter().collect::<Vec<_>>().join(",")),
        architecture: (tally.architecture)
            .filter(|a| a.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))),
        revision: model.commit.clone(),
    }
}

/// What a model's files say, added up file by file.
#[derive(Default)]
struct Tally {
    bytes_by_format: BTreeMap<&'static str, u64>,
    parameters: u64,
    counted: bool,
    precisions: BTreeSet<&'static str>,
    quantized: BTreeSet<String>,
    architecture: Option<String>,
}

impl Tally {
    /// One file: its format (by the format's own reader, headers and
    /// pickles only), parameters, dtypes and architecture; an ONNX file by
    /// its name; config.json's `model_type`.
    fn add(&mut self, file: &crate::lock::LockedFile, path: &Path) {
        use crate::verify::{detect, formats, Detected};
        let format = match detect(path) {
            Ok(Detected::Weights(format)) => formats::of(format),
            Ok(Detected::Unknown { .. }) if file.path.ends_with(".onnx") => {
                *self.bytes_by_format.entry("onnx").or_default() += file.size;
                return;
            }
            _ => {
                if file.path == "config.json" && file.size < (1 << 20) {
                    let json: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or_default();
                    if let Some(t) = json["model_type"].as_str().filter(|t| t.len() < 64) {
                        self.architecture.get_or_insert_with(|| t.to_string());
                    }
                }
                return;
            }
        };
        *self.bytes_by_format.entry(format.modelpack_name()).or_default() += file.size;
        if let Ok(found) = format.structure(path) {
            self.parameters += found.parameters;
            self.counted = true;
            for dtype in &found.dtypes {
                match precision_of(dtype) {
                    Some(p) => {
                        self.precisions.insert(p);
                    }
                    None if dtype.contains("quantized") => {
                        self.quantized
                            .insert(dtype.split(' ').next().unwrap_or(dtype).to_string());
                    }
                    None => {}
                }
            }
        }
        if let Some(arch) = format.architecture(path) {
            self.architecture = Some(arch);
        }
    }
}

/// ModelPack's precision name for a floating dtype (as torch, safetensors
/// or GGUF name it); integers (buffers, counters) do not decide it.
fn precision_of(dtype: &str) -> Option<&'static str> {
    Some(match dtype.to_ascii_lowercase().as_str() {
        "float32" | "f32" => "fp32",
        "float16" | "f16" => "fp16",
        "bfloat16" | "bf16" => "bf16",
        "float64" | "f64" => "fp64",
        d if d.starts_with("float8") || d.starts_with("f8") => "fp8",
        _ => return None,
    })
}
