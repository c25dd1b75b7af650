//! `torch.save` files: the zip format (`archive/data.pkl` and raw storages)
//! and the legacy pre-1.6 format (pickles, then the storages). Both are read
//! by `file.rs`, which checks every storage and view against
//! the file before anything is allocated.

use std::path::Path;

use super::{Format, Structure, WeightFormat};

pub mod file;
pub mod pickle;

use self::file as torch_file;

/// `torch.save`'s zip format (PyTorch 1.6 and later).
pub struct TorchZip;

/// `torch.save`'s legacy format (before 1.6).
pub struct TorchLegacy;

impl WeightFormat for TorchZip {
    fn format(&self) -> Format {
        Format::TorchZip
    }
    fn detect(&self, head: &[u8], _len: u64, path: &Path) -> bool {
        detect_zip(head, path)
    }
    fn structure(&self, path: &Path) -> Result<Structure, String> {
        structure(path, false)
    }
    fn largest(&self, path: &Path) -> std::io::Result<Option<(String, u64)>> {
        Ok(largest(path, false))
    }
    fn modelpack_name(&self) -> &'static str {
        "pytorch"
    }
}

impl WeightFormat for TorchLegacy {
    fn format(&self) -> Format {
        Format::TorchLegacy
    }
    fn detect(&self, head: &[u8], _len: u64, _path: &Path) -> bool {
        detect_legacy(head)
    }
    fn structure(&self, path: &Path) -> Result<Structure, String> {
        structure(path, true)
    }
    fn largest(&self, path: &Path) -> std::io::Result<Option<(String, u64)>> {
        Ok(largest(path, true))
    }
    fn modelpack_name(&self) -> &'static str {
        "pytorch"
    }
}

/// A zip archive that is not TorchScript.
pub fn detect_zip(head: &[u8], path: &Path) -> bool {
    head.starts_with(b"PK\x03\x04") && !torch_file::is_other_torch_zip(path)
}

/// A pickled magic number first.
pub fn detect_legacy(head: &[u8]) -> bool {
    torch_file::is_legacy(head)
}

fn read(path: &Path, legacy: bool) -> Result<torch_file::TorchFile, torch_file::TorchFileError> {
    if legacy {
        torch_file::read_legacy(path)
    } else {
        torch_file::read_zip(path)
    }
}

pub fn structure(path: &Path, legacy: bool) -> Result<Structure, String> {
    let file = read(path, legacy).map_err(|e| e.to_string())?;
    Ok(summarize(&file))
}

/// Tensors, parameters, bytes and dtypes of a parsed file.
pub(super) fn summarize(file: &torch_file::TorchFile) -> Structure {
    let mut found = Structure {
        tensors: file.tensors.len() as u64,
        ..Structure::default()
    };
    for t in &file.tensors {
        found.dtypes.insert(t.dtype.name().to_string());
    }
    found.parameters = file.parameters();
    found.bytes = file.tensor_bytes();
    found
}

/// The largest storage, named by a tensor that views it; `None` when the
/// file cannot be read.
pub fn largest(path: &Path, legacy: bool) -> Option<(String, u64)> {
    Some(read(path, legacy).ok()?.largest())
}
