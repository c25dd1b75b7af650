//! `TestContext`: a temporary project, a running hub emulator, and a way to run
//! `mdl` in it as a user would (uv's `TestContext`, cargo's `project()`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use hub_emulator::{Blob, Hub, RequestRecord};

pub const STATE_DICT: &[u8] = include_bytes!("../fixtures/state_dict.pth");
pub const SCRIPTED: &[u8] = include_bytes!("../fixtures/scripted.pt");
pub const SAFETENSORS: &[u8] = include_bytes!("../fixtures/model.safetensors");
pub const LEGACY: &[u8] = include_bytes!("../fixtures/legacy.pth");
/// A scripted module whose `__setstate__` overwrites `hostile-victim.bin`
/// in the current directory (scripts/make-torchscript-fixtures.py).
pub const HOSTILE_SCRIPT: &[u8] = include_bytes!("../fixtures/hostile_setstate.pt");

pub struct TestContext {
    pub dir: tempfile::TempDir,
    pub hub: Hub,
    pub env: Vec<(String, String)>,
}

pub struct Run {
    pub output: Output,
    /// What the snapshot filters replace: the project directory and the hub's URL.
    pub project: PathBuf,
    pub hub: String,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(self.code(), 0, "mdl failed:\n{}\n{}", self.stdout(), self.stderr());
        self
    }
    #[track_caller]
    pub fn failure(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "expected exit {code}:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// Pins the human output (stderr, then stdout) as an insta snapshot named
    /// `name`. Temporary paths, the emulator's port, timings, rates and hashes
    /// are filtered; runs of progress lines (whose order depends on which
    /// concurrent download finishes first) are sorted, and the periodic
    /// percentage lines dropped.
    #[track_caller]
    pub fn snap(self, name: &str) -> Run {
        let text = self.normalized();
        assert_snapshot(name, text);
        self
    }

    /// [`Run::snap`] with byte sizes redacted too: for outputs that count
    /// mdl's own state files, whose sizes vary with inode numbers and timings.
    #[track_caller]
    pub fn snap_without_sizes(self, name: &str) -> Run {
        let text = regex::Regex::new(r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b")
            .unwrap()
            .replace_all(&self.normalized(), "[SIZE]")
            .into_owned();
        assert_snapshot(name, text);
        self
    }

    /// Exit code, stderr and stdout, filtered as [`normalize_output`] does.
    fn normalized(&self) -> String {
        let text = format!(
            "exit code: {}\n--- stderr\n{}--- stdout\n{}",
            self.code(),
            self.stderr(),
            self.stdout()
        );
        normalize_output(&text, &self.project, &self.hub)
    }

    /// stderr with each `Verified` line's ` with torch X (found by, how)`
    /// left out: which torch verified depends on the machine.
    pub fn stderr_without_torch(&self) -> String {
        regex::Regex::new(r" with torch \S+ \([^()]*\)")
            .unwrap()
            .replace_all(&self.stderr(), "")
            .into_owned()
    }

    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr()
        );
        self
    }
}

impl TestContext {
    pub fn new() -> TestContext {
        TestContext::with_hub(Hub::start())
    }

    pub fn with_hub(hub: Hub) -> TestContext {
        let dir = tempfile::tempdir().unwrap();
        TestContext {
            dir,
            hub,
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn models(&self) -> PathBuf {
        self.path().join("models")
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.path().join("config.yaml"), yaml.replace("{hub}", &self.hub.url())).unwrap();
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn read_str(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).unwrap()
    }

    pub fn json(&self, rel: &str) -> serde_json::Value {
        serde_json::from_slice(&self.read(rel)).unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mdl"));
        cmd.args(args)
            .current_dir(self.path())
            .env("HF_ENDPOINT", self.hub.url())
            // Keep the developer's own token and caches out of the tests.
            .env("HF_HOME", self.path().join(".hf-home"))
            .env_remove("HF_HUB_CACHE")
            .env_remove("HUGGINGFACE_HUB_CACHE")
            .env("MDL_CACHE_DIR", self.path().join(".mdl-cache"))
            .env_remove("MDL_NO_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("MODELSCOPE_ENDPOINT")
            .env_remove("MODELSCOPE_DOMAIN")
            .env_remove("MDL_CONFIG")
            .env_remove("SSL_CERT_FILE")
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .env("CI", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn mdl(&self, args: &[&str]) -> Run {
        Run {
            output: self.command(args).output().expect("run mdl"),
            project: self.path().to_path_buf(),
            hub: self.hub.url(),
        }
    }

    /// Every file under the project (but the emulator-independent HF home) with its bytes.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        walk(self.path(), self.path(), &mut out);
        out
    }

    /// Empties the shared store, so that files deleted from `models/` must be
    /// downloaded again (for tests of the download engine itself).
    pub fn clear_shared_store(&self) {
        let _ = std::fs::remove_dir_all(self.path().join(".mdl-cache"));
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.hub.requests()
    }

    /// GETs of file bodies (not API calls, not HEADs, not redirects).
    pub fn body_requests(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && !r.path.starts_with("/api/") && !(300..400).contains(&r.status))
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel.starts_with(".hf-home") || rel.starts_with(".mdl-cache") || rel.ends_with(".mdl/lock") {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// Asserts two snapshots are equal, naming the paths that differ.
#[track_caller]
pub fn assert_same(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>, what: &str) {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let differ: Vec<&&String> = keys.iter().filter(|k| before.get(**k) != after.get(**k)).collect();
    assert!(differ.is_empty(), "{what}: these paths changed: {differ:?}");
}

pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Two Hub repos and a URL file, as the walking-skeleton issue describes.
pub fn standard_hub(ctx: &TestContext) {
    ctx.hub.commit(
        "acme/tiny-bert",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&br#"{"model_type": "bert"}"#[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            (
                "tokenizer/vocab.txt",
                Some(Blob::regular(&b"[PAD]\n[UNK]\nhello\n"[..])),
            ),
        ],
    );
    ctx.hub.commit(
        "acme/tiny-gpt",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&br#"{"model_type": "gpt2"}"#[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            (
                "onnx/model.onnx",
                Some(Blob::lfs(hub_emulator::pseudo_random_bytes(3, 4096))),
            ),
        ],
    );
    ctx.hub.tag("acme/tiny-gpt", "v1.0", "main");
    ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
}

/// The sentence-transformers model the example configs name, with an ONNX
/// export their `include:` filters leave out.
pub fn minilm_hub(ctx: &TestContext) {
    ctx.hub.commit(
        "sentence-transformers/all-MiniLM-L6-v2",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("vocab.txt", Some(Blob::regular(&b"[PAD]\n"[..]))),
            ("onnx/model.onnx", Some(Blob::lfs(&b"not synced by ci.yaml"[..]))),
        ],
    );
}

pub const STANDARD_CONFIG: &str = r#"
models:
  model_path: "models/"
  require:
    - huggingface:acme/tiny-bert            # a Hub repo, default revision main
    - id: huggingface:acme/tiny-gpt@v1.0     # a tag
      include: ["*.safetensors", "*.json"]
    - id: url:{hub}/redirect/w/model.pt
      name: custom_model
  download:
    cache_dir: "models/"
    sources:
      huggingface: { enabled: true }
      url: { enabled: true, verify_ssl: true, timeout_seconds: 300 }
"#;

#[track_caller]
fn assert_snapshot(name: &str, text: String) {
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

/// Output made comparable across runs and machines (see [`Run::snap`]).
pub fn normalize_output(text: &str, project: &Path, hub: &str) -> String {
    use regex::Regex;
    let mut text = text.replace(hub, "[HUB]");
    for path in [project.to_path_buf(), project.canonicalize().unwrap_or_default()] {
        let p = path.to_string_lossy();
        if !p.is_empty() {
            text = text.replace(p.as_ref(), "[PROJECT]");
        }
    }
    let rules = [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"\b[0-9a-f]{12,64}\b", "[HASH]"),
        (r"\d+(\.\d+)? ?(B|KiB|MiB|GiB)/s", "[RATE]"),
        (r"\b\d+ ms\b", "[T] ms"),
        (r"\b\d+\.\d+ s\b", "[T] s"),
        (r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        // Which torch verified depends on the machine (its version, and
        // whether `LIBTORCH`, `VIRTUAL_ENV` or `python3` found it).
        (
            r"with torch \S+ \([^,()]+, (through mdl-torch|in Python)\)",
            "with torch [VERSION] ([FOUND BY], $1)",
        ),
        // Wording owned by other crates (rustls, hyper, reqwest, serde_yaml):
        // a dependency update may change it without mdl changing.
        (
            r"(?m)\((error sending request|could not connect|the request failed)[^\n]*\)$",
            "([TRANSPORT ERROR])",
        ),
        (
            r"(config\.yaml:\d+:\d+: )(did not find expected|found unexpected|mapping values are not allowed|while parsing)[^\n]*",
            "$1[YAML SYNTAX ERROR]",
        ),
    ];
    for (pattern, replacement) in rules {
        text = Regex::new(pattern)
            .unwrap()
            .replace_all(&text, replacement)
            .into_owned();
    }
    let progress = Regex::new(
        r"^ *(Resolving|Downloading|Downloaded|Uploading|Uploaded|Request|Retrying|Verifying|FAILED download) ",
    )
    .unwrap();
    let percentage = Regex::new(r"^ +\S+ \d+% of ").unwrap();
    let mut out: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    for line in text.lines() {
        if percentage.is_match(line) {
            continue;
        }
        if progress.is_match(line) {
            run.push(line.to_string());
            continue;
        }
        run.sort();
        out.append(&mut run);
        out.push(line.to_string());
    }
    run.sort();
    out.append(&mut run);
    out.join("\n") + "\n"
}
