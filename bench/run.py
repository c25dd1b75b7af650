#!/usr/bin/env python3
"""mdl's benchmarks: each target is a ratio against a peer measured in the same
run, on the same machine, served by the project's hub emulator on 127.0.0.1
(optionally with per-request latency and a per-connection bandwidth cap).

Run with `scripts/bench` (builds release binaries first). Writes BENCHMARKS.md.
Stdlib only, so it runs with the system Python.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
MDL = BIN / "mdl"
HUB = BIN / "mdl-hub"
HF = ROOT / ".venv" / "bin" / "hf"
PYTHON = ROOT / ".venv" / "bin" / "python"
GiB = 1 << 30
MiB = 1 << 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Hub:
    def __init__(self, work, *args):
        self.log = work / f"hub-{time.time_ns()}.log"
        self.proc = subprocess.Popen([str(HUB), "--log", str(self.log), *args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"mdl-hub did not start: {line!r}")
        self.url = line.split()[-1]

    def requests(self):
        if not self.log.exists():
            return []
        return [l.split(" ", 3) for l in self.log.read_text().splitlines()]

    def reset_log(self):
        self.log.write_text("")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def timed(cmd, cwd=None, env=None):
    """Wall seconds and peak RSS (MiB) of a command; fails loudly if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, rusage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{stderr}")
    return elapsed, rusage.ru_maxrss / 1024


def mdl_env(hub):
    # No shared store: every timed sync downloads, as its peers do.
    env = dict(os.environ, HF_ENDPOINT=hub.url, CI="1", MDL_NO_CACHE="1")
    env.pop("HF_TOKEN", None)
    return env


def project(work, name, yaml):
    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml)
    return d


def drop(path):
    shutil.rmtree(path, ignore_errors=True) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)


def lock_then_time_sync(work, hub, name, repo, extra=""):
    """`mdl lock` once, delete the files, then time `mdl sync` from the lock (the CI case)."""
    d = project(work, name, f"models:\n  require: [{repo}]\n{extra}")
    env = mdl_env(hub)
    timed([MDL, "lock", "-q"], cwd=d, env=env)
    return d, env


def resync(d, env, model_dir):
    shutil.rmtree(d / "models" / model_dir, ignore_errors=True)
    return timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env)


def bench_loopback(work, size, runs):
    log(f"[1] {size // GiB} GiB, loopback, no shaping")
    hub = Hub(work, "--synthetic", f"bench/big/model.bin={size}")
    try:
        d, env = lock_then_time_sync(work, hub, "b1", "bench/big")
        mdl_times, curl_times, rss = [], [], []
        for _ in range(runs):
            t, r = resync(d, env, "huggingface_bench--big")
            mdl_times.append(t)
            rss.append(r)
            out = work / "curl.bin"
            t, _ = timed(["curl", "-s", "-f", "-o", str(out), f"{hub.url}/files/bench/big/model.bin"])
            curl_times.append(t)
            drop(out)
        drop(d)
        m, c = statistics.median(mdl_times), statistics.median(curl_times)
        return dict(mdl=m, curl=c, ratio=m / c, rss=max(rss), mdl_all=mdl_times, curl_all=curl_times)
    finally:
        hub.stop()


def bench_shaped(work, size):
    log(f"[2] {size // GiB} GiB, 20 ms latency, 50 MB/s per connection")
    hub = Hub(work, "--synthetic", f"bench/big/model.bin={size}", "--latency-ms", "20", "--bandwidth", str(50_000_000))
    try:
        url = f"{hub.url}/files/bench/big/model.bin"
        d, env = lock_then_time_sync(work, hub, "b2", "bench/big")
        mdl, _ = resync(d, env, "huggingface_bench--big")
        drop(d)
        out = work / "aria"
        drop(out)
        aria, _ = timed(["aria2c", "-q", "-x8", "-s8", "-k1M", "--file-allocation=none", "--allow-overwrite=true", "-d", str(out), "-o", "model.bin", url])
        drop(out)
        curl_out = work / "curl.bin"
        curl, _ = timed(["curl", "-s", "-f", "-o", str(curl_out), url])
        drop(curl_out)
        return dict(mdl=mdl, curl=curl, aria=aria, vs_curl=curl / mdl, vs_aria=aria / mdl)
    finally:
        hub.stop()


def bench_mixed(work, small, large_size):
    log(f"[3] a repo of {small} small files and 3 × {large_size // MiB} MiB")
    args = ["--small-files", f"bench/mixed={small}"]
    for i in range(3):
        args += ["--synthetic", f"bench/mixed/large_{i}.bin={large_size}"]
    hub = Hub(work, *args)
    try:
        d = project(work, "b3", "models:\n  require: [bench/mixed]\n")
        env = mdl_env(hub)
        mdl, _ = timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env)
        drop(d)
        out = work / "hf-mixed"
        drop(out)
        hf_env = dict(env, HF_HOME=str(work / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
        drop(work / "hf-home")
        hf, _ = timed([HF, "download", "bench/mixed", "--local-dir", str(out)], env=hf_env)
        drop(out)
        drop(work / "hf-home")
        return dict(mdl=mdl, hf=hf, speedup=hf / mdl)
    finally:
        hub.stop()


def bench_noop(work, models, files_each, runs):
    log(f"[4] no-op sync, {models} models × {files_each} files")
    args = []
    for i in range(models):
        args += ["--small-files", f"bench/m{i:02}={files_each}"]
    hub = Hub(work, *args)
    try:
        repos = ", ".join(f"bench/m{i:02}" for i in range(models))
        d = project(work, "b4", f"models:\n  require: [{repos}]\n")
        env = mdl_env(hub)
        timed([MDL, "sync", "-q"], cwd=d, env=env)
        hub.reset_log()
        times = [timed([MDL, "sync", "-q"], cwd=d, env=env)[0] for _ in range(runs)]
        requests = len(hub.requests())
        syscalls = noop_syscalls(d, env, models * files_each)
        # The peer: huggingface_hub's snapshot_download of the same repos, re-run
        # with everything already downloaded (one Python process for all repos).
        script = (
            "import sys\nfrom huggingface_hub import snapshot_download\n"
            + f"for i in range({models}):\n"
            + f"    snapshot_download(f'bench/m{{i:02}}', local_dir=sys.argv[1] + f'/m{{i:02}}')\n"
        )
        out = work / "hf-noop"
        drop(out)
        hf_env = dict(env, HF_HOME=str(work / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
        timed([PYTHON, "-c", script, str(out)], env=hf_env)
        hf_times = [timed([PYTHON, "-c", script, str(out)], env=hf_env)[0] for _ in range(3)]
        drop(out)
        drop(work / "hf-home")
        drop(d)
        m = statistics.median(times)
        return dict(median_ms=m * 1000, p90_ms=sorted(times)[int(0.9 * (len(times) - 1))] * 1000, requests=requests,
                    hf_ms=statistics.median(hf_times) * 1000, hf_p90_ms=sorted(hf_times)[int(0.9 * (len(hf_times) - 1))] * 1000,
                    ratio=statistics.median(hf_times) / m, syscalls=syscalls)
    finally:
        hub.stop()


def noop_syscalls(d, env, files):
    """What one no-op `mdl sync -q` asks of the kernel, under `strace -f -c`
    (the calls, whole), and which files under `models/` it opens (`strace -e
    openat`): a no-op reads mdl's own state, never a weight file."""
    summary, opens = d / "strace-c.txt", d / "strace-open.txt"
    subprocess.run(["strace", "-f", "-qq", "-c", "-o", str(summary), MDL, "sync", "-q"], cwd=d, env=env, check=True)
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(opens), MDL, "sync", "-q"],
                   cwd=d, env=env, check=True)
    counts = {}
    for line in summary.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("openat", "read", "statx", "newfstatat", "lstat", "stat"):
            counts[parts[-1]] = int(parts[3])
    models_opened = [l for l in opens.read_text().splitlines()
                     if "models/" in l and "models/.mdl/" not in l and "ENOENT" not in l]
    weights = [l for l in models_opened if ".bin" in l or ".safetensors" in l]
    return dict(counts=counts, files=files, opened_under_models=len(models_opened), weight_files_opened=len(weights),
                per_file={k: v / files for k, v in counts.items()})


def bench_rss(work, size):
    log(f"[5] peak RSS syncing {size // GiB} GiB")
    hub = Hub(work, "--synthetic", f"bench/huge/model.bin={size}")
    try:
        d, env = lock_then_time_sync(work, hub, "b5", "bench/huge")
        t, rss = resync(d, env, "huggingface_bench--huge")
        curl_out = work / "curl.bin"
        _, curl_rss = timed(["curl", "-s", "-f", "-o", str(curl_out), f"{hub.url}/files/bench/huge/model.bin"])
        drop(curl_out)
        drop(d)
        return dict(rss=rss, seconds=t, curl_rss=curl_rss)
    finally:
        hub.stop()


def bench_resume(work, size):
    log(f"[6] kill -9 at ~50 % of {size // GiB} GiB, then re-run")
    hub = Hub(work, "--synthetic", f"bench/big/model.bin={size}", "--bandwidth", str(50_000_000))
    try:
        d, env = lock_then_time_sync(work, hub, "b6", "bench/big")
        shutil.rmtree(d / "models" / "huggingface_bench--big")
        proc = subprocess.Popen([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tmp = d / "models" / ".mdl" / "tmp"
        done_fraction = 0.0
        while done_fraction < 0.5:
            if proc.poll() is not None:
                raise SystemExit("mdl finished before it could be killed")
            for f in tmp.glob("*.part.json") if tmp.exists() else []:
                try:
                    pieces = json.loads(f.read_text())["pieces"]
                    done_fraction = sum(p is not None for p in pieces["done"]) / len(pieces["done"])
                except (ValueError, KeyError, TypeError):
                    pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        hub.reset_log()
        timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env)
        fetched = 0
        for method, status, rng, path in hub.requests():
            if method == "GET" and rng.startswith("bytes="):
                a, b = rng[len("bytes="):].split("-")
                fetched += int(b) - int(a) + 1
        drop(d)
        return dict(killed_at=done_fraction, refetched=fetched / size)
    finally:
        hub.stop()


PY_PEER = """
import resource, sys, time, torch
kind, paths = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
for p in paths:
    if kind == "safetensors":
        from safetensors.torch import load_file
        tensors = load_file(p)
    else:
        tensors = torch.load(p, mmap=True, weights_only=True)
    total = sum(float(t.sum()) for t in tensors.values())
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def python_peer(kind, paths):
    """Python's mmap load plus the same reduction, where the project's Python
    can import torch (the lean install cannot: it lacks cuDNN); else why not."""
    probe = subprocess.run([str(PYTHON), "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return dict(unavailable=f"`import torch` fails in the project's Python ({last})")
    out = subprocess.run([str(PYTHON), "-c", PY_PEER, kind, *map(str, paths)], capture_output=True, text=True)
    if out.returncode != 0:
        return dict(unavailable=(out.stderr.strip().splitlines() or ["?"])[-1])
    seconds, rss = map(float, out.stdout.split())
    return dict(seconds=seconds, rss=rss)


def bench_verify(work, size):
    """Speed and peak RSS of `mdl verify` (its `mdl-torch` helper included),
    page cache warm: a safetensors and a `torch.save` file of `size` bytes whose
    largest tensor is half of it, and an 8-shard safetensors model of the same
    size in all; each against Python's mmap load plus the same reduction."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("weights", ROOT / "bench" / "weights.py")
    weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weights)
    floats = size // 4
    cases = {
        "safetensors": [("model.safetensors", [floats // 2] + [floats // 8] * 4)],
        "torch": [("model.pt", [floats // 2] + [floats // 8] * 4)],
        "sharded": [(f"model-{i:05}-of-00008.safetensors", [floats // 16] * 2) for i in range(1, 9)],
    }
    out = {}
    for case, files in cases.items():
        d = project(work, f"verify-{case}", f"models:\n  require:\n    - id: local:./m\n      name: m\n  device: cpu\n")
        (d / "m").mkdir()
        for name, layout in files:
            write = weights.torch_save if case == "torch" else weights.safetensors
            write(str(d / "m" / name), [(f"w{i}", n) for i, n in enumerate(layout)])
        env = dict(os.environ, CI="1", MDL_NO_CACHE="1")
        timed([MDL, "lock", "-q"], cwd=d, env=env)
        for name, _ in files:
            subprocess.run(["cat", str(d / "m" / name)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        t, rss = min((timed([MDL, "verify", "-q"], cwd=d, env=env) for _ in range(3)), key=lambda x: x[0])
        largest = max(max(layout) for _, layout in files) * 4 / MiB
        peer = python_peer("torch" if case == "torch" else "safetensors", [d / "m" / name for name, _ in files])
        out[case] = dict(seconds=t, rss=rss, gbps=size / t / 1e9, largest_mib=largest, files=len(files), python=peer)
        drop(d)
    return out


class Registry:
    """Debian's docker-registry (CNCF distribution) on 127.0.0.1, no auth, filesystem storage."""

    def __init__(self, work):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.dir = work / f"registry-{port}"
        self.dir.mkdir(parents=True)
        (self.dir / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.host = f"127.0.0.1:{port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("docker-registry did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def concurrent_syncs(dirs, env):
    """Starts `mdl sync --json` in every dir at once; wall seconds and the JSON documents."""
    start = time.perf_counter()
    procs = [subprocess.Popen([MDL, "sync", "-q", "--no-verify", "--json"], cwd=d, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for d in dirs]
    docs = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"mdl sync failed:\n{err.decode(errors='replace')}")
        docs.append(json.loads(out))
    return time.perf_counter() - start, docs


def bench_fleet(work, size, nodes):
    log(f"[8] fleet: {nodes} concurrent syncs of a {size / GiB:g} GiB lock, from an OCI registry vs from the hub")
    hub = Hub(work, "--synthetic", f"bench/fleet/model.bin={size}")
    registry = Registry(work)
    try:
        seed = project(work, "fleet-seed", "models:\n  require: [bench/fleet]\n")
        env = mdl_env(hub)
        timed([MDL, "lock", "-q"], cwd=seed, env=env)
        repo = f"oci://{registry.host}/fleet"
        push_time, _ = timed([MDL, "push", "-q", repo], cwd=seed, env=env)
        result = dict(push_seconds=push_time)
        for name, extra in (("hub", {}), ("registry", {"MDL_MIRROR": repo})):
            dirs = []
            for i in range(nodes):
                d = project(work, f"fleet-{name}-{i}", (seed / "config.yaml").read_text())
                shutil.copy(seed / "models.lock", d / "models.lock")
                dirs.append(d)
            hub.reset_log()
            seconds, docs = concurrent_syncs(dirs, dict(env, **extra))
            fetched = sum(doc["fetched"]["bytes"] for doc in docs)
            mirrored = sum(doc["mirrored"]["bytes"] for doc in docs)
            result[name] = dict(seconds=seconds, bytes=fetched, from_mirror=mirrored,
                                hub_requests=len(hub.requests()))
            for d in dirs:
                drop(d)
        drop(seed)
        result["ratio"] = result["registry"]["seconds"] / result["hub"]["seconds"]
        return result
    finally:
        registry.stop()
        hub.stop()


def bench_fleet_uplink(work, size, nodes, uplink, latency_ms):
    """Benchmark 9: a fleet behind one uplink. The upstream (the hub emulator)
    has `latency_ms` per answer and `uplink` bytes/s shared by all its
    connections (one site's link to the Hub); the registry is on loopback,
    next to the runners. `nodes` runners sync one lock at once, three ways:
    all from upstream (no mirror); cold, with a writable mirror (`push: true`:
    one runner leads and pushes, the others wait for it); warm, the mirror
    pushed first."""
    log(f"[9] fleet behind a {uplink / 1e6:g} MB/s uplink ({latency_ms} ms): {nodes} runners, "
        f"{size / GiB:g} GiB lock, all-from-upstream vs cold write-back vs warm mirror")
    hub = Hub(work, "--synthetic", f"bench/fleet/model.bin={size}",
              "--latency-ms", str(latency_ms), "--uplink", str(uplink))
    registry = Registry(work)
    try:
        seed = project(work, "uplink-seed", "models:\n  require: [bench/fleet]\n")
        env = mdl_env(hub)
        timed([MDL, "lock", "-q"], cwd=seed, env=env)
        plain = (seed / "config.yaml").read_text()
        warm_repo = f"oci://{registry.host}/warm"
        push_seconds, _ = timed([MDL, "push", "-q", warm_repo], cwd=seed, env=env)
        cases = (
            ("upstream", plain),
            ("cold", plain + f"  download:\n    mirrors:\n      - {{ url: \"oci://{registry.host}/cold\", push: true }}\n"),
            ("warm", plain + f"  download:\n    mirrors:\n      - {{ url: \"{warm_repo}\", push: true }}\n"),
        )
        result = dict(size=size, nodes=nodes, uplink=uplink, latency_ms=latency_ms, push_seconds=push_seconds)
        # The runners share this machine's one disk (real nodes have one
        # each): the disk's own time for their bytes, written durably by as
        # many writers, is what a warm run is compared with.
        os.sync()
        start = time.perf_counter()
        dds = [subprocess.Popen(["dd", "if=/dev/zero", f"of={work / f'dd-{i}'}", "bs=4M",
                                 f"count={size // (4 * MiB)}", "conv=fsync"], stderr=subprocess.DEVNULL)
               for i in range(nodes)]
        for p in dds:
            p.wait()
        result["disk_seconds"] = time.perf_counter() - start
        for i in range(nodes):
            drop(work / f"dd-{i}")
        for name, yaml in cases:
            # Each case starts with no dirty pages left by the one before.
            os.sync()
            dirs = []
            for i in range(nodes):
                d = project(work, f"uplink-{name}-{i}", yaml)
                shutil.copy(seed / "models.lock", d / "models.lock")
                dirs.append(d)
            hub.reset_log()
            seconds, docs = concurrent_syncs(dirs, env)
            fetched = sum(doc["fetched"]["bytes"] for doc in docs)
            mirrored = sum(doc["mirrored"]["bytes"] for doc in docs)
            pushed = sum(w["uploaded"]["bytes"] for doc in docs for w in doc.get("written_back", []))
            result[name] = dict(seconds=seconds, upstream_bytes=fetched - mirrored, from_mirror=mirrored,
                                pushed_bytes=pushed, hub_requests=len(hub.requests()))
            log(f"    {name}: {seconds:.1f} s, {(fetched - mirrored) / GiB:.2f} GiB from upstream")
            for d in dirs:
                drop(d)
        drop(seed)
        result["warm_speedup"] = result["upstream"]["seconds"] / result["warm"]["seconds"]
        result["cold_speedup"] = result["upstream"]["seconds"] / result["cold"]["seconds"]
        result["cold_upstream_models"] = result["cold"]["upstream_bytes"] / size
        return result
    finally:
        registry.stop()
        hub.stop()


def fleet_uplink_row(r9):
    return ("9", f"fleet behind one uplink: {r9['nodes']} concurrent `mdl sync` of a {r9['size'] / GiB:g} GiB lock; upstream (hub emulator) with "
                 f"{r9['latency_ms']} ms latency and a {r9['uplink'] / 1e6:g} MB/s cap shared by all connections (`--uplink`), registry on loopback",
            f"all from upstream {r9['upstream']['seconds']:.1f} s ({r9['upstream']['upstream_bytes'] / GiB:.1f} GiB over the uplink); "
            f"cold with write-back (`push: true`) {r9['cold']['seconds']:.1f} s → **{r9['cold_speedup']:.1f}×** faster, "
            f"**{r9['cold_upstream_models']:.2f}×** the lock's size over the uplink; "
            f"warm (pushed first, {r9['push_seconds']:.1f} s) {r9['warm']['seconds']:.1f} s → **{r9['warm_speedup']:.1f}×** faster, "
            f"{r9['warm']['upstream_bytes'] / GiB:.1f} GiB over the uplink, {r9['warm']['hub_requests']} hub requests; "
            f"the runners share one disk here: {r9['nodes']} concurrent `dd conv=fsync` of {r9['size'] / GiB:g} GiB each take {r9['disk_seconds']:.1f} s, "
            f"so warm runs at {r9['disk_seconds'] / r9['warm']['seconds']:.2f}× the disk's own speed",
            "warm ≥ 4× faster; cold ≤ 2× the lock's size over the uplink",
            verdict(r9["warm_speedup"] >= 4 and r9["cold_upstream_models"] <= 2))


def xet_bytes(hub):
    """Bytes of xorb ranges the emulator served (the Xet traffic)."""
    total = 0
    for method, status, rng, path in hub.requests():
        if method == "GET" and path.startswith("/xorbs/") and rng.startswith("bytes="):
            for part in rng[len("bytes="):].split(","):
                a, b = part.split("-")
                total += int(b) - int(a) + 1
    return total


def write_xet_revisions(work, size):
    """Revision one: `size` random bytes; revision two: 100 bytes rewritten
    every 2 MiB (about 5 % of the ~64 KiB chunks), the rest kept."""
    one, two = work / "xet-r1", work / "xet-r2"
    for d in (one, two):
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text("{}")
    rng = __import__("random").Random(10)
    with open(one / "model.safetensors", "wb") as a, open(two / "model.safetensors", "wb") as b:
        for _ in range(size // (2 * MiB)):
            block = bytearray(os.urandom(2 * MiB))
            a.write(block)
            at = rng.randrange(0, 2 * MiB - 100)
            block[at:at + 100] = os.urandom(100)
            b.write(block)
    return one, two


def hf_download(hub, home, revision, background=False):
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1")
    for k in ("HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE"):
        env.pop(k, None)
    cmd = [str(HF), "download", "bench/xet", "model.safetensors", "--revision", revision]
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return timed(cmd, env=env)[0]


def kill_at_half(proc, progress, size):
    """SIGKILLs `proc` once `progress()` (bytes it holds) reaches half of `size`."""
    while True:
        if proc.poll() is not None:
            raise SystemExit("the download finished before it could be killed")
        have = progress()
        if have >= size // 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return have / size


def largest(files):
    return max((f.stat().st_size for f in files if f.exists()), default=0)


def xet_log_bytes(tmp):
    """Bytes mdl's Xet term log says are written (`src/fetch/xet/`: per
    term 8 bytes, then 40 per chunk: its hash and its length)."""
    done = 0
    for log in tmp.glob("*.part.xet") if tmp.exists() else []:
        data, at = log.read_bytes(), 0
        while at + 8 <= len(data):
            n = int.from_bytes(data[at + 4:at + 8], "little")
            body = data[at + 8:at + 8 + 40 * n]
            if len(body) < 40 * n:
                break
            done += sum(int.from_bytes(body[i + 32:i + 40], "little") for i in range(0, len(body), 40))
            at += 8 + 40 * n
    return done


def bench_xet(work, size):
    """Benchmark 10: Xet against `huggingface_hub` + `hf_xet` on the same
    emulator (`mdl-hub --xet`, xorbs made by xet-core's own code)."""
    log(f"[10] Xet: {size // MiB} MiB, two revisions ~5 % apart")
    one, two = write_xet_revisions(work, size)
    hub = Hub(work, "--xet", "--files", f"bench/xet@main={one}", "--files", f"bench/xet@v2={two}")
    out = dict(size=size)
    try:
        # Full download: mdl over Xet, mdl over the resolve bridge, hf_xet.
        d = project(work, "b10", "models:\n  require:\n    - id: bench/xet\n      verify: false\n")
        env = mdl_env(hub)
        timed([MDL, "lock", "-q"], cwd=d, env=env)
        drop(d / "models")
        hub.reset_log()
        xet_runs, bridge_runs = [], []
        for _ in range(3):  # alternated, median of 3 each: the disk's pace drifts
            subprocess.run(["sync"])
            xet_runs.append(timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env)[0])
            if not bridge_runs:
                out["mdl_xet_bytes"] = xet_bytes(hub)
            drop(d / "models")
            subprocess.run(["sync"])
            bridge_runs.append(timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=dict(env, HF_HUB_DISABLE_XET="1"))[0])
            drop(d / "models")
        out["mdl_xet_runs"], out["mdl_bridge_runs"] = xet_runs, bridge_runs
        out["mdl_xet_seconds"] = statistics.median(xet_runs)
        out["mdl_bridge_seconds"] = statistics.median(bridge_runs)
        # The same on links that limit the wire, not the CPU: each response
        # capped at 50 MB/s as a CDN caps a connection (benchmark 2's
        # setting), and one 2 Gbit/s link shared by every response; 20 ms of
        # latency on each request.
        for key, shape in (("capped", ["--bandwidth", str(50_000_000)]), ("link", ["--uplink", str(250_000_000)])):
            shaped = Hub(work, "--xet", "--files", f"bench/xet@main={one}", "--latency-ms", "20", *shape)
            try:
                senv = mdl_env(shaped)
                runs = {"xet": [], "bridge": []}
                for _ in range(2):
                    for way, extra in (("xet", {}), ("bridge", {"HF_HUB_DISABLE_XET": "1"})):
                        drop(d / "models")
                        subprocess.run(["sync"])
                        runs[way].append(timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=dict(senv, **extra))[0])
                drop(d / "models")
                out[f"{key}_xet_seconds"] = min(runs["xet"])
                out[f"{key}_bridge_seconds"] = min(runs["bridge"])
            finally:
                shaped.stop()
        timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env)  # leaves revision one and its chunk index
        hf_home = work / "b10-hf"
        drop(hf_home)
        out["hf_xet_seconds"] = hf_download(hub, hf_home, "main")
        subprocess.run(["sync"])

        # Upgrade to revision two: bytes over the wire.
        hub.reset_log()
        (d / "config.yaml").write_text("models:\n  require:\n    - id: bench/xet\n      revision: v2\n      verify: false\n")
        start = time.perf_counter()
        timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env)
        out["mdl_upgrade_seconds"] = time.perf_counter() - start
        out["mdl_upgrade_bytes"] = xet_bytes(hub)
        hub.reset_log()
        out["hf_upgrade_seconds"] = hf_download(hub, hf_home, "v2")
        out["hf_upgrade_bytes"] = xet_bytes(hub)

        # Killed at half, then run again: bytes fetched again.
        # 4 ranges at once, not the default 16: the term log then grows
        # range by range, so a kill at half has half to keep (with 16, the
        # first 16 ranges finish together and a kill before that keeps none).
        (d / "config.yaml").write_text("models:\n  require:\n    - id: bench/xet\n      verify: false\n"
                                       "  download:\n    connections_per_file: 4\n")
        drop(d / "models")
        hub_slow = Hub(work, "--xet", "--files", f"bench/xet@main={one}", "--bandwidth", str(60_000_000))
        try:
            env = mdl_env(hub_slow)
            proc = subprocess.Popen([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            tmp = d / "models" / ".mdl" / "tmp"
            # The partial file is sized up front and filled out of order: its
            # term log says what is there.
            out["mdl_killed_at"] = kill_at_half(proc, lambda: xet_log_bytes(tmp), size)
            hub_slow.reset_log()
            timed([MDL, "sync", "-q", "--no-verify"], cwd=d, env=env)
            out["mdl_refetched"] = xet_bytes(hub_slow) / size
            drop(hf_home)
            proc = hf_download(hub_slow, hf_home, "main", background=True)
            blobs = hf_home / "hub" / "models--bench--xet" / "blobs"
            out["hf_killed_at"] = kill_at_half(proc, lambda: largest(blobs.glob("*.incomplete")) if blobs.exists() else 0, size)
            hub_slow.reset_log()
            hf_download(hub_slow, hf_home, "main")
            out["hf_refetched"] = xet_bytes(hub_slow) / size
        finally:
            hub_slow.stop()
        drop(d)
        drop(hf_home)
    finally:
        hub.stop()
        drop(one)
        drop(two)
    out["upgrade_fraction"] = out["mdl_upgrade_bytes"] / size
    out["vs_hf_xet"] = out["hf_xet_seconds"] / out["mdl_xet_seconds"]
    out["vs_bridge"] = out["mdl_bridge_seconds"] / out["mdl_xet_seconds"]
    for key in ("capped", "link"):
        out[f"{key}_vs_bridge"] = out[f"{key}_bridge_seconds"] / out[f"{key}_xet_seconds"]
    return out


def xet_row(r):
    mib = r["size"] / MiB
    return ("10", f"Xet (`mdl-hub --xet`, xorbs by xet-core): a {mib:g} MiB file and a second revision with ~5 % of its chunks changed; "
                  f"peer `huggingface_hub` + `hf_xet` on the same emulator",
            f"upgrade: mdl fetched **{r['upgrade_fraction'] * 100:.1f} %** of the file ({r['mdl_upgrade_bytes'] / MiB:.1f} MiB), "
            f"hf_xet {r['hf_upgrade_bytes'] / MiB:.1f} MiB ({r['hf_upgrade_bytes'] / r['size'] * 100:.0f} %); "
            f"full download (median of 3): mdl over Xet {r['mdl_xet_seconds']:.2f} s, over the resolve bridge {r['mdl_bridge_seconds']:.2f} s "
            f"(→ **{r['vs_bridge']:.2f}×** the bridge's speed), hf_xet {r['hf_xet_seconds']:.2f} s (→ {r['vs_hf_xet']:.2f}×; mdl fsyncs, hf does not); "
            f"each response capped at 50 MB/s, 20 ms latency: Xet {r['capped_xet_seconds']:.2f} s, bridge {r['capped_bridge_seconds']:.2f} s (→ **{r['capped_vs_bridge']:.2f}×**); "
            f"a shared 2 Gbit/s link, 20 ms: Xet {r['link_xet_seconds']:.2f} s, bridge {r['link_bridge_seconds']:.2f} s (→ **{r['link_vs_bridge']:.2f}×**); "
            f"killed at {r['mdl_killed_at'] * 100:.0f} % and run again: mdl fetched **{r['mdl_refetched'] * 100:.0f} %** again, "
            f"hf_xet (killed at {r['hf_killed_at'] * 100:.0f} %) {r['hf_refetched'] * 100:.0f} %",
            "upgrade ≤ 10 % of the bytes; full download ≥ the HTTP path's speed",
            f"upgrade {verdict(r['upgrade_fraction'] <= 0.10)}; speed on loopback {verdict(r['vs_bridge'] >= 1.0)}, "
            f"per-connection cap {verdict(r['capped_vs_bridge'] >= 1.0)}, shared link {verdict(r['link_vs_bridge'] >= 1.0)}")


XET_NOTE = (
    "Benchmark 10: the emulator cuts files into content-defined chunks and packs them into xorbs with xet-core's own code, "
    "deduplicating chunks across revisions as the Hub's storage does; the upgrade counts xorb bytes served for revision two "
    "after revision one is on disk. mdl copies the chunks it already has from the old file (`src/fetch/xet/`, the chunk index "
    "in `models/.mdl/xet/`); hf_xet's chunk cache is off in the Python wheel, so it fetches the file's ranges again. "
    "On loopback the CPU and the disk are the limits (client and emulator share 2 cores; Xet hashes every byte twice, "
    "each chunk's hash for the Merkle root and the file's blake3 for the lock, where the bridge hashes once), and the "
    "bridge's times vary most from run to run (1.2 to 2.3 s at 1 GiB on this machine); the shaped runs (best of 2) limit "
    "the wire instead, as the Hub's CDN does. Both paths send each finished stretch of the file to disk as they go "
    "(`sync_file_range`), so the last fsync has little left to write. "
    "The kill is a SIGKILL once half the bytes are written (mdl: its term log, with 4 ranges at once; hf_xet: its "
    "`.incomplete` file), each response capped at 60 MB/s."
)


def noop_rows(r4):
    """Benchmark 4 (the no-op's time against huggingface_hub's re-run) and
    4s (what it asks of the kernel per file)."""
    s = r4["syscalls"]
    c = s["counts"]
    return [
        ("4", "no-op `mdl sync -q`, 50 models / 1000 files (median of 21)",
         f"median **{r4['median_ms']:.1f} ms** (p90 {r4['p90_ms']:.1f} ms), {r4['requests']} requests; huggingface_hub's "
         f"`snapshot_download` re-run {r4['hf_ms']:.0f} ms (p90 {r4['hf_p90_ms']:.0f} ms) → {r4['ratio']:.0f}× faster",
         "≤ 10 ms", verdict(r4["median_ms"] <= 10)),
        ("4s", f"the same no-op under `strace -f -c`: system calls per file ({s['files']} files)",
         f"openat {c.get('openat', 0)} ({c.get('openat', 0) / s['files']:.2f}/file), read {c.get('read', 0)}, "
         f"statx {c.get('statx', 0)}; files opened under `models/`: **{s['opened_under_models']}**, weight files: **{s['weight_files_opened']}**",
         "no weight file opened; opens O(models)", verdict(s["weight_files_opened"] == 0 and s["opened_under_models"] <= 6 * 50 + 3)),
    ]


NOOP_NOTE = ("Benchmark 4: a no-op reads mdl's own state (the lock's JSON copy, `state.json`) and `stat`s each file; "
             "formats, hash-only reasons and verifications come from the state, so no weight file is opened "
             "(4s, asserted by `sync::a_noop_sync_opens_no_weight_file_and_quiet_is_quiet`)")


def replace_row(path, row, note, raw_key, raw, after=None):
    """One benchmark alone: its row, note and raw line replace the old ones
    (a new row goes after row `after`, else at the table's end)."""
    line = f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} |"
    lines = path.read_text().splitlines()
    rows = [i for i, l in enumerate(lines) if l.startswith("| ")]
    old = [i for i in rows if lines[i].startswith(f"| {row[0]} |")]
    anchor = [i for i in rows if after is not None and lines[i].startswith(f"| {after} |")]
    if old:
        lines[old[0]] = line
    else:
        lines.insert((anchor or rows)[-1] + 1, line)
    tag = note.split(":", 1)[0] + ":"
    lines = [l for l in lines if not l.startswith(tag) and not l.startswith(f"{raw_key}:")]
    raw_at = next(i for i, l in enumerate(lines) if l.startswith("Raw:"))
    lines[raw_at:raw_at] = [note + f" (run alone on {time.strftime('%Y-%m-%d')})", ""]
    lines.append("")
    lines.append(f"{raw_key}: " + json.dumps(raw, default=lambda x: round(x, 4)))
    lines = [l for i, l in enumerate(lines) if l or (i > 0 and lines[i - 1])]
    path.write_text("\n".join(lines).strip("\n") + "\n")
    print(line)


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    mem = next((l.split(":", 1)[1].strip() for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), "?")
    return dict(cpu=cpu, cores=os.cpu_count(), memory=mem, kernel=platform.release(),
                curl=version(["curl", "--version"]), aria2c=version(["aria2c", "--version"]),
                hf=version([str(PYTHON), "-c", "import huggingface_hub; print('huggingface_hub', huggingface_hub.__version__)"]),
                mdl=version([str(MDL), "--version"]))


def verdict(ok):
    return "met" if ok else "**not met**"


FLEET_UPLINK_NOTE = (
    "Benchmark 9: runners share the upstream's one capped uplink, as a site's CI runners share its link to the Hub; "
    "the registry sits next to them. Cold: no runner has the model and the mirror is empty; one runner claims the "
    "mirror's lease (`src/oci/lease.rs`), fetches from upstream, verifies and pushes, the others wait for its push "
    "and fetch from the mirror. Each runner writes and fsyncs its own copy, as separate nodes would."
)


def replace_fleet_uplink(path, r9):
    """Benchmark 9 alone: its row, note and raw line replace the old ones."""
    row = fleet_uplink_row(r9)
    line = f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} |"
    lines = path.read_text().splitlines()
    rows = [i for i, l in enumerate(lines) if l.startswith("| ")]
    old = [i for i in rows if lines[i].startswith("| 9 |")]
    if old:
        lines[old[0]] = line
    else:
        lines.insert(rows[-1] + 1, line)
    lines = [l for l in lines if not l.startswith("Benchmark 9:") and not l.startswith("Raw 9:")]
    raw = next(i for i, l in enumerate(lines) if l.startswith("Raw:"))
    lines[raw:raw] = [FLEET_UPLINK_NOTE + f" (run alone on {time.strftime('%Y-%m-%d')}: `scripts/bench --only-fleet-uplink`)", ""]
    lines.append("")
    lines.append("Raw 9: " + json.dumps(r9, default=lambda x: round(x, 4)))
    # One blank line between paragraphs, however often this ran.
    lines = [l for i, l in enumerate(lines) if l or (i > 0 and lines[i - 1])]
    path.write_text("\n".join(lines).strip("\n") + "\n")
    print(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--only-xet", action="store_true",
                    help="run benchmark 10 (Xet) alone and replace its row and raw figures in BENCHMARKS.md")
    ap.add_argument("--only-noop", action="store_true",
                    help="run benchmark 4 (the no-op, with its system calls) alone and replace its rows in BENCHMARKS.md")
    ap.add_argument("--only-fleet-uplink", action="store_true",
                    help="run benchmark 9 alone and replace its row and raw figures in BENCHMARKS.md")
    args = ap.parse_args()
    if args.only_xet:
        work = ROOT / "target" / "bench-work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        r10 = bench_xet(work, 128 * MiB if args.quick else GiB)
        shutil.rmtree(work, ignore_errors=True)
        replace_row(Path(args.out), xet_row(r10), XET_NOTE, "Raw 10", r10)
        return
    if args.only_noop:
        work = ROOT / "target" / "bench-work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        r4 = bench_noop(work, 50, 20, 21)
        shutil.rmtree(work, ignore_errors=True)
        rows = noop_rows(r4)
        replace_row(Path(args.out), rows[0], NOOP_NOTE, "Raw 4", r4)
        replace_row(Path(args.out), rows[1], NOOP_NOTE, "Raw 4s", r4["syscalls"], after="4")
        return
    if args.only_fleet_uplink:
        work = ROOT / "target" / "bench-work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        size = 128 * MiB if args.quick else GiB
        r9 = bench_fleet_uplink(work, size, 8, 100_000_000, 20)
        shutil.rmtree(work, ignore_errors=True)
        replace_fleet_uplink(Path(args.out), r9)
        return
    big, huge, large, small, runs, fleet = (2 * GiB, 4 * GiB, 200 * MiB, 500, 3, GiB)
    if args.quick:
        big, huge, large, small, runs, fleet = (256 * MiB, 512 * MiB, 32 * MiB, 100, 1, 128 * MiB)
    work = ROOT / "target" / "bench-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    m = machine()
    r1 = bench_loopback(work, big, runs)
    r2 = bench_shaped(work, big)
    r3 = bench_mixed(work, small, large)
    r4 = bench_noop(work, 50, 20, 21)
    r5 = bench_rss(work, huge)
    r6 = bench_resume(work, big)
    r7 = bench_verify(work, big)
    r8 = bench_fleet(work, fleet, 8)
    r9 = bench_fleet_uplink(work, fleet, 8, 100_000_000, 20)
    r10 = bench_xet(work, fleet)
    shutil.rmtree(work, ignore_errors=True)

    gib = big / GiB
    rows = [
        ("1", f"{gib:g} GiB, loopback: `mdl sync` (download + blake3 + fsync) vs `curl -o`",
         f"mdl {r1['mdl']:.2f} s, curl {r1['curl']:.2f} s → **{r1['ratio']:.2f}×** curl's time", "≤ 1.1×", verdict(r1["ratio"] <= 1.1)),
        ("2", f"{gib:g} GiB, 20 ms latency, 50 MB/s per connection: mdl vs curl and `aria2c -x8`",
         f"mdl {r2['mdl']:.1f} s, curl {r2['curl']:.1f} s, aria2c {r2['aria']:.1f} s → **{r2['vs_curl']:.1f}×** faster than curl, **{r2['vs_aria']:.2f}×** aria2c's speed",
         "≥ 4× curl, ≥ aria2c", verdict(r2["vs_curl"] >= 4 and r2["vs_aria"] >= 1)),
        ("3", f"repo of {small} small files + 3 × {large // MiB} MiB, from scratch: `mdl sync` vs `hf download`",
         f"mdl {r3['mdl']:.1f} s, hf {r3['hf']:.1f} s → **{r3['speedup']:.1f}×** faster", "≥ 2×", verdict(r3["speedup"] >= 2)),
        *noop_rows(r4),
        ("5", f"peak RSS syncing {huge / GiB:g} GiB", f"**{r5['rss']:.0f} MiB** ({r5['seconds']:.1f} s; curl: {r5['curl_rss']:.0f} MiB)",
         "≤ 64 MiB", verdict(r5["rss"] <= 64)),
        ("6", f"kill -9 at {r6['killed_at'] * 100:.0f} % of {gib:g} GiB, re-run: bytes fetched again",
         f"**{r6['refetched'] * 100:.1f} %** of the file", "≤ 55 %", verdict(r6["refetched"] <= 0.55)),
        *[
            (f"7{tag}", f"`mdl verify`, {gib:g} GiB {what}, page cache warm (wall time incl. starting libtorch; peak RSS incl. `mdl-torch`)",
             f"**{r7[kind]['gbps']:.2f} GB/s** ({r7[kind]['seconds']:.2f} s), peak RSS **{r7[kind]['rss']:.0f} MiB**; Python: "
             + (r7[kind]["python"].get("unavailable") or f"{r7[kind]['python']['seconds']:.2f} s, {r7[kind]['python']['rss']:.0f} MiB"),
             f"≥ 2 GB/s; RSS ≤ largest tensor + 256 MiB ({r7[kind]['largest_mib'] + 256:.0f} MiB)",
             verdict(r7[kind]["gbps"] >= 2 and r7[kind]["rss"] <= r7[kind]["largest_mib"] + 256))
            for tag, kind, what in (("a", "safetensors", "safetensors with one half-size tensor"),
                                    ("b", "torch", "`torch.save` zip with one half-size tensor"),
                                    ("c", "sharded", "safetensors model in 8 shards"))
        ],
        ("8", f"fleet: 8 concurrent `mdl sync` of one {fleet / GiB:g} GiB lock (8 fresh projects, no shared store), from an OCI registry mirror (`MDL_MIRROR`, Debian's docker-registry) vs from the hub emulator",
         f"registry {r8['registry']['seconds']:.1f} s, hub {r8['hub']['seconds']:.1f} s → **{r8['ratio']:.2f}×** the hub's time; "
         f"{r8['registry']['bytes'] / GiB:.1f} GiB moved, {r8['registry']['from_mirror'] / GiB:.1f} GiB from the registry, "
         f"**{r8['registry']['hub_requests']}** requests to the hub (hub run: {r8['hub']['hub_requests']}); `mdl push` of the lock {r8['push_seconds']:.1f} s",
         "≤ 1.25× the hub's time; 0 hub requests", verdict(r8["ratio"] <= 1.25 and r8["registry"]["hub_requests"] == 0)),
        fleet_uplink_row(r9),
        xet_row(r10),
    ]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench` (`bench/run.py`)" + (" with `--quick` (smaller sizes)" if args.quick else "") + f" on {time.strftime('%Y-%m-%d')}.",
        "Every peer is measured in the same run, against the same hub emulator (`mdl-hub`, release build) on 127.0.0.1;",
        "latency and bandwidth caps are the emulator's (`--latency-ms`, `--bandwidth` per response/connection).",
        "mdl runs from a lock (`mdl lock` first, files deleted, then the timed `mdl sync --no-verify`), as in CI, with `MDL_NO_CACHE=1`",
        "(the shared store would place the files again without downloading them: 0 bytes, tested in `tests/it/cache.rs`).",
        "",
        "| # | benchmark | result | target | |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        "Machine: " + f"{m['cpu']}, {m['cores']} cores, {m['memory']} RAM, Linux {m['kernel']}.",
        f"Peers: {m['curl']}; {m['aria2c']}; {m['hf']} (`hf download`). mdl: {m['mdl']} (release).",
        "",
        "Benchmark 7 writes its files with `bench/weights.py` in torch's own layouts (the lean libtorch install cannot `import torch`).",
        "",
        "Benchmark 8: the registry runs without auth, on the same disk; each sync writes and fsyncs its own copy, as separate nodes would.",
        "",
        FLEET_UPLINK_NOTE,
        "",
        XET_NOTE,
        "",
        "Raw: " + json.dumps(dict(loopback=r1, shaped=r2, mixed=r3, noop=r4, rss=r5, resume=r6, verify=r7, fleet=r8), default=lambda x: round(x, 4)),
        "",
        "Raw 9: " + json.dumps(r9, default=lambda x: round(x, 4)),
        "",
        "Raw 10: " + json.dumps(r10, default=lambda x: round(x, 4)),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
