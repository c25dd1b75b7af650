"""Checks the release wheel as a user meets it (scripts/release check):
installed into fresh venvs — one without torch, one per torch from PyPI
(`MDL_RELEASE_TORCHES`, default "2.15.0 2.9.0") — it puts `mdl` on PATH, the
module imports, and `mdl sync` and the seed API sync the emulator's demo
repository: verified in that torch, or with no torch checked by hashes and
structure and a warning naming what to install. Also the Dockerfile binary.
Prints the time from `pip install mdl-*.whl` to the first verified model.

    python3 scripts/release-check.py WHEEL BINARY
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

wheel, binary = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
hub_bin = os.environ["MDL_HUB"]
torches = os.environ.get("MDL_RELEASE_TORCHES", "2.15.0 2.9.0").split()

hub = subprocess.Popen([hub_bin, "--demo"], stdout=subprocess.PIPE, text=True)
endpoint = hub.stdout.readline().split()[-1]
CONFIG = "models:\n  require: [mdl-demo/tiny-net]\n  device: cpu\n"


def run(cmd, env, cwd=None, check=True):
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def clean_env(venv=None, work=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MDL_", "VIRTUAL_ENV", "LIBTORCH", "PYTHON"))}
    env.update(HF_ENDPOINT=endpoint, CI="1")
    if work:
        env.update(HF_HOME=str(work / "hf"), MDL_CACHE_DIR=str(work / "store"))
    if venv:
        env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv}/bin:/usr/bin:/bin")
    return env


results = []
try:
    for torch in [None, *torches]:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            venv = work / "venv"
            env = clean_env(venv, work)
            run([sys.executable, "-m", "venv", str(venv)], env)
            if torch:
                run([f"{venv}/bin/python", "-m", "pip", "install", "--quiet", f"torch=={torch}"], env)
            started = time.monotonic()
            run([f"{venv}/bin/python", "-m", "pip", "install", "--quiet", str(wheel)], env)
            installed = time.monotonic() - started
            project = work / "project"
            project.mkdir()
            (project / "config.yaml").write_text(CONFIG)
            sync = run([f"{venv}/bin/mdl", "sync"], env, cwd=project)
            first = time.monotonic() - started
            if torch:
                assert f"with torch {torch}" in sync.stderr and "Verified mdl-demo/tiny-net" in sync.stderr, sync.stderr
            else:
                assert "pip install torch" in sync.stderr and "Checked mdl-demo/tiny-net" in sync.stderr, sync.stderr
            api = run([f"{venv}/bin/python", "-c",
                       "import mdl; p, info = mdl.ensure_model_available('mdl-demo/tiny-net'); print(mdl.__version__, info.verified)"],
                      env, cwd=project)
            assert api.stdout.split()[1] == ("True" if torch else "False"), api.stdout
            results.append((f"torch {torch}" if torch else "no torch", installed, first))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "config.yaml").write_text(CONFIG)
        env = clean_env(None, work)
        env["PATH"] = "/usr/bin:/bin"
        done = run([str(binary), "sync"], env, cwd=work)
        assert "mdl-demo/tiny-net" in done.stderr, done.stderr
finally:
    hub.kill()

size = wheel.stat().st_size / 2**20
print(f"release-check: wheel {wheel.name} ({size:.1f} MiB), binary {binary.stat().st_size / 2**20:.1f} MiB")
for env, installed, first in results:
    print(f"release-check: {env}: `pip install` {installed:.1f} s, to the first {'verified' if env != 'no torch' else 'checked'} model {first:.1f} s")
