"""Weight files of a given size for the verifier benchmarks, written without
torch (the project's lean libtorch install cannot `import torch`), in exactly
the layouts torch writes:

* safetensors: 8-byte header length, JSON header, tensor bytes (F32, C order);
* `torch.save` zip: `archive/data.pkl` (protocol-2 pickle of an `OrderedDict` of
  `torch._utils._rebuild_tensor_v2` calls whose storages are persistent ids
  `("storage", torch.FloatStorage, key, "cpu", numel)`), `archive/data/{key}`
  records stored uncompressed and 64-byte aligned, `archive/version`.

Tensor values are a repeating pattern of small floats, so sums are finite.
"""
import collections
import json
import pickle
import struct
import sys
import types
import zipfile

CHUNK = 64 << 20
PATTERN = struct.pack("<4f", 0.5, -0.25, 1.0, -1.0) * (CHUNK // 16)


def _write_floats(out, nbytes):
    while nbytes > 0:
        n = min(nbytes, CHUNK)
        out.write(PATTERN[:n])
        nbytes -= n


def safetensors(path, tensors):
    """tensors: [(name, numel)] of float32."""
    header, offset = {}, 0
    for name, numel in tensors:
        header[name] = {"dtype": "F32", "shape": [numel], "data_offsets": [offset, offset + 4 * numel]}
        offset += 4 * numel
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for _, numel in tensors:
            _write_floats(out, 4 * numel)


def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise NotImplementedError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage
    torch._utils = utils
    sys.modules.setdefault("torch", torch)
    sys.modules.setdefault("torch._utils", utils)
    return torch


class _Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _Tensor:
    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        torch = sys.modules["torch"]
        n = self.storage.numel
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, (n,), (1,), False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", sys.modules["torch"].FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_save(path, tensors):
    """tensors: [(name, numel)] of float32, as `torch.save(state_dict)` lays them out."""
    _fake_torch()
    state = collections.OrderedDict((name, _Tensor(_Storage(str(i), numel))) for i, (name, numel) in enumerate(tensors))
    import io

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for i, (_, numel) in enumerate(tensors):
            info = zipfile.ZipInfo(f"archive/data/{i}")
            # Pad the local header (an "FB" extra field, as torch does) so the
            # record's bytes start 64-byte aligned.
            start = z.fp.tell() + 30 + len(info.filename)
            pad = (-(start + 4)) % 64
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            with z.open(info, "w", force_zip64=numel * 4 > 0x7FFFFFFF) as out:
                _write_floats(out, 4 * numel)
        z.writestr("archive/version", "3\n")


if __name__ == "__main__":
    kind, path, *sizes = sys.argv[1:]
    tensors = [(f"layer{i}.weight", int(n)) for i, n in enumerate(sizes)]
    (safetensors if kind == "safetensors" else torch_save)(path, tensors)
