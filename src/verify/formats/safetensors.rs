//! safetensors: an 8-byte little-endian header length, a JSON header naming
//! each tensor's dtype, shape and byte range, then the data. The
//! `safetensors` crate checks every range against the file.

use std::path::Path;

use super::{Format, Structure, WeightFormat};

/// safetensors files.
pub struct Safetensors;

impl WeightFormat for Safetensors {
    fn format(&self) -> Format {
        Format::Safetensors
    }
    fn detect(&self, head: &[u8], len: u64, _path: &Path) -> bool {
        detect(head, len)
    }
    fn structure(&self, path: &Path) -> Result<Structure, String> {
        structure(path)
    }
    fn largest(&self, path: &Path) -> std::io::Result<Option<(String, u64)>> {
        largest(path)
    }
    fn modelpack_name(&self) -> &'static str {
        "safetensors"
    }
}

/// The header's length, then `{`, within the file.
pub fn detect(head: &[u8], len: u64) -> bool {
    if head.len() < 9 {
        return false;
    }
    let header_len = u64::from_le_bytes(head[..8].try_into().unwrap());
    head[8] == b'{' && header_len > 1 && header_len < len
}

pub fn structure(path: &Path) -> Result<Structure, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: mdl's own synced copy, read-only, not modified while checked.
    let data = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| format!("invalid safetensors: {e}"))?;
    let mut found = Structure {
        tensors: st.len() as u64,
        ..Structure::default()
    };
    for (_, view) in st.tensors() {
        found.dtypes.insert(format!("{:?}", view.dtype()).to_lowercase());
        found.parameters += view.shape().iter().product::<usize>() as u64;
        found.bytes += view.data().len() as u64;
    }
    Ok(found)
}

/// From the header alone; `None` when the header cannot be read.
pub fn largest(path: &Path) -> std::io::Result<Option<(String, u64)>> {
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only map of mdl's own synced copy; only the header is read.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let Ok((_, metadata)) = safetensors::SafeTensors::read_metadata(&map) else {
        return Ok(None);
    };
    Ok(metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.data_offsets.1.saturating_sub(info.data_offsets.0) as u64))
        .max_by_key(|(_, bytes)| *bytes)
        .or(Some(("(no tensor)".to_string(), 0))))
}
