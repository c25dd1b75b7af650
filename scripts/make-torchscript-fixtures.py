"""Writes the hostile TorchScript archive mdl's tests use, with real torch
(`torch.jit.script`): `tests/fixtures/hostile_setstate.pt`, a scripted module
whose `__setstate__` (run by `torch.jit.load` and libtorch's `CModule::load`)
maps `hostile-victim.bin` in the current directory writable with
`torch.from_file(..., shared=True)` and overwrites its first 8 bytes with
`X`. Loading is running: mdl must verify it without loading it, unless
config.yaml says `verify: { run_code: true }` for that model.

    target/python-test-venv/bin/python scripts/make-torchscript-fixtures.py
"""
import os
from typing import Tuple

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


class Hostile(torch.nn.Module):
    def __init__(self, victim: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2, 4))
        self.victim = victim

    def forward(self, x):
        return x @ self.weight.t()

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:
        return (self.weight, self.victim, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:
        self.weight = state[0]
        self.victim = state[1]
        t = torch.from_file(self.victim, shared=True, size=8, dtype=torch.uint8)
        t.fill_(88)
        # Used, so TorchScript keeps the write.
        self.training = state[2] or bool(t[0] == 0)


torch.jit.save(torch.jit.script(Hostile("hostile-victim.bin")), os.path.join(OUT, "hostile_setstate.pt"))
print("wrote hostile_setstate.pt with torch", torch.__version__)
