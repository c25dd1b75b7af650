//! What verification found, as plain data: the record the verifier returns
//! for a file, the store remembers (so a no-op sync does not reload), and the
//! registry shows. A module of its own so that the store, the verifier and the
//! registry share it without importing one another.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A weight file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    TorchScript,
    TorchZip,
    TorchLegacy,
    Safetensors,
    Gguf,
    /// A `torch.export` program or AOTInductor package (`.pt2`).
    TorchExport,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TorchScript => "torchscript",
            Format::TorchZip => "torch_zip",
            Format::TorchLegacy => "torch_legacy",
            Format::Safetensors => "safetensors",
            Format::Gguf => "gguf",
            Format::TorchExport => "torch_export",
        }
    }
}

/// What verifying one file found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    pub format: Format,
    pub tensors: u64,
    pub parameters: u64,
    pub bytes: u64,
    pub dtypes: Vec<String>,
    /// True when a torch loaded the file (every tensor it has a dtype for
    /// built on the device); false when only the structure could be checked.
    pub loaded: bool,
    /// Tensors of a loaded file checked by structure only: quantized GGUF
    /// blocks, or a dtype the torch lacks (their `dtypes` entry says so).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub structure_only: u64,
    /// A GGUF file's `general.architecture`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_output: Option<Vec<i64>>,
    /// For a format whose loading runs the checkpoint's code (TorchScript):
    /// whether it ran (`verify.run_code` or `verify.forward` in config.yaml),
    /// or the file was checked by structure and its weights loaded without
    /// running anything. `None` for formats that hold no code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_ran: Option<bool>,
    /// What the file holds, read from its structure (a `.pt2`'s programs,
    /// their signature, an AOTInductor package's native code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    pub load_ms: u64,
    /// The torch that loaded it (set by `mdl`, not by the helper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch: Option<TorchUsed>,
    /// Per-tensor detail, for tests and `--json` (not persisted).
    #[serde(skip)]
    pub details: Vec<TensorReport>,
}

impl FileReport {
    /// How reports name what was checked: `torchscript (structure and
    /// weights; code not run)`, `gguf (llama)`, `safetensors`.
    pub fn format_label(&self) -> String {
        let contents = self.contents.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
        match (self.format, self.code_ran) {
            (Format::TorchExport, Some(true)) => return format!("torch.export (program ran{contents})"),
            (Format::TorchExport, _) => {
                return format!("torch.export (structure and weights; graph not run{contents})")
            }
            _ => {}
        }
        match (&self.architecture, self.code_ran) {
            (Some(arch), _) => format!("{} ({arch})", self.format.as_str()),
            (None, Some(false)) => format!("{} (structure and weights; code not run)", self.format.as_str()),
            (None, Some(true)) => format!("{} (code ran)", self.format.as_str()),
            (None, None) => self.format.as_str().to_string(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Which torch loaded a file, and how mdl found and ran it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorchUsed {
    /// `2.15.0+cu130`, as torch says.
    pub version: String,
    /// How it was found: `VIRTUAL_ENV`, `python3`, `MDL_LIBTORCH`, `LIBTORCH`,
    /// or `mdl-torch's build` (the libtorch the helper was linked against).
    pub found_by: String,
    /// `mdl-torch` (the libtorch helper) or `python` (the environment's Python).
    pub via: String,
}

impl TorchUsed {
    /// `torch 2.15.0 (VIRTUAL_ENV, in Python)`.
    pub fn describe(&self) -> String {
        let via = match self.via.as_str() {
            "python" => "in Python",
            _ => "through mdl-torch",
        };
        format!("torch {} ({}, {via})", self.version, self.found_by)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    /// Sum of all elements as f64, computed by libtorch (None without it).
    pub sum: Option<f64>,
}

/// Where a model's verification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyStatus {
    /// Every weight file was loaded with libtorch on the device.
    Verified,
    /// Hashes and file structure checked; this build cannot load with libtorch.
    FormatChecked,
    /// A weight file is in a format mdl cannot load or check (ONNX, Keras,
    /// …): its hash matched the lock, nothing more (`hash_only` says which).
    HashChecked,
    /// A file failed to load; see `error`.
    Failed,
    /// `--no-verify`, or `verify: false` in the config.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub status: VerifyStatus,
    pub device: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Weight files checked against their hash only, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hash_only: BTreeMap<String, String>,
    /// The torch that loaded its weight files (the same for all of them in
    /// one sync; a remembered verification keeps the torch that did it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch: Option<TorchUsed>,
}
