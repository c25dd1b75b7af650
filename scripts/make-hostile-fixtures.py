"""Writes the hostile weight files mdl's tests use (pure Python, no torch):

  hostile_32g_claim.pt  a 4 KB torch zip whose storage record claims 32 GiB
                        (zip64 sizes, and a pickle asking for 2^33 floats):
                        mdl once allocated the claim and died (issue 19).

    python3 scripts/make-hostile-fixtures.py
"""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
NUMEL = 1 << 33  # float32: 32 GiB

# Stand-ins for the globals torch.save writes, so the pickle names them
# exactly as torch does without importing torch.
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


def _rebuild_tensor_v2(*args):
    pass


FloatStorage.__module__ = "torch"
FloatStorage.__qualname__ = "FloatStorage"
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage = FloatStorage
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = utils


class StorageRef:
    pass


class Tensor:
    def __reduce__(self):
        return (_rebuild_tensor_v2, (StorageRef(), 0, (NUMEL,), (1,), False, collections.OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", FloatStorage, "0", "cpu", NUMEL)
        return None


buf = io.BytesIO()
Pickler(buf, protocol=2).dump(collections.OrderedDict([("weight", Tensor())]))
pkl = buf.getvalue()


def local(name, data, claimed=None):
    name = name.encode()
    crc = zlib.crc32(data)
    if claimed is None:
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0) + name + data
    extra = struct.pack("<HHQQ", 1, 16, claimed, claimed)
    return (
        struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra))
        + name
        + extra
        + data
    )


def central(name, data, offset, claimed=None):
    name = name.encode()
    crc = zlib.crc32(data)
    if claimed is None:
        head = struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0, 0, 0, 0, 0, offset
        )
        return head + name
    extra = struct.pack("<HHQQ", 1, 16, claimed, claimed)
    head = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, offset
    )
    return head + name + extra


entries = [("archive/data.pkl", pkl, None), ("archive/data/0", b"\0" * 4096, NUMEL * 4)]
body = b""
offsets = []
for name, data, claimed in entries:
    offsets.append(len(body))
    body += local(name, data, claimed)
cd = b"".join(central(name, data, off, claimed) for (name, data, claimed), off in zip(entries, offsets))
eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), len(body), 0)
path = os.path.join(OUT, "hostile_32g_claim.pt")
with open(path, "wb") as f:
    f.write(body + cd + eocd)
print(path, os.path.getsize(path), "bytes")
