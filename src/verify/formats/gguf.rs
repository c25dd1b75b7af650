//! GGUF (llama.cpp's format, versions 2 and 3): `GGUF`, a version, the tensor
//! and metadata counts, the metadata (typed key/values), a table of tensors
//! (name, dimensions, ggml type, offset into the data section), then the data
//! section at the next multiple of `general.alignment` (default 32).
//!
//! mdl reads it itself rather than through a crate: the crates that read
//! GGUF either come with a whole inference stack (candle) or trust the
//! counts and lengths they read (allocating what a header claims), and
//! every value here comes from a downloaded file. This reader is ~300 lines,
//! streams the header (a 150k-token vocabulary is read, never held), bounds
//! every count and length by the bytes left in the file, and is fuzzed
//! (`fuzz/fuzz_targets/gguf.rs`).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{Format, Span, Structure, WeightFormat};

/// GGUF files (llama.cpp).
pub struct Gguf;

impl WeightFormat for Gguf {
    fn format(&self) -> Format {
        Format::Gguf
    }
    fn detect(&self, head: &[u8], _len: u64, _path: &Path) -> bool {
        detect(head)
    }
    fn structure(&self, path: &Path) -> Result<Structure, String> {
        structure(path)
    }
    fn largest(&self, path: &Path) -> std::io::Result<Option<(String, u64)>> {
        Ok(largest(path))
    }
    fn modelpack_name(&self) -> &'static str {
        "gguf"
    }
    /// `general.architecture`.
    fn architecture(&self, path: &Path) -> Option<String> {
        read(path).ok()?.architecture
    }
    /// Every tensor as the reader checked it (torch has no GGUF loader).
    fn spans(&self, path: &Path) -> Vec<Span> {
        let Ok(gguf) = read(path) else {
            return Vec::new();
        };
        (gguf.tensors.iter())
            .map(|t| Span {
                name: t.name.clone(),
                dtype: t.ggml_type.name().to_string(),
                shape: t.torch_shape(),
                offset: t.offset,
                bytes: t.bytes,
                view: None,
            })
            .collect()
    }
}

/// The first four bytes of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are allowed; deeper than this is not a real file.
const MAX_NESTING: u32 = 4;

pub fn detect(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// One tensor of the table, checked against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    /// ggml order: `dims[0]` varies fastest (torch's shape is this reversed).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute offset of its first byte in the file.
    pub offset: u64,
    pub bytes: u64,
}

impl Tensor {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape as torch writes it (slowest dimension first).
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
}

/// What the header says, every tensor inside the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GgufHeader {
    pub version: u32,
    pub architecture: Option<String>,
    pub alignment: u64,
    pub metadata: u64,
    /// Where the data section starts.
    pub data_start: u64,
    pub tensors: Vec<Tensor>,
}

/// A ggml tensor type: its number and (block elements, block bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// (name, elements per block, bytes per block), from ggml's
    /// `type_traits` (as llama.cpp's `gguf` package lists them).
    fn traits(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 40),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            40 => ("NVFP4", 64, 36),
            41 => ("Q1_0", 128, 18),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        self.traits().map_or("unknown", |t| t.0)
    }

    /// Whether each element is stored whole (libtorch can hold it as is),
    /// not in quantized blocks.
    pub fn is_plain(self) -> bool {
        matches!(self.0, 0 | 1 | 24..=28 | 30)
    }
}

/// Reads and checks the header of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<GgufHeader, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    parse(BufReader::with_capacity(1 << 16, file), len)
}

/// Reads a GGUF header from `input` (a file of `len` bytes): every count,
/// length, dimension, type and offset is checked before it is used.
pub fn parse(input: impl BufRead, len: u64) -> Result<GgufHeader, String> {
    let mut r = Reader { input, at: 0, len };
    let magic = r.bytes::<4>()?;
    if &magic != MAGIC {
        return Err("not a GGUF file (it does not start with `GGUF`)".into());
    }
    let version = r.u32()?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 is not supported (llama.cpp dropped it too); convert the file again".into()),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err("a big-endian GGUF file: mdl reads little-endian GGUF only".into())
        }
        v => return Err(format!("GGUF version {v} is unknown (mdl reads versions 2 and 3)")),
    }
    let tensor_count = r.u64()?;
    let metadata = r.u64()?;
    // Each tensor needs at least 8 (name length) + 4 + 4 + 8 bytes of table,
    // each key/value at least 8 + 4 bytes: a count beyond that is a lie.
    if tensor_count > r.left() / 24 {
        return Err(format!("it claims {tensor_count} tensors, more than its size can hold"));
    }
    if metadata > r.left() / 12 {
        return Err(format!(
            "it claims {metadata} metadata entries, more than its size can hold"
        ));
    }
    let mut found = GgufHeader {
        version,
        alignment: DEFAULT_ALIGNMENT,
        metadata,
        ..GgufHeader::default()
    };
    for _ in 0..metadata {
        let key = r.string()?;
        let kind = r.u32()?;
        match (key.as_str(), kind) {
            ("general.architecture", 8) => found.architecture = Some(r.string()?),
            ("general.alignment", 4) => {
                let alignment = r.u32()? as u64;
                if alignment == 0 || !alignment.is_power_of_two() {
                    return Err(format!("`general.alignment` is {alignment}, not a power of two"));
                }
                found.alignment = alignment;
            }
            ("general.alignment", _) | ("general.architecture", _) => {
                return Err(format!("`{key}` has the wrong type ({kind})"));
            }
            _ => r.skip_value(kind, 0).map_err(|e| format!("metadata `{key}`: {e}"))?,
        }
    }
    let mut names = std::collections::BTreeSet::new();
    let mut table = Vec::new();
    for _ in 0..tensor_count {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > MAX_DIMS {
            return Err(format!(
                "tensor `{name}` has {n_dims} dimensions (GGUF allows {MAX_DIMS})"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = r.u64()?;
            // A shape becomes torch's `i64`s: one that cannot is no real file
            // (an empty tensor could otherwise claim any other dimension).
            if d > i64::MAX as u64 {
                return Err(format!("tensor `{name}` has a dimension of {d}"));
            }
            dims.push(d);
        }
        let ggml_type = GgmlType(r.u32()?);
        let offset = r.u64()?;
        if !names.insert(name.clone()) {
            return Err(format!("the tensor `{name}` is named twice"));
        }
        table.push((name, dims, ggml_type, offset));
    }
    found.data_start = r.at.next_multiple_of(found.alignment);
    if found.data_start > len {
        return Err(format!(
            "it ends inside its header ({len} bytes; the data section would start at {})",
            found.data_start
        ));
    }
    for (name, dims, ggml_type, offset) in table {
        let (_, block, block_bytes) = ggml_type
            .traits()
            .ok_or_else(|| format!("tensor `{name}` has an unknown ggml type {}", ggml_type.0))?;
        let elements = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format!("tensor `{name}`'s dimensions {dims:?} overflow"))?;
        if dims.first().is_some_and(|d0| d0 % block != 0) {
            return Err(format!(
                "tensor `{name}` ({}) has a first dimension of {}, not a multiple of its block of {block}",
                ggml_type.name(),
                dims[0]
            ));
        }
        let bytes = (elements / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| format!("tensor `{name}`'s size overflows"))?;
        if offset % found.alignment != 0 {
            return Err(format!(
                "tensor `{name}` starts at offset {offset}, not a multiple of the alignment {}",
                found.alignment
            ));
        }
        let start = found.data_start.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= len => found.tensors.push(Tensor {
                name,
                dims,
                ggml_type,
                offset: start,
                bytes,
            }),
            _ => {
                return Err(format!(
                    "tensor `{name}` ({} bytes at offset {offset}) extends past the end of the file ({len} bytes): it is truncated",
                    bytes
                ))
            }
        }
    }
    // No two tensors share bytes (llama.cpp lays them out one after another).
    let mut spans: Vec<(u64, u64, &str)> = found
        .tensors
        .iter()
        .map(|t| (t.offset, t.offset + t.bytes, t.name.as_str()))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(format!("tensors `{}` and `{}` overlap", pair[0].2, pair[1].2));
        }
    }
    Ok(found)
}

pub fn structure(path: &Path) -> Result<Structure, String> {
    let gguf = read(path)?;
    let mut found = Structure {
        tensors: gguf.tensors.len() as u64,
        ..Structure::default()
    };
    for t in &gguf.tensors {
        found.parameters += t.elements();
        found.bytes += t.bytes;
        found.dtypes.insert(dtype_label(t.ggml_type));
    }
    Ok(found)
}

/// The dtype a report shows: torch's name where libtorch loads it, else the
/// ggml type and that it was checked by structure.
pub fn dtype_label(t: GgmlType) -> String {
    match t.0 {
        0 => "float32".into(),
        1 => "float16".into(),
        30 => "bfloat16".into(),
        24 => "int8".into(),
        25 => "int16".into(),
        26 => "int32".into(),
        27 => "int64".into(),
        28 => "float64".into(),
        _ => format!("{} (quantized: structure only)", t.name()),
    }
}

/// The largest plain tensor (the one a load holds at once; quantized ones
/// are not loaded). `None` when the header cannot be read.
pub fn largest(path: &Path) -> Option<(String, u64)> {
    let gguf = read(path).ok()?;
    Some(
        gguf.tensors
            .into_iter()
            .filter(|t| t.ggml_type.is_plain())
            .map(|t| (t.name, t.bytes))
            .max_by_key(|(_, b)| *b)
            .unwrap_or(("(no tensor)".to_string(), 0)),
    )
}

/// A little-endian reader that knows how many bytes the file has left.
struct Reader<R> {
    input: R,
    at: u64,
    len: u64,
}

impl<R: BufRead> Reader<R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.at)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut buf = [0u8; N];
        self.input.read_exact(&mut buf).map_err(|_| self.truncated())?;
        self.at += N as u64;
        Ok(buf)
    }

    fn truncated(&self) -> String {
        format!("it ends inside its header, at byte {}: the file is truncated", self.at)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }

    /// A length no larger than what is left of the file.
    fn length(&mut self) -> Result<u64, String> {
        let n = self.u64()?;
        if n > self.left() {
            return Err(format!(
                "a length of {n} at byte {} runs past the end of the file",
                self.at - 8
            ));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.length()?;
        // Keys and names are short; values such as a chat template are
        // kilobytes. Either way within the file, checked just above.
        let mut buf = Vec::with_capacity(n.min(1 << 20) as usize);
        (&mut self.input)
            .take(n)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        if buf.len() as u64 != n {
            return Err(self.truncated());
        }
        self.at += n;
        String::from_utf8(buf).map_err(|_| format!("a string before byte {} is not UTF-8", self.at))
    }

    fn skip(&mut self, mut n: u64) -> Result<(), String> {
        if n > self.left() {
            return Err(self.truncated());
        }
        while n > 0 {
            let available = self.input.fill_buf().map_err(|e| e.to_string())?.len() as u64;
            if available == 0 {
                return Err(self.truncated());
            }
            let step = available.min(n);
            self.input.consume(step as usize);
            self.at += step;
            n -= step;
        }
        Ok(())
    }

    /// Skips one metadata value of type `kind`, reading only lengths.
    fn skip_value(&mut self, kind: u32, depth: u32) -> Result<(), String> {
        match kind {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let n = self.length()?;
                self.skip(n)
            }
            9 => {
                if depth >= MAX_NESTING {
                    return Err("arrays nested too deeply".into());
                }
                let element = self.u32()?;
                let count = self.u64()?;
                let fixed = match element {
                    0 | 1 | 7 => Some(1),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    8 | 9 => None,
                    other => return Err(format!("an array of unknown type {other}")),
                };
                match fixed {
                    Some(size) => {
                        let total = count.checked_mul(size).ok_or_else(|| self.truncated())?;
                        self.skip(total)
                    }
                    None => {
                        // Each string or array is at least 8 bytes.
                        if count > self.left() / 8 {
                            return Err(format!("an array claims {count} elements, more than the file holds"));
                        }
                        for _ in 0..count {
                            self.skip_value(element, depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
            other => Err(format!("a value of unknown type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn manifest() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap()
    }

    /// Files written by llama.cpp's own `gguf` package read with the names,
    /// shapes, types and architecture it wrote.
    #[test]
    fn files_written_by_llama_cpps_package_read_as_written() {
        let manifest = manifest();
        for name in ["tiny-F16.gguf", "tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf", "tiny-v2.gguf"] {
            let gguf = read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = &manifest[name];
            assert_eq!(
                gguf.architecture.as_deref(),
                expected["architecture"].as_str(),
                "{name}"
            );
            let tensors = expected["tensors"].as_object().unwrap();
            assert_eq!(gguf.tensors.len(), tensors.len(), "{name}");
            for t in &gguf.tensors {
                let want = &tensors[&t.name];
                assert_eq!(t.ggml_type.name(), want["dtype"].as_str().unwrap(), "{name} {}", t.name);
                let shape: Vec<i64> = serde_json::from_value(want["shape"].clone()).unwrap();
                assert_eq!(t.torch_shape(), shape, "{name} {}", t.name);
                assert_eq!(t.offset % gguf.alignment, 0);
            }
        }
        assert_eq!(read(&fixture("tiny-v2.gguf")).unwrap().version, 2);
        assert_eq!(read(&fixture("tiny-Q4_K_M.gguf")).unwrap().alignment, 64);
    }

    #[test]
    fn broken_files_are_refused_with_the_reason() {
        let truncated = read(&fixture("broken_truncated.gguf")).unwrap_err();
        assert!(truncated.contains("extends past the end of the file"), "{truncated}");
        let offset = read(&fixture("broken_offset.gguf")).unwrap_err();
        assert!(offset.contains("not a multiple of the alignment"), "{offset}");
        let good = std::fs::read(fixture("tiny-F16.gguf")).unwrap();
        for cut in [3, 10, 30, 100, 200] {
            let err = parse(&good[..cut], cut as u64).unwrap_err();
            assert!(
                err.contains("truncated") || err.contains("past the end") || err.contains("claims"),
                "{cut}: {err}"
            );
        }
        // A count the file cannot hold is refused before anything is allocated.
        let mut huge = good.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&huge[..], huge.len() as u64).unwrap_err().contains("claims"));
        // A zero-sized tensor claiming a dimension torch cannot hold.
        let first_dim = {
            let g = parse(&good[..], good.len() as u64).unwrap();
            let name = g.tensors[0].name.as_bytes();
            good.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4
        };
        let mut huge_dim = good.clone();
        huge_dim[first_dim..first_dim + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&huge_dim[..], huge_dim.len() as u64)
            .unwrap_err()
            .contains("has a dimension of"));
        let mut v1 = good.clone();
        v1[4] = 1;
        assert!(parse(&v1[..], v1.len() as u64).unwrap_err().contains("version 1"));
    }

    #[test]
    fn structure_counts_parameters_and_marks_quantized_types() {
        let s = structure(&fixture("tiny-Q4_K_M.gguf")).unwrap();
        assert_eq!(s.tensors, 3);
        assert_eq!(s.parameters, 4 * 256 + 256 + 2 * 256);
        assert!(s.dtypes.contains("Q4_K (quantized: structure only)"), "{:?}", s.dtypes);
        assert!(s.dtypes.contains("float32"));
        let f16 = structure(&fixture("tiny-F16.gguf")).unwrap();
        assert_eq!(
            f16.dtypes.into_iter().collect::<Vec<_>>(),
            ["bfloat16", "float16", "float32"]
        );
    }
}
