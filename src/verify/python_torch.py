# mdl's verifier in the environment's own torch (any torch >= 2.0), for when no
# `mdl-torch` helper matches that torch's version. `mdl` runs this file as
# `python -I -c <this file>`: isolated mode, so nothing from the current
# directory, PYTHONPATH or user site-packages is imported, and never anything
# from a checkpoint: state dicts load with `weights_only=True` (only tensors,
# containers and plain values are unpickled), after mdl's own pickle reader
# has already refused anything else. A TorchScript archive is code: it is
# loaded with `torch.jit.load` (which runs its `__setstate__`) only when the
# request says `run_code` (config.yaml's `verify.run_code` or
# `verify.forward` for that model); otherwise its tensors are read from a
# memory map at the places mdl's own reader checked, and nothing runs.
#
# The protocol is mdl-torch's: a JSON array of requests on stdin
# ({"path", "device", "forward"?, "format"}), one JSON answer per line on
# stdout, flushed after each file, so a crash costs only the file being read.
# A file is read one tensor at a time, from a memory map where torch allows
# it, each tensor moved to the device and summed there, so every element is
# read and the memory held stays within the largest tensor (mdl sets the
# process's heap limit from `verify.max_memory`).

import json
import mmap
import os
import struct
import sys
import time


def main():
    requests = json.loads(sys.stdin.buffer.read() or b"[]")
    try:
        import torch
    except BaseException as e:  # ImportError, or a missing CUDA library
        sys.stderr.write("mdl: `import torch` failed: %s: %s\n" % (type(e).__name__, e))
        sys.exit(3)
    torch.set_grad_enabled(False)
    devices = {}
    for index, request in enumerate(requests):
        name = request["device"]
        if name not in devices:
            devices[name] = resolve_device(torch, name)
        device = devices[name]
        if isinstance(device, Unavailable):
            answer = {"result": "device_unavailable", "index": index, "what": device.what, "detail": device.detail}
        else:
            started = time.monotonic()
            try:
                report = load(torch, request, device)
                report["load_ms"] = int((time.monotonic() - started) * 1000)
                answer = {"result": "loaded", "index": index, "report": report}
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                answer = {"result": "load_failed", "index": index, "format": request.get("format"), "reason": reason(e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class Unavailable:
    def __init__(self, what, detail):
        self.what = what
        self.detail = detail


def resolve_device(torch, name):
    """`auto` is CUDA when present, else CPU; an unavailable device is an
    error, never a silent fallback to CPU (as in mdl-torch)."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if count == 0 or index >= count:
            return Unavailable("CUDA", "torch %s reports %d CUDA device(s) on this machine" % (torch.__version__, count))
        return torch.device("cuda:%d" % index)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return Unavailable("MPS", "MPS exists only on Apple silicon with an MPS-enabled torch")
        return torch.device("mps")
    return Unavailable(name, "`%s` is not a device" % name)


def reason(e):
    if type(e).__name__ == "UnpicklingError" and "weights_only" in str(e):
        # torch's message suggests loading with weights_only=False, which
        # would run the checkpoint's code: say only what it asked for.
        for sentence in str(e).replace("\n", " ").split(". "):
            if "GLOBAL" in sentence or "Unsupported" in sentence or "unsupported" in sentence:
                return "the pickle is not weights only (%s), and mdl never runs a checkpoint's code" % sentence.strip().rstrip(".")
        return "the pickle is not weights only, and mdl never runs a checkpoint's code"
    text = str(e).strip().splitlines()
    # torch errors carry a C++ backtrace after the first lines; keep the reason.
    kept = []
    for line in text:
        if line.startswith("Exception raised from"):
            break
        if line.strip():
            kept.append(line.strip())
    return "%s: %s" % (type(e).__name__, " ".join(kept)[:2000]) if kept else type(e).__name__


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


class Summary:
    def __init__(self, device):
        self.device = device
        self.tensors = 0
        self.parameters = 0
        self.bytes = 0
        self.dtypes = set()
        self.structural = 0

    def add(self, torch, tensor):
        """Moves one tensor to the device and sums it there, so every element
        is read; the sum is in a kind that needs no copy where there is one."""
        t = tensor.to(self.device)
        kind = t.dtype
        if t.is_complex():
            t.abs().sum(dtype=torch.float64).item()
        elif kind in (torch.float8_e4m3fn, torch.float8_e5m2) if hasattr(torch, "float8_e4m3fn") else False:
            t.to(torch.float32).sum().item()
        elif t.is_floating_point():
            t.sum(dtype=torch.float32 if kind != torch.float64 else torch.float64).item()
        else:
            t.sum(dtype=torch.int64).item()
        self.tensors += 1
        self.parameters += t.numel()
        self.bytes += t.numel() * t.element_size()
        self.dtypes.add(dtype_name(kind))
        del t

    def add_structural(self, dtype, shape, nbytes, label=None):
        n = 1
        for d in shape:
            n *= d
        self.tensors += 1
        self.parameters += n
        self.bytes += nbytes
        self.dtypes.add(label or "%s (structure only: this torch has no such dtype)" % dtype)
        self.structural += 1

    def report(self, fmt, device_name, forward_output=None):
        report = {
            "format": fmt,
            "tensors": self.tensors,
            "parameters": self.parameters,
            "bytes": self.bytes,
            "dtypes": sorted(self.dtypes),
            "loaded": True,
            "structure_only": self.structural,
            "device": device_name,
            "load_ms": 0,
        }
        if forward_output is not None:
            report["forward_output"] = forward_output
        return report


def load(torch, request, device):
    fmt = request["format"]
    path = request["path"]
    summary = Summary(device)
    device_name = device_label(device)
    if fmt in ("torch_export", "torch_script") and not request.get("run_code"):
        # Formats that hold code: their tensors, as mdl's reader found them
        # (the request's spans), loaded from a memory map; nothing is run.
        load_views(torch, path, request.get("spans", []), summary)
        report = summary.report(fmt, device_name)
        report["code_ran"] = False
        return report
    if fmt == "torch_export":
        return run_export(torch, request, device, device_name, summary)
    if fmt == "torch_script":
        module = torch.jit.load(path, map_location=device)
        for _name, p in module.named_parameters():
            summary.add(torch, p)
        output = None
        shape = request.get("forward")
        if shape is not None:
            try:
                out = module(torch.zeros(shape, dtype=torch.float32, device=device))
            except BaseException as e:
                raise RuntimeError("forward on a zero input of shape %s failed: %s" % (list(shape), reason(e)))
            output = list(out.shape)
        report = summary.report(fmt, device_name, output)
        report["code_ran"] = True
        return report
    if fmt == "safetensors":
        load_safetensors(torch, path, summary)
        return summary.report(fmt, device_name)
    if fmt == "gguf":
        load_gguf(torch, path, request.get("spans", []), summary)
        return summary.report(fmt, device_name)
    if fmt in ("torch_zip", "torch_legacy"):
        kwargs = {"map_location": "cpu", "weights_only": True}
        if fmt == "torch_zip" and version_at_least(torch, 2, 1):
            kwargs["mmap"] = True  # storages stay in the file until each is used
        obj = torch.load(path, **kwargs)
        for tensor in tensors_in(torch, obj):
            summary.add(torch, tensor)
        return summary.report(fmt, device_name)
    raise ValueError("mdl asked for an unknown format `%s`" % fmt)


def device_label(device):
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        return "cuda:%d" % (device.index or 0)
    return device.type


def version_at_least(torch, major, minor):
    parts = torch.__version__.split("+")[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def tensors_in(torch, obj, depth=0):
    """Every tensor in what `torch.load` returned (a state dict, a checkpoint
    dict of state dicts, lists), each once."""
    if depth > 64:
        raise ValueError("the checkpoint nests containers more than 64 deep")
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            for t in tensors_in(torch, value, depth + 1):
                yield t
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            for t in tensors_in(torch, value, depth + 1):
                yield t


# safetensors dtypes and their torch dtypes (attribute names: older torches
# lack some, and then the tensor is checked structurally and said so).
SAFETENSORS_DTYPES = {
    "BOOL": ("bool", 1),
    "U8": ("uint8", 1),
    "I8": ("int8", 1),
    "I16": ("int16", 2),
    "U16": ("uint16", 2),
    "I32": ("int32", 4),
    "U32": ("uint32", 4),
    "I64": ("int64", 8),
    "U64": ("uint64", 8),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F32": ("float32", 4),
    "F64": ("float64", 8),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
}


def load_safetensors(torch, path, summary):
    """One tensor at a time from a memory map: the `safetensors` package's
    `safe_open` when the environment has it, else the header read here (mdl
    has already checked every offset) and `torch.frombuffer` over the map."""
    try:
        from safetensors import safe_open
    except ImportError:
        safe_open = None
    if safe_open is not None:
        with safe_open(path, framework="pt", device="cpu") as f:
            for name in sorted(f.keys()):
                try:
                    tensor = f.get_tensor(name)
                except (TypeError, ValueError, RuntimeError) as e:
                    if "dtype" in str(e).lower():
                        meta = header_of(path)[name]
                        begin, end = meta["data_offsets"]
                        summary.add_structural(meta["dtype"], meta["shape"], end - begin)
                        continue
                    raise
                summary.add(torch, tensor)
                del tensor
        return
    header = header_of(path)
    base = 8 + header.pop("__length__")
    entries = []
    for name in sorted(k for k in header if k != "__metadata__"):
        meta = header[name]
        begin, end = meta["data_offsets"]
        torch_name = SAFETENSORS_DTYPES.get(meta["dtype"], (None, 0))[0]
        entries.append(dict(dtype=meta["dtype"], torch=getattr(torch, torch_name, None) if torch_name else None,
                            shape=meta["shape"], offset=base + begin, bytes=end - begin))
    sum_mapped(torch, path, entries, summary)


def sum_mapped(torch, path, entries, summary):
    """Tensors read from a memory map with `torch.frombuffer`, one at a time,
    at extents mdl's own reader checked (safetensors or GGUF); entries without
    a torch dtype are counted by structure."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            for e in entries:
                dtype = e["torch"]
                if dtype is None:
                    summary.add_structural(e["dtype"], e["shape"], e["bytes"], *([e["label"]] if "label" in e else []))
                    continue
                count = e["bytes"] // torch.empty(0, dtype=dtype).element_size()
                if count:
                    flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=e["offset"])
                else:
                    flat = torch.empty(0, dtype=dtype)
                summary.add(torch, flat.reshape(e["shape"]))
                del flat
        finally:
            try:
                mapped.close()
            except BufferError:
                pass  # a tensor still views it; the process ends soon


# ggml's plain types and their torch dtypes; quantized blocks have none.
GGML_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}


def load_gguf(torch, path, spans, summary):
    """The tensors mdl's GGUF reader found and checked (`spans`: name, ggml
    dtype, torch shape, absolute offset, bytes), read from a memory map."""
    entries = []
    for span in spans:
        name = GGML_DTYPES.get(span["dtype"])
        entry = dict(dtype=span["dtype"], torch=getattr(torch, name, None) if name else None,
                     shape=span["shape"], offset=span["offset"], bytes=span["bytes"])
        if entry["torch"] is None:
            entry["label"] = "%s (quantized: structure only)" % span["dtype"]
        entries.append(entry)
    sum_mapped(torch, path, entries, summary)


def run_export(torch, request, device, device_name, summary):
    """A `torch.export` program loaded and run: only when config.yaml asks
    (`run_code`, `forward`). Its inputs are zeros shaped as `forward` says,
    else as the program's own example inputs are."""
    if not hasattr(torch, "export") or not version_at_least(torch, 2, 6):
        raise RuntimeError("running a torch.export program needs torch 2.6 or newer, this is %s" % torch.__version__)
    program = torch.export.load(request["path"])
    for _name, tensor in list(program.state_dict.items()) + list(program.constants.items()):
        if isinstance(tensor, torch.Tensor):
            summary.add(torch, tensor)
    shape = request.get("forward")
    if shape is not None:
        inputs = (torch.zeros(shape, dtype=torch.float32),)
    else:
        example = program.example_inputs
        args = example[0] if example else ()
        inputs = tuple(torch.zeros_like(a) if isinstance(a, torch.Tensor) else a for a in args)
    module = program.module()
    try:
        out = module(*[i.to(device) if isinstance(i, torch.Tensor) else i for i in inputs]) if device.type != "cpu" else module(*inputs)
    except BaseException as e:
        raise RuntimeError("the program on zero inputs of shapes %s failed: %s" % ([list(getattr(i, "shape", [])) for i in inputs], reason(e)))
    first = out[0] if isinstance(out, (tuple, list)) and out else out
    report = summary.report("torch_export", device_name, list(first.shape) if isinstance(first, torch.Tensor) else None)
    report["code_ran"] = True
    return report


def load_views(torch, path, spans, summary):
    """A TorchScript archive's tensors without `torch.jit.load`: each span is
    a storage mdl's reader checked (torch dtype name, absolute offset, bytes)
    and the tensor's strided view of it."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            for span in spans:
                dtype = getattr(torch, span["dtype"], None)
                view = span["view"]
                if dtype is None:
                    summary.add_structural(span["dtype"], span["shape"], span["bytes"])
                    continue
                count = span["bytes"] // torch.empty(0, dtype=dtype).element_size()
                if count:
                    flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=span["offset"])
                else:
                    flat = torch.empty(0, dtype=dtype)
                summary.add(torch, flat.as_strided(span["shape"], view["stride"], view["element_offset"]))
                del flat
        finally:
            try:
                mapped.close()
            except BufferError:
                pass  # a tensor still views it; the process ends soon


def header_of(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header["__length__"] = length
    return header


if __name__ == "__main__":
    main()
