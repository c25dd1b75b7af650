//! One module per weight format, each a [`WeightFormat`], and the one list
//! that registers them, in detection order ([`FORMATS`]).
//!
//! Each format answers, from its own file: does a file hold it (`detect`,
//! from the first bytes and, for zip archives, the entry names), is its
//! structure sound without libtorch (`structure`: tensors, parameters,
//! bytes, dtypes, every size checked against the file), what is the largest
//! tensor a load holds at once (`largest`, for the memory budget), what the
//! file says of the model (`architecture`, `contents`), its ModelPack name
//! (`mdl push`), whether loading it as torch does runs code, and where its
//! tensors lie for the Python verifier to load from a memory map (`spans`).
//! Verification, `mdl push` and the Python verifier ask this trait, never a
//! `match` on the format. [`Format`] (in `report.rs`, shared with the
//! registry and `mdl-torch`) names them; `mdl-torch`'s `libtorch::load`
//! loads each. Adding a format is a module here, one line in [`FORMATS`], a
//! [`Format`] variant, and its loading in `mdl-torch`.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::report::Format;

pub mod gguf;
pub mod pt2;
mod safetensors;
pub mod torch;
mod torchscript;

/// A weight format: everything mdl does differently per format.
pub trait WeightFormat: Sync {
    fn format(&self) -> Format;
    /// Whether the file at `path` (of `len` bytes, starting with `head`)
    /// holds this format.
    fn detect(&self, head: &[u8], len: u64, path: &Path) -> bool;
    /// The file's structure, checked without libtorch.
    fn structure(&self, path: &Path) -> Result<Structure, String>;
    /// The largest tensor a load holds at once (name, bytes); `None` when
    /// the file cannot be read.
    fn largest(&self, path: &Path) -> std::io::Result<Option<(String, u64)>>;
    /// How a ModelPack config names it (`mdl push`).
    fn modelpack_name(&self) -> &'static str;
    /// Loading it as torch does runs code from the file (TorchScript,
    /// `torch.export`): it is loaded so only when config.yaml asks.
    fn holds_code(&self) -> bool {
        false
    }
    /// The model's architecture, as the file names it.
    fn architecture(&self, _path: &Path) -> Option<String> {
        None
    }
    /// What the file holds beyond its tensors, for reports.
    fn contents(&self, _path: &Path) -> Option<String> {
        None
    }
    /// Where the tensors lie, for the Python verifier to load them from a
    /// memory map without running the file (empty: it loads the file
    /// itself, safely, as `torch.load(weights_only=True)` or safetensors do).
    fn spans(&self, _path: &Path) -> Vec<Span> {
        Vec::new()
    }
}

/// Every format, in the order they are tried: the first whose `detect`
/// says yes.
pub static FORMATS: &[&dyn WeightFormat] = &[
    &gguf::Gguf,
    &pt2::TorchExport,
    &torchscript::TorchScript,
    &torch::TorchZip,
    &torch::TorchLegacy,
    &safetensors::Safetensors,
];

/// The registered format of `format`.
pub fn of(format: Format) -> &'static dyn WeightFormat {
    *FORMATS
        .iter()
        .find(|f| f.format() == format)
        .expect("every format is registered")
}

/// A tensor's bytes in a file, for the Python verifier.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Span {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    pub offset: u64,
    pub bytes: u64,
    /// A view into a storage (TorchScript's tensors, `dtype` a torch name):
    /// `offset`/`bytes` are the whole storage's, the tensor is
    /// `as_strided(shape, stride, element_offset)` over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
}

/// A strided view of a storage, in elements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct View {
    pub stride: Vec<i64>,
    pub element_offset: i64,
}

/// What a structure check finds in a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Structure {
    pub tensors: u64,
    pub parameters: u64,
    pub bytes: u64,
    pub dtypes: std::collections::BTreeSet<String>,
}

/// The format of a file, from its first bytes (at least 64 where the file
/// has them) and length.
pub fn detect(head: &[u8], len: u64, path: &Path) -> Option<Format> {
    FORMATS.iter().find(|f| f.detect(head, len, path)).map(|f| f.format())
}

/// The structure of a file of `format`, checked without libtorch.
pub fn structure(format: Format, path: &Path) -> Result<Structure, String> {
    of(format).structure(path)
}

/// The largest tensor a load of the file holds at once (name, bytes), read
/// from its header or pickle; the whole file where the format loads whole
/// or cannot be read (the load then says what is wrong).
pub fn largest(format: Format, path: &Path) -> std::io::Result<(String, u64)> {
    match of(format).largest(path)? {
        Some(largest) => Ok(largest),
        None => Ok(("(the whole file)".to_string(), std::fs::metadata(path)?.len())),
    }
}
