//! `torch.export` programs (`torch.export.save`, `.pt2`) and AOTInductor
//! packages, TorchScript's successors, read by their structure. A `.pt2` is
//! a zip (torch's "PT2 archive", `archive_format` = `pt2`):
//!
//! ```text
//! <root>/archive_format                      "pt2"
//! <root>/archive_version, .data/version      format versions
//! <root>/models/<name>.json                  the serialized program (graph,
//!                                            signature, schema_version)
//! <root>/data/weights/<name>_weights_config.json   {config: {fqn: {path_name,
//!                                            use_pickle, tensor_meta}}}
//! <root>/data/weights/weight_N               each weight's raw bytes
//! <root>/data/constants/…                    the same for constants
//! <root>/data/sample_inputs/<name>.pt        example inputs (a torch.save
//!                                            pickle: never read here)
//! <root>/data/aotinductor/…                  an AOTInductor package's
//!                                            compiled kernels: native code
//! ```
//!
//! Loading a program is running it: `torch.export.load` rebuilds the graph,
//! and an AOTInductor package's kernels are a shared library. So by default
//! mdl reads the archive bounded, parses the program's JSON with bounded
//! sizes for its signature, and every weight and constant through its own
//! reader: dtype, shape, strides and extent checked against the record the
//! config names, before anything is allocated. The program is loaded (in the
//! Python verifier) only when config.yaml asks (`verify.run_code`,
//! `verify.forward`). Layout read from torch 2.13's and 2.15's
//! `torch/export/pt2_archive` (`constants.py`) and `_export/serde/schema.py`.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::torch::file::Dtype;
use super::{Format, Span, Structure, View, WeightFormat};

/// `torch.export` programs and AOTInductor packages.
pub struct TorchExport;

impl WeightFormat for TorchExport {
    fn format(&self) -> Format {
        Format::TorchExport
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
        "pt2"
    }
    fn holds_code(&self) -> bool {
        true
    }
    fn contents(&self, path: &Path) -> Option<String> {
        read(path).ok().map(|p| p.describe())
    }
    /// Every weight and constant as the reader checked them.
    fn spans(&self, path: &Path) -> Vec<Span> {
        let Ok(program) = read(path) else {
            return Vec::new();
        };
        (program.tensors.iter())
            .map(|t| Span {
                name: t.name.clone(),
                dtype: t.dtype.name().to_string(),
                shape: t.shape.clone(),
                offset: t.offset,
                bytes: t.bytes,
                view: Some(View {
                    stride: t.stride.clone(),
                    element_offset: t.storage_offset,
                }),
            })
            .collect()
    }
}

/// The largest JSON record read (a program's graph of a large model is a
/// few MiB).
const MAX_JSON: u64 = 64 << 20;

/// A weight or constant of the program, where its bytes are in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pt2Tensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<i64>,
    pub stride: Vec<i64>,
    pub storage_offset: i64,
    /// The record's first byte in the file, and its length.
    pub offset: u64,
    pub bytes: u64,
}

/// What a `.pt2` holds, read without running anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    pub tensors: Vec<Pt2Tensor>,
    /// Inputs of the graph signature (parameters, buffers, constants, user
    /// inputs) and its outputs; the user inputs alone.
    pub inputs: usize,
    pub user_inputs: usize,
    pub outputs: usize,
    pub programs: usize,
    /// An AOTInductor package's compiled files (native code), by name.
    pub aotinductor: Vec<String>,
    /// What its metadata says it was compiled for (`cpu linux x86_64 AVX512`).
    pub target: Option<String>,
}

impl Program {
    /// What the report says the archive holds, from its structure alone.
    pub fn describe(&self) -> String {
        let package = if self.aotinductor.is_empty() {
            String::new()
        } else {
            let libraries = self.aotinductor.iter().filter(|n| n.ends_with(".so")).count();
            let target = self.target.as_deref().map(|t| format!(" for {t}")).unwrap_or_default();
            format!(
                "; AOTInductor package{target}: {} file(s), {libraries} compiled librar{} (native code, not loaded)",
                self.aotinductor.len(),
                if libraries == 1 { "y" } else { "ies" }
            )
        };
        format!(
            "{} program(s), {} input(s) ({} from the user), {} output(s){package}",
            self.programs, self.inputs, self.user_inputs, self.outputs
        )
    }
}

/// A zip holding `<root>/archive_format` that says `pt2`.
pub fn detect(head: &[u8], path: &Path) -> bool {
    head.starts_with(b"PK\x03\x04") && open(path).is_ok()
}

type Zip = zip::ZipArchive<std::fs::File>;

/// The archive and its root folder, when it is a PT2 archive.
fn open(path: &Path) -> Result<(Zip, String), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("the zip archive is unreadable ({e})"))?;
    let root = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i))
        .find(|n| n.ends_with("/archive_format") && n.matches('/').count() == 1)
        .map(|n| n.trim_end_matches("archive_format").to_string())
        .ok_or("it has no `archive_format`: not a torch.export archive")?;
    let format = small(&mut zip, &format!("{root}archive_format"), 64)?;
    if format.trim() != "pt2" {
        return Err(format!(
            "its `archive_format` is `{}`, not `pt2`",
            format.escape_debug()
        ));
    }
    Ok((zip, root))
}

/// A small text record, at most `limit` bytes.
fn small(zip: &mut Zip, name: &str, limit: u64) -> Result<String, String> {
    let mut text = String::new();
    zip.by_name(name)
        .map_err(|e| format!("`{name}`: {e}"))?
        .take(limit)
        .read_to_string(&mut text)
        .map_err(|e| format!("`{name}` is corrupt ({e})"))?;
    Ok(text)
}

/// A JSON record, read bounded and parsed.
fn json<T: serde::de::DeserializeOwned>(zip: &mut Zip, name: &str) -> Result<T, String> {
    let mut entry = zip.by_name(name).map_err(|e| format!("`{name}`: {e}"))?;
    if entry.size() > MAX_JSON {
        return Err(format!("`{name}` is larger than {} MiB", MAX_JSON >> 20));
    }
    let mut bytes = Vec::new();
    (&mut entry)
        .take(MAX_JSON)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("`{name}` is corrupt ({e})"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("`{name}` is not the JSON torch writes ({e})"))
}

#[derive(Deserialize)]
struct TensorConfigs {
    config: std::collections::BTreeMap<String, TensorConfig>,
}

#[derive(Deserialize)]
struct TensorConfig {
    path_name: String,
    #[serde(default)]
    use_pickle: bool,
    #[serde(default)]
    tensor_meta: Option<TensorMeta>,
}

#[derive(Deserialize)]
struct TensorMeta {
    dtype: i64,
    sizes: Vec<SymInt>,
    strides: Vec<SymInt>,
    storage_offset: SymInt,
    #[serde(default)]
    layout: Option<i64>,
}

#[derive(Deserialize)]
struct SymInt {
    #[serde(default)]
    as_int: Option<i64>,
}

/// torch's `ScalarType` numbering in the export schema.
fn dtype_of(code: i64) -> Option<Dtype> {
    Some(match code {
        1 => Dtype::U8,
        2 => Dtype::I8,
        3 => Dtype::I16,
        4 => Dtype::I32,
        5 => Dtype::I64,
        6 => Dtype::F16,
        7 => Dtype::F32,
        8 => Dtype::F64,
        10 => Dtype::C64,
        11 => Dtype::C128,
        12 => Dtype::Bool,
        13 => Dtype::BF16,
        29 => Dtype::F8E4M3,
        30 => Dtype::F8E5M2,
        _ => return None,
    })
}

/// The archive, read: the programs' signatures, every weight and constant
/// checked against its record, the AOTInductor files named.
pub fn read(path: &Path) -> Result<Program, String> {
    let (mut zip, root) = open(path)?;
    let names: Vec<String> = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .collect();
    let mut program = Program::default();
    for name in names
        .iter()
        .filter(|n| n.starts_with(&format!("{root}models/")) && n.ends_with(".json"))
    {
        let value: serde_json::Value = json(&mut zip, name)?;
        let signature = &value["graph_module"]["signature"];
        let inputs = signature["input_specs"]
            .as_array()
            .ok_or_else(|| format!("`{name}` has no input signature"))?;
        let outputs = signature["output_specs"]
            .as_array()
            .ok_or_else(|| format!("`{name}` has no output signature"))?;
        program.programs += 1;
        program.inputs += inputs.len();
        program.user_inputs += inputs.iter().filter(|i| i.get("user_input").is_some()).count();
        program.outputs += outputs.len();
    }
    let aoti = format!("{root}data/aotinductor/");
    let packaged = names.iter().any(|n| n.starts_with(&aoti));
    if program.programs == 0 && !packaged {
        return Err(format!("it has no `{root}models/*.json` and no `{aoti}`: no program"));
    }
    for (dir, kind) in [("data/weights/", "weight"), ("data/constants/", "constant")] {
        let prefix = format!("{root}{dir}");
        let configs = names
            .iter()
            .filter(|n| n.starts_with(&prefix) && n.ends_with("_config.json") && !n[prefix.len()..].contains('/'));
        for config_name in configs {
            let configs: TensorConfigs = json(&mut zip, config_name)?;
            for (fqn, config) in configs.config {
                if let Some(t) = tensor(&mut zip, &prefix, kind, &fqn, config)? {
                    program.tensors.push(t);
                }
            }
        }
    }
    program.aotinductor = names
        .iter()
        .filter_map(|n| n.strip_prefix(&aoti))
        .filter(|n| !n.is_empty() && !n.ends_with('/'))
        .map(str::to_string)
        .collect();
    // Read as data, never loaded: where it says it runs.
    if let Some(meta) = program.aotinductor.iter().find(|n| n.ends_with("_metadata.json")) {
        let value: serde_json::Value = json(&mut zip, &format!("{aoti}{meta}"))?;
        let field = |k: &str| {
            value[k]
                .as_str()
                .filter(|v| !v.is_empty() && v.len() < 64)
                .map(str::to_string)
        };
        let parts: Vec<String> = ["AOTI_DEVICE_KEY", "AOTI_PLATFORM", "AOTI_MACHINE", "AOTI_CPU_ISA"]
            .iter()
            .filter_map(|k| field(k))
            .collect();
        program.target = (!parts.is_empty()).then(|| parts.join(" "));
    }
    Ok(program)
}

/// One config entry: its record found and every size checked against it.
/// `None` for an entry that is not a tensor (a custom object's bytes).
fn tensor(
    zip: &mut Zip,
    prefix: &str,
    kind: &str,
    fqn: &str,
    config: TensorConfig,
) -> Result<Option<Pt2Tensor>, String> {
    let Some(meta) = config.tensor_meta else {
        return Ok(None);
    };
    let bad = |why: String| format!("{kind} `{fqn}`: {why}");
    if config.use_pickle {
        return Err(bad(
            "it is pickled (a tensor subclass), which mdl does not unpickle in a `.pt2`".into(),
        ));
    }
    if config.path_name.is_empty() || config.path_name.contains(['/', '\\']) || config.path_name.starts_with('.') {
        return Err(bad(format!(
            "`{}` is not a record name",
            config.path_name.escape_debug()
        )));
    }
    if meta.layout.is_some_and(|l| l != 7) {
        return Err(bad("it is not a strided tensor (sparse or another layout)".into()));
    }
    let dtype = dtype_of(meta.dtype).ok_or_else(|| bad(format!("dtype code {} is not one mdl reads", meta.dtype)))?;
    let ints = |v: &[SymInt], what: &str| -> Result<Vec<i64>, String> {
        if v.len() > 64 {
            return Err(bad(format!("{} {what} dimensions", v.len())));
        }
        v.iter()
            .map(|s| {
                s.as_int
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| bad(format!("a {what} is not a concrete size")))
            })
            .collect()
    };
    let (shape, stride) = (ints(&meta.sizes, "size")?, ints(&meta.strides, "stride")?);
    let storage_offset = meta
        .storage_offset
        .as_int
        .filter(|n| *n >= 0)
        .ok_or_else(|| bad("its storage offset is not a concrete size".into()))?;
    if shape.len() != stride.len() {
        return Err(bad("its sizes and strides differ in number".into()));
    }
    let record_name = format!("{prefix}{}", config.path_name);
    let record = zip
        .by_name(&record_name)
        .map_err(|_| bad(format!("the archive has no record `{record_name}`")))?;
    if record.compression() != zip::CompressionMethod::Stored {
        return Err(bad(format!(
            "`{record_name}` is compressed (torch stores weights as they are)"
        )));
    }
    // The furthest element the view reaches, in checked arithmetic.
    let numel = shape.iter().try_fold(1i64, |n, &d| n.checked_mul(d));
    let last = shape.iter().zip(&stride).try_fold(storage_offset, |at, (&d, &s)| {
        if d == 0 {
            Some(at)
        } else {
            at.checked_add((d - 1).checked_mul(s)?)
        }
    });
    let need = match (numel, last) {
        (Some(0), _) => Some(0),
        (Some(_), Some(last)) => last.checked_add(1).and_then(|n| n.checked_mul(dtype.size() as i64)),
        _ => None,
    }
    .ok_or_else(|| bad("its sizes overflow".into()))?;
    if need as u64 > record.size() {
        return Err(bad(format!(
            "its view needs {need} bytes, but `{record_name}` holds {}",
            record.size()
        )));
    }
    Ok(Some(Pt2Tensor {
        name: fqn.to_string(),
        dtype,
        shape,
        stride,
        storage_offset,
        offset: record.data_start(),
        bytes: record.size(),
    }))
}

/// Tensors, parameters, bytes and dtypes, and every entry read through
/// (which checks each one's CRC).
pub fn structure(path: &Path) -> Result<Structure, String> {
    let program = read(path)?;
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let mut found = Structure::default();
    for t in &program.tensors {
        if t.offset.checked_add(t.bytes).is_none_or(|end| end > len) {
            return Err(format!(
                "`{}`'s bytes run past the end of the file (truncated or crafted)",
                t.name
            ));
        }
        found.tensors += 1;
        found.parameters += t.shape.iter().product::<i64>() as u64;
        found.bytes += t.shape.iter().product::<i64>() as u64 * t.dtype.size() as u64;
        found.dtypes.insert(t.dtype.name().to_string());
    }
    let (mut zip, _) = open(path)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| format!("entry {i} is corrupt ({e})"))?;
    }
    Ok(found)
}

/// The largest weight or constant record.
pub fn largest(path: &Path) -> Option<(String, u64)> {
    let program = read(path).ok()?;
    program
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.bytes))
        .max_by_key(|(_, b)| *b)
}

/// [`read`] on any bytes, for the fuzz target: `Ok` or `Err`, never a panic,
/// a hang or unbounded memory.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("model.pt2");
    if std::fs::write(&path, data).is_ok() {
        let _ = structure(&path);
        let _ = largest(&path);
    }
}
