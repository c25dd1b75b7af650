//! Verification: proves a synced model is usable, not just present.
//!
//! Each file's format is detected from its bytes (not its name): TorchScript
//! archive, `torch.save` zip (state dict or any pickled object of tensors), legacy
//! `torch.save` pickle, or safetensors. With the `libtorch` feature (the default)
//! every tensor is then built in libtorch on the configured device — see
//! `libtorch.rs` for why mdl reads the pickle itself. Without it, the structure is
//! still checked (every storage present and large enough, safetensors header and
//! offsets valid), and reports say that loading was not possible in this build.

pub mod pickle;
pub mod torch_file;

#[cfg(feature = "libtorch")]
mod libtorch;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::Device;

/// A weight file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    TorchScript,
    TorchZip,
    TorchLegacy,
    Safetensors,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TorchScript => "torchscript",
            Format::TorchZip => "torch_zip",
            Format::TorchLegacy => "torch_legacy",
            Format::Safetensors => "safetensors",
        }
    }
}

/// What was found in a file's first bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    Weights(Format),
    /// Not a weight file (config, tokenizer, …): nothing to load.
    Other,
    /// Named like a weight file but holding something else.
    Unrecognized { reason: String },
}

/// Extensions that promise weights: a file named so must be a known format.
const WEIGHT_EXTENSIONS: &[&str] = &["pt", "pth", "ckpt", "safetensors", "pkl", "jit", "torchscript"];
/// Extensions that often hold weights but not always (`.bin`): checked when recognised.
const MAYBE_WEIGHT_EXTENSIONS: &[&str] = &["bin", "model", "tar"];

/// Detects a file's format from its bytes and name.
pub fn detect(path: &Path) -> std::io::Result<Detected> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let strict = WEIGHT_EXTENSIONS.contains(&ext.as_str());
    if !strict && !MAYBE_WEIGHT_EXTENSIONS.contains(&ext.as_str()) {
        return Ok(Detected::Other);
    }
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)?.take(64).read_to_end(&mut head)?;
    let len = std::fs::metadata(path)?.len();
    if head.starts_with(b"PK\x03\x04") {
        return Ok(Detected::Weights(zip_kind(path)));
    }
    if torch_file::is_legacy(&head) {
        return Ok(Detected::Weights(Format::TorchLegacy));
    }
    if head.len() >= 9 {
        let header_len = u64::from_le_bytes(head[..8].try_into().unwrap());
        if head[8] == b'{' && header_len > 1 && header_len < len {
            return Ok(Detected::Weights(Format::Safetensors));
        }
    }
    if strict {
        let what = if head.is_empty() {
            "it is empty".to_string()
        } else if head.iter().take(32).all(|b| b.is_ascii()) {
            format!("it starts with text ({:?})", String::from_utf8_lossy(&head[..head.len().min(24)]))
        } else {
            "it is not a zip archive, a torch pickle or safetensors".to_string()
        };
        return Ok(Detected::Unrecognized { reason: format!("`.{ext}` file of unknown format: {what}") });
    }
    Ok(Detected::Other)
}

/// TorchScript archives carry `code/` and `constants.pkl`; `torch.save` zips do not.
fn zip_kind(path: &Path) -> Format {
    let Ok(file) = std::fs::File::open(path) else { return Format::TorchZip };
    let Ok(zip) = zip::ZipArchive::new(file) else { return Format::TorchZip };
    let script = zip.file_names().any(|n| n.ends_with("/constants.pkl") || n.contains("/code/"));
    if script {
        Format::TorchScript
    } else {
        Format::TorchZip
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
    /// True when libtorch built every tensor on the device; false when only the
    /// structure could be checked (a build without libtorch).
    pub loaded: bool,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_output: Option<Vec<i64>>,
    pub load_ms: u64,
    /// Per-tensor detail, for tests and `--json` (not persisted).
    #[serde(skip)]
    pub details: Vec<TensorReport>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    /// Sum of all elements as f64, computed by libtorch (None without it).
    pub sum: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("`{}` cannot be loaded: {reason}", path.display())]
    Load { path: std::path::PathBuf, format: Option<Format>, reason: String },
    #[error("libtorch sees no {what} device, but `device: {device}` was asked for")]
    DeviceUnavailable { device: Device, what: &'static str, detail: String },
    #[error("I/O error on `{}`", path.display())]
    Io { path: std::path::PathBuf, #[source] source: std::io::Error },
}

impl VerifyError {
    pub fn hint(&self) -> Option<String> {
        match self {
            VerifyError::DeviceUnavailable { detail, .. } => Some(format!(
                "{detail}; write `device: cpu` (or `device: auto` to use CUDA only when present) in config.yaml, or pass `--no-verify`"
            )),
            VerifyError::Load { .. } => Some(
                "the file's hash matches the lock, so upstream serves it this way: report it upstream, pin another revision, or `exclude:` the file".into(),
            ),
            VerifyError::Io { .. } => None,
        }
    }
}

/// Whether this build can load with libtorch.
pub const LIBTORCH: bool = cfg!(feature = "libtorch");

/// The device a model is verified on, after `auto` and availability checks.
pub fn resolve_device(device: Device) -> Result<Device, VerifyError> {
    #[cfg(feature = "libtorch")]
    {
        libtorch::resolve_device(device)
    }
    #[cfg(not(feature = "libtorch"))]
    {
        match device {
            Device::Auto => Ok(Device::Cpu),
            other => Ok(other),
        }
    }
}

/// Verifies one file: detects its format and loads it (or checks its structure).
/// `Ok(None)` for files that are not weights.
pub fn verify_file(path: &Path, device: Device, forward: Option<&[i64]>) -> Result<Option<FileReport>, VerifyError> {
    let io = |source| VerifyError::Io { path: path.to_path_buf(), source };
    let format = match detect(path).map_err(io)? {
        Detected::Other => return Ok(None),
        Detected::Unrecognized { reason } => {
            return Err(VerifyError::Load { path: path.to_path_buf(), format: None, reason })
        }
        Detected::Weights(format) => format,
    };
    let started = Instant::now();
    let fail = |reason: String| VerifyError::Load { path: path.to_path_buf(), format: Some(format), reason };
    #[cfg(feature = "libtorch")]
    let mut report = libtorch::load(path, format, device, forward).map_err(fail)?;
    #[cfg(not(feature = "libtorch"))]
    let mut report = {
        let _ = forward;
        check_structure(path, format, device).map_err(fail)?
    };
    report.load_ms = started.elapsed().as_millis() as u64;
    Ok(Some(report))
}

/// Structure-only checks, used when libtorch is not built in.
#[cfg_attr(feature = "libtorch", allow(dead_code))]
fn check_structure(path: &Path, format: Format, device: Device) -> Result<FileReport, String> {
    let mut dtypes = std::collections::BTreeSet::new();
    let (tensors, parameters, bytes) = match format {
        Format::TorchZip | Format::TorchLegacy => {
            let file = if format == Format::TorchZip { torch_file::read_zip(path) } else { torch_file::read_legacy(path) };
            let file = file.map_err(|e| e.to_string())?;
            for t in &file.tensors {
                dtypes.insert(t.dtype.name().to_string());
            }
            let params: i64 = file.tensors.iter().map(|t| t.numel()).sum();
            let bytes: i64 = file.tensors.iter().map(|t| t.numel() * t.dtype.size() as i64).sum();
            (file.tensors.len() as u64, params as u64, bytes as u64)
        }
        Format::Safetensors => {
            let data = std::fs::read(path).map_err(|e| e.to_string())?;
            let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| format!("invalid safetensors: {e}"))?;
            let mut params = 0u64;
            let mut bytes = 0u64;
            for (_, view) in st.tensors() {
                dtypes.insert(format!("{:?}", view.dtype()).to_lowercase());
                params += view.shape().iter().product::<usize>() as u64;
                bytes += view.data().len() as u64;
            }
            (st.len() as u64, params, bytes)
        }
        Format::TorchScript => {
            // Reading every entry checks each one's CRC.
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("the zip archive is unreadable ({e})"))?;
            let mut bytes = 0u64;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
                bytes += std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| format!("entry {i} is corrupt ({e})"))?;
            }
            (0, 0, bytes)
        }
    };
    Ok(FileReport {
        format,
        tensors,
        parameters,
        bytes,
        dtypes: dtypes.into_iter().collect(),
        loaded: false,
        device: device.to_string(),
        forward_output: None,
        load_ms: 0,
        details: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
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
        assert!(matches!(detect(&fixture("broken_not_a_model.pt")).unwrap(), Detected::Unrecognized { .. }));
    }

    #[test]
    fn structure_matches_what_pytorch_wrote() {
        let manifest = manifest();
        for name in ["state_dict.pth", "mixed_dtypes.pt", "checkpoint.pt", "legacy.pth", "model.safetensors"] {
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

    #[test]
    fn tensor_names_and_shapes_match() {
        let manifest = manifest();
        let file = torch_file::read_zip(&fixture("mixed_dtypes.pt")).unwrap();
        for t in &file.tensors {
            let shape: Vec<i64> = serde_json::from_value(manifest["mixed_dtypes.pt"]["shapes"][&t.name].clone()).unwrap();
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
            ("broken_truncated.safetensors", Format::Safetensors, "invalid safetensors"),
        ] {
            let err = check_structure(&fixture(name), format, Device::Cpu).unwrap_err();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
