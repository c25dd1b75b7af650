"""Fixtures for the Python package's tests: the installed wheel (`import mdl`,
`mdl` on PATH) against the hub emulator serving models made here with
transformers and torch.

Run by scripts/test in a fresh venv (see scripts/test-python); by hand:

    MDL_HUB=target/debug/mdl-hub VENV/bin/python -m pytest tests/python
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require(module: str):
    """`import module`; a missing one skips the test on a developer's
    machine, but fails it under CI (`CI` set): CI never skips silently."""
    if os.environ.get("CI"):
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError as e:
            pytest.fail(f"`{module}` is not installed in the test venv ({e}): scripts/test-python installs it")
    return pytest.importorskip(module)


def hub_binary() -> str:
    path = os.environ.get("MDL_HUB") or str(ROOT / "target" / "debug" / "mdl-hub")
    if not os.path.isfile(path):
        pytest.fail(f"the hub emulator is not built at {path}: cargo build -p mdl-hub-emulator (or set MDL_HUB)")
    return path


def _tiny_models(root: Path) -> Dict[str, Path]:
    """A causal LM with a tokenizer that has no pad token, an encoder, and a
    torchvision-style state dict: each made by the library users load them with."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    made: Dict[str, Path] = {}

    gpt = root / "tiny-gpt"
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=16, n_positions=16)
    transformers.GPT2LMHeadModel(config).save_pretrained(gpt, safe_serialization=True)
    vocab = {w: i for i, w in enumerate(["<unk>", "</s>", "hello", "world", "mdl"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")
    assert fast.pad_token is None
    fast.save_pretrained(gpt)
    made["gpt"] = gpt

    bert = root / "tiny-bert"
    config = transformers.BertConfig(
        vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, max_position_embeddings=16
    )
    transformers.BertModel(config).save_pretrained(bert, safe_serialization=True)
    made["bert"] = bert

    # torchvision names weights `<arch>-<first 8 hex of sha256>.pth` and checks it.
    tv = root / "tv"
    tv.mkdir()
    for arch in ("resnet18", "mobilenet_v2"):
        tmp = tv / f"{arch}.tmp"
        torch.save({"fc.weight": torch.randn(4, 4), "fc.bias": torch.zeros(4)}, tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
        tmp.rename(tv / f"{arch}-{digest}.pth")
    made["tv"] = tv
    return made


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    return _tiny_models(tmp_path_factory.mktemp("made"))


class Hub:
    def __init__(self, url: str, process: subprocess.Popen) -> None:
        self.url = url
        self.process = process


def start_hub(model_files: Dict[str, Path], *extra: str) -> Hub:
    args = [
        hub_binary(),
        "--files",
        f"acme/tiny-gpt={model_files['gpt']}",
        "--files",
        f"acme/tiny-bert={model_files['bert']}",
        "--files",
        f"tv/weights={model_files['tv']}",
        *extra,
    ]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening" not in line:
        process.kill()
        pytest.fail(f"mdl-hub did not start: {line!r}")
    return Hub(line.split()[-1], process)


@pytest.fixture(scope="session")
def hub(model_files: Dict[str, Path]) -> Iterator[Hub]:
    h = start_hub(model_files)
    yield h
    h.process.kill()
    h.process.wait()


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: Hub) -> Iterator[Path]:
    """Each test in its own directory (the default project), with its own
    Hugging Face cache and content store, against the emulator."""
    import mdl

    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MDL_CONFIG", raising=False)
    monkeypatch.setenv("MDL_CACHE_DIR", str(tmp_path / "mdl-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(mdl, "_default", None)
    yield work


def scripts_dir() -> str:
    return sysconfig.get_path("scripts")


def write_torchvision_config(work: Path, hub: Hub, model_files: Dict[str, Path]) -> None:
    catalog = {p.name.split("-")[0]: p.name for p in model_files["tv"].iterdir()}
    lines = "\n".join(f"          {k}: {v}" for k, v in sorted(catalog.items()))
    (work / "config.yaml").write_text(
        "models:\n"
        "  download:\n"
        "    sources:\n"
        "      torchvision:\n"
        f"        base_url: \"{hub.url}/files/tv/weights/\"\n"
        "        catalog:\n"
        f"{lines}\n"
    )


__all__ = ["Hub", "start_hub", "scripts_dir", "write_torchvision_config", "ROOT", "shutil", "sys"]
