"""Writes the torch.export fixtures mdl's tests use, with real torch
(`torch.export.export` and `torch.export.save`; run with torch 2.13 and 2.15):

  exported.pt2            a Linear layer and a buffer: the common case
  exported_dynamic.pt2    the same with a dynamic batch dimension
  exported_writes.pt2     a program that, when run, overwrites the first 8
                          bytes of `export-victim.bin` in the current
                          directory: `aten.from_file(..., shared=True)` then
                          `aten.fill_`, put in the serialized graph by hand
                          (export refuses to trace `from_file`, and a hostile
                          archive is not made by export): default
                          verification must never run it
  exported_oversized.pt2  exported.pt2 whose weights config claims a
                          2000 × 4000 weight over the 32-byte record
  exported_truncated.pt2  exported.pt2 cut in half

exported_aoti.pt2 is an AOTInductor package of a Linear layer, compiled
on this machine's CPU by `torch._inductor.aoti_compile_and_package` (torch
2.15; native code mdl never loads).

exported_torch213.pt2 and exported_writes_torch213.pt2 are exported.pt2 and
exported_writes.pt2 as torch 2.13 writes them (this script run with torch
2.13.0, the two files renamed); the rest are torch 2.15's.

    target/python-test-venv/bin/python scripts/make-export-fixtures.py
"""
import copy
import json
import os
import zipfile

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
torch.manual_seed(0)


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)
        self.register_buffer("scale", torch.tensor([2.0, 3.0]))

    def forward(self, x):
        return self.fc(x) * self.scale


class Ones(torch.nn.Module):
    def forward(self, x):
        t = torch.ones(8, dtype=torch.uint8)
        return x + t[0].to(torch.float32) * 0


def writes(src, dst):
    """`src`'s graph with its `ones` node made `from_file` of the victim,
    mapped shared, then filled with `X`."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename.endswith("models/model.json"):
                m = json.loads(data)
                g = m["graph_module"]["graph"]
                nodes = g["nodes"]
                ones = nodes[0]
                assert ones["target"] == "torch.ops.aten.ones.default", ones["target"]
                ones["target"] = "torch.ops.aten.from_file.default"
                ones["inputs"] = [
                    {"name": "filename", "arg": {"as_string": "export-victim.bin"}, "kind": 1},
                    {"name": "shared", "arg": {"as_bool": True}, "kind": 1},
                    {"name": "size", "arg": {"as_int": 8}, "kind": 1},
                    {"name": "dtype", "arg": {"as_scalar_type": 1}, "kind": 2},
                ]
                fill = copy.deepcopy(nodes[1])
                fill.update(target="torch.ops.aten.fill_.Scalar", name="filled",
                            inputs=[{"name": "self", "arg": {"as_tensor": {"name": "ones"}}, "kind": 1},
                                    {"name": "value", "arg": {"as_int": 88}, "kind": 1}],
                            outputs=[{"as_tensor": {"name": "filled"}}])
                g["tensor_values"]["filled"] = copy.deepcopy(g["tensor_values"]["ones"])
                nodes.insert(1, fill)
                nodes[2]["inputs"][0]["arg"]["as_tensor"]["name"] = "filled"
                data = json.dumps(m).encode()
            out.writestr(info, data)


def save(program, name):
    path = os.path.join(OUT, name)
    torch.export.save(program, path)
    return path


example = (torch.zeros(1, 4),)
plain = save(torch.export.export(Small(), example), "exported.pt2")
batch = torch.export.Dim("batch", min=1, max=64)
save(torch.export.export(Small(), (torch.zeros(2, 4),), dynamic_shapes={"x": {0: batch}}), "exported_dynamic.pt2")
ones = save(torch.export.export(Ones(), example), "ones.pt2")
writes(ones, os.path.join(OUT, "exported_writes.pt2"))
os.remove(ones)

# Hostile variants of the plain one.
with zipfile.ZipFile(plain) as src, zipfile.ZipFile(os.path.join(OUT, "exported_oversized.pt2"), "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith("model_weights_config.json"):
            config = json.loads(data)
            meta = config["config"]["fc.weight"]["tensor_meta"]
            meta["sizes"] = [{"as_int": 2000}, {"as_int": 4000}]
            meta["strides"] = [{"as_int": 4000}, {"as_int": 1}]
            data = json.dumps(config).encode()
        dst.writestr(info, data)
aoti = torch.export.export(torch.nn.Linear(4, 2), example)
torch._inductor.aoti_compile_and_package(aoti, package_path=os.path.join(OUT, "exported_aoti.pt2"))

data = open(plain, "rb").read()
open(os.path.join(OUT, "exported_truncated.pt2"), "wb").write(data[: len(data) // 2])
print("wrote the .pt2 fixtures with torch", torch.__version__)
