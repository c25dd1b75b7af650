"""Generates the GGUF files mdl's verifier is tested against, written by
llama.cpp's own `gguf` package (PyPI), so the format is llama.cpp's and not
mdl's reading of it. The outputs are tiny and committed in tests/fixtures/.

Re-run with:
    python -m venv /tmp/ggufenv && /tmp/ggufenv/bin/pip install gguf==0.19.0
    /tmp/ggufenv/bin/python scripts/make-gguf-fixtures.py

Files:
  tiny-F16.gguf     v3, llama, F32 + F16 + BF16 tensors (all load into libtorch)
  tiny-Q4_K_M.gguf  v3, llama, Q4_K and Q6_K weights (structure only) + F32 norms,
                    `general.alignment` 64, as a Q4_K_M quantization is laid out
  tiny-Q8_0.gguf    v3, Q8_0 and Q4_0 weights quantized by gguf's own code
  tiny-v2.gguf      tiny-F16.gguf as version 2 (v2 and v3 share the little-endian layout)
  broken_truncated.gguf   tiny-F16.gguf cut inside its tensor data
  broken_offset.gguf      a tensor whose offset is not a multiple of the alignment
"""
import json
import os

import numpy as np
import gguf
from gguf.constants import GGMLQuantizationType as T
import gguf.quants as quants

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
rng = np.random.default_rng(0)
manifest_path = os.path.join(OUT, "manifest.json")
manifest = json.load(open(manifest_path))


def write(name, arch, tensors, alignment=None):
    path = os.path.join(OUT, name)
    w = gguf.GGUFWriter(path, arch)
    w.add_name("tiny")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_context_length(16)
    w.add_embedding_length(8)
    w.add_block_count(1)
    entry = {"format": "gguf", "tensors": {}, "architecture": arch}
    for tname, data, raw in tensors:
        if raw is None:
            w.add_tensor(tname, data)
            dtype = {np.float32: "F32", np.float16: "F16"}[data.dtype.type]
            shape = list(data.shape)
            entry["tensors"][tname] = {"dtype": dtype, "shape": shape, "sum": float(data.astype(np.float64).sum())}
        else:
            qtype, shape = raw
            w.add_tensor(tname, data, raw_shape=data.shape, raw_dtype=qtype)
            entry["tensors"][tname] = {"dtype": qtype.name, "shape": shape}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    manifest[name] = entry
    return path


def bf16_of(x):
    """BF16 bytes as gguf writes them, and the float32 values they hold."""
    packed = quants.quantize(x, T.BF16)
    back = (packed.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return packed, back


embd = rng.standard_normal((16, 8)).astype(np.float32)
norm = np.ones(8, dtype=np.float32)
ffn = rng.standard_normal((8, 8)).astype(np.float16)
out_bf16, out_values = bf16_of(rng.standard_normal((4, 8)).astype(np.float32))
f16 = write(
    "tiny-F16.gguf",
    "llama",
    [
        ("token_embd.weight", embd, None),
        ("blk.0.attn_norm.weight", norm, None),
        ("blk.0.ffn_up.weight", ffn, None),
        ("output.weight", out_bf16, (T.BF16, [4, 8])),
    ],
)
manifest["tiny-F16.gguf"]["tensors"]["output.weight"]["sum"] = float(out_values.astype(np.float64).sum())

# Q4_K / Q6_K: gguf's numpy code cannot quantize to k-quants, so their blocks
# are random bytes of exactly the right size (a structure check reads sizes,
# not values); the norms stay F32 as llama.cpp's quantizer leaves them.
q4k_block, q6k_block = gguf.GGML_QUANT_SIZES[T.Q4_K][1], gguf.GGML_QUANT_SIZES[T.Q6_K][1]
write(
    "tiny-Q4_K_M.gguf",
    "llama",
    [
        ("token_embd.weight", rng.integers(0, 256, (4, q4k_block), dtype=np.uint8), (T.Q4_K, [4, 256])),
        ("blk.0.attn_norm.weight", np.ones(256, dtype=np.float32), None),
        ("blk.0.ffn_down.weight", rng.integers(0, 256, (2, q6k_block), dtype=np.uint8), (T.Q6_K, [2, 256])),
    ],
    alignment=64,
)

x = rng.standard_normal((4, 64)).astype(np.float32)
write(
    "tiny-Q8_0.gguf",
    "gpt2",
    [
        ("token_embd.weight", quants.quantize(x, T.Q8_0), (T.Q8_0, [4, 64])),
        ("blk.0.ffn_up.weight", quants.quantize(x, T.Q4_0), (T.Q4_0, [4, 64])),
        ("output_norm.weight", np.ones(64, dtype=np.float32), None),
    ],
)

data = bytearray(open(f16, "rb").read())
assert data[4:8] == (3).to_bytes(4, "little")
v2 = bytes(data[:4]) + (2).to_bytes(4, "little") + bytes(data[8:])
open(os.path.join(OUT, "tiny-v2.gguf"), "wb").write(v2)
manifest["tiny-v2.gguf"] = dict(manifest["tiny-F16.gguf"])
open(os.path.join(OUT, "broken_truncated.gguf"), "wb").write(bytes(data[: len(data) - 40]))

# The first tensor's offset (relative to the data section) is 0; make it 4.
reader = gguf.GGUFReader(f16)
first = reader.tensors[0]
offset_field = first.field.parts[-1]
pos = first.field.offset + sum(p.nbytes for p in first.field.parts[:-1])
assert int.from_bytes(data[pos : pos + 8], "little") == 0, "the first tensor's offset"
data[pos : pos + 8] = (4).to_bytes(8, "little")
open(os.path.join(OUT, "broken_offset.gguf"), "wb").write(bytes(data))

json.dump(manifest, open(manifest_path, "w"), indent=1, sort_keys=True)
print("wrote", sorted(n for n in manifest if "gguf" in n))
