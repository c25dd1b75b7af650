"""PEP 517 backend for mdl's wheel: maturin's, plus the two executables.

maturin builds and packs the PyO3 module (crates/mdl-py). It cannot also pack
a crate's executables into the same wheel (PyO3/maturin#368), so before
maturin runs, this hook builds `mdl` and `mdl-torch` with cargo — same
profile, same target directory, so the library they share is compiled once —
and puts them where maturin's `data` setting takes them from: the wheel's
`.data/scripts/`, which pip installs on the environment's PATH.

`mdl-torch` links libtorch, so it is built only when a torch of the version
it needs is found (`$LIBTORCH`, the checkout's `.venv` from `scripts/setup`,
or the torch of the Python running the build); otherwise the wheel holds
`mdl` alone, which checks hashes and file structure and says so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from typing import Any, Mapping, Optional

import maturin as _maturin
from maturin import (  # noqa: F401  (re-exported PEP 517 hooks)
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "target", "wheel-data")
# The libtorch version tch 0.26 (crates/mdl-torch) builds against.
TORCH_VERSION = "2.13."


def _data_dir() -> None:
    # maturin reads its `data` setting in every hook: the directory must exist.
    os.makedirs(os.path.join(DATA, "scripts"), exist_ok=True)


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[Mapping[str, Any]] = None) -> str:
    _data_dir()
    return _maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: Optional[Mapping[str, Any]] = None) -> str:
    _data_dir()
    return _maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_sdist(sdist_directory: str, config_settings: Optional[Mapping[str, Any]] = None) -> str:
    _data_dir()
    return _maturin.build_sdist(sdist_directory, config_settings)


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _build_executables(config_settings)
    return _maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _build_executables(config_settings)
    return _maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def _say(message: str) -> None:
    print(f"mdl wheel: {message}", file=sys.stderr, flush=True)


def _profile(config_settings: Optional[Mapping[str, Any]]) -> str:
    """The cargo profile maturin will use (`--profile X` in its arguments), else release."""
    args = _maturin.get_maturin_pep517_args(config_settings)
    for i, arg in enumerate(args):
        if arg == "--profile" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--profile="):
            return arg.split("=", 1)[1]
    return "release"


def _target_dir() -> str:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    return json.loads(out)["target_directory"]


def _torch_dir() -> Optional[str]:
    """A torch whose libtorch mdl-torch can build against, or None."""
    candidates = []
    if os.environ.get("LIBTORCH"):
        candidates.append(os.environ["LIBTORCH"])
    candidates.append(os.path.join(ROOT, ".venv", "lib", "python3.11", "site-packages", "torch"))
    # The interpreter running the build, outside pip's build isolation (which
    # hides the environment's own packages through PYTHONPATH).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")}
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if probe.returncode == 0 and probe.stdout.strip():
        candidates.append(probe.stdout.strip())
    for torch in candidates:
        version_file = os.path.join(torch, "version.py")
        lib = os.path.join(torch, "lib", "libtorch_cpu.so")
        if not (os.path.isfile(version_file) and os.path.isfile(lib)):
            continue
        with open(version_file) as f:
            version = next((line.split("=", 1)[1].strip().strip("'\"") for line in f if line.startswith("__version__")), "")
        if version.startswith(TORCH_VERSION):
            return torch
        _say(f"torch {version} at {torch} is not {TORCH_VERSION}x, which mdl-torch builds against")
    return None


def _build_executables(config_settings: Optional[Mapping[str, Any]]) -> None:
    profile = _profile(config_settings)
    packages = ["-p", "mdl-cli", "--bin", "mdl"]
    env = dict(os.environ)
    # An sdist holds the crates the module needs, not mdl-torch's.
    has_helper = os.path.isfile(os.path.join(ROOT, "crates", "mdl-torch", "Cargo.toml"))
    torch = _torch_dir() if has_helper else None
    if torch is not None:
        env["LIBTORCH"] = torch
        packages += ["-p", "mdl-torch", "--bin", "mdl-torch"]
    else:
        _say(
            "no torch 2.13 found ($LIBTORCH, .venv, or this Python's): the wheel holds `mdl` without "
            "`mdl-torch`, and checks hashes and structure only (run scripts/setup first for the verifier)"
        )
    command = ["cargo", "build", "--profile", profile, *packages]
    _say("$ " + shlex.join(command))
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    out_dir = os.path.join(_target_dir(), "debug" if profile == "dev" else profile)
    scripts = os.path.join(DATA, "scripts")
    shutil.rmtree(DATA, ignore_errors=True)
    os.makedirs(scripts)
    for name in ("mdl", "mdl-torch"):
        built = os.path.join(out_dir, name)
        if name == "mdl-torch" and torch is None:
            continue
        shutil.copy2(built, os.path.join(scripts, name))
        if shutil.which("strip"):
            # Debug info and symbols are most of a Rust binary's size; a wheel is for running.
            subprocess.run(["strip", os.path.join(scripts, name)], check=False)
