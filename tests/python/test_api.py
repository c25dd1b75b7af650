"""The seed's functions, as its README used them, against the emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mdl
from conftest import scripts_dir, start_hub, write_torchvision_config


def test_pip_install_puts_mdl_and_mdl_torch_on_path(project: Path) -> None:
    mdl_bin = shutil.which("mdl")
    assert mdl_bin is not None, "`mdl` is not on PATH"
    assert Path(mdl_bin).parent == Path(scripts_dir())
    assert (Path(scripts_dir()) / "mdl-torch").is_file()
    out = subprocess.run(["mdl", "--version"], check=True, capture_output=True, text=True).stdout
    assert out.startswith("mdl ")
    # `python -m mdl` is the same command.
    again = subprocess.run([sys.executable, "-m", "mdl", "--version"], check=True, capture_output=True, text=True)
    assert again.stdout == out
    # One version: the command's, the module's and the installed wheel's
    # (all from the workspace's Cargo.toml).
    from importlib.metadata import version

    assert out.strip() == f"mdl {mdl.__version__}"
    assert version("mdl") == mdl.__version__


def test_ensure_model_available_returns_path_and_typed_info(project: Path) -> None:
    path, info = mdl.ensure_model_available("acme/tiny-bert")
    assert isinstance(info, mdl.ModelInfo)
    assert Path(path) == project / "models" / "huggingface_acme--tiny-bert"
    assert (Path(path) / "model.safetensors").is_file()
    assert info.name == "acme/tiny-bert"
    assert info.source == "huggingface"
    assert info.path == path
    assert info.size_mb > 0 and info.size_bytes == sum(f.size for f in info.files)
    assert len(info.commit or "") == 40
    # Loaded in this environment's own torch, whatever its version: the
    # wheel's mdl-torch is built for 2.13, this venv has the newest (2.15),
    # so mdl verified in Python, and says so.
    import torch

    assert info.verified, info.verification
    used = info.verification["torch"]
    assert used["version"] == torch.__version__
    assert used["found_by"] == "VIRTUAL_ENV"
    assert used["via"] == ("mdl-torch" if torch.__version__.startswith("2.13") else "python")
    assert info.verified_with == f"torch {torch.__version__} (VIRTUAL_ENV, " + (
        "through mdl-torch)" if used["via"] == "mdl-torch" else "in Python)"
    )
    assert (project / "models.lock").is_file()
    # Again: nothing to do, same answer.
    assert mdl.ensure_model_available("acme/tiny-bert") == (path, info)


def test_the_seed_snippets(project: Path) -> None:
    # Download under a name of our choosing.
    path, info = mdl.auto_download_model("huggingface:acme/tiny-gpt", model_name="gpt")
    assert info.name == "gpt"
    assert Path(path).name == "huggingface_gpt"

    downloader = mdl.get_model_downloader()
    assert downloader is mdl.get_model_downloader()
    config = downloader.get_config()
    assert config["models"]["download"]["concurrency"] == 8

    results = mdl.download_multiple_models(["acme/tiny-bert", "huggingface:acme/tiny-gpt"])
    assert set(results) == {"acme/tiny-bert", "huggingface:acme/tiny-gpt"}
    assert all(info.verified for _, info in results.values())

    available = mdl.list_available_models()
    assert set(available) == {"gpt", "acme/tiny-bert"}
    for name, info in available.items():
        assert info.size_mb > 0
        assert info.source == "huggingface"
        assert mdl.is_model_cached(name)
        assert mdl.get_model_path(name) == info.path
    assert not mdl.is_model_cached("acme/never-synced")
    assert mdl.get_model_path("acme/never-synced") is None

    # The CLI sees the same project: the lock the API wrote is complete.
    listed = subprocess.run(["mdl", "sync", "--check", "--no-verify"], capture_output=True, text=True)
    assert listed.returncode == 0 or "config.yaml" in listed.stderr


def test_download_preset_models_basic(project: Path, hub, model_files) -> None:
    write_torchvision_config(project, hub, model_files)
    results = mdl.download_preset_models("basic")
    assert set(results) == {"resnet18", "mobilenet_v2"}
    for model_id, (path, info) in results.items():
        assert info.source == "torchvision"
        assert info.verified, info.verification
        assert Path(path).is_dir()


def test_progress_goes_to_a_callback_and_is_silent_without_a_terminal(project: Path, capfd) -> None:
    events = []
    mdl.ensure_model_available("acme/tiny-bert", progress=events.append)
    kinds = {e["event"] for e in events}
    assert {"download_started", "download_progress", "download_finished"} <= kinds, kinds
    started = [e for e in events if e["event"] == "download_started"]
    assert any(e["label"].endswith("model.safetensors") for e in started)
    assert sum(e["bytes"] for e in events if e["event"] == "download_progress") > 0
    # stderr is not a terminal here: no bars, no lines.
    mdl.ensure_model_available("acme/tiny-gpt")
    assert capfd.readouterr().err == ""


def test_the_gil_is_released_while_mdl_downloads(model_files, project: Path, monkeypatch) -> None:
    # A slow server: the download takes a second or more.
    slow = start_hub(model_files, "--bandwidth", "200000")
    try:
        monkeypatch.setenv("HF_ENDPOINT", slow.url)
        done = threading.Event()
        errors = []

        def fetch() -> None:
            try:
                mdl.ModelDownloader().ensure_model_available("acme/tiny-gpt", progress=False)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            finally:
                done.set()

        worker = threading.Thread(target=fetch)
        started = time.monotonic()
        worker.start()
        ticks = 0
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)
        elapsed = time.monotonic() - started
        worker.join()
        assert not errors, errors
        assert elapsed > 0.3, f"the download took only {elapsed:.2f} s: the server was not slow"
        # With the GIL held for the whole download, this thread would not run at all.
        assert ticks > 0.3 * elapsed / 0.002, (ticks, elapsed)
    finally:
        slow.process.kill()
        slow.process.wait()


def test_without_an_activated_venv_the_running_pythons_torch_verifies(project: Path) -> None:
    # `python script.py` with the venv's interpreter but nothing activated:
    # the torch that script imports is the one mdl verifies with.
    import torch

    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"
    code = "import mdl; _, info = mdl.ensure_model_available('acme/tiny-bert'); print(info.verified_with)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=project, check=True, capture_output=True, text=True)
    assert out.stdout.strip().startswith(f"torch {torch.__version__} (sys.executable, "), out
