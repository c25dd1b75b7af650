//! TorchScript archives (`torch.jit.save`): a zip with `code/` and
//! `constants.pkl`, loaded whole by libtorch (and run once when
//! `verify.forward` asks, in the `mdl-torch` helper only).

use std::path::Path;

use super::Structure;

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

/// Every entry read through, which checks each one's CRC.
pub fn structure(path: &Path) -> Result<Structure, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("the zip archive is unreadable ({e})"))?;
    let mut found = Structure::default();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        found.bytes +=
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| format!("entry {i} is corrupt ({e})"))?;
    }
    Ok(found)
}
