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

use super::Structure;
use crate::verify::torch_file;

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
