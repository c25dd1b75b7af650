//! One module per weight format, and the one list that registers them.
//!
//! Each format answers the same three questions, from its own file:
//! does a file hold it (`detect`, from the first bytes and, for zip
//! archives, the entry names), is its structure sound without libtorch
//! (`structure`: tensors, parameters, bytes, dtypes, every size checked
//! against the file), and what is the largest tensor a load holds at once
//! (`largest`, for the memory budget). [`Format`] (in `report.rs`, shared
//! with the registry and `mdl-torch`) names them; `mdl-torch`'s
//! `libtorch::load` loads each. Adding a format is a module
//! here, a line in each `match` below and in [`DETECTION_ORDER`], a
//! [`Format`] variant, and its loading in `mdl-torch`.

use std::path::Path;

pub use crate::report::Format;

pub mod gguf;
pub mod pt2;
mod safetensors;
mod torch;
mod torchscript;

/// What a structure check finds in a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Structure {
    pub tensors: u64,
    pub parameters: u64,
    pub bytes: u64,
    pub dtypes: std::collections::BTreeSet<String>,
}

/// The order formats are tried in: the first whose `detect` says yes.
pub const DETECTION_ORDER: [Format; 6] = [
    Format::Gguf,
    Format::TorchExport,
    Format::TorchScript,
    Format::TorchZip,
    Format::TorchLegacy,
    Format::Safetensors,
];

/// Whether the file at `path` (of `len` bytes, starting with `head`) holds
/// `format`.
fn detects(format: Format, head: &[u8], len: u64, path: &Path) -> bool {
    match format {
        Format::TorchScript => torchscript::detect(head, path),
        Format::TorchZip => torch::detect_zip(head, path),
        Format::TorchLegacy => torch::detect_legacy(head),
        Format::Safetensors => safetensors::detect(head, len),
        Format::Gguf => gguf::detect(head),
        Format::TorchExport => pt2::detect(head, path),
    }
}

/// The format of a file, from its first bytes (at least 64 where the file
/// has them) and length.
pub fn detect(head: &[u8], len: u64, path: &Path) -> Option<Format> {
    DETECTION_ORDER.into_iter().find(|f| detects(*f, head, len, path))
}

/// The structure of a file of `format`, checked without libtorch.
pub fn structure(format: Format, path: &Path) -> Result<Structure, String> {
    match format {
        Format::TorchScript => torchscript::structure(path),
        Format::TorchZip => torch::structure(path, false),
        Format::TorchLegacy => torch::structure(path, true),
        Format::Safetensors => safetensors::structure(path),
        Format::Gguf => gguf::structure(path),
        Format::TorchExport => pt2::structure(path),
    }
}

/// The largest tensor a load of the file holds at once (name, bytes), read
/// from its header or pickle; the whole file where the format loads whole
/// or cannot be read (the load then says what is wrong).
pub fn largest(format: Format, path: &Path) -> std::io::Result<(String, u64)> {
    let whole =
        || -> std::io::Result<(String, u64)> { Ok(("(the whole file)".to_string(), std::fs::metadata(path)?.len())) };
    let found = match format {
        Format::TorchScript => torchscript::largest(path),
        Format::TorchZip => torch::largest(path, false),
        Format::TorchLegacy => torch::largest(path, true),
        Format::Safetensors => safetensors::largest(path)?,
        Format::Gguf => gguf::largest(path),
        Format::TorchExport => pt2::largest(path),
    };
    match found {
        Some(largest) => Ok(largest),
        None => whole(),
    }
}
