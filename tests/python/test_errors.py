"""Bad input raises the typed exceptions, each with its message and hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mdl


def test_a_malformed_config_is_a_config_error(project: Path) -> None:
    (project / "config.yaml").write_text("models:\n  requier: [acme/tiny-bert]\n")
    with pytest.raises(mdl.ConfigError) as caught:
        mdl.ensure_model_available("acme/tiny-bert")
    e = caught.value
    assert "requier" in e.message
    assert e.hint and "mdl config" in e.hint
    assert e.exit_code == 2
    assert isinstance(e, mdl.Error) and isinstance(e, ValueError)
    assert str(e).endswith("hint: " + e.hint)


def test_an_unknown_model_is_a_resolve_error(project: Path) -> None:
    with pytest.raises(mdl.ResolveError) as caught:
        mdl.ensure_model_available("acme/does-not-exist")
    assert "acme/does-not-exist" in caught.value.message
    assert isinstance(caught.value, mdl.DownloadError)


def test_a_bad_identifier_is_refused_before_anything_is_fetched(project: Path) -> None:
    with pytest.raises(mdl.ConfigError) as caught:
        mdl.ensure_model_available("not a model")
    assert "not a model" in caught.value.message
    assert caught.value.hint
    assert not (project / "models").exists()


def test_an_unknown_preset_names_the_presets_there_are(project: Path) -> None:
    with pytest.raises(mdl.ConfigError) as caught:
        mdl.download_preset_models("nope")
    assert "`basic`" in (caught.value.hint or "")


def test_an_edited_lock_is_a_lock_error_and_nothing_is_lost(project: Path) -> None:
    path, _ = mdl.ensure_model_available("acme/tiny-bert")
    lock = project / "models.lock"
    text = lock.read_text()
    blake3 = text.split('blake3 = "')[1].split('"')[0]
    lock.write_text(text.replace(blake3, "0" * 63 + "Z"))
    weights = (Path(path) / "model.safetensors").read_bytes()
    with pytest.raises(mdl.LockError) as caught:
        mdl.ModelDownloader().ensure_model_available("acme/tiny-bert")
    assert "models.lock:" in caught.value.message
    assert caught.value.exit_code == 2
    assert (Path(path) / "model.safetensors").read_bytes() == weights


def test_a_batch_raises_the_first_failure_with_the_successes_attached(project: Path) -> None:
    with pytest.raises(mdl.Error) as caught:
        mdl.download_multiple_models(["acme/tiny-bert", "not a model"])
    e = caught.value
    assert set(e.errors) == {"not a model"}  # type: ignore[attr-defined]
    assert set(e.results) == {"acme/tiny-bert"}  # type: ignore[attr-defined]


def test_model_loader_without_transformers_says_which_extra_to_install(project: Path) -> None:
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "import mdl\n"
        "try:\n"
        "    mdl.ModelLoader('acme/tiny-gpt').load_model()\n"
        "except mdl.MissingDependencyError as e:\n"
        "    print(e.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "pip install 'mdl[transformers]'" in out
