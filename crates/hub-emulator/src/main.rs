//! `mdl-hub`: runs the hub emulator as a process, for the demo and benchmarks.
//!
//! ```text
//! mdl-hub [--port N] [--demo] [--files ORG/NAME[@REV]=DIR]... [--synthetic REPO/PATH=BYTES]...
//!         [--small-files REPO=N] [--latency-ms N] [--bandwidth BYTES_PER_SEC] [--uplink BYTES_PER_SEC] [--ignore-range]
//!         [--no-content-length] [--log FILE]
//!         [--xet] [--xet-token-ttl SECS] [--xet-v1-only] [--xet-compression none|lz4|bg4-lz4]
//!         [--silent METHOD:PATH_PREFIX[:AFTER_BYTES]]... [--bare-listing]
//! ```
//! `--bare-listing` answers `?blobs=true` with `siblings` of names only, as
//! some mirrors do.
//! `--silent` makes matching requests meet a server gone quiet: no response
//! headers at all, or the headers and `AFTER_BYTES` of the body, then nothing
//! (the connection stays open). `--silent GET:/api/models/` stalls every model
//! listing; `--silent GET:/xorbs/:1000` every xorb range after 1,000 bytes.
//! `--xet` serves LFS files through the Hub's Xet storage protocol (read
//! tokens, reconstructions v1 and v2, xorbs made by xet-core's own code,
//! chunks shared across revisions), keeping the resolve redirect as the
//! bridge for clients without Xet.
//! `--files` serves every file under `DIR` as revision `REV` (default `main`)
//! of the repo: weight files and files over 1 MiB as LFS files, the rest as
//! regular git files, as the Hub stores them; given twice for one repo, the
//! second is a new commit on top of the first.
//! It prints `listening on http://127.0.0.1:PORT` on its first line and serves
//! until killed. `--synthetic` files are generated as they are served, so
//! gigabytes cost no memory; `url:` style copies are at `/files/{REPO/PATH}`.
//! `--bandwidth` caps each response body; `--uplink` caps all of them
//! together (a site's one uplink that every runner of a fleet shares).
use std::time::Duration;

use hub_emulator::{Behaviour, Blob, Content, Hub, Silence, Uplink};

const DEMO_CONFIG: &[u8] = br#"{"architectures": ["Tiny"], "model_type": "tiny", "hidden_size": 4}
"#;
const DEMO_SAFETENSORS: &[u8] = include_bytes!("../../../tests/fixtures/model.safetensors");
const DEMO_STATE_DICT: &[u8] = include_bytes!("../../../tests/fixtures/state_dict.pth");
const DEMO_SCRIPTED: &[u8] = include_bytes!("../../../tests/fixtures/scripted.pt");

fn usage() -> ! {
    eprintln!("usage: mdl-hub [--port N] [--demo] [--files ORG/NAME[@REV]=DIR]... [--synthetic REPO/PATH=BYTES]... [--small-files REPO=N] [--latency-ms N] [--bandwidth BYTES_PER_SEC] [--uplink BYTES_PER_SEC] [--ignore-range] [--no-content-length] [--log FILE] [--xet] [--xet-token-ttl SECS] [--xet-v1-only] [--xet-compression none|lz4|bg4-lz4] [--silent METHOD:PATH_PREFIX[:AFTER_BYTES]] [--bare-listing]");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    let mut demo = false;
    let mut synthetic: Vec<(String, String, u64)> = Vec::new();
    let mut small: Vec<(String, usize)> = Vec::new();
    let mut trees: Vec<(String, String, std::path::PathBuf)> = Vec::new();
    let mut behaviour = Behaviour::default();
    let mut log: Option<std::path::PathBuf> = None;
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--port" => port = value().parse().unwrap_or_else(|_| usage()),
            "--demo" => demo = true,
            "--files" => {
                let v = value();
                let (repo, dir) = v.split_once('=').unwrap_or_else(|| usage());
                let (repo, revision) = repo.split_once('@').unwrap_or((repo, "main"));
                trees.push((repo.to_string(), revision.to_string(), dir.into()));
            }
            "--synthetic" => {
                let v = value();
                let (path, size) = v.split_once('=').unwrap_or_else(|| usage());
                let (repo, file) = split_repo(path);
                synthetic.push((repo, file, size.parse().unwrap_or_else(|_| usage())));
            }
            "--small-files" => {
                let v = value();
                let (repo, n) = v.split_once('=').unwrap_or_else(|| usage());
                small.push((repo.to_string(), n.parse().unwrap_or_else(|_| usage())));
            }
            "--latency-ms" => behaviour.latency = Duration::from_millis(value().parse().unwrap_or_else(|_| usage())),
            "--bandwidth" => behaviour.bandwidth = Some(value().parse().unwrap_or_else(|_| usage())),
            "--uplink" => behaviour.uplink = Some(Uplink::new(value().parse().unwrap_or_else(|_| usage()))),
            "--log" => log = Some(std::path::PathBuf::from(value())),
            "--ignore-range" => behaviour.ignore_range = true,
            "--no-content-length" => behaviour.no_content_length = true,
            "--bare-listing" => behaviour.bare_listing = true,
            "--xet" => {
                behaviour.xet.get_or_insert_with(Default::default);
            }
            "--xet-token-ttl" => {
                let secs = value().parse().unwrap_or_else(|_| usage());
                behaviour.xet.get_or_insert_with(Default::default).token_ttl = Duration::from_secs(secs);
            }
            "--xet-v1-only" => behaviour.xet.get_or_insert_with(Default::default).v2 = false,
            "--xet-compression" => {
                let scheme = value();
                if !["none", "lz4", "bg4-lz4"].contains(&scheme.as_str()) {
                    usage();
                }
                behaviour.xet.get_or_insert_with(Default::default).compression = Some(scheme);
            }
            "--silent" => {
                let v = value();
                let mut parts = v.splitn(3, ':');
                let (Some(method), Some(prefix)) = (parts.next(), parts.next()) else {
                    usage()
                };
                behaviour.silences.push(match parts.next() {
                    None => Silence::before_headers(method, prefix),
                    Some(n) => Silence::mid_body(method, prefix, n.parse().unwrap_or_else(|_| usage())),
                });
            }
            _ => usage(),
        }
    }
    let hub = Hub::start_on(port);
    hub.set_behaviour(behaviour);
    if let Some(path) = &log {
        hub.log_to(path)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    if demo {
        hub.commit(
            "mdl-demo/tiny-net",
            "main",
            vec![
                ("config.json", Some(Blob::regular(DEMO_CONFIG))),
                ("model.safetensors", Some(Blob::lfs(DEMO_SAFETENSORS))),
                ("pytorch_model.bin", Some(Blob::lfs(DEMO_STATE_DICT))),
            ],
        );
        hub.put_file("weights/tiny-scripted.pt", Blob::regular(DEMO_SCRIPTED));
    }
    for (repo, revision, dir) in &trees {
        let files = files_under(dir).unwrap_or_else(|e| {
            eprintln!("mdl-hub: cannot read `{}`: {e}", dir.display());
            std::process::exit(2);
        });
        hub.commit(
            repo,
            revision,
            files.iter().map(|(p, b)| (p.as_str(), Some(b.clone()))).collect(),
        );
        for (path, blob) in &files {
            hub.put_file(&format!("{repo}/{path}"), blob.clone());
        }
    }
    for (i, (repo, file, size)) in synthetic.iter().enumerate() {
        let blob = Blob::new(
            Content::Synthetic {
                size: *size,
                seed: 1000 + i as u64,
            },
            true,
        );
        hub.put_file(&format!("{repo}/{file}"), blob.clone());
        hub.commit(repo, "main", vec![(file, Some(blob))]);
    }
    for (repo, n) in &small {
        let files: Vec<(String, Blob)> = (0..*n)
            .map(|i| {
                let bytes = hub_emulator::pseudo_random_bytes(i as u64, 2048 + (i % 7) * 512);
                (format!("small/file_{i:05}.bin"), Blob::regular(bytes))
            })
            .collect();
        hub.commit(
            repo,
            "main",
            files.iter().map(|(p, b)| (p.as_str(), Some(b.clone()))).collect(),
        );
    }
    println!("listening on {}", hub.url());
    // The server runs on its own thread; park this one until the process is killed.
    loop {
        std::thread::park();
    }
}

/// Every file under `dir` (recursively, sorted), by its `/`-separated path.
fn files_under(dir: &std::path::Path) -> std::io::Result<Vec<(String, Blob)>> {
    const WEIGHTS: &[&str] = &[
        "safetensors",
        "bin",
        "pt",
        "pth",
        "ckpt",
        "gguf",
        "onnx",
        "h5",
        "msgpack",
    ];
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let rel = path.strip_prefix(dir).expect("under dir");
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let weight = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| WEIGHTS.contains(&e));
            let blob = if weight || bytes.len() > 1 << 20 {
                Blob::lfs(bytes)
            } else {
                Blob::regular(bytes)
            };
            out.push((rel.join("/"), blob));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn split_repo(path: &str) -> (String, String) {
    let parts: Vec<&str> = path.splitn(3, '/').collect();
    match parts.as_slice() {
        [ns, name, file] => (format!("{ns}/{name}"), file.to_string()),
        _ => usage(),
    }
}
