"""Generates the weight files mdl's verifier is tested against, with the real
producer (PyTorch). The outputs are tiny and committed in tests/fixtures/, so the
test suite itself needs no Python torch (the project's lean libtorch install
cannot `import torch`; see README).

Re-run with a full torch 2.13 install:
    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 safetensors
    /tmp/torchenv/bin/python scripts/make-fixtures.py
"""
import io
import json
import os
import zipfile

import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)  # brings an int64 0-dim buffer (num_batches_tracked)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.bn(self.conv(x)).relu().mean(dim=(2, 3))
        return self.fc(x)


manifest = {}


def describe(name, tensors, **extra):
    manifest[name] = dict(
        tensors=len(tensors),
        parameters=sum(t.numel() for t in tensors.values()),
        bytes=sum(t.numel() * t.element_size() for t in tensors.values()),
        dtypes=sorted({str(t.dtype).replace("torch.", "") for t in tensors.values()}),
        sums={k: float(t.double().sum()) for k, t in sorted(tensors.items())},
        shapes={k: list(t.shape) for k, t in sorted(tensors.items())},
        **extra,
    )


model = Tiny().eval()
sd = model.state_dict()

# 1. The commonest weight file: torch.save(model.state_dict()), an OrderedDict.
torch.save(sd, f"{OUT}/state_dict.pth")
describe("state_dict.pth", sd)

# 2. Mixed dtypes, a view sharing storage at an offset, a non-contiguous tensor.
base = torch.arange(24, dtype=torch.float32)
mixed = {
    "half": torch.randn(3, 5).half(),
    "bf16": torch.randn(4).bfloat16(),
    "int": torch.arange(6, dtype=torch.int32).reshape(2, 3),
    "bool": torch.tensor([True, False, True]),
    "u8": torch.arange(5, dtype=torch.uint8),
    "f64": torch.randn(2, 2, dtype=torch.float64),
    "whole": base,
    "view": base[4:16].reshape(3, 4),
    "transposed": base.reshape(4, 6).t(),
    "scalar": torch.tensor(3.5),
}
torch.save(mixed, f"{OUT}/mixed_dtypes.pt")
describe("mixed_dtypes.pt", mixed)

# 3. A training checkpoint: a dict with a nested state dict and plain values.
torch.save({"epoch": 3, "model": sd, "note": "ckpt"}, f"{OUT}/checkpoint.pt")
describe("checkpoint.pt", {f"model.{k}": v for k, v in sd.items()})

# 4. Legacy (pre-1.6) pickle format.
torch.save(sd, f"{OUT}/legacy.pth", _use_new_zipfile_serialization=False)
describe("legacy.pth", sd)

# 5. TorchScript.
scripted = torch.jit.script(model)
scripted.save(f"{OUT}/scripted.pt")
example = torch.zeros(1, 3, 8, 8)
# libtorch exposes a TorchScript module's parameters (not its buffers) to mdl.
describe("scripted.pt", dict(scripted.named_parameters()), forward_input=[1, 3, 8, 8],
         forward_output=list(scripted(example).shape))

# 6. safetensors.
st = {k: v.contiguous() for k, v in sd.items()}
save_file(st, f"{OUT}/model.safetensors")
describe("model.safetensors", st)

# Broken files.
data = open(f"{OUT}/state_dict.pth", "rb").read()
open(f"{OUT}/broken_truncated.pth", "wb").write(data[: len(data) // 2])
open(f"{OUT}/broken_not_a_model.pt", "wb").write(
    b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n")
# A zip whose pickle references a storage record that is not in the archive.
with zipfile.ZipFile(f"{OUT}/state_dict.pth") as src, \
        zipfile.ZipFile(f"{OUT}/broken_missing_record.pth", "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        if info.filename.endswith("/data/0"):
            continue
        dst.writestr(info, src.read(info.filename))
st_data = open(f"{OUT}/model.safetensors", "rb").read()
open(f"{OUT}/broken_truncated.safetensors", "wb").write(st_data[: len(st_data) - 16])

manifest["_producer"] = {"torch": torch.__version__}
with open(f"{OUT}/manifest.json", "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write("\n")
print("wrote", sorted(os.listdir(OUT)))
