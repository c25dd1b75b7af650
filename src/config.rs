//! `config.yaml`: what the project wants. Parsing is strict (unknown keys are
//! errors, with line and column) so that typos never silently drop a model, and it
//! happens before any network or disk change.
//!
//! The seed design's keys (`models.model_path`, `models.download.cache_dir`,
//! `auto_download`, `sources.<name>.enabled`, `url.verify_ssl`,
//! `url.timeout_seconds`, `registry_file`) are accepted as they are; `require`,
//! `presets` and the top-level `presets:` map are mdl's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::sources::{ConfigRevision, IdError, ModelId, Source, Sources, Want};

/// An error in `config.yaml`, with where it is and what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no config file at `{}`", path.display())]
    NotFound { path: PathBuf },
    #[error("could not read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {message}", path.display(), location(*line, *column))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
        hint: String,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::NotFound { .. } => {
                Some("create a `config.yaml` with a `models.require` list, or pass `--config PATH`".into())
            }
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { hint, .. } => Some(hint.clone()),
        }
    }
}

/// The device to load models on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(Option<usize>),
    Mps,
    /// CUDA if libtorch sees a device, else CPU.
    Auto,
}

impl Device {
    pub fn parse(s: &str) -> Option<Device> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda(None),
            "mps" => Device::Mps,
            "auto" => Device::Auto,
            other => Device::Cuda(Some(other.strip_prefix("cuda:")?.parse().ok()?)),
        })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(None) => f.write_str("cuda"),
            Device::Cuda(Some(n)) => write!(f, "cuda:{n}"),
            Device::Mps => f.write_str("mps"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

/// How a model is verified after it is synced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyOptions {
    /// Load the weights with libtorch (default true). `verify: false` skips it.
    #[serde(default = "yes")]
    pub load: bool,
    /// For TorchScript models: load the module and run `forward` once on a
    /// zero input of this shape (this runs the checkpoint's code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Vec<i64>>,
    /// Load formats whose loading runs the checkpoint's code (a TorchScript
    /// module, its `__setstate__` included) the way torch does. Off by
    /// default: such a file is checked by structure and its weights loaded
    /// without running anything. Only this model's own entry in config.yaml
    /// turns it on, never a lock, a server or a file name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_code: bool,
}

impl VerifyOptions {
    /// Whether this model's checkpoint code may run: asked for here only.
    pub fn runs_code(&self) -> bool {
        self.run_code || self.forward.is_some()
    }
}

fn yes() -> bool {
    true
}

/// One entry of `models.require` (or of a preset), as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Requirement {
    pub id: String,
    pub name: Option<String>,
    pub revision: Option<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub device: Option<String>,
    pub verify: Option<VerifyOptions>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RequirementTable {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default, deserialize_with = "verify_options")]
    #[schemars(with = "Option<VerifyField>")]
    verify: Option<VerifyOptions>,
}

/// `verify:` as the schema describes it: a flag or a table.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
enum VerifyField {
    /// `false` skips loading this model.
    Flag(bool),
    Table(VerifyOptions),
}

impl schemars::JsonSchema for Requirement {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Requirement".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<RequirementTable>();
        schemars::json_schema!({
            "description": "A model: an identifier (`huggingface:org/name@rev`, `url:https://…`, `torchvision:resnet18`, `pytorch_hub:owner/repo[:ref]/entry`, `local:path`, a bare `org/name` or name), or a table with `id` and options.",
            "anyOf": [{ "type": "string", "minLength": 1 }, table]
        })
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: a number of bytes, or a number with a unit (`512MiB`, `4 GB`).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([kKmMgGtT]i?[bB]?|[bB])?\\s*$" }
            ]
        })
    }
}

/// The JSON Schema of `config.yaml`, generated from the types that parse it
/// (`config.schema.json` at the repository root is this, committed).
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(ConfigFile)).expect("a schema serialises");
    schema["title"] = "mdl config.yaml".into();
    schema
}

/// `verify: false`, `verify: true` or `verify: { forward: [...] }`.
fn verify_options<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VerifyOptions>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = VerifyOptions;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "`true`, `false`, or a table `{ load: true|false, forward: [1, 3, 224, 224], run_code: true|false }`",
            )
        }
        fn visit_bool<E: de::Error>(self, load: bool) -> Result<VerifyOptions, E> {
            Ok(VerifyOptions {
                load,
                ..VerifyOptions::default()
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VerifyOptions, A::Error> {
            VerifyOptions::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V).map(Some)
}

impl<'de> Deserialize<'de> for Requirement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Requirement;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a model identifier string or a table with an `id` key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Requirement, E> {
                Ok(Requirement {
                    id: s.to_string(),
                    ..Default::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Requirement, A::Error> {
                let t = RequirementTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Requirement {
                    id: t.id,
                    name: t.name,
                    revision: t.revision,
                    include: t.include,
                    exclude: t.exclude,
                    device: t.device,
                    verify: t.verify,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The seed's built-in presets; a user preset of the same name replaces one.
pub const BUILTIN_PRESETS: &[(&str, &[&str])] = &[
    ("basic", &["resnet18", "mobilenet_v2"]),
    (
        "vision",
        &["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16"],
    ),
    ("nlp", &["bert-base-uncased", "distilbert-base-uncased", "roberta-base"]),
    (
        "all",
        &[
            "resnet18",
            "resnet50",
            "mobilenet_v2",
            "efficientnet_b0",
            "vgg16",
            "bert-base-uncased",
            "distilbert-base-uncased",
            "roberta-base",
        ],
    ),
];

#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Download {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// Files downloaded at once (default: 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// A download that receives no byte for this long is retried (default: 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_timeout_seconds: Option<u64>,
    /// Parallel ranged connections for each large file (default: 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_file: Option<usize>,
    /// Attempts per file before giving up (default: 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// How files are placed from the shared store into `models/` (default: auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_mode: Option<crate::fs::LinkMode>,
    /// Also lay Hub models out in the Hugging Face cache (default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_cache: Option<bool>,
    /// Also place torchvision / PyTorch Hub files where `torch.hub` looks (default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_hub: Option<bool>,
    /// OCI mirrors tried before upstream for every locked file
    /// (`oci://HOST/REPO`, or `{ url: oci://HOST/REPO, insecure: true, push: true }`;
    /// `push: true` fills it with what a sync fetched from upstream);
    /// `MDL_MIRROR` adds its own in front. A mirror never changes the lock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorSpec>,
    #[serde(default)]
    pub sources: Sources,
}

/// A mirror: its `oci://` URL, and whether it may be reached over plain HTTP.
/// Read as a string or a table (not an untagged enum, which would accept a
/// table with keys it does not know).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum MirrorSpec {
    Url(String),
    Detailed(MirrorTable),
}

/// A mirror written as a table.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MirrorTable {
    pub url: String,
    #[serde(default)]
    pub insecure: bool,
    /// Fill this mirror: a sync that fetched models from upstream pushes
    /// them here after they verify, as `mdl push` would.
    #[serde(default)]
    pub push: bool,
}

impl<'de> Deserialize<'de> for MirrorSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MirrorSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an `oci://HOST/REPO` URL or a table `{ url, insecure, push }`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MirrorSpec, E> {
                Ok(MirrorSpec::Url(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MirrorSpec, A::Error> {
                MirrorTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(MirrorSpec::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

impl MirrorSpec {
    pub fn url(&self) -> &str {
        match self {
            MirrorSpec::Url(url) | MirrorSpec::Detailed(MirrorTable { url, .. }) => url,
        }
    }

    pub fn insecure(&self) -> bool {
        matches!(self, MirrorSpec::Detailed(MirrorTable { insecure: true, .. }))
    }

    pub fn push(&self) -> bool {
        matches!(self, MirrorSpec::Detailed(MirrorTable { push: true, .. }))
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Models {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_download: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default)]
    pub require: Vec<Requirement>,
    #[serde(default)]
    pub presets: Vec<String>,
    #[serde(default)]
    pub download: Download,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    models: Models,
    #[serde(default)]
    presets: BTreeMap<String, Vec<Requirement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default)]
    verify: VerifySettings,
}

/// How verification may use the machine (top-level `verify:`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    /// Bytes of tensors the verifier may hold at once, across the files it
    /// loads in parallel (`4GiB`, `512MB`, or a number of bytes). Default: half
    /// of the memory available when the sync starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<ByteSize>,
    /// What a weight file in a format mdl cannot load or check (ONNX, Keras,
    /// an unrecognised `.bin`) does to a sync: `warn` (default: reported as
    /// hash-checked only) or `error` (the sync fails).
    #[serde(default, skip_serializing_if = "UnknownWeights::is_default")]
    pub unknown: UnknownWeights,
}

/// `verify: { unknown: warn|error }`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnknownWeights {
    #[default]
    Warn,
    Error,
}

impl UnknownWeights {
    fn is_default(&self) -> bool {
        *self == UnknownWeights::Warn
    }
}

/// A size in bytes, written as a number or with a unit (`512MiB`, `4 GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct ByteSize(pub u64);

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> u64 {
        b.0
    }
}

impl ByteSize {
    pub fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().ok()?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => return None,
        };
        (number >= 0.0).then_some(ByteSize((number * scale as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `4GiB`, `512MB` or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is not a size: write a number of bytes or one with a unit, e.g. `4GiB`, `512MB`"
                    ))
                })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A wanted model after parsing and validation: what the resolver works from.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The model's name (the repo id, a URL's file stem, or `name:`).
    pub name: String,
    pub id: ModelId,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub device: Device,
    pub verify: VerifyOptions,
}

impl ModelSpec {
    /// The model's directory under the models dir: `<source>_<name>` with `/`
    /// turned into `--` (the Hub cache's convention).
    /// Whether a user-typed name designates this model (its name, id or directory).
    pub fn matches(&self, name: &str) -> bool {
        self.name == name || self.dir_name() == name || self.id.to_string() == name || self.id.locator() == name
    }

    /// What resolution works from.
    pub fn want(&self) -> Want {
        Want {
            name: self.name.clone(),
            id: self.id.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }

    pub fn dir_name(&self) -> String {
        match self.id.source() {
            Some(source) => dir_name(source, &self.name),
            // Known after detection; this form only serves to tell specs apart.
            None => format!("auto_{}", self.name.replace('/', "--")),
        }
    }
}

pub fn dir_name(source: Source, name: &str) -> String {
    source.dir_name(name)
}

/// The parsed, validated `config.yaml`.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub models: Models,
    presets: BTreeMap<String, Vec<Requirement>>,
    /// The wanted models, validated, in config order.
    pub specs: Vec<ModelSpec>,
    pub device: Device,
    pub verify: VerifySettings,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(path, &Config::read(path)?, &[])
    }

    /// The text of `path`, or the error that says it is missing or unreadable.
    pub fn read(path: &Path) -> Result<String, ConfigError> {
        fs_err::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ConfigError::NotFound {
                path: path.to_path_buf(),
            },
            _ => ConfigError::Read {
                path: path.to_path_buf(),
                source: e,
            },
        })
    }

    /// Like [`Config::load`], also wanting the named presets (`--preset`).
    pub fn load_with_presets(path: &Path, extra_presets: &[String]) -> Result<Config, ConfigError> {
        Config::parse(path, &Config::read(path)?, extra_presets)
    }

    pub fn parse(path: &Path, raw: &str, extra_presets: &[String]) -> Result<Config, ConfigError> {
        Config::parse_wanting(path, raw, extra_presets, &[])
    }

    /// Like [`Config::parse`], also wanting `extra` models (the library API's
    /// `ensure_model_available`, the Python module's `auto_download_model`):
    /// they are validated exactly as `models.require` entries are, after them.
    pub fn parse_wanting(
        path: &Path,
        raw: &str,
        extra_presets: &[String],
        extra: &[Requirement],
    ) -> Result<Config, ConfigError> {
        let reader = Reader { path, raw };
        let file = reader.file()?;
        reader.check_mirrors(&file)?;
        let device = match file.models.device.as_deref().or(file.device.as_deref()) {
            None => Device::Cpu,
            Some(d) => reader.device(d, reader.where_is(d))?,
        };
        // The wanted list: models.require, then each wanted preset's entries.
        let mut wanted: Vec<Requirement> = file.models.require.clone();
        wanted.extend(extra.iter().cloned());
        let mut preset_names: Vec<String> = file.models.presets.clone();
        preset_names.extend(extra_presets.iter().cloned());
        for preset in &preset_names {
            wanted.extend(reader.preset(&file, preset)?);
        }
        let mut specs: Vec<ModelSpec> = Vec::new();
        let mut seen_dirs: BTreeMap<String, usize> = BTreeMap::new();
        for req in &wanted {
            let (spec, at) = reader.spec(&file, req, device)?;
            // `seen_dirs` maps each directory name to its spec: one lookup per model.
            if let Some(&existing) = seen_dirs.get(&spec.dir_name()) {
                if specs[existing] == spec {
                    continue; // The same model wanted twice (e.g. by two presets) is one model.
                }
                return Err(reader.invalid(
                    at,
                    format!("two models are named `{}`", spec.name),
                    "give one of them another `name:` (table form: `- id: …` with `name: …`)",
                ));
            }
            seen_dirs.insert(spec.dir_name(), specs.len());
            specs.push(spec);
        }
        Ok(Config {
            path: path.to_path_buf(),
            models: file.models,
            presets: file.presets,
            specs,
            device,
            verify: file.verify,
        })
    }

    /// The directory that holds `models.lock` and against which relative paths resolve.
    pub fn project_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.project_dir().join("models.lock")
    }

    /// Where models are placed: `download.cache_dir`, else `model_path`, else `models/`.
    pub fn models_dir(&self) -> PathBuf {
        let dir = self
            .models
            .download
            .cache_dir
            .as_deref()
            .or(self.models.model_path.as_deref())
            .unwrap_or("models/");
        self.project_dir().join(dir)
    }

    pub fn registry_file_name(&self) -> &str {
        self.models.registry_file.as_deref().unwrap_or("model_registry.json")
    }

    pub fn concurrency(&self) -> usize {
        self.models.download.concurrency.unwrap_or(8).max(1)
    }

    pub fn presets(&self) -> &BTreeMap<String, Vec<Requirement>> {
        &self.presets
    }

    /// Verifies every model on `device` for this run (`--device`, e.g. CPU in
    /// a build stage without a GPU when the config says `cuda`).
    pub fn override_device(&mut self, device: Device) {
        self.device = device;
        for spec in &mut self.specs {
            spec.device = device;
        }
    }

    /// The effective configuration as YAML, defaults filled in (`mdl config`).
    pub fn effective_yaml(&self) -> String {
        let mut models = self.models.clone();
        models.download.cache_dir.get_or_insert_with(|| "models/".into());
        models.download.concurrency.get_or_insert(self.concurrency());
        models
            .registry_file
            .get_or_insert_with(|| self.registry_file_name().to_string());
        models.device.get_or_insert_with(|| self.device.to_string());
        let file = ConfigFile {
            models,
            presets: self.presets.clone(),
            device: None,
            verify: self.verify.clone(),
        };
        serde_yaml_ng::to_string(&file).unwrap_or_default()
    }
}

/// An entry's `revision:` merged into its id, as the id's source takes one;
/// `Err` is the message and its hint.
fn merge_revision(id: &mut ModelId, rev: &str) -> Result<(), (String, &'static str)> {
    let rule = id
        .source()
        .map_or(ConfigRevision::Refused, |s| s.kind().config_revision());
    match (rule, id.revision.as_deref()) {
        (ConfigRevision::Taken | ConfigRevision::Defaulted, None) => id.revision = Some(rev.to_string()),
        (ConfigRevision::Taken, Some(other)) if other != rev => {
            return Err((
                format!("`{id}` gives revision `{other}` and `revision: {rev}`"),
                "keep one of the two",
            ))
        }
        (ConfigRevision::Taken | ConfigRevision::Defaulted, Some(_)) => {}
        (ConfigRevision::Refused, _) => {
            return Err((
                format!("`{id}` cannot have a `revision`"),
                "remove `revision:`; this model is pinned by the content it serves",
            ))
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Line and column (1-based) of the first occurrence of `needle` in `raw`, so that
/// errors found after parsing still point at the user's text.
/// config.yaml's text, read: each refusal says where (line and column of
/// the text it is about) and how to fix it.
struct Reader<'a> {
    path: &'a Path,
    raw: &'a str,
}

/// A line and column in config.yaml, when the text can be found.
type At = (Option<usize>, Option<usize>);

impl Reader<'_> {
    fn invalid(&self, (line, column): At, message: String, hint: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
            hint: hint.to_string(),
        }
    }

    fn where_is(&self, needle: &str) -> At {
        locate(self.raw, needle).unzip()
    }

    /// The YAML, into its schema; an unknown key or a wrong type is refused
    /// where it stands.
    fn file(&self) -> Result<ConfigFile, ConfigError> {
        if self.raw.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        serde_yaml_ng::from_str(self.raw).map_err(|e| {
            let loc = e.location();
            let hint = if e.to_string().contains("unknown field") {
                "remove or rename the key; `mdl config` prints every accepted key with its effective value"
            } else {
                "fix the YAML at that position; a model entry is a string like `huggingface:org/name` or a table with an `id` key"
            };
            // The position is already in front of the message; drop serde's copy.
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(at) => message[..at].to_string(),
                None => message,
            };
            self.invalid((loc.as_ref().map(|l| l.line()), loc.as_ref().map(|l| l.column())), message, hint)
        })
    }

    /// Every mirror is an OCI repository (`oci://HOST/REPO`, no tag or digest).
    fn check_mirrors(&self, file: &ConfigFile) -> Result<(), ConfigError> {
        for mirror in &file.models.download.mirrors {
            let url = mirror.url();
            let bad = |reason: String| {
                self.invalid(
                    self.where_is(url),
                    format!("the mirror `{url}` is not an OCI repository: {reason}"),
                    "write `oci://HOST/REPO` (the repository `mdl push` filled), e.g. `oci://registry.acme.internal/models`",
                )
            };
            if !url.starts_with("oci://") {
                return Err(bad("it does not start with `oci://`".into()));
            }
            match crate::oci::OciRef::parse(url) {
                Ok(r) if r.tag.is_some() || r.digest.is_some() => {
                    return Err(bad("a mirror is a repository, without a tag or digest".into()))
                }
                Ok(_) => {}
                Err(crate::oci::OciError::BadReference { reason, .. }) => return Err(bad(reason)),
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        Ok(())
    }

    fn device(&self, d: &str, at: At) -> Result<Device, ConfigError> {
        Device::parse(d).ok_or_else(|| {
            self.invalid(
                at,
                format!("`{d}` is not a device"),
                "write one of `cpu`, `cuda`, `cuda:N`, `mps`, `auto`",
            )
        })
    }

    /// A wanted preset's entries: config.yaml's own, else a built-in one.
    fn preset(&self, file: &ConfigFile, preset: &str) -> Result<Vec<Requirement>, ConfigError> {
        if let Some(entries) = file.presets.get(preset) {
            return Ok(entries.clone());
        }
        if let Some((_, ids)) = BUILTIN_PRESETS.iter().find(|(name, _)| *name == preset) {
            return Ok(ids
                .iter()
                .map(|id| Requirement {
                    id: id.to_string(),
                    ..Default::default()
                })
                .collect());
        }
        let known: Vec<_> = (BUILTIN_PRESETS.iter().map(|(k, _)| format!("`{k}`")))
            .chain(file.presets.keys().map(|k| format!("`{k}`")))
            .collect();
        let hint = match known.is_empty() {
            true => "define it under the top-level `presets:` map".to_string(),
            false => format!("defined presets: {}", known.join(", ")),
        };
        Err(self.invalid(
            self.where_is(preset),
            format!("there is no preset named `{preset}`"),
            &hint,
        ))
    }

    /// One wanted entry, checked: its id (and `revision:`), its source
    /// enabled, its name, globs and device. Returns it with where it stands.
    fn spec(&self, file: &ConfigFile, req: &Requirement, device: Device) -> Result<(ModelSpec, At), ConfigError> {
        // An empty id cannot be found by its text: point at the list instead.
        let at = self.where_is(if req.id.trim().is_empty() { "require" } else { &req.id });
        let mut id =
            ModelId::parse(&req.id).map_err(|e: IdError| self.invalid(at, e.to_string(), &IdError::accepted()))?;
        if let Some(rev) = &req.revision {
            merge_revision(&mut id, rev).map_err(|(message, hint)| self.invalid(at, message, hint))?;
        }
        if let Some(source) = id.source().filter(|s| !file.models.download.sources.enabled(*s)) {
            return Err(self.invalid(
                at,
                format!("`{}` needs the `{source}` source, which is disabled", req.id),
                &format!("set `models.download.sources.{source}.enabled: true`, or remove the model"),
            ));
        }
        let name = match &req.name {
            Some(name) if !valid_name(name) => {
                return Err(self.invalid(
                    self.where_is(name),
                    format!("`{name}` is not a valid model name"),
                    "a name is letters, digits, `-`, `_` and `.`, not starting with `.`",
                ))
            }
            Some(name) => name.clone(),
            None => id.default_name(),
        };
        self.check_globs(req, &id, at)?;
        let device = match &req.device {
            None => device,
            Some(d) => self.device(d, at)?,
        };
        let verify = req.verify.clone().unwrap_or(VerifyOptions {
            load: true,
            ..VerifyOptions::default()
        });
        let (include, exclude) = (req.include.clone(), req.exclude.clone());
        Ok((
            ModelSpec {
                name,
                id,
                include,
                exclude,
                device,
                verify,
            },
            at,
        ))
    }

    /// `include`/`exclude` are valid globs, and only for sources of many files.
    fn check_globs(&self, req: &Requirement, id: &ModelId, at: At) -> Result<(), ConfigError> {
        for glob in req.include.iter().chain(&req.exclude) {
            if let Err(e) = globset::Glob::new(glob) {
                return Err(self.invalid(
                    self.where_is(glob),
                    format!("`{glob}` is not a valid glob ({e})"),
                    "write a glob like `*.safetensors` or `onnx/**`",
                ));
            }
        }
        if id.source().is_some_and(Source::is_single_file) && !(req.include.is_empty() && req.exclude.is_empty()) {
            return Err(self.invalid(
                at,
                format!("`{}` is a single file; `include`/`exclude` do not apply", req.id),
                "remove `include:` and `exclude:` from this entry",
            ));
        }
        Ok(())
    }
}

fn locate(raw: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    raw.lines().enumerate().find_map(|(i, line)| {
        let code = line.split(" #").next().unwrap_or(line);
        code.find(needle).map(|col| (i + 1, col + 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config.schema.json` is what the types generate; `MDL_UPDATE_SCHEMA=1`
    /// rewrites it after a change to them.
    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json");
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("MDL_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "config.schema.json is out of date: run `MDL_UPDATE_SCHEMA=1 cargo test -p mdl-cli --lib schema` and commit it"
        );
    }

    fn parse(raw: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("config.yaml"), raw, &[])
    }

    type Wrap = std::rc::Rc<dyn Fn(serde_json::Value) -> serde_json::Value>;

    /// Every place of the schema that holds a mapping with named keys: a
    /// document putting only `key` there, and where it is (for messages).
    fn mappings(
        node: &serde_json::Value,
        schema: &serde_json::Value,
        wrap: Wrap,
        at: String,
        seen: &mut Vec<String>,
        out: &mut Vec<(String, serde_json::Value)>,
    ) {
        use serde_json::{json, Value};
        if let Some(name) = node["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
            if seen.iter().filter(|s| *s == name).count() < 1 {
                seen.push(name.to_string());
                mappings(&schema["$defs"][name], schema, wrap, at, seen, out);
                seen.pop();
            }
            return;
        }
        for alternative in ["anyOf", "oneOf", "allOf"].iter().filter_map(|k| node[*k].as_array()) {
            for a in alternative {
                mappings(a, schema, wrap.clone(), at.clone(), seen, out);
            }
        }
        if let Some(properties) = node["properties"].as_object() {
            out.push((at.clone(), wrap(json!({ "bogus_key_xyz": 1 }))));
            for (key, sub) in properties {
                let (outer, key2) = (wrap.clone(), key.clone());
                let inner: Wrap = std::rc::Rc::new(move |v| outer(json!({ key2.clone(): v })));
                mappings(sub, schema, inner, format!("{at}.{key}"), seen, out);
            }
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            let outer = wrap.clone();
            let inner: Wrap = std::rc::Rc::new(move |v| outer(json!({ "some_name": v })));
            mappings(values, schema, inner, format!("{at}.*"), seen, out);
        }
        if let Some(items) = node.get("items").filter(|v| v.is_object()) {
            let outer = wrap.clone();
            let inner: Wrap = std::rc::Rc::new(move |v| outer(Value::Array(vec![v])));
            mappings(items, schema, inner, format!("{at}[]"), seen, out);
        }
    }

    /// A test generated from `config.schema.json`: every mapping it allows
    /// refuses a key it does not know, naming the key with its line:column.
    #[test]
    fn every_mapping_the_schema_allows_refuses_an_unknown_key() {
        let schema = json_schema();
        let mut documents = Vec::new();
        mappings(
            &schema,
            &schema,
            std::rc::Rc::new(|v| v),
            "config".into(),
            &mut Vec::new(),
            &mut documents,
        );
        assert!(documents.len() >= 15, "{} mappings: {documents:?}", documents.len());
        assert!(
            documents.iter().any(|(at, _)| at == "config.models.download.mirrors[]"),
            "{documents:?}"
        );
        for (at, document) in documents {
            let yaml = serde_yaml_ng::to_string(&document).unwrap();
            let err = match parse(&yaml) {
                Ok(_) => panic!("{at}: an unknown key was accepted:\n{yaml}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains("bogus_key_xyz"), "{at}: {err}\n{yaml}");
            let place = regex_lite_line_column(&err);
            assert!(place, "{at}: no line:column in {err}");
        }
    }

    /// `config.yaml:L:C` in a message.
    fn regex_lite_line_column(text: &str) -> bool {
        text.split("config.yaml:").skip(1).any(|rest| {
            let mut parts = rest.splitn(3, ':');
            let (line, column) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            !line.is_empty()
                && line.bytes().all(|b| b.is_ascii_digit())
                && column.bytes().take_while(u8::is_ascii_digit).count() > 0
        })
    }

    #[test]
    fn seed_keys_and_both_entry_forms() {
        let config = parse(
            r#"
models:
  model_path: "models/"
  auto_download: true
  registry_file: "model_registry.json"
  require:
    - huggingface:acme/tiny-bert   # a comment
    - id: huggingface:acme/tiny-gpt@v1.0
      include: ["*.safetensors", "*.json"]
    - id: url:https://example.org/w/model.pt
      name: custom_model
  download:
    cache_dir: "models/"
    sources:
      huggingface: { enabled: true }
      url: { enabled: true, verify_ssl: true, timeout_seconds: 300 }
"#,
        )
        .unwrap();
        let dirs: Vec<_> = config.specs.iter().map(ModelSpec::dir_name).collect();
        assert_eq!(
            dirs,
            [
                "huggingface_acme--tiny-bert",
                "huggingface_acme--tiny-gpt",
                "url_custom_model"
            ]
        );
        assert_eq!(config.specs[1].include, ["*.safetensors", "*.json"]);
    }

    #[test]
    fn unknown_key_has_position() {
        let err = parse("models:\n  requires: []\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("config.yaml:2:"), "{text}");
        assert!(text.contains("unknown field `requires`"), "{text}");
    }

    #[test]
    fn duplicate_names_and_bad_ids_are_located() {
        let err = parse("models:\n  require:\n    - acme/a\n    - id: url:https://x.org/a.pt\n      name: a\n    - id: url:https://x.org/b.pt\n      name: a\n").unwrap_err();
        assert!(err.to_string().contains("two models are named `a`"), "{err}");
        let err = parse("models:\n  require:\n    - weird:thing\n").unwrap_err();
        assert!(err.to_string().starts_with("config.yaml:3:7"), "{err}");
    }

    #[test]
    fn disabled_source_is_named() {
        let err = parse(
            "models:\n  require: [\"https://x.org/a.pt\"]\n  download:\n    sources:\n      url: { enabled: false }\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`url` source, which is disabled"), "{err}");
    }

    #[test]
    fn user_presets() {
        let config = Config::parse(
            Path::new("config.yaml"),
            "models:\n  presets: [mine]\npresets:\n  mine: [acme/a, {id: acme/b, include: ['*.json']}]\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.specs.len(), 2);
        let err = parse("models:\n  presets: [nope]\n").unwrap_err();
        assert!(err.to_string().contains("no preset named `nope`"));
        let vision = parse("models:\n  presets: [vision]\n").unwrap();
        let names: Vec<_> = vision.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16"]
        );
        // `all` is vision + nlp; wanting both presets gives each model once.
        assert_eq!(parse("models:\n  presets: [all, vision]\n").unwrap().specs.len(), 8);
    }

    #[test]
    fn devices() {
        assert_eq!(Device::parse("cuda:1"), Some(Device::Cuda(Some(1))));
        assert_eq!(Device::parse("tpu"), None);
        let config = parse("device: cuda\nmodels:\n  require: [acme/a]\n").unwrap();
        assert_eq!(config.specs[0].device, Device::Cuda(None));
    }
}
