//! Verification: proves a synced model is usable, not just present.
//!
//! Each file's format is detected from its bytes (not its name): TorchScript
//! archive, `torch.save` zip (state dict or any pickled object of tensors), legacy
//! `torch.save` pickle, or safetensors. With the `libtorch` feature (the default)
//! every tensor is then built in libtorch on the configured device — see
//! `libtorch.rs` for why mdl reads the pickle itself. Without it, the structure is
//! still checked (every storage present and large enough, safetensors header and
//! offsets valid), and reports say that loading was not possible in this build.

mod budget;
pub mod formats;
pub mod libtorch_dir;
mod models;
mod shards;

pub use budget::{default_budget, largest_tensor, plan_lanes, Lanes};
pub use models::{verify_models, ModelCheck};
pub use shards::check_shards;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::Device;
pub use crate::report::{FileReport, Format, TensorReport, TorchUsed};

/// What was found in a file's first bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    Weights(Format),
    /// Not a weight file (config, tokenizer, …): nothing to load.
    Other,
    /// Named like a weight file but holding something else.
    Unrecognized {
        reason: String,
    },
    /// Weights in a format mdl cannot load or check: only its hash was
    /// checked, for this reason.
    Unknown {
        reason: String,
    },
}

/// Extensions that promise weights: a file named so must be a known format.
const WEIGHT_EXTENSIONS: &[&str] = &[
    "pt",
    "pth",
    "ckpt",
    "safetensors",
    "pkl",
    "jit",
    "torchscript",
    "gguf",
    "pt2",
];
/// Weight formats mdl reads neither with torch nor by structure: a file of
/// one is checked against its hash only, and reports say so.
const FOREIGN_WEIGHT_EXTENSIONS: &[(&str, &str)] = &[
    ("onnx", "ONNX"),
    ("h5", "Keras/HDF5"),
    ("hdf5", "HDF5"),
    ("keras", "Keras"),
    ("msgpack", "Flax msgpack"),
    ("tflite", "TensorFlow Lite"),
    ("pb", "TensorFlow graph"),
    ("npz", "NumPy archive"),
    ("npy", "NumPy array"),
    ("ggml", "GGML (before GGUF)"),
    ("mlmodel", "Core ML"),
    ("ot", "tch's own tensor archive"),
    ("nemo", "NeMo archive"),
    ("engine", "TensorRT engine"),
];
/// Extensions that often hold weights but not always (`.bin`): checked when recognised.
const MAYBE_WEIGHT_EXTENSIONS: &[&str] = &["bin", "model", "tar"];

/// Detects a file's format from its bytes and name.
pub fn detect(path: &Path) -> std::io::Result<Detected> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if let Some((_, kind)) = FOREIGN_WEIGHT_EXTENSIONS.iter().find(|(e, _)| *e == ext) {
        return Ok(Detected::Unknown {
            reason: format!("{kind} weights, a format mdl cannot load or check"),
        });
    }
    let strict = WEIGHT_EXTENSIONS.contains(&ext.as_str());
    if !strict && !MAYBE_WEIGHT_EXTENSIONS.contains(&ext.as_str()) {
        return Ok(Detected::Other);
    }
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)?.take(64).read_to_end(&mut head)?;
    let len = std::fs::metadata(path)?.len();
    if let Some(format) = formats::detect(&head, len, path) {
        return Ok(Detected::Weights(format));
    }
    if strict {
        let what = if head.is_empty() {
            "it is empty".to_string()
        } else if head.iter().take(32).all(|b| b.is_ascii()) {
            format!(
                "it starts with text ({:?})",
                String::from_utf8_lossy(&head[..head.len().min(24)])
            )
        } else {
            "it is not a zip archive, a torch pickle or safetensors".to_string()
        };
        return Ok(Detected::Unrecognized {
            reason: format!("`.{ext}` file of unknown format: {what}"),
        });
    }
    if ext == "bin" || ext == "tar" {
        // `pytorch_model.bin`, `ggml-model-q4_0.bin`: weights, in a format
        // mdl did not recognise (a tokenizer's `.model` is not weights).
        return Ok(Detected::Unknown {
            reason: format!("a `.{ext}` file that is not torch, safetensors or GGUF"),
        });
    }
    Ok(Detected::Other)
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("`{}` cannot be loaded: {reason}", path.display())]
    Load {
        path: std::path::PathBuf,
        format: Option<Format>,
        reason: String,
    },
    #[error("libtorch sees no {what} device, but `device: {device}` was asked for")]
    DeviceUnavailable {
        device: Device,
        what: &'static str,
        detail: String,
    },
    #[error("model `{model}` failed verification: {reason}")]
    Model { model: String, reason: String },
    #[error("model `{model}` cannot be verified: {reason}")]
    Unverifiable { model: String, reason: String },
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model `{model}` is incomplete: `{index}` names the shard `{shard}`, which {filter} leaves out")]
    MissingShard {
        model: String,
        index: String,
        shard: String,
        filter: String,
    },
    #[error(
        "model `{model}` is inconsistent: `{index}` puts the tensor `{tensor}` in `{shard}`, which does not hold it"
    )]
    ShardLacksTensor {
        model: String,
        index: String,
        shard: String,
        tensor: String,
    },
    #[error("`{}` cannot be verified within the memory budget: its tensor `{tensor}` is {}, and `verify.max_memory` is {}", path.display(), crate::units::human_bytes(*bytes), crate::units::human_bytes(*budget))]
    OverBudget {
        path: std::path::PathBuf,
        tensor: String,
        bytes: u64,
        budget: u64,
    },
    #[error("the libtorch found by {found_by} (`{}`) is version {found}, but mdl-torch was built for {}", lib.display(), libtorch_dir::NEEDED)]
    LibtorchVersion {
        found: String,
        lib: std::path::PathBuf,
        found_by: String,
    },
    #[error("the libtorch helper `{}` cannot start: `{library}` was not found", helper.display())]
    LibtorchMissing {
        helper: std::path::PathBuf,
        library: String,
    },
    #[error("the Python verifier cannot `import torch` in `{}`: {detail}", python.display())]
    PythonTorch { python: std::path::PathBuf, detail: String },
    /// One failure every file of a batch shares (the verifier did not start).
    #[error(transparent)]
    Shared(std::sync::Arc<VerifyError>),
    /// The thread that verified a lane of files panicked (a bug in mdl, not
    /// in the model or the world).
    #[error("the verification of `{}` stopped: the thread verifying it panicked", path.display())]
    LanePanicked { path: std::path::PathBuf },
    /// The task that runs a whole batch of verifications failed.
    #[error("the verification batch stopped: {reason}")]
    BatchPanicked { reason: String },
}

impl VerifyError {
    /// A failure the user fixes in the config or the environment (exit code
    /// 2), not one of a model: a filter that drops a shard, a budget too
    /// small, a torch that is missing or of another version.
    pub fn is_setup(&self) -> bool {
        match self {
            VerifyError::MissingShard { .. }
            | VerifyError::Unverifiable { .. }
            | VerifyError::OverBudget { .. }
            | VerifyError::LibtorchVersion { .. }
            | VerifyError::LibtorchMissing { .. }
            | VerifyError::PythonTorch { .. } => true,
            VerifyError::Shared(inner) => inner.is_setup(),
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            VerifyError::DeviceUnavailable { detail, .. } => Some(format!(
                "{detail}; write `device: cpu` (or `device: auto` to use CUDA only when present) in config.yaml, or pass `--no-verify`"
            )),
            VerifyError::Load { .. } | VerifyError::Model { .. } => Some(
                "the file's hash matches the lock, so upstream serves it this way: report it upstream, pin another revision, or `exclude:` the file".into(),
            ),
            VerifyError::Unverifiable { .. } => Some(
                "`exclude:` the files mdl cannot read, or write `verify: { unknown: warn }` in config.yaml to accept them checked by hash only".into(),
            ),
            VerifyError::MissingShard { .. } => Some(
                "widen `include:` (or narrow `exclude:`) so every shard is synced, e.g. `include: [\"*.safetensors\", \"*.json\"]`; then run `mdl sync`".into(),
            ),
            VerifyError::ShardLacksTensor { .. } => Some(
                "the repository's index and shards disagree upstream: pin another revision, or report it upstream".into(),
            ),
            VerifyError::OverBudget { bytes, .. } => Some(format!(
                "set `verify: {{ max_memory: ... }}` in config.yaml to at least {} (it counts tensor bytes held at once; libtorch's own ~250 MiB per helper comes on top), verify on a machine with more memory, or pass `--no-verify`",
                crate::units::human_bytes(*bytes)
            )),
            VerifyError::LibtorchVersion { .. } => Some(format!(
                "`{}` in that Python environment, or point `MDL_LIBTORCH` at a libtorch {} directory; `mdl doctor` shows which libtorch is used",
                libtorch_dir::FIX,
                libtorch_dir::NEEDED
            )),
            VerifyError::LibtorchMissing { .. } => Some(format!(
                "install libtorch {} where mdl finds it: `{}` in the active Python environment (or activate the one that has it), or set `MDL_LIBTORCH` to a libtorch directory; `mdl doctor` shows where it looks",
                libtorch_dir::NEEDED,
                libtorch_dir::FIX
            )),
            VerifyError::PythonTorch { .. } => Some(
                "`pip install torch` in that environment (a full install: `import torch` needs its CUDA libraries), activate another, or set `MDL_VERIFIER=structure` to check hashes and structure only".into(),
            ),
            VerifyError::Shared(inner) => inner.hint(),
            VerifyError::Io { .. } => None,
            VerifyError::LanePanicked { .. } | VerifyError::BatchPanicked { .. } => Some("this is a bug in mdl: please report it with the output of `mdl -v`".into()),
        }
    }
}

/// Whether this build can load with libtorch.
pub const LIBTORCH: bool = cfg!(feature = "libtorch");

/// One file to verify.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub path: std::path::PathBuf,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Vec<i64>>,
    /// Load a format whose loading runs code the way torch does (config.yaml's
    /// `verify.run_code`, or `verify.forward`); else it is checked by
    /// structure and its weights loaded without running anything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_code: bool,
    /// The format mdl detected and checked (the Python verifier loads by it;
    /// mdl-torch detects and checks again itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// A GGUF file's tensors as mdl's reader checked them, for the Python
    /// verifier (one GGUF reader, mdl's; the helper reads it itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

pub use formats::{Span, View};

/// The helper's answer for one request (one JSON line on its stdout).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
// One answer per file, moved once: boxing the report would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Loaded {
        index: usize,
        report: Option<FileReport>,
    },
    LoadFailed {
        index: usize,
        format: Option<Format>,
        reason: String,
    },
    DeviceUnavailable {
        index: usize,
        what: String,
        detail: String,
    },
}

impl Answer {
    pub fn index(&self) -> usize {
        match self {
            Answer::Loaded { index, .. }
            | Answer::LoadFailed { index, .. }
            | Answer::DeviceUnavailable { index, .. } => *index,
        }
    }

    fn into_result(self, request: &Request) -> Result<Option<FileReport>, VerifyError> {
        match self {
            Answer::Loaded { report, .. } => Ok(report),
            Answer::LoadFailed { format, reason, .. } => Err(VerifyError::Load {
                path: request.path.clone(),
                format,
                reason,
            }),
            Answer::DeviceUnavailable { what, detail, .. } => Err(VerifyError::DeviceUnavailable {
                device: Device::parse(&request.device).unwrap_or_default(),
                what: if what == "MPS" { "MPS" } else { "CUDA" },
                detail,
            }),
        }
    }
}

/// How this process verifies files.
///
/// Loading runs in a helper process: `mdl-torch`, next to the `mdl` binary,
/// when the torch it finds is the one `mdl-torch` was built for, else a
/// Python verifier in the environment's own torch (any torch >= 2.0,
/// `python_torch.py`). Either way `mdl` itself never links libtorch, so it
/// starts in milliseconds (loading libtorch's shared libraries alone costs
/// ~0.3 s), and a crash inside torch on a hostile file cannot take `mdl` down.
#[derive(Clone, Debug)]
pub enum Verifier {
    /// Load with libtorch through the helper at `path`, with the libtorch found
    /// at run time (`None`: the one the helper was built against).
    Helper {
        path: std::path::PathBuf,
        libtorch: Option<libtorch_dir::Libtorch>,
    },
    /// Load in the torch of the Python environment `torch.python` names.
    Python { torch: libtorch_dir::Libtorch },
    /// Only the structure can be checked, for this reason.
    StructureOnly { reason: String },
}

/// Environment variable naming the helper explicitly.
pub const HELPER_ENV: &str = "MDL_TORCH";
/// Environment variable choosing the verifier: `mdl-torch`, `python` or
/// `structure` (default: `mdl-torch` when its version matches, else `python`).
pub const VERIFIER_ENV: &str = "MDL_VERIFIER";
/// The oldest torch the Python verifier runs in (`weights_only` loading and
/// the dtypes it names).
pub const OLDEST_PYTHON_TORCH: (u32, u32) = (2, 0);
/// The Python verifier, run as `python -I -c` (see the file).
const PYTHON_VERIFIER: &str = include_str!("python_torch.py");

/// Where the helper is installed when it is not next to the running
/// executable: the Python module's process is `python`, and pip put
/// `mdl-torch` in the environment's scripts directory.
static INSTALLED_HELPER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Tells [`Verifier::discover`] where the helper was installed (once per
/// process; `$MDL_TORCH` still wins).
pub fn set_installed_helper(path: std::path::PathBuf) {
    let _ = INSTALLED_HELPER.set(path);
}

impl Verifier {
    /// The verifier for this machine: `mdl-torch` when the torch found
    /// (`MDL_LIBTORCH`, `LIBTORCH`, `VIRTUAL_ENV`, `python3`) is the version it
    /// was built for, else that torch's own Python, else structure only.
    /// `MDL_VERIFIER` picks one.
    pub fn discover() -> Verifier {
        let forced = std::env::var(VERIFIER_ENV).ok().filter(|v| !v.is_empty());
        let helper = if LIBTORCH { helper_path() } else { None };
        let torch = libtorch_dir::find();
        let python = torch
            .clone()
            .filter(|t| t.python.is_some() && t.major_minor().is_some_and(|v| v >= OLDEST_PYTHON_TORCH));
        let no_torch = || {
            let looked = "`MDL_LIBTORCH`, `LIBTORCH`, `VIRTUAL_ENV`'s Python and `python3`";
            match &torch {
                Some(t) if t.python.is_some() => format!(
                    "the torch found by {} is {}, older than the {}.{} the Python verifier needs{}",
                    t.found_by,
                    t.version.as_deref().unwrap_or("of unknown version"),
                    OLDEST_PYTHON_TORCH.0,
                    OLDEST_PYTHON_TORCH.1,
                    if LIBTORCH {
                        ""
                    } else {
                        ", and this mdl has no libtorch helper"
                    }
                ),
                Some(t) => format!("the libtorch found by {} has no Python to verify in", t.found_by),
                None if LIBTORCH => {
                    format!("no torch was found ({looked}), and `mdl-torch` is not installed next to `mdl`")
                }
                None => format!("no torch was found ({looked}), and this mdl was built without the libtorch helper"),
            }
        };
        let helper_verifier = |path: std::path::PathBuf| Verifier::Helper {
            path,
            libtorch: torch.clone(),
        };
        match forced.as_deref() {
            Some("structure") => Verifier::StructureOnly {
                reason: format!("`{VERIFIER_ENV}=structure` asks for structure checks only"),
            },
            Some("python") => match python {
                Some(torch) => Verifier::Python { torch },
                None => Verifier::StructureOnly {
                    reason: format!("`{VERIFIER_ENV}=python`, but {}", no_torch()),
                },
            },
            Some("mdl-torch") => match helper {
                Some(path) => helper_verifier(path),
                None => Verifier::StructureOnly {
                    reason: format!("`{VERIFIER_ENV}=mdl-torch`, but the libtorch helper `mdl-torch` is not installed next to `mdl`"),
                },
            },
            _ => {
                let helper_fits = torch.as_ref().is_none_or(|t| t.matches());
                match (helper, python) {
                    (Some(path), _) if helper_fits => helper_verifier(path),
                    (_, Some(torch)) => Verifier::Python { torch },
                    // A libtorch of another version with no Python beside it:
                    // `check_libtorch` says which version is needed.
                    (Some(path), None) => helper_verifier(path),
                    (None, None) => Verifier::StructureOnly { reason: no_torch() },
                }
            }
        }
    }

    pub fn loads(&self) -> bool {
        matches!(self, Verifier::Helper { .. } | Verifier::Python { .. })
    }

    /// The torch this verifier loads with, for reports and `mdl doctor`.
    pub fn torch(&self) -> Option<TorchUsed> {
        match self {
            Verifier::Helper { libtorch, .. } => Some(match libtorch {
                Some(found) => TorchUsed {
                    version: found.version.clone().unwrap_or_else(|| "of unknown version".into()),
                    found_by: found.found_by.replace('`', ""),
                    via: "mdl-torch".into(),
                },
                None => TorchUsed {
                    version: libtorch_dir::NEEDED.into(),
                    found_by: "mdl-torch's build".into(),
                    via: "mdl-torch".into(),
                },
            }),
            Verifier::Python { torch } => Some(TorchUsed {
                version: torch.version.clone().unwrap_or_default(),
                found_by: torch.found_by.replace('`', ""),
                via: "python".into(),
            }),
            Verifier::StructureOnly { .. } => None,
        }
    }

    /// Refuses a libtorch of another version than the helper's, saying which
    /// is installed, which is needed, and how to fix it.
    pub fn check_libtorch(&self) -> Result<(), VerifyError> {
        match self {
            Verifier::Helper {
                libtorch: Some(found), ..
            } if !found.matches() => Err(VerifyError::LibtorchVersion {
                found: found.version.clone().unwrap_or_default(),
                lib: found.lib.clone(),
                found_by: found.found_by.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Verifies every request, the lanes in parallel (one helper process per
    /// lane, each loading its files one after another); results are in request
    /// order.
    pub fn verify_in_lanes(&self, requests: &[Request], lanes: &Lanes) -> Vec<Result<Option<FileReport>, VerifyError>> {
        let mut results: Vec<Option<Result<Option<FileReport>, VerifyError>>> =
            (0..requests.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = lanes
                .lanes
                .iter()
                .map(|lane| {
                    let batch: Vec<Request> = lane.iter().map(|&i| requests[i].clone()).collect();
                    scope.spawn(move || self.verify_limited(&batch, Some(helper_memory_limit(lanes.budget))))
                })
                .collect();
            for (lane, handle) in lanes.lanes.iter().zip(handles) {
                let answers = handle.join().unwrap_or_else(|_| {
                    lane.iter()
                        .map(|&i| {
                            Err(VerifyError::LanePanicked {
                                path: requests[i].path.clone(),
                            })
                        })
                        .collect()
                });
                for (&i, answer) in lane.iter().zip(answers) {
                    results[i] = Some(answer);
                }
            }
        });
        results
            .into_iter()
            .map(|r| r.expect("every request is in a lane"))
            .collect()
    }

    /// Verifies every request; results are in request order.
    pub fn verify(&self, requests: &[Request]) -> Vec<Result<Option<FileReport>, VerifyError>> {
        self.verify_limited(requests, None)
    }

    /// [`Verifier::verify`], each helper process limited to `data_limit` bytes
    /// of heap (`RLIMIT_DATA`): whatever a file makes it do, it cannot take the
    /// machine's memory, and running out is a failed load of that file.
    pub fn verify_limited(
        &self,
        requests: &[Request],
        data_limit: Option<u64>,
    ) -> Vec<Result<Option<FileReport>, VerifyError>> {
        let torch = self.torch();
        let results = match self {
            Verifier::StructureOnly { .. } => requests
                .iter()
                .map(|r| check_file(&r.path, Device::parse(&r.device).unwrap_or_default()))
                .collect(),
            Verifier::Helper { path, libtorch } => {
                let process = Process::Helper {
                    path,
                    libtorch: libtorch.as_ref().map(|l| l.lib.as_path()),
                };
                run_helper(&process, requests, data_limit)
            }
            Verifier::Python { torch } => {
                let python = torch.python.as_deref().unwrap_or(Path::new("python3"));
                verify_in_python(python, requests, data_limit)
            }
        };
        results
            .into_iter()
            .zip(requests)
            .map(|(r, request)| {
                r.map(|report| {
                    report.map(|mut report| {
                        if report.loaded {
                            report.torch = torch.clone();
                        }
                        // One place for every verifier: mdl's reader says
                        // what the model is.
                        if report.architecture.is_none() {
                            report.architecture = formats::of(report.format).architecture(&request.path);
                        }
                        report
                    })
                })
            })
            .collect()
    }
}

/// `$MDL_TORCH`, else where the installer put it, else next to the running
/// executable (or one level up: `cargo test` runs from target/*/deps).
fn helper_path() -> Option<std::path::PathBuf> {
    let installed = || INSTALLED_HELPER.get().filter(|p| p.is_file()).cloned();
    std::env::var_os(HELPER_ENV)
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(installed)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            let dir = exe.parent()?;
            [dir.join("mdl-torch"), dir.join("../mdl-torch")]
                .into_iter()
                .find(|p| p.is_file())
        })
}

/// The Python verifier: mdl's own structure checks first, in this process
/// (the same ones mdl-torch runs, the pickle safety rules among them), then
/// the weight files that passed are loaded in the environment's torch.
fn verify_in_python(
    python: &Path,
    requests: &[Request],
    data_limit: Option<u64>,
) -> Vec<Result<Option<FileReport>, VerifyError>> {
    let mut results: Vec<Option<Result<Option<FileReport>, VerifyError>>> = Vec::with_capacity(requests.len());
    let mut to_load = Vec::new();
    let mut positions = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        match check_file(&request.path, Device::parse(&request.device).unwrap_or_default()) {
            Ok(Some(report)) => {
                let format = formats::of(report.format);
                let spans = match format.holds_code() && request.run_code {
                    true => Vec::new(),
                    false => format.spans(&request.path),
                };
                to_load.push(Request {
                    format: Some(report.format),
                    spans,
                    ..request.clone()
                });
                positions.push(i);
                results.push(None);
            }
            other => results.push(Some(other)),
        }
    }
    if !to_load.is_empty() {
        let loaded = run_helper(&Process::Python { python }, &to_load, data_limit);
        for ((i, mut result), request) in positions.into_iter().zip(loaded).zip(&to_load) {
            // What the structure says the file holds (mdl's reader, not Python's).
            if let Ok(Some(report)) = &mut result {
                if report.contents.is_none() {
                    report.contents = formats::of(report.format).contents(&request.path);
                }
            }
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every request answered"))
        .collect()
}

/// A verifier process: the libtorch helper, or Python running `python_torch.py`.
enum Process<'a> {
    Helper {
        path: &'a Path,
        /// Put first on `LD_LIBRARY_PATH`.
        libtorch: Option<&'a Path>,
    },
    Python {
        python: &'a Path,
    },
}

impl Process<'_> {
    /// What keeps every file from loading, from the stderr of a process that
    /// answered nothing: a library the helper cannot find, a Python whose
    /// `import torch` fails. `None`: no such cause is said.
    fn fatal(&self, stderr: &str) -> Option<VerifyError> {
        match self {
            Process::Helper { path, .. } => missing_library(stderr).map(|library| VerifyError::LibtorchMissing {
                helper: path.to_path_buf(),
                library,
            }),
            Process::Python { python } => (stderr.lines())
                .find_map(|l| l.strip_prefix("mdl: `import torch` failed: "))
                .map(|detail| VerifyError::PythonTorch {
                    python: python.to_path_buf(),
                    detail: detail.trim().to_string(),
                }),
        }
    }

    fn command(&self) -> std::process::Command {
        match self {
            Process::Helper { path, libtorch } => {
                let mut command = std::process::Command::new(path);
                if let Some(lib) = libtorch {
                    // Ahead of the helper's RUNPATH (the build-time location).
                    let mut paths = vec![lib.to_path_buf()];
                    paths.extend(
                        std::env::var_os("LD_LIBRARY_PATH")
                            .map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
                            .unwrap_or_default(),
                    );
                    if let Ok(joined) = std::env::join_paths(paths) {
                        command.env("LD_LIBRARY_PATH", joined);
                    }
                }
                command
            }
            Process::Python { python } => {
                let mut command = std::process::Command::new(python);
                // -I: isolated, so nothing from the current directory (a model
                // directory), PYTHONPATH or user site-packages is imported.
                command.args(["-I", "-c", PYTHON_VERIFIER]);
                command
            }
        }
    }

    /// `the libtorch helper `…``, `Python (`…`)`: for messages.
    fn describe(&self) -> String {
        match self {
            Process::Helper { path, .. } => format!("the libtorch helper `{}`", path.display()),
            Process::Python { python } => format!("the Python verifier (`{}`)", python.display()),
        }
    }
}

/// Runs the helper over `requests`. If it dies (a crash inside libtorch), the
/// file it was loading fails with that reason and the rest go to a new helper.
/// A helper's heap limit for a budget of `budget` tensor bytes: the budget,
/// plus 1 GiB for libtorch itself and the reader's own values.
pub fn helper_memory_limit(budget: u64) -> u64 {
    budget.saturating_add(1 << 30)
}

fn run_helper(
    process: &Process<'_>,
    requests: &[Request],
    data_limit: Option<u64>,
) -> Vec<Result<Option<FileReport>, VerifyError>> {
    let mut results: Vec<Option<Result<Option<FileReport>, VerifyError>>> = (0..requests.len()).map(|_| None).collect();
    loop {
        let pending: Vec<usize> = (0..requests.len()).filter(|i| results[*i].is_none()).collect();
        let Some(&first) = pending.first() else { break };
        let batch: Vec<&Request> = pending.iter().map(|i| &requests[*i]).collect();
        let mut run = match run_batch(process, &batch, data_limit) {
            Ok(run) => run,
            Err(e) => {
                for i in pending {
                    let reason = format!("{} could not start ({e})", process.describe());
                    results[i] = Some(Err(VerifyError::Load {
                        path: requests[i].path.clone(),
                        format: None,
                        reason,
                    }));
                }
                break;
            }
        };
        for (k, answer) in std::mem::take(&mut run.answers) {
            let Some(&i) = pending.get(k) else { continue };
            results[i] = Some(answer.into_result(&requests[i]));
        }
        let answered = pending.iter().filter(|i| results[**i].is_some()).count();
        // The helper never started: no file is to blame.
        if let Some(error) = (answered == 0).then(|| process.fatal(&run.stderr)).flatten() {
            let error = std::sync::Arc::new(error);
            for i in pending {
                results[i] = Some(Err(VerifyError::Shared(error.clone())));
            }
            break;
        }
        if answered < pending.len() {
            // The helper stopped early: blame the first file it did not answer.
            let culprit = pending.iter().copied().find(|i| results[*i].is_none()).unwrap_or(first);
            results[culprit] = Some(Err(VerifyError::Load {
                path: requests[culprit].path.clone(),
                format: None,
                reason: run.crash(),
            }));
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every request answered"))
        .collect()
}

/// What one verifier process answered: each answer with its index in the
/// batch, its stderr, and how it exited.
struct BatchRun {
    answers: Vec<(usize, Answer)>,
    stderr: String,
    status: std::io::Result<std::process::ExitStatus>,
}

impl BatchRun {
    /// Why the process stopped early: its exit and the last line it said.
    fn crash(&self) -> String {
        let how = match &self.status {
            Ok(s) => describe_exit(*s),
            Err(e) => e.to_string(),
        };
        let last = (self.stderr.lines().rev())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        match last.is_empty() {
            true => format!("torch crashed while loading it ({how})"),
            false => format!("torch crashed while loading it ({how}): {last}"),
        }
    }
}

/// Runs one verifier process over `batch` (under `data_limit` bytes of
/// data segment, `RLIMIT_DATA`): the requests as JSON on its stdin, one
/// answer per line on its stdout. `Err`: it could not be started.
fn run_batch(process: &Process<'_>, batch: &[&Request], data_limit: Option<u64>) -> std::io::Result<BatchRun> {
    use std::io::{BufRead, Write};
    let mut command = process.command();
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(limit) = data_limit {
        use std::os::unix::process::CommandExt;
        // SAFETY: only `setrlimit`, async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_DATA, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = serde_json::to_vec(&batch).expect("requests serialise");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = child.stdout.take().expect("piped");
    let answers = (std::io::BufReader::new(stdout).lines())
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Answer>(&line).ok())
        .map(|answer| (answer.index(), answer))
        .collect();
    let _ = writer.join();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let status = child.wait();
    Ok(BatchRun {
        answers,
        stderr,
        status,
    })
}

/// The shared library the dynamic loader could not find, from a helper's stderr.
fn missing_library(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("error while loading shared libraries"))?;
    let rest = line.split("error while loading shared libraries:").nth(1)?;
    Some(rest.split(':').next()?.trim().to_string())
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the helper exited with code {code}"),
        (None, Some(signal)) => format!("the helper was killed by signal {signal}"),
        _ => "the helper stopped".into(),
    }
}

/// Detects `path`'s format and, for a weight file, runs `check` on it, timed.
/// `Ok(None)` for files that are not weights. Shared by the in-process
/// structure check and the libtorch helper, so both judge formats alike.
pub fn verify_with(
    path: &Path,
    check: impl FnOnce(Format) -> Result<FileReport, String>,
) -> Result<Option<FileReport>, VerifyError> {
    let format = match detect(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })? {
        Detected::Other | Detected::Unknown { .. } => return Ok(None),
        Detected::Unrecognized { reason } => {
            return Err(VerifyError::Load {
                path: path.to_path_buf(),
                format: None,
                reason,
            })
        }
        Detected::Weights(format) => format,
    };
    let started = Instant::now();
    let mut report = check(format).map_err(|reason| VerifyError::Load {
        path: path.to_path_buf(),
        format: Some(format),
        reason,
    })?;
    report.load_ms = started.elapsed().as_millis() as u64;
    Ok(Some(report))
}

/// Every check mdl makes of a weight file before libtorch sees it — format
/// detection, the largest-tensor scan, the structure check — on `data` written
/// to a temporary file named `name`. For the fuzz targets (`fuzz/`) and their
/// regression inputs: any bytes must give `Ok` or `Err`, never a panic, a hang
/// or unbounded memory.
#[doc(hidden)]
pub fn fuzz_weight_file_named(data: &[u8], name: &str) -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(name);
    std::fs::write(&path, data)?;
    let _ = largest_tensor(&path);
    let _ = check_file(&path, Device::Cpu);
    Ok(())
}

/// [`fuzz_weight_file_named`] as a `.pt` file.
#[doc(hidden)]
pub fn fuzz_weight_file(data: &[u8]) -> std::io::Result<()> {
    fuzz_weight_file_named(data, "model.pt")
}

/// Structure checks in this process (no libtorch).
pub fn check_file(path: &Path, device: Device) -> Result<Option<FileReport>, VerifyError> {
    verify_with(path, |format| check_structure(path, format, device))
}

/// Structure-only checks, used when libtorch is not available: the
/// format's own (`formats::structure`).
pub fn check_structure(path: &Path, format: Format, device: Device) -> Result<FileReport, String> {
    let found = formats::structure(format, path)?;
    Ok(FileReport {
        format,
        tensors: found.tensors,
        parameters: found.parameters,
        bytes: found.bytes,
        dtypes: found.dtypes.into_iter().collect(),
        loaded: false,
        structure_only: 0,
        architecture: None,
        device: device.to_string(),
        forward_output: None,
        code_ran: formats::of(format).holds_code().then_some(false),
        contents: formats::of(format).contents(path),
        load_ms: 0,
        torch: None,
        details: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::formats::torch::{file as torch_file, pickle};
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    /// A torch file another writer deflated reads as torch's own stored one
    /// (the zip crate's `deflate` feature), inflated within the claimed size.
    #[test]
    fn a_deflated_torch_file_reads_like_a_stored_one() {
        use std::io::{Read, Write};
        let stored = fixture("state_dict.pth");
        let mut source = zip::ZipArchive::new(std::fs::File::open(&stored).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let deflated = dir.path().join("deflated.pth");
        let mut out = zip::ZipWriter::new(std::fs::File::create(&deflated).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for i in 0..source.len() {
            let mut entry = source.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            out.start_file(entry.name(), options).unwrap();
            out.write_all(&bytes).unwrap();
        }
        out.finish().unwrap();
        let a = torch_file::read_zip(&stored).unwrap();
        let b = torch_file::read_zip(&deflated).unwrap();
        assert_eq!(a.tensors, b.tensors);
        for (key, storage) in &a.storages {
            assert_eq!(a.bytes(storage), b.bytes(&b.storages[key]), "{key}");
            assert!(matches!(b.storages[key].bytes, torch_file::Bytes::Owned(_)));
        }
    }

    fn manifest() -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(fixture("manifest.json")).unwrap()).unwrap()
    }

    #[test]
    fn formats_are_detected_from_bytes() {
        let cases = [
            ("state_dict.pth", Detected::Weights(Format::TorchZip)),
            ("checkpoint.pt", Detected::Weights(Format::TorchZip)),
            ("legacy.pth", Detected::Weights(Format::TorchLegacy)),
            ("scripted.pt", Detected::Weights(Format::TorchScript)),
            ("model.safetensors", Detected::Weights(Format::Safetensors)),
            ("manifest.json", Detected::Other),
        ];
        for (name, want) in cases {
            assert_eq!(detect(&fixture(name)).unwrap(), want, "{name}");
        }
        assert!(matches!(
            detect(&fixture("broken_not_a_model.pt")).unwrap(),
            Detected::Unrecognized { .. }
        ));
    }

    #[test]
    fn structure_matches_what_pytorch_wrote() {
        let manifest = manifest();
        for name in [
            "state_dict.pth",
            "mixed_dtypes.pt",
            "checkpoint.pt",
            "legacy.pth",
            "model.safetensors",
        ] {
            let format = match detect(&fixture(name)).unwrap() {
                Detected::Weights(f) => f,
                other => panic!("{name}: {other:?}"),
            };
            let report = check_structure(&fixture(name), format, Device::Cpu).unwrap();
            let want = &manifest[name];
            assert_eq!(report.tensors, want["tensors"].as_u64().unwrap(), "{name}");
            assert_eq!(report.parameters, want["parameters"].as_u64().unwrap(), "{name}");
            if format != Format::Safetensors {
                let dtypes: Vec<String> = serde_json::from_value(want["dtypes"].clone()).unwrap();
                assert_eq!(report.dtypes, dtypes, "{name}");
            }
        }
    }

    /// Inputs the fuzzers found or were seeded with (`fuzz/regressions/`,
    /// `fuzz/corpus/`): each still gives `Ok` or `Err`, and quickly.
    #[test]
    fn fuzz_regressions_stay_fixed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut count = 0;
        for kind in ["regressions", "corpus"] {
            for target in [
                "pickle",
                "torch_file",
                "safetensors",
                "gguf",
                "config",
                "lockfile",
                "xet",
            ] {
                for entry in std::fs::read_dir(root.join(kind).join(target))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let data = std::fs::read(entry.path()).unwrap();
                    let started = Instant::now();
                    match target {
                        "pickle" => {
                            let _ = pickle::read(&data, &mut 0);
                        }
                        "torch_file" => fuzz_weight_file(&data).unwrap(),
                        "safetensors" => fuzz_weight_file_named(&data, "model.safetensors").unwrap(),
                        "gguf" => {
                            let _ = formats::gguf::parse(&data[..], data.len() as u64);
                            fuzz_weight_file_named(&data, "model.gguf").unwrap()
                        }
                        "config" => {
                            let text = String::from_utf8_lossy(&data);
                            let _ = crate::config::Config::parse(Path::new("config.yaml"), &text, &[]);
                        }
                        "xet" => crate::fetch::xet::fuzz_xet(&data),
                        "pt2" => formats::pt2::fuzz(&data),
                        _ => crate::lock::validate::fuzz_check(&String::from_utf8_lossy(&data)),
                    }
                    assert!(started.elapsed().as_secs() < 10, "{}", entry.path().display());
                    count += 1;
                }
            }
        }
        assert!(count > 0, "the fuzz corpus is committed");
    }

    #[test]
    fn a_missing_libtorch_is_named_from_the_loader_message() {
        let stderr = "/usr/bin/mdl-torch: error while loading shared libraries: libtorch_cpu.so: cannot open shared object file: No such file or directory";
        assert_eq!(missing_library(stderr).as_deref(), Some("libtorch_cpu.so"));
        assert_eq!(missing_library("Segmentation fault"), None);
    }

    #[test]
    fn tensor_names_and_shapes_match() {
        let manifest = manifest();
        let file = torch_file::read_zip(&fixture("mixed_dtypes.pt")).unwrap();
        for t in &file.tensors {
            let shape: Vec<i64> =
                serde_json::from_value(manifest["mixed_dtypes.pt"]["shapes"][&t.name].clone()).unwrap();
            assert_eq!(t.shape, shape, "{}", t.name);
        }
        let view = file.tensors.iter().find(|t| t.name == "view").unwrap();
        assert_eq!((view.offset, view.stride.clone()), (4, vec![4, 1]));
    }

    #[test]
    fn broken_files_fail_with_reasons() {
        for (name, format, needle) in [
            ("broken_truncated.pth", Format::TorchZip, "zip archive is unreadable"),
            ("broken_missing_record.pth", Format::TorchZip, "no record"),
            (
                "broken_truncated.safetensors",
                Format::Safetensors,
                "invalid safetensors",
            ),
        ] {
            let err = check_structure(&fixture(name), format, Device::Cpu).unwrap_err();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
