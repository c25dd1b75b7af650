//! Loading with libtorch (`tch`) on the target device.
//!
//! * TorchScript: `CModule::load_on_device`, then optionally one `forward` on a
//!   zero input of the configured shape.
//! * safetensors: `Tensor::read_safetensors`, then each tensor moved to the device.
//! * `torch.save` files: libtorch's loaders reject the usual `OrderedDict` state
//!   dict (its unpickler does not rebuild `collections.OrderedDict`, measured in
//!   `shared/docs/libtorch.md`), so `torch_file` reads the pickle and storages and
//!   every tensor is built here from its real bytes: a 1-D tensor over the
//!   storage, `as_strided` to the saved view, moved to the device, and summed, so
//!   libtorch touches every element.
//!
//! libtorch reports C++ exceptions as `TchError`s; a panic from a tch call is
//! also caught, so a bad file never aborts the process.

use std::collections::BTreeSet;
use std::path::Path;

use tch::{Kind, Tensor};

use mdl::config::Device;
use mdl::verify::formats::gguf;
use mdl::verify::formats::torch::file::{self as torch_file, Dtype};
use mdl::verify::{FileReport, Format, TensorReport, VerifyError};

fn kind(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::F64 => Kind::Double,
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::Bool => Kind::Bool,
        Dtype::C64 => Kind::ComplexFloat,
        Dtype::C128 => Kind::ComplexDouble,
        Dtype::F8E4M3 => Kind::Float8e4m3fn,
        Dtype::F8E5M2 => Kind::Float8e5m2,
    }
}

fn kind_name(k: Kind) -> String {
    match k {
        Kind::Double => "float64",
        Kind::Float => "float32",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Int16 => "int16",
        Kind::Int8 => "int8",
        Kind::Uint8 => "uint8",
        Kind::Bool => "bool",
        Kind::ComplexFloat => "complex64",
        Kind::ComplexDouble => "complex128",
        Kind::Float8e4m3fn => "float8_e4m3fn",
        Kind::Float8e5m2 => "float8_e5m2",
        other => return format!("{other:?}").to_lowercase(),
    }
    .to_string()
}

fn tch_device(device: Device) -> tch::Device {
    match device {
        Device::Cpu | Device::Auto => tch::Device::Cpu,
        Device::Cuda(n) => tch::Device::Cuda(n.unwrap_or(0)),
        Device::Mps => tch::Device::Mps,
    }
}

/// `auto` → CUDA when present; an unavailable device is an error, never a
/// silent fallback to CPU.
pub fn resolve_device(device: Device) -> Result<Device, VerifyError> {
    let count = tch::Cuda::device_count();
    let cuda_detail = || {
        format!(
            "libtorch {} reports {count} CUDA device(s){}",
            if cfg!(feature = "cuda") {
                "(built with CUDA linked)"
            } else {
                "(this mdl build does not link libtorch_cuda; see README)"
            },
            if count == 0 { " on this machine" } else { "" }
        )
    };
    match device {
        Device::Cpu => Ok(Device::Cpu),
        Device::Auto => Ok(if tch::Cuda::is_available() {
            Device::Cuda(Some(0))
        } else {
            Device::Cpu
        }),
        Device::Cuda(n) => {
            if !tch::Cuda::is_available() || n.is_some_and(|n| n as i64 >= count) {
                return Err(VerifyError::DeviceUnavailable {
                    device,
                    what: "CUDA",
                    detail: cuda_detail(),
                });
            }
            Ok(Device::Cuda(Some(n.unwrap_or(0))))
        }
        Device::Mps => {
            if !tch::utils::has_mps() {
                return Err(VerifyError::DeviceUnavailable {
                    device,
                    what: "MPS",
                    detail: "MPS exists only on Apple silicon with an MPS-enabled libtorch".into(),
                });
            }
            Ok(Device::Mps)
        }
    }
}

/// Runs a tch closure, turning a panic into an error message.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libtorch panicked".into())),
    }
}

fn first_line(e: impl std::fmt::Display) -> String {
    // libtorch errors carry a C++ backtrace after the first lines; keep the reason.
    let text = e.to_string();
    let mut lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Exception raised from"))
        .collect();
    lines.retain(|l| !l.trim().is_empty());
    lines.join(" ").trim().to_string()
}

/// Elements summed at once: 16 Mi elements, 128 MiB as `Double`.
const CHUNK_ELEMENTS: i64 = 16 << 20;

struct Summary {
    details: Vec<TensorReport>,
    dtypes: BTreeSet<String>,
    parameters: u64,
    bytes: u64,
    /// Tensors only checked structurally (a dtype libtorch lacks).
    structural: usize,
}

impl Summary {
    fn new() -> Summary {
        Summary {
            details: Vec::new(),
            dtypes: BTreeSet::new(),
            parameters: 0,
            bytes: 0,
            structural: 0,
        }
    }

    /// Records a tensor that libtorch holds, summing it so every element is read.
    fn add(&mut self, name: &str, t: &Tensor) -> Result<(), String> {
        self.add_chunked(name, t, &mut |_, _| {})
    }

    /// Like [`Summary::add`], summing a large contiguous tensor in chunks of
    /// [`CHUNK_ELEMENTS`]: the sum in `Double` casts only one chunk at a time
    /// (a whole-tensor sum would allocate twice a float32 tensor's size), and
    /// `done(first, count)` is told each chunk's element range as soon as it is
    /// read, so the caller can give its pages back.
    fn add_chunked(&mut self, name: &str, t: &Tensor, done: &mut dyn FnMut(i64, i64)) -> Result<(), String> {
        let k = t.f_kind().map_err(first_line)?;
        let numel = t.numel() as i64;
        // Summed in a kind that needs no copy where there is one: a float32
        // tensor in float32 (libtorch's cascade sum is accurate enough to show
        // every element was read), integers in int64, halves per chunk in float.
        let sum_of = |t: &Tensor| {
            match k {
                Kind::ComplexFloat | Kind::ComplexDouble => t.f_abs().and_then(|a| a.f_sum(Kind::Double)),
                Kind::Float8e4m3fn | Kind::Float8e5m2 => t.f_to_kind(Kind::Float).and_then(|a| a.f_sum(Kind::Float)),
                Kind::Float | Kind::Half | Kind::BFloat16 => t.f_sum(Kind::Float),
                Kind::Double => t.f_sum(Kind::Double),
                _ => t.f_sum(Kind::Int64),
            }
            .and_then(|s| s.f_double_value(&[]))
            .map_err(first_line)
        };
        let sum = if numel > CHUNK_ELEMENTS && t.is_contiguous() {
            let flat = t.f_reshape([-1]).map_err(first_line)?;
            let mut sum = 0.0;
            let mut first = 0;
            while first < numel {
                let count = CHUNK_ELEMENTS.min(numel - first);
                sum += sum_of(&flat.f_narrow(0, first, count).map_err(first_line)?)?;
                done(first, count);
                first += count;
            }
            sum
        } else {
            let sum = sum_of(t)?;
            done(0, numel);
            sum
        };
        self.parameters += numel as u64;
        self.bytes += numel as u64 * k.elt_size_in_bytes() as u64;
        self.dtypes.insert(kind_name(k));
        self.details.push(TensorReport {
            name: name.to_string(),
            dtype: kind_name(k),
            shape: t.size(),
            sum: Some(sum),
        });
        Ok(())
    }

    /// Records a tensor libtorch cannot hold (a dtype it lacks, quantized
    /// blocks): its header entry and byte range were checked by the format's
    /// reader, nothing loaded; `label` is how the report lists its dtype.
    fn add_structural(&mut self, name: &str, dtype: &str, label: String, shape: &[usize], bytes: u64) {
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        self.parameters += numel;
        self.bytes += bytes;
        self.dtypes.insert(label);
        self.structural += 1;
        self.details.push(TensorReport {
            name: name.to_string(),
            dtype: dtype.to_string(),
            shape: shape.iter().map(|&d| d as i64).collect(),
            sum: None,
        });
    }

    fn report(self, format: Format, device: Device, forward_output: Option<Vec<i64>>) -> FileReport {
        FileReport {
            format,
            tensors: self.details.len() as u64,
            parameters: self.parameters,
            bytes: self.bytes,
            dtypes: self.dtypes.into_iter().collect(),
            loaded: true,
            structure_only: self.structural as u64,
            architecture: None,
            device: device.to_string(),
            forward_output,
            code_ran: None,
            contents: None,
            load_ms: 0,
            torch: None,
            details: self.details,
        }
    }
}

/// What config.yaml allows for one model's files: `code`, to load a format
/// whose loading runs the checkpoint's code as torch does (a TorchScript
/// module, its `__setstate__` included); `forward`, a shape to run it on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run<'a> {
    pub forward: Option<&'a [i64]>,
    pub code: bool,
}

pub fn load(path: &Path, format: Format, device: Device, run: Run<'_>) -> Result<FileReport, String> {
    let target = tch_device(device);
    guarded(|| match format {
        Format::TorchScript if run.code => load_script_module(path, target, device, run.forward),
        Format::TorchScript => {
            // Loading is not running: the archive's weights, read as a state
            // dict is, and its code left unrun.
            let (file, _) = torch_file::read_torchscript(path).map_err(|e| e.to_string())?;
            let mut report = load_torch_file(&file, target, device, format)?;
            report.code_ran = Some(false);
            Ok(report)
        }
        Format::Safetensors => load_safetensors(path, target, device),
        Format::Gguf => load_gguf(path, target, device),
        Format::TorchExport if run.code => Err(
            "a torch.export program cannot be run by mdl-torch (tch 0.26 has no binding for `torch.export.load`): \
             `MDL_VERIFIER=python` runs it in the environment's torch (2.6 or newer)"
                .into(),
        ),
        Format::TorchExport => load_export(path, target, device),
        Format::TorchZip | Format::TorchLegacy => {
            let file = if format == Format::TorchZip {
                torch_file::read_zip(path)
            } else {
                torch_file::read_legacy(path)
            };
            let file = file.map_err(|e| e.to_string())?;
            load_torch_file(&file, target, device, format)
        }
    })
}

/// `CModule::load_on_device`, which runs the module's code, then optionally
/// one `forward` on a zero input: only when config.yaml asked.
fn load_script_module(
    path: &Path,
    target: tch::Device,
    device: Device,
    forward: Option<&[i64]>,
) -> Result<FileReport, String> {
    let module = tch::CModule::load_on_device(path, target).map_err(first_line)?;
    let mut summary = Summary::new();
    for (name, t) in module.named_parameters().map_err(first_line)? {
        summary.add(&name, &t)?;
    }
    let output = match forward {
        Some(shape) => {
            let input = Tensor::f_zeros(shape, (Kind::Float, target)).map_err(first_line)?;
            let out = tch::no_grad(|| module.forward_ts(&[input]))
                .map_err(|e| format!("forward on a zero input of shape {shape:?} failed: {}", first_line(e)))?;
            Some(out.size())
        }
        None => None,
    };
    let mut report = summary.report(Format::TorchScript, device, output);
    report.code_ran = Some(true);
    Ok(report)
}

/// Every tensor of a file mdl's reader parsed (a `torch.save` file, or a
/// TorchScript archive's weights), built in libtorch from its real bytes.
fn load_torch_file(
    file: &torch_file::TorchFile,
    target: tch::Device,
    device: Device,
    format: Format,
) -> Result<FileReport, String> {
    let mut summary = Summary::new();
    // One storage at a time: it becomes one libtorch tensor on the
    // device (read where it is mapped when aligned, else from one copy),
    // every view of it is built and summed, then its memory is released.
    let mut views: std::collections::BTreeMap<&str, Vec<&torch_file::TensorRef>> = Default::default();
    for t in &file.tensors {
        views.entry(t.storage.as_str()).or_default().push(t);
    }
    for (key, storage) in &file.storages {
        let Some(refs) = views.get(key.as_str()) else {
            continue;
        };
        let bytes = file.bytes(storage);
        let kind = kind(storage.dtype);
        let aligned = (bytes.as_ptr() as usize).is_multiple_of(kind.elt_size_in_bytes().max(1));
        let flat = if aligned && !bytes.is_empty() {
            // SAFETY: `bytes` stays mapped and unmodified while `flat` and
            // its views live (all dropped before `release`).
            unsafe { Tensor::f_from_blob(bytes.as_ptr(), &[storage.numel], &[], kind, tch::Device::Cpu) }
        } else {
            Tensor::f_from_data_size(bytes, &[storage.numel], kind)
        }
        .and_then(|t| t.f_to_device(target))
        .map_err(|e| format!("storage `{key}`: {}", first_line(e)))?;
        // The common case, one tensor per storage: its pages go back
        // chunk by chunk as they are summed; shared storages at the end.
        let alone = refs.len() == 1;
        let element = storage.dtype.size();
        for t in refs {
            let tensor = flat
                .f_as_strided(t.shape.as_slice(), t.stride.as_slice(), t.offset)
                .map_err(|e| format!("tensor `{}`: {}", t.name, first_line(e)))?;
            if tensor.size() != t.shape {
                return Err(format!(
                    "tensor `{}` came out with shape {:?}, not {:?}",
                    t.name,
                    tensor.size(),
                    t.shape
                ));
            }
            summary.add_chunked(&t.name, &tensor, &mut |first, count| {
                if alone {
                    let start = (t.offset + first) as usize * element;
                    file.release_range(storage, start, count as usize * element);
                }
            })?;
        }
        drop(flat);
        file.release(storage);
    }
    Ok(summary.report(format, device, None))
}

/// The libtorch kind of a safetensors dtype, where libtorch has one.
fn safetensors_kind(dtype: safetensors::Dtype) -> Option<Kind> {
    use safetensors::Dtype as D;
    Some(match dtype {
        D::BOOL => Kind::Bool,
        D::U8 => Kind::Uint8,
        D::I8 => Kind::Int8,
        D::I16 => Kind::Int16,
        D::I32 => Kind::Int,
        D::I64 => Kind::Int64,
        D::F16 => Kind::Half,
        D::BF16 => Kind::BFloat16,
        D::F32 => Kind::Float,
        D::F64 => Kind::Double,
        D::F8_E4M3 => Kind::Float8e4m3fn,
        D::F8_E5M2 => Kind::Float8e5m2,
        // U16/U32/U64, F8_E8M0 and the sub-byte MX formats have no tch kind.
        _ => return None,
    })
}

/// A safetensors file, read from a memory map one tensor at a time: libtorch
/// reads each tensor's bytes where they are mapped (a copy of that one tensor
/// only when they are not aligned for its element type), sums it on the
/// device, and the pages are released before the next tensor, so verifying a
/// file never holds more than its largest tensor in memory.
fn load_safetensors(path: &Path, target: tch::Device, device: Device) -> Result<FileReport, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: the file is mdl's own synced copy, not modified while it is read;
    // a concurrent truncation would be a SIGBUS in this helper process, which
    // `mdl` reports as a failed load of this one file.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| format!("invalid safetensors: {e}"))?;
    let mut names = st.names();
    names.sort();
    let mut summary = Summary::new();
    let base = map.as_ptr() as usize;
    for name in names {
        let view = st.tensor(name).map_err(|e| format!("tensor `{name}`: {e}"))?;
        let bytes = view.data();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let Some(kind) = safetensors_kind(view.dtype()) else {
            let dtype = view.dtype().to_string();
            let label = format!("{dtype} (structure only: libtorch has no such dtype)");
            summary.add_structural(name, &dtype, label, view.shape(), bytes.len() as u64);
            continue;
        };
        sum_mapped(
            &mut summary,
            &map,
            bytes.as_ptr() as usize - base,
            name,
            &shape,
            kind,
            target,
        )?;
    }
    Ok(summary.report(Format::Safetensors, device, None))
}

/// One tensor of a mapped file (safetensors or GGUF), at `offset` in `map`,
/// whose extent its format's reader checked: built where it is mapped (a
/// copy of that one tensor only when it is not aligned for its element
/// type), moved to the device, summed in chunks, and each chunk's pages given
/// back as soon as it is summed (they are clean and file-backed, so this only
/// drops them from the resident set).
fn sum_mapped(
    summary: &mut Summary,
    map: &memmap2::Mmap,
    offset: usize,
    name: &str,
    shape: &[i64],
    kind: Kind,
    target: tch::Device,
) -> Result<(), String> {
    let element = kind.elt_size_in_bytes();
    let len = shape.iter().product::<i64>().max(0) as usize * element;
    let bytes = map
        .get(offset..offset + len)
        .ok_or_else(|| format!("tensor `{name}` lies outside the file"))?;
    let aligned = (bytes.as_ptr() as usize).is_multiple_of(element.max(1));
    let tensor = if aligned && !bytes.is_empty() {
        // SAFETY: `bytes` stays mapped (and unmodified) while `tensor` lives.
        unsafe { Tensor::f_from_blob(bytes.as_ptr(), shape, &[], kind, tch::Device::Cpu) }
    } else {
        Tensor::f_from_data_size(bytes, shape, kind)
    }
    .and_then(|t| t.f_to_device(target))
    .map_err(|e| format!("tensor `{name}`: {}", first_line(e)))?;
    summary.add_chunked(name, &tensor, &mut |first, count| {
        torch_file::release_pages(map, offset + first as usize * element, count as usize * element)
    })?;
    drop(tensor);
    Ok(())
}

/// The libtorch kind of a plain (unquantized) ggml type.
fn ggml_kind(t: gguf::GgmlType) -> Option<Kind> {
    Some(match t.0 {
        0 => Kind::Float,
        1 => Kind::Half,
        30 => Kind::BFloat16,
        24 => Kind::Int8,
        25 => Kind::Int16,
        26 => Kind::Int,
        27 => Kind::Int64,
        28 => Kind::Double,
        _ => return None,
    })
}

/// A `torch.export` program's weights and constants, each built in libtorch
/// from its record in a memory map (extents checked by `pt2::read`) and
/// viewed as saved; the program itself is not loaded, nothing runs.
fn load_export(path: &Path, target: tch::Device, device: Device) -> Result<FileReport, String> {
    let program = mdl::verify::formats::pt2::read(path)?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: as for safetensors: mdl's own synced copy, read-only.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let mut summary = Summary::new();
    for t in &program.tensors {
        let bytes = map
            .get(t.offset as usize..(t.offset + t.bytes) as usize)
            .ok_or_else(|| format!("`{}`'s bytes lie outside the file", t.name))?;
        let k = kind(t.dtype);
        let numel = t.bytes as i64 / t.dtype.size() as i64;
        let flat = Tensor::f_from_data_size(bytes, &[numel], k)
            .and_then(|f| f.f_to_device(target))
            .map_err(|e| format!("`{}`: {}", t.name, first_line(e)))?;
        let view = flat
            .f_as_strided(t.shape.as_slice(), t.stride.as_slice(), t.storage_offset)
            .map_err(|e| format!("`{}`: {}", t.name, first_line(e)))?;
        summary.add(&t.name, &view)?;
    }
    let mut report = summary.report(Format::TorchExport, device, None);
    report.code_ran = Some(false);
    report.contents = Some(program.describe());
    Ok(report)
}

/// A GGUF file, one tensor at a time from a memory map as for safetensors:
/// the header and every tensor's extent were checked by mdl's reader
/// (`gguf::read`); plain tensors (F32, F16, BF16, integers) are built in
/// libtorch and summed, quantized blocks (Q4_K, …) have no libtorch dtype and
/// are checked by structure, which the report says.
fn load_gguf(path: &Path, target: tch::Device, device: Device) -> Result<FileReport, String> {
    let header = gguf::read(path)?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: as for safetensors: mdl's own synced copy, read-only.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let mut summary = Summary::new();
    for t in &header.tensors {
        let range = t.offset as usize..(t.offset + t.bytes) as usize;
        map.get(range)
            .ok_or_else(|| format!("tensor `{}` lies outside the file", t.name))?;
        let Some(kind) = ggml_kind(t.ggml_type) else {
            let dims: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
            summary.add_structural(
                &t.name,
                t.ggml_type.name(),
                gguf::dtype_label(t.ggml_type),
                &dims,
                t.bytes,
            );
            continue;
        };
        sum_mapped(
            &mut summary,
            &map,
            t.offset as usize,
            &t.name,
            &t.torch_shape(),
            kind,
            target,
        )?;
    }
    let mut report = summary.report(Format::Gguf, device, None);
    report.architecture = header.architecture;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(name)
    }

    /// Today's checkpoints: FP8 (both formats), bf16, f16 and every integer
    /// dtype, with bytes made by libtorch's own conversions and written as
    /// safetensors; each loads with the sum libtorch computed before saving.
    /// A dtype libtorch lacks (U16 here) is checked structurally and says so.
    #[test]
    fn every_safetensors_dtype_loads_or_says_why_not() {
        use safetensors::tensor::{Dtype as D, TensorView};
        let dir = tempfile::tempdir().unwrap();
        let base = Tensor::arange(24, (Kind::Float, tch::Device::Cpu))
            .f_sub_scalar(8.0)
            .unwrap()
            .f_div_scalar(4.0)
            .unwrap();
        let cases = [
            ("fp8_e4m3", Kind::Float8e4m3fn, D::F8_E4M3),
            ("fp8_e5m2", Kind::Float8e5m2, D::F8_E5M2),
            ("bf16", Kind::BFloat16, D::BF16),
            ("f16", Kind::Half, D::F16),
            ("f64", Kind::Double, D::F64),
            ("i8", Kind::Int8, D::I8),
            ("i16", Kind::Int16, D::I16),
            ("i32", Kind::Int, D::I32),
            ("i64", Kind::Int64, D::I64),
            ("u8", Kind::Uint8, D::U8),
            ("bool", Kind::Bool, D::BOOL),
        ];
        let mut owned = Vec::new();
        let mut sums = std::collections::BTreeMap::new();
        for (name, kind, dtype) in cases {
            let source = if kind == Kind::Uint8 {
                base.f_abs().unwrap()
            } else {
                base.shallow_clone()
            };
            let t = source.f_to_kind(kind).unwrap().f_reshape([4, 6]).unwrap();
            let sum = match kind {
                Kind::Float8e4m3fn | Kind::Float8e5m2 => t.f_to_kind(Kind::Float).unwrap().f_sum(Kind::Double),
                _ => t.f_sum(Kind::Double),
            }
            .unwrap()
            .double_value(&[]);
            sums.insert(name.to_string(), sum);
            let mut bytes = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
            t.f_copy_data_u8(&mut bytes, t.numel()).unwrap();
            owned.push((name.to_string(), dtype, bytes));
        }
        owned.push(("u16".into(), D::U16, vec![1u8; 48]));
        let views: Vec<(String, TensorView)> = owned
            .iter()
            .map(|(n, d, b)| (n.clone(), TensorView::new(*d, vec![4, 6], b).unwrap()))
            .collect();
        let path = dir.path().join("model.safetensors");
        safetensors::serialize_to_file(views, None, &path).unwrap();

        let report = load(&path, Format::Safetensors, Device::Cpu, Run::default()).unwrap();
        assert_eq!(report.tensors, 12);
        for detail in &report.details {
            match sums.get(&detail.name) {
                Some(want) => assert_eq!(detail.sum, Some(*want), "{}", detail.name),
                None => assert_eq!((detail.name.as_str(), detail.sum), ("u16", None)),
            }
        }
        assert!(
            report.dtypes.iter().any(|d| d == "float8_e4m3fn"),
            "{:?}",
            report.dtypes
        );
        assert!(report.dtypes.iter().any(|d| d == "float8_e5m2"), "{:?}", report.dtypes);
        assert!(report.dtypes.iter().any(|d| d == "bfloat16"), "{:?}", report.dtypes);
        assert!(
            report.dtypes.iter().any(|d| d.starts_with("U16 (structure only")),
            "{:?}",
            report.dtypes
        );
        assert!(report.loaded);
        assert_eq!(report.structure_only, 1, "one tensor was only checked structurally");
    }

    /// Tensors larger than a chunk are summed chunk by chunk, and the sum is
    /// that of every element (a pattern whose sum is known exactly).
    #[test]
    fn large_tensors_are_summed_in_chunks_without_losing_elements() {
        use safetensors::tensor::{Dtype as D, TensorView};
        let dir = tempfile::tempdir().unwrap();
        let numel = CHUNK_ELEMENTS as usize * 2 + 1000;
        // 0.5, -0.25, 1, -1 repeated: 0.25 per four elements.
        let bytes: Vec<u8> = [0.5f32, -0.25, 1.0, -1.0]
            .iter()
            .cycle()
            .take(numel)
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = TensorView::new(D::F32, vec![numel], &bytes).unwrap();
        let path = dir.path().join("big.safetensors");
        safetensors::serialize_to_file(vec![("w", view)], None, &path).unwrap();
        let report = load(&path, Format::Safetensors, Device::Cpu, Run::default()).unwrap();
        assert_eq!(report.details[0].sum, Some(0.25 * (numel / 4) as f64));
        assert_eq!(report.parameters, numel as u64);
    }

    /// Every tensor libtorch builds has the shape, dtype and element sum that
    /// PyTorch recorded when it wrote the file.
    #[test]
    fn libtorch_sees_what_pytorch_saved() {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("manifest.json")).unwrap()).unwrap();
        let cases = [
            ("state_dict.pth", Format::TorchZip, ""),
            ("mixed_dtypes.pt", Format::TorchZip, ""),
            ("checkpoint.pt", Format::TorchZip, ""),
            ("legacy.pth", Format::TorchLegacy, ""),
            ("model.safetensors", Format::Safetensors, ""),
            ("scripted.pt", Format::TorchScript, ""),
        ];
        for (name, format, _) in cases {
            // The manifest lists a TorchScript module's parameters, which
            // libtorch shows once the module is loaded (its code run).
            let run = Run {
                code: format == Format::TorchScript,
                ..Run::default()
            };
            let report = load(&fixture(name), format, Device::Cpu, run).unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = &manifest[name];
            assert_eq!(report.tensors, want["tensors"].as_u64().unwrap(), "{name}");
            assert_eq!(report.parameters, want["parameters"].as_u64().unwrap(), "{name}");
            assert_eq!(report.bytes, want["bytes"].as_u64().unwrap(), "{name}");
            for t in &report.details {
                let sum = want["sums"][&t.name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{name}: no sum for {}", t.name));
                let got = t.sum.unwrap();
                assert!(
                    (got - sum).abs() <= 1e-3 * sum.abs().max(1.0),
                    "{name}/{}: {got} vs {sum}",
                    t.name
                );
                let shape: Vec<i64> = serde_json::from_value(want["shapes"][&t.name].clone()).unwrap();
                assert_eq!(t.shape, shape, "{name}/{}", t.name);
            }
        }
    }

    /// GGUF files written by llama.cpp's `gguf` package: F32/F16/BF16
    /// tensors load with the sums numpy computed before writing; quantized
    /// ones are checked by structure and counted as such.
    #[test]
    fn gguf_plain_tensors_load_and_quantized_ones_are_checked() {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("manifest.json")).unwrap()).unwrap();
        for name in ["tiny-F16.gguf", "tiny-v2.gguf", "tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"] {
            let report = load(&fixture(name), Format::Gguf, Device::Cpu, Run::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = manifest[name]["tensors"].as_object().unwrap();
            assert!(report.loaded, "{name}");
            assert_eq!(report.tensors as usize, want.len(), "{name}");
            assert_eq!(report.architecture.as_deref(), manifest[name]["architecture"].as_str());
            let mut quantized = 0;
            for t in &report.details {
                let w = &want[&t.name];
                let shape: Vec<i64> = serde_json::from_value(w["shape"].clone()).unwrap();
                assert_eq!(t.shape, shape, "{name}/{}", t.name);
                match (t.sum, w["sum"].as_f64()) {
                    (Some(got), Some(sum)) => assert!(
                        (got - sum).abs() <= 1e-2 * sum.abs().max(1.0),
                        "{name}/{}: {got} vs {sum}",
                        t.name
                    ),
                    (None, None) => quantized += 1,
                    other => panic!("{name}/{}: {other:?}", t.name),
                }
            }
            assert_eq!(report.structure_only, quantized, "{name}");
        }
        let err = load(
            &fixture("broken_truncated.gguf"),
            Format::Gguf,
            Device::Cpu,
            Run::default(),
        )
        .unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn forward_runs_on_zero_input() {
        let run = Run {
            forward: Some(&[1, 3, 8, 8]),
            code: true,
        };
        let report = load(&fixture("scripted.pt"), Format::TorchScript, Device::Cpu, run).unwrap();
        assert_eq!(report.forward_output, Some(vec![1, 2]));
        assert_eq!(report.code_ran, Some(true));
        // By default the same archive is read as weights, its code not run.
        let weights = load(
            &fixture("scripted.pt"),
            Format::TorchScript,
            Device::Cpu,
            Run::default(),
        )
        .unwrap();
        assert_eq!(weights.code_ran, Some(false));
        // Read as weights: the same parameters with the same sums, and the
        // batch norm's buffers besides.
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("manifest.json")).unwrap()).unwrap();
        let sums = manifest["scripted.pt"]["sums"].as_object().unwrap();
        assert_eq!(weights.tensors, 9);
        let mut matched = 0;
        for t in weights.details.iter().filter(|t| sums.contains_key(&t.name)) {
            let want = sums[&t.name].as_f64().unwrap();
            assert!(
                (t.sum.unwrap() - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{}",
                t.name
            );
            matched += 1;
        }
        assert_eq!(matched, sums.len(), "{:?}", weights.details);
        assert!(
            weights.parameters >= report.parameters,
            "buffers and constants too: {weights:?}"
        );
        let err = load(
            &fixture("scripted.pt"),
            Format::TorchScript,
            Device::Cpu,
            Run {
                forward: Some(&[1, 5]),
                code: true,
            },
        )
        .unwrap_err();
        assert!(err.contains("forward on a zero input"), "{err}");
    }

    #[test]
    fn broken_files_are_errors_not_aborts() {
        for (name, format) in [
            ("broken_truncated.pth", Format::TorchZip),
            ("broken_missing_record.pth", Format::TorchZip),
            ("broken_truncated.safetensors", Format::Safetensors),
            ("broken_not_a_model.pt", Format::TorchScript),
            ("state_dict.pth", Format::TorchScript),
        ] {
            let err = load(&fixture(name), format, Device::Cpu, Run::default()).unwrap_err();
            assert!(!err.is_empty(), "{name}");
        }
    }

    #[test]
    fn cuda_is_a_clear_error_without_a_gpu() {
        if tch::Cuda::is_available() {
            return; // Only meaningful on a machine without CUDA, like CI here.
        }
        let err = resolve_device(Device::Cuda(None)).unwrap_err();
        assert!(err.to_string().contains("libtorch sees no CUDA device"), "{err}");
        assert_eq!(resolve_device(Device::Auto).unwrap(), Device::Cpu);
    }
}
