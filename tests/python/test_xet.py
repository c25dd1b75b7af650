"""The emulator's Xet storage against the real client: `huggingface_hub` with
`hf_xet` (both from PyPI) downloads from `mdl-hub --xet` over the Xet protocol
(read token, reconstruction, xorb ranges) and gets the bytes that were served.
This is what makes the emulator's Xet the Hub's format, not ours."""
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import hub_binary, require


def _revisions(root: Path) -> list:
    """Two revisions of a 6 MiB weight file: the second changes 100 bytes in
    every 2 MiB and keeps the rest, so most chunks are shared."""
    rng = random.Random(23)
    data = bytearray(rng.randbytes(6 << 20))
    dirs = []
    for rev in ("r1", "r2"):
        d = root / rev
        d.mkdir()
        (d / "model.safetensors").write_bytes(data)
        (d / "config.json").write_text('{"rev": "%s"}' % rev)
        dirs.append(d)
        for off in range(4096, len(data), 2 << 20):
            data[off : off + 100] = rng.randbytes(100)
    return dirs


@pytest.mark.parametrize("extra", [[], ["--xet-v1-only"], ["--xet-compression", "lz4"]])
def test_hf_xet_downloads_from_the_emulator_over_xet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra) -> None:
    require("hf_xet")
    r1, r2 = _revisions(tmp_path)
    log = tmp_path / "hub.log"
    args = [hub_binary(), "--xet", "--files", f"acme/xet@main={r1}", "--files", f"acme/xet@v2={r2}", "--log", str(log), *extra]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split()[-1]
        # A process of its own: huggingface_hub reads its settings at import.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=url, HF_HOME=str(tmp_path / "hf"), HF_XET_CACHE=str(tmp_path / "xet-cache"))
        code = (
            "import sys; from huggingface_hub import hf_hub_download\n"
            "for rev in ('main', 'v2'): print(hf_hub_download('acme/xet', 'model.safetensors', revision=rev))"
        )
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        paths = out.stdout.split()
        for got, d in zip(paths, (r1, r2)):
            assert Path(got).read_bytes() == (d / "model.safetensors").read_bytes()
        assert len(paths) == 2
    finally:
        process.kill()
        process.wait()
    lines = log.read_text().splitlines()
    version = "/v1/" if extra == ["--xet-v1-only"] else "/v2/"
    assert sum(f"GET 200 bytes=" in l and f"{version}reconstructions/" in l for l in lines) >= 2, lines
    assert any("/xet-read-token/" in l for l in lines), lines
    assert any(" 206 " in l and "/xorbs/default/" in l for l in lines), lines
    # Over Xet, not the bridge: no body came from the resolve redirect's target.
    assert not any(l.startswith("GET") and "/cdn/" in l for l in lines), lines


def _xorb_bytes(log: Path) -> int:
    """Bytes of xorb ranges the emulator served (`GET 206 bytes=A-B /xorbs/…`)."""
    total = 0
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "206" and parts[3].startswith("/xorbs/"):
            a, b = parts[2].removeprefix("bytes=").split("-")
            total += int(b) - int(a) + 1
    return total


def test_the_wheel_syncs_over_xet_and_upgrades_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path) -> None:
    """`import mdl` is the same library as the command: over Xet when the Hub
    offers it, and a revision bump fetches only the chunks that changed."""
    import mdl

    r1, r2 = _revisions(tmp_path)
    log = tmp_path / "hub.log"
    args = [hub_binary(), "--xet", "--files", f"acme/xet@main={r1}", "--files", f"acme/xet@v2={r2}", "--log", str(log)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        monkeypatch.setenv("HF_ENDPOINT", process.stdout.readline().split()[-1])
        monkeypatch.setattr(mdl, "_default", None)
        config = "models:\n  require:\n    - id: acme/xet\n      revision: {}\n      verify: false\n"
        (project / "config.yaml").write_text(config.format("main"))
        path, info = mdl.ensure_model_available("acme/xet")
        weights = Path(path) / "model.safetensors"
        assert weights.read_bytes() == (r1 / "model.safetensors").read_bytes()
        lines = log.read_text().splitlines()
        assert any("/v2/reconstructions/" in l for l in lines), lines
        assert not any(l.startswith("GET") and "/cdn/" in l for l in lines), lines
        assert "xet_hash" in (project / "models.lock").read_text()

        log.write_text("")
        (project / "config.yaml").write_text(config.format("v2"))
        # A new run, as after editing config.yaml: a downloader reads the
        # project's config when it is made.
        monkeypatch.setattr(mdl, "_default", None)
        path, info = mdl.ensure_model_available("acme/xet")
        assert (Path(path) / "model.safetensors").read_bytes() == (r2 / "model.safetensors").read_bytes()
        fetched = _xorb_bytes(log)
        size = (r2 / "model.safetensors").stat().st_size
        # 3 places of 100 bytes changed: a few 64 KiB chunks, not the file.
        assert 0 < fetched < size // 4, (fetched, size)
    finally:
        process.kill()
        process.wait()
