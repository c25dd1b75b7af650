"""mdl.ModelLoader: the seed's lookup order, then transformers in float16."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mdl

from conftest import require

torch = require("torch")
transformers = require("transformers")


def test_a_causal_lm_downloads_into_the_hf_cache_and_loads_in_float16(project: Path, tmp_path: Path) -> None:
    loader = mdl.ModelLoader("acme/tiny-gpt")
    model = loader.load_model()
    assert loader.found_in == "download"
    hub_cache = tmp_path / "hf" / "hub" / "models--acme--tiny-gpt"
    assert Path(loader.model_path).is_relative_to(hub_cache)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert next(model.parameters()).dtype == torch.float16
    tokenizer = loader.load_tokenizer()
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    # The model runs.
    ids = tokenizer(["hello world", "mdl"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.to(torch.float32)(**ids)
    assert out.logits.shape[:2] == ids["input_ids"].shape

    # huggingface_hub finds the same snapshot offline (it read HF_HOME when
    # it was imported, before this test set it: the cache is named).
    from huggingface_hub import snapshot_download

    found = snapshot_download("acme/tiny-gpt", local_files_only=True, cache_dir=tmp_path / "hf" / "hub")
    assert found == loader.model_path

    # A second loader finds it in the Hugging Face cache without downloading.
    os.makedirs(tmp_path / "elsewhere")
    again = mdl.ModelLoader("acme/tiny-gpt", downloader=mdl.ModelDownloader(tmp_path / "elsewhere"))
    assert again.found_in == "hf_cache"
    assert again.model_path == loader.model_path


def test_an_encoder_loads_with_automodel_and_keywords_override(project: Path) -> None:
    path, _ = mdl.ensure_model_available("acme/tiny-bert")
    loader = mdl.ModelLoader("acme/tiny-bert")
    assert loader.found_in == "project"
    assert loader.model_path == path
    model = loader.load_model(dtype=torch.float32)
    assert type(model).__name__ == "BertModel"
    assert next(model.parameters()).dtype == torch.float32


def test_a_local_directory_comes_first(project: Path, model_files) -> None:
    loader = mdl.ModelLoader(str(model_files["gpt"]))
    assert loader.found_in == "local"
    assert loader.model_path == str(model_files["gpt"])
    assert next(loader.load_model().parameters()).dtype == torch.float16
