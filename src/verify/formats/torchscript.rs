//! TorchScript archives (`torch.jit.save`): a zip with `code/`,
//! `constants.pkl` and `data.pkl`. TorchScript is code: loading a module runs
//! its `__setstate__`, which can reach the file system. So by default an
//! archive is checked and its weights loaded without running anything
//! (`torch_file::read_torchscript`: the module tree and the constants through
//! mdl's safe pickle reader, every tensor's storage checked against the
//! archive, the code files present); the module is loaded, and `forward`
//! run, only when config.yaml asks for it for that model (`verify.run_code`,
//! `verify.forward`).

use std::path::Path;

use super::torch::file as torch_file;
use super::{Format, Span, Structure, View, WeightFormat};

/// TorchScript archives.
pub struct TorchScript;

impl WeightFormat for TorchScript {
    fn format(&self) -> Format {
        Format::TorchScript
    }
    fn detect(&self, head: &[u8], _len: u64, path: &Path) -> bool {
        detect(head, path)
    }
    fn structure(&self, path: &Path) -> Result<Structure, String> {
        structure(path)
    }
    fn largest(&self, path: &Path) -> std::io::Result<Option<(String, u64)>> {
        Ok(largest(path))
    }
    fn modelpack_name(&self) -> &'static str {
        "pytorch"
    }
    fn holds_code(&self) -> bool {
        true
    }
    /// The tensors as mdl's reader checked them, views of their storages,
    /// for the Python verifier to load without `torch.jit.load`.
    fn spans(&self, path: &Path) -> Vec<Span> {
        let Ok((file, _)) = torch_file::read_torchscript(path) else {
            return Vec::new();
        };
        (file.tensors.iter())
            .filter_map(|t| {
                let storage = file.storages.get(&t.storage)?;
                let offset = file.offset_of(storage)?;
                Some(Span {
                    name: t.name.clone(),
                    dtype: storage.dtype.name().to_string(),
                    shape: t.shape.clone(),
                    offset: offset as u64,
                    bytes: storage.len() as u64,
                    view: Some(View {
                        stride: t.stride.clone(),
                        element_offset: t.offset,
                    }),
                })
            })
            .collect()
    }
}

/// A zip archive with TorchScript's entries (`torch.save` zips have none).
pub fn detect(head: &[u8], path: &Path) -> bool {
    if !head.starts_with(b"PK\x03\x04") {
        return false;
    }
    let Ok(zip) = std::fs::File::open(path).map(zip::ZipArchive::new) else {
        return false;
    };
    zip.is_ok_and(|zip| {
        zip.file_names()
            .any(|n| n.ends_with("/constants.pkl") || n.contains("/code/"))
    })
}

/// The archive read as weights (its code counted, not run), and every
/// entry read through, which checks each one's CRC.
pub fn structure(path: &Path) -> Result<Structure, String> {
    let (file, _code) = torch_file::read_torchscript(path).map_err(|e| e.to_string())?;
    let found = super::torch::summarize(&file);
    let zipped = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(zipped).map_err(|e| format!("the zip archive is unreadable ({e})"))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| format!("entry {i} is corrupt ({e})"))?;
    }
    Ok(found)
}

/// The largest storage of the archive's weights.
pub fn largest(path: &Path) -> Option<(String, u64)> {
    let (file, _) = torch_file::read_torchscript(path).ok()?;
    Some(file.largest())
}
