//! Reads `torch.save` files — the zip format (`archive/data.pkl` + raw storages
//! in `archive/data/<key>`) and the legacy pre-1.6 format (a sequence of pickles
//! followed by the raw storages) — into a list of tensors described by dtype,
//! shape, stride, storage offset and their storage bytes.
//!
//! libtorch's own loaders cannot do this for the commonest file of all,
//! `torch.save(model.state_dict())`: its unpickler does not rebuild
//! `collections.OrderedDict`. So mdl reads the pickle itself and hands every
//! tensor's real bytes to libtorch (see `libtorch.rs`). Everything here is
//! checked without libtorch too: each storage exists, has the size its
//! persistent id claims, and covers every view of it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::pickle::{self, Value};

/// Element types torch storages carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    C64,
    C128,
    F8E4M3,
    F8E5M2,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::C64 => 8,
            Dtype::C128 => 16,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
        }
    }

    /// torch's name (`float32`, …), as `str(t.dtype)` prints it without `torch.`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
            Dtype::C64 => "complex64",
            Dtype::C128 => "complex128",
            Dtype::F8E4M3 => "float8_e4m3fn",
            Dtype::F8E5M2 => "float8_e5m2",
        }
    }

    /// From a storage class name (`FloatStorage`).
    fn from_storage(name: &str) -> Option<Dtype> {
        Some(match name {
            "DoubleStorage" => Dtype::F64,
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            "ComplexFloatStorage" => Dtype::C64,
            "ComplexDoubleStorage" => Dtype::C128,
            "Float8_e4m3fnStorage" => Dtype::F8E4M3,
            "Float8_e5m2Storage" => Dtype::F8E5M2,
            _ => return None,
        })
    }

    /// From a `torch.<dtype>` global (rebuild_tensor_v3 passes the dtype).
    fn from_torch_name(name: &str) -> Option<Dtype> {
        Some(match name {
            "float64" | "double" => Dtype::F64,
            "float32" | "float" => Dtype::F32,
            "float16" | "half" => Dtype::F16,
            "bfloat16" => Dtype::BF16,
            "int64" | "long" => Dtype::I64,
            "int32" | "int" => Dtype::I32,
            "int16" | "short" => Dtype::I16,
            "int8" => Dtype::I8,
            "uint8" => Dtype::U8,
            "bool" => Dtype::Bool,
            "complex64" => Dtype::C64,
            "complex128" => Dtype::C128,
            "float8_e4m3fn" => Dtype::F8E4M3,
            "float8_e5m2" => Dtype::F8E5M2,
            _ => return None,
        })
    }
}

/// A tensor as the pickle describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// Its place in the saved object: `conv.weight`, `model.fc.bias`, `0.1`.
    pub name: String,
    pub dtype: Dtype,
    pub storage: String,
    pub offset: i64,
    pub shape: Vec<i64>,
    pub stride: Vec<i64>,
}

impl TensorRef {
    /// Elements of the view (checked when the file was read: no overflow).
    pub fn numel(&self) -> i64 {
        self.shape
            .iter()
            .try_fold(1i64, |n, &d| n.checked_mul(d))
            .unwrap_or(i64::MAX)
    }
}

/// A storage: its element type and count, and where its bytes are.
#[derive(Clone, Debug)]
pub struct Storage {
    pub dtype: Dtype,
    pub numel: i64,
    pub bytes: Bytes,
}

/// Where a storage's bytes are. `torch.save` stores its records uncompressed,
/// so they are read in place from the file's memory map; a compressed record
/// (another writer's) is inflated into memory, that one storage only.
#[derive(Clone, Debug)]
pub enum Bytes {
    /// At this offset of the mapped file.
    Mapped {
        offset: usize,
    },
    Owned(Vec<u8>),
}

impl Storage {
    pub fn len(&self) -> usize {
        self.numel as usize * self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed `torch.save` file, its storages left in the file until used.
#[derive(Debug)]
pub struct TorchFile {
    pub legacy: bool,
    pub tensors: Vec<TensorRef>,
    pub storages: BTreeMap<String, Storage>,
    map: memmap2::Mmap,
}

impl TorchFile {
    /// Elements of every view, saturating (a crafted file's views may all
    /// claim one huge storage).
    pub fn parameters(&self) -> u64 {
        (self.tensors.iter()).fold(0i64, |n, t| n.saturating_add(t.numel())) as u64
    }

    /// Bytes of every view, saturating.
    pub fn tensor_bytes(&self) -> u64 {
        (self.tensors.iter()).fold(0i64, |n, t| {
            n.saturating_add(t.numel().saturating_mul(t.dtype.size() as i64))
        }) as u64
    }

    /// The largest storage, named by a tensor that views it.
    pub fn largest(&self) -> (String, u64) {
        (self.storages.iter())
            .map(|(key, storage)| {
                let name = (self.tensors.iter())
                    .find(|t| &t.storage == key)
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| format!("storage {key}"));
                (name, storage.len() as u64)
            })
            .max_by_key(|(_, bytes)| *bytes)
            .unwrap_or_else(|| ("(no tensor)".to_string(), 0))
    }

    /// A storage's bytes: a view into the mapped file, or the inflated copy.
    pub fn bytes<'a>(&'a self, storage: &'a Storage) -> &'a [u8] {
        match &storage.bytes {
            Bytes::Mapped { offset } => &self.map[*offset..*offset + storage.len()],
            Bytes::Owned(bytes) => bytes,
        }
    }

    /// Where a storage's bytes start in the file, when they are stored as
    /// they are (not deflated).
    pub fn offset_of(&self, storage: &Storage) -> Option<usize> {
        match storage.bytes {
            Bytes::Mapped { offset } => Some(offset),
            Bytes::Owned(_) => None,
        }
    }

    /// Drops a mapped storage's pages from this process's resident set (they
    /// are clean and file-backed: reading them again faults them back in), so
    /// verifying a file holds about one storage in memory, not the file.
    pub fn release(&self, storage: &Storage) {
        self.release_range(storage, 0, storage.len());
    }

    /// [`TorchFile::release`] for `len` bytes of a storage from byte `start`.
    pub fn release_range(&self, storage: &Storage, start: usize, len: usize) {
        if let Bytes::Mapped { offset } = storage.bytes {
            release_pages(
                &self.map,
                offset + start.min(storage.len()),
                len.min(storage.len() - start.min(storage.len())),
            );
        }
    }
}

/// `MADV_DONTNEED` on the pages of `map[offset..offset + len]`.
pub fn release_pages(map: &memmap2::Mmap, offset: usize, len: usize) {
    const PAGE: usize = 4096;
    let start = offset / PAGE * PAGE;
    let end = (offset + len).min(map.len());
    if end > start {
        // SAFETY: callers release only ranges no live slice or tensor still
        // reads; the mapping is private and read-only, so dropping pages loses
        // nothing (a later read faults them in from the file).
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
    }
}

/// Maps a weight file read-only.
fn map_file(path: &Path) -> Result<memmap2::Mmap, TorchFileError> {
    let file = std::fs::File::open(path)?;
    // SAFETY: mdl's own synced copy, not modified while verified; a concurrent
    // truncation would be SIGBUS in the verifier process, reported as a failed
    // load of this one file.
    Ok(unsafe { memmap2::Mmap::map(&file)? })
}

#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error("{0}")]
    Zip(String),
    #[error("its pickle cannot be read: {0}")]
    Pickle(#[from] pickle::PickleError),
    #[error("{0}")]
    Invalid(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(msg: impl Into<String>) -> TorchFileError {
    TorchFileError::Invalid(msg.into())
}

/// Reads a zip-format `torch.save` file.
pub fn read_zip(path: &Path) -> Result<TorchFile, TorchFileError> {
    let (mut zip, root) = open_archive(path)?;
    let map = map_file(path)?;
    let object = read_pickle(&mut zip, &format!("{root}data.pkl"))?;
    let (tensors, storages) = tensors_of(&mut zip, &map, &object, &format!("{root}data/"), "")?;
    check_extents(&tensors, &storages)?;
    Ok(TorchFile {
        legacy: false,
        tensors,
        storages,
        map,
    })
}

/// What a TorchScript archive holds besides its weights: the number of code
/// files (`code/**.py`), which are never run by this reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptCode {
    pub files: usize,
}

/// Reads a TorchScript archive (`torch.jit.save`) as weights, running
/// nothing: `data.pkl` (the module tree: `__torch__.*` classes are opaque
/// names here, their state only data) and `constants.pkl` through the same
/// safe pickle reader, every tensor's storage in `data/` or `constants/`
/// checked against the archive as for a state dict. The code files must be
/// there; they are counted, never executed.
pub fn read_torchscript(path: &Path) -> Result<(TorchFile, ScriptCode), TorchFileError> {
    let (mut zip, root) = open_archive(path)?;
    let code_dir = format!("{root}code/");
    let files = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i))
        .filter(|n| n.starts_with(&code_dir) && n.ends_with(".py"))
        .count();
    if files == 0 {
        return Err(invalid(format!(
            "it has no `{code_dir}*.py`: not a TorchScript archive"
        )));
    }
    let map = map_file(path)?;
    let object = read_pickle(&mut zip, &format!("{root}data.pkl"))?;
    let (mut tensors, mut storages) = tensors_of(&mut zip, &map, &object, &format!("{root}data/"), "")?;
    let constants = read_pickle(&mut zip, &format!("{root}constants.pkl"))?;
    let (more, more_storages) = tensors_of(&mut zip, &map, &constants, &format!("{root}constants/"), "constants/")?;
    tensors.extend(more);
    storages.extend(more_storages);
    check_extents(&tensors, &storages)?;
    let file = TorchFile {
        legacy: false,
        tensors,
        storages,
        map,
    };
    Ok((file, ScriptCode { files }))
}

/// Whether the zip at `path` is another kind of torch archive than a
/// `torch.save` file: TorchScript's entries (`constants.pkl`, `code/`) or a
/// PT2 archive's (`archive_format`). A zip that cannot be read is none of
/// them (reading it as a `torch.save` file then says what is wrong).
pub fn is_other_torch_zip(path: &Path) -> bool {
    let Ok(zip) = std::fs::File::open(path).map(zip::ZipArchive::new) else {
        return false;
    };
    zip.is_ok_and(|zip| {
        zip.file_names()
            .any(|n| n.ends_with("/constants.pkl") || n.contains("/code/") || n.ends_with("/archive_format"))
    })
}

/// A `torch.save` or TorchScript zip and its root folder (`archive/`).
fn open_archive(path: &Path) -> Result<(zip::ZipArchive<std::fs::File>, String), TorchFileError> {
    let file = std::fs::File::open(path)?;
    let zip =
        zip::ZipArchive::new(file).map_err(|e| TorchFileError::Zip(format!("the zip archive is unreadable ({e})")))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| invalid("the archive has no `data.pkl`"))?;
    let root = pkl_name.trim_end_matches("data.pkl").to_string();
    Ok((zip, root))
}

/// One pickle record of the archive, through mdl's safe reader.
fn read_pickle(zip: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Result<Value, TorchFileError> {
    let mut pkl = Vec::new();
    // Read to what the pickle reader would accept at most, whatever the
    // archive declares: a deflated pickle cannot inflate past it.
    let limit = pickle::MAX_VALUE_BYTES as u64;
    zip.by_name(name)
        .map_err(|e| TorchFileError::Zip(format!("`{name}`: {e}")))?
        .take(limit + 1)
        .read_to_end(&mut pkl)
        .map_err(|e| TorchFileError::Zip(format!("`{name}` is corrupt ({e})")))?;
    if pkl.len() as u64 > limit {
        return Err(invalid(format!("`{name}` is larger than {} MiB", limit >> 20)));
    }

    let mut pos = 0;
    Ok(pickle::read(&pkl, &mut pos)?)
}

/// The tensors a pickle describes, and their storages from the records in
/// `dir` (each storage keyed `{key_prefix}{key}`, tensors named likewise).
#[allow(clippy::type_complexity)]
fn tensors_of(
    zip: &mut zip::ZipArchive<std::fs::File>,
    map: &memmap2::Mmap,
    object: &Value,
    dir: &str,
    key_prefix: &str,
) -> Result<(Vec<TensorRef>, BTreeMap<String, Storage>), TorchFileError> {
    let mut tensors = Vec::new();
    let mut storage_ids = BTreeMap::new();
    collect(
        object,
        key_prefix.trim_end_matches('/').to_string(),
        &mut tensors,
        &mut storage_ids,
        0,
    )?;
    for t in &mut tensors {
        t.storage = format!("{key_prefix}{}", t.storage);
    }
    let mut storages = BTreeMap::new();
    for (key, (dtype, numel)) in storage_ids {
        let record = format!("{dir}{key}");
        let mut entry = zip.by_name(&record).map_err(|_| {
            invalid(format!(
                "the pickle references storage `{key}`, but the archive has no record `{record}`"
            ))
        })?;
        let want = storage_bytes(&key, numel, dtype)?;
        if entry.size() != want {
            return Err(invalid(format!(
                "storage `{key}` holds {} bytes, but {numel} {} elements need {want}",
                entry.size(),
                dtype.name()
            )));
        }
        let start = entry.data_start();
        let fits = start.checked_add(want).is_some_and(|end| end <= map.len() as u64);
        let bytes = match entry.compression() {
            // The record's bytes as they are in the file (their crc is not
            // re-checked: the whole file's blake3 matched the lock).
            zip::CompressionMethod::Stored if fits => Bytes::Mapped { offset: start as usize },
            // A size the file cannot hold is a lie, never an allocation.
            zip::CompressionMethod::Stored => {
                return Err(invalid(format!(
                    "storage `{key}` claims {want} bytes, past the end of the file (truncated or crafted)"
                )))
            }
            _ => {
                // Deflate expands at most ~1032:1; a record claiming more
                // than that of its compressed bytes is lying.
                if want > entry.compressed_size().saturating_mul(1032) || want > MAX_INFLATED {
                    return Err(invalid(format!(
                        "storage `{key}` claims {want} bytes from {} compressed bytes (more than mdl inflates)",
                        entry.compressed_size()
                    )));
                }
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(want)
                    .read_to_end(&mut bytes)
                    .map_err(|e| TorchFileError::Zip(format!("storage `{key}` is corrupt ({e})")))?;
                if bytes.len() as u64 != want {
                    return Err(invalid(format!(
                        "storage `{key}` inflates to {} of its {want} bytes",
                        bytes.len()
                    )));
                }
                Bytes::Owned(bytes)
            }
        };
        storages.insert(format!("{key_prefix}{key}"), Storage { dtype, numel, bytes });
    }
    Ok((tensors, storages))
}

const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Whether `head` starts like a legacy `torch.save` file (a pickled magic number).
pub fn is_legacy(head: &[u8]) -> bool {
    head.len() >= 14 && head[0] == 0x80 && head[2] == 0x8a && head[3] == 10 && head[4..14] == LEGACY_MAGIC
}

/// Reads a legacy (pre-1.6, `_use_new_zipfile_serialization=False`) file.
pub fn read_legacy(path: &Path) -> Result<TorchFile, TorchFileError> {
    let map = map_file(path)?;
    let data: &[u8] = &map;
    let mut pos = 0;
    let magic = pickle::read(data, &mut pos)?;
    if magic != Value::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err(invalid("it is not a torch legacy file (bad magic number)"));
    }
    let _protocol = pickle::read(data, &mut pos)?;
    let _sys_info = pickle::read(data, &mut pos)?;
    let object = pickle::read(data, &mut pos)?;
    let keys = pickle::read(data, &mut pos)?;
    let mut tensors = Vec::new();
    let mut storage_ids = BTreeMap::new();
    collect(&object, String::new(), &mut tensors, &mut storage_ids, 0)?;
    let keys: Vec<String> = keys
        .as_tuple()
        .ok_or_else(|| invalid("the storage key list is missing"))?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid("a storage key is not a string"))
        })
        .collect::<Result<_, _>>()?;
    let mut storages = BTreeMap::new();
    for key in keys {
        let (dtype, numel) = *storage_ids
            .get(&key)
            .ok_or_else(|| invalid(format!("storage `{key}` is listed but never used")))?;
        let header = data
            .get(pos..pos + 8)
            .ok_or_else(|| invalid(format!("the file ends before storage `{key}`")))?;
        let stored = u64::from_le_bytes(header.try_into().unwrap());
        pos += 8;
        if stored != numel as u64 {
            return Err(invalid(format!(
                "storage `{key}` holds {stored} elements, but {numel} were announced"
            )));
        }
        let len = storage_bytes(&key, numel, dtype)?;
        if ((data.len() - pos) as u64) < len {
            return Err(invalid(format!("the file ends inside storage `{key}` (truncated)")));
        }
        let len = len as usize;
        storages.insert(
            key,
            Storage {
                dtype,
                numel,
                bytes: Bytes::Mapped { offset: pos },
            },
        );
        pos += len;
    }
    if let Some(missing) = storage_ids.keys().find(|k| !storages.contains_key(*k)) {
        return Err(invalid(format!(
            "the pickle references storage `{missing}`, which the file does not hold"
        )));
    }
    check_extents(&tensors, &storages)?;
    Ok(TorchFile {
        legacy: true,
        tensors,
        storages,
        map,
    })
}

/// The most a compressed storage is inflated to in memory (mdl's own and
/// torch's writers store records uncompressed; another writer's deflated
/// record is read whole, so it is bounded).
const MAX_INFLATED: u64 = 4 << 30;

/// A storage's byte length, refused when it overflows (a crafted element count).
fn storage_bytes(key: &str, numel: i64, dtype: Dtype) -> Result<u64, TorchFileError> {
    u64::try_from(numel)
        .ok()
        .and_then(|n| n.checked_mul(dtype.size() as u64))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(|| {
            invalid(format!(
                "storage `{key}` claims {numel} elements, more than any file holds"
            ))
        })
}

/// Every view must lie inside its storage. All arithmetic is checked: the
/// shape, stride and offset are the file's claims.
fn check_extents(tensors: &[TensorRef], storages: &BTreeMap<String, Storage>) -> Result<(), TorchFileError> {
    for t in tensors {
        let storage = &storages[&t.storage];
        let bad = || invalid(format!("tensor `{}` has an invalid shape or stride", t.name));
        if t.shape.len() != t.stride.len()
            || t.shape.iter().any(|&d| d < 0)
            || t.stride.iter().any(|&s| s < 0)
            || t.offset < 0
        {
            return Err(bad());
        }
        let numel = t
            .shape
            .iter()
            .try_fold(1i64, |n, &d| n.checked_mul(d))
            .ok_or_else(bad)?;
        if numel == 0 {
            continue;
        }
        let reach = t.shape.iter().zip(&t.stride).try_fold(0i64, |sum, (d, s)| {
            (d - 1).checked_mul(*s).and_then(|x| sum.checked_add(x))
        });
        let last = reach.and_then(|r| r.checked_add(t.offset)).ok_or_else(bad)?;
        if last >= storage.numel {
            return Err(invalid(format!(
                "tensor `{}` reaches element {last} of storage `{}`, which has {}",
                t.name, t.storage, storage.numel
            )));
        }
    }
    Ok(())
}

fn ints(v: &Value, what: &str, name: &str) -> Result<Vec<i64>, TorchFileError> {
    v.as_tuple()
        .ok_or_else(|| invalid(format!("tensor `{name}`: {what} is not a tuple")))?
        .iter()
        .map(|x| {
            x.as_int()
                .ok_or_else(|| invalid(format!("tensor `{name}`: {what} holds a non-integer")))
        })
        .collect()
}

/// `('storage', torch.FloatStorage, key, location, numel[, view_metadata])`
fn storage_of(pid: &Value, name: &str) -> Result<(String, Dtype, i64), TorchFileError> {
    let Value::PersistentId(inner) = pid else {
        return Err(invalid(format!("tensor `{name}` has no storage reference")));
    };
    let t = inner
        .as_tuple()
        .ok_or_else(|| invalid("a storage reference is not a tuple"))?;
    if t.len() < 5 || t[0].as_str() != Some("storage") {
        return Err(invalid("a storage reference has an unknown form"));
    }
    let dtype = match &t[1] {
        Value::Global { name: class, .. } => Dtype::from_storage(class).ok_or_else(|| {
            invalid(format!(
                "tensor `{name}` uses storage type `{class}`, which mdl cannot read"
            ))
        })?,
        _ => return Err(invalid("a storage reference has no storage type")),
    };
    let key = t[2]
        .as_str()
        .ok_or_else(|| invalid("a storage key is not a string"))?
        .to_string();
    let numel = t[4]
        .as_int()
        .ok_or_else(|| invalid("a storage size is not an integer"))?;
    if numel < 0 {
        return Err(invalid("a storage size is negative"));
    }
    Ok((key, dtype, numel))
}

fn collect(
    v: &Value,
    path: String,
    out: &mut Vec<TensorRef>,
    storages: &mut BTreeMap<String, (Dtype, i64)>,
    depth: usize,
) -> Result<(), TorchFileError> {
    if depth > 256 {
        return Err(invalid("the saved object is nested too deeply"));
    }
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    if let Some(map) = pickle::as_mapping(v) {
        for (k, val) in map {
            let key = match k {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                _ => continue,
            };
            collect(val, child(&key), out, storages, depth + 1)?;
        }
        return Ok(());
    }
    match v {
        Value::Call { callable, args } => {
            let Value::Global { module, name } = &**callable else {
                return collect(args, path, out, storages, depth + 1);
            };
            let args = args.as_tuple().unwrap_or(&[]);
            match (module.as_str(), name.as_str()) {
                ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor" | "_rebuild_tensor_v3") => {
                    if args.len() < 4 {
                        return Err(invalid(format!("tensor `{path}` has too few rebuild arguments")));
                    }
                    let (key, mut dtype, numel) = storage_of(&args[0], &path)?;
                    if name == "_rebuild_tensor_v3" {
                        if let Some(Value::Global { name: d, .. }) = args.get(6) {
                            dtype = Dtype::from_torch_name(d).unwrap_or(dtype);
                        }
                    }
                    let offset = args[1].as_int().ok_or_else(|| invalid(format!("tensor `{path}`: bad storage offset")))?;
                    let shape = ints(&args[2], "size", &path)?;
                    let stride = ints(&args[3], "stride", &path)?;
                    if let Some((d, n)) = storages.get(&key) {
                        if (*d, *n) != (dtype, numel) {
                            return Err(invalid(format!("storage `{key}` is described two different ways")));
                        }
                    }
                    storages.insert(key.clone(), (dtype, numel));
                    out.push(TensorRef { name: path, dtype, storage: key, offset, shape, stride });
                    Ok(())
                }
                ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                    match args.first() {
                        Some(data) => collect(data, path, out, storages, depth + 1),
                        None => Err(invalid(format!("parameter `{path}` has no data"))),
                    }
                }
                ("torch._utils", other) if other.starts_with("_rebuild_") => Err(invalid(format!(
                    "tensor `{path}` is saved with `{other}` (quantized, sparse or otherwise special), which mdl cannot verify"
                ))),
                _ => {
                    for (i, a) in args.iter().enumerate() {
                        collect(a, child(&i.to_string()), out, storages, depth + 1)?;
                    }
                    Ok(())
                }
            }
        }
        Value::Build { object, state } => {
            collect(object, path.clone(), out, storages, depth + 1)?;
            // A BUILD state of a plain object (e.g. argparse.Namespace) may hold tensors.
            if !matches!(**object, Value::Call { ref callable, .. } if callable.is_global("torch._utils", "_rebuild_parameter"))
            {
                collect(state, path, out, storages, depth + 1)?;
            }
            Ok(())
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(item, child(&i.to_string()), out, storages, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
