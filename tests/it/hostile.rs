//! A lockfile from a pull request is untrusted input (issue 19, SECURITY.md).
//!
//! `tests/fixtures/hostile-locks/*.toml` is a corpus of edits an attacker
//! could make to a good `models.lock`. Each case is applied to a lock that
//! `mdl lock` wrote for a real project, and `mdl sync --locked` (what CI runs)
//! is run with sentinel secrets in its environment — a Hub token, a Docker
//! config with a password, a readable secret file — and a second server (the
//! foreign host the case points things at). Every case must end with exit
//! code 2 and an error naming the field and its line; no request may reach
//! the foreign host, no secret may reach any server, no file outside the
//! project may change, nothing already in `models/` may be lost, and no
//! process may die from a signal. Cases marked `stale` are also run without
//! `--locked`: the entry is re-resolved from config.yaml, and the lock ends
//! as the good one.
//!
//! A case file holds `description`, `expect_field`, optional `config`
//! (`base` or `oci`), `stale`, and edits: `[[set]]` (`model`, optional
//! `file`, `field`, `value`), `[[remove]]` (`model`, optional `file`,
//! `field`), `[[duplicate_file]]` (`model`, `file`, optional `path`),
//! `[[add_model]]` (a whole model table). Values may use `{hub}`,
//! `{foreign}`, `{foreign_host}`, `{registry}`, `{secret}`, `{secret_size}`,
//! `{sentinel}`, `{project}`; they are filled in before the case is parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

const TOKEN: &str = "hf_SENTINEL_TOKEN_never_leaves";
const PASSWORD: &str = "SENTINEL_REGISTRY_PASSWORD";
const SECRET: &[u8] = b"SENTINEL SECRET FILE: never copied into a project\n";

struct World {
    ctx: TestContext,
    foreign: Hub,
    sentinel: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let mut ctx = TestContext::new();
        standard_hub(&ctx);
        let foreign = Hub::start();
        let sentinel = tempfile::tempdir().unwrap();
        std::fs::write(sentinel.path().join("secret.txt"), SECRET).unwrap();
        let docker = sentinel.path().join("docker");
        std::fs::create_dir_all(&docker).unwrap();
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("ci:{PASSWORD}"));
        let auths: serde_json::Map<String, serde_json::Value> = [hub_host(&ctx.hub), hub_host(&foreign)]
            .into_iter()
            .map(|host| (host, serde_json::json!({ "auth": auth })))
            .collect();
        std::fs::write(
            docker.join("config.json"),
            serde_json::json!({ "auths": auths }).to_string(),
        )
        .unwrap();
        ctx.env.push(("HF_TOKEN".into(), TOKEN.into()));
        ctx.env.push(("DOCKER_CONFIG".into(), docker.display().to_string()));
        ctx.env.push((
            "HF_HUB_CACHE".into(),
            ctx.path().join(".hf-cache").display().to_string(),
        ));
        World { ctx, foreign, sentinel }
    }

    fn secret(&self) -> PathBuf {
        self.sentinel.path().join("secret.txt")
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{hub}", &self.ctx.hub.url())
            .replace("{foreign}", &self.foreign.url())
            .replace("{secret}", &self.secret().display().to_string())
            .replace("{secret_size}", &SECRET.len().to_string())
            .replace("{sentinel}", &self.sentinel.path().display().to_string())
            .replace("{project}", &self.ctx.path().display().to_string())
            .replace("{registry}", &hub_host(&self.ctx.hub))
            .replace("{foreign_host}", &hub_host(&self.foreign))
    }

    fn config(&self, variant: &str) -> String {
        let mut yaml = String::from(
            "models:\n  require:\n    - huggingface:acme/tiny-bert\n    - id: url:{hub}/files/w/model.pt\n      name: custom_model\n",
        );
        if variant == "oci" {
            yaml.push_str("    - id: oci:{registry}/acme/bert\n      name: bert\n");
        }
        yaml.push_str("  download:\n    hf_cache: true\n");
        self.fill(&yaml)
    }

    /// Every request any server saw, with where.
    fn requests(&self) -> Vec<(&'static str, RequestRecord)> {
        let hub = self.ctx.hub.requests().into_iter().map(|r| ("hub", r));
        hub.chain(self.foreign.requests().into_iter().map(|r| ("foreign", r)))
            .collect()
    }

    fn clear_requests(&self) {
        self.ctx.hub.clear_requests();
        self.foreign.clear_requests();
    }
}

fn hub_host(hub: &Hub) -> String {
    hub.url().trim_start_matches("http://").to_string()
}

/// Every file under `dir` with its bytes (links listed by their target).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(path, target.as_os_str().as_encoded_bytes().to_vec());
            } else if kind.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// One edit of a case, applied to the lock parsed as TOML.
fn apply(lock: &mut toml::Value, case: &toml::Value, world: &World) {
    let models = lock["model"].as_array_mut().unwrap();
    let find_model = |models: &mut Vec<toml::Value>, name: &str| -> usize {
        models
            .iter()
            .position(|m| m["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no model {name}"))
    };
    let target = |models: &mut Vec<toml::Value>, edit: &toml::Value| -> (usize, Option<usize>) {
        let m = find_model(models, edit["model"].as_str().unwrap());
        let f = edit.get("file").and_then(|f| f.as_str()).map(|path| {
            models[m]["file"]
                .as_array()
                .unwrap()
                .iter()
                .position(|f| f["path"].as_str() == Some(path))
                .unwrap_or_else(|| panic!("no file {path}"))
        });
        (m, f)
    };
    let _ = world;
    let fill = |v: &toml::Value| v.clone();
    for edit in case.get("set").and_then(|v| v.as_array()).into_iter().flatten() {
        let (m, f) = target(models, edit);
        let table = match f {
            Some(f) => models[m]["file"].as_array_mut().unwrap()[f].as_table_mut().unwrap(),
            None => models[m].as_table_mut().unwrap(),
        };
        table.insert(edit["field"].as_str().unwrap().to_string(), fill(&edit["value"]));
    }
    for edit in case.get("remove").and_then(|v| v.as_array()).into_iter().flatten() {
        let (m, f) = target(models, edit);
        let table = match f {
            Some(f) => models[m]["file"].as_array_mut().unwrap()[f].as_table_mut().unwrap(),
            None => models[m].as_table_mut().unwrap(),
        };
        table.remove(edit["field"].as_str().unwrap());
    }
    for edit in case
        .get("duplicate_file")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let (m, f) = target(models, edit);
        let files = models[m]["file"].as_array_mut().unwrap();
        let mut copy = files[f.unwrap()].clone();
        if let Some(path) = edit.get("path") {
            copy.as_table_mut().unwrap().insert("path".into(), fill(path));
        }
        files.push(copy);
    }
    for model in case.get("add_model").and_then(|v| v.as_array()).into_iter().flatten() {
        models.push(model.clone());
    }
}

#[test]
fn the_hostile_lock_corpus_is_refused_with_nothing_leaked_written_or_lost() {
    let world = World::new();
    let ctx = &world.ctx;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile-locks");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "the corpus holds {} cases", cases.len());

    // The good locks, one per config variant, each synced once so that
    // `models/` holds files a hostile lock must not cost.
    let mut good = BTreeMap::new();
    for variant in ["base", "oci"] {
        std::fs::write(ctx.path().join("config.yaml"), world.config("base")).unwrap();
        ctx.mdl(&["sync", "--no-verify"]).success();
        let mut lock: toml::Value = toml::from_str(&ctx.read_str("models.lock")).unwrap();
        if variant == "oci" {
            // A registry model as `mdl lock` writes one (the registry is
            // never reached: every oci case is refused before the network).
            let digest = "sha256:".to_string() + &"d".repeat(64);
            let entry = world.fill(&format!(
                "name = \"bert\"\nsource = \"oci\"\nid = \"{{registry}}/acme/bert\"\ncommit = \"{digest}\"\n\n[[file]]\npath = \"model.safetensors\"\nsize = 10\nblake3 = \"{}\"\nsha256 = \"{}\"\nurl = \"http://{{registry}}/v2/acme/bert/blobs/sha256:{}\"\n",
                "b".repeat(64),
                "e".repeat(64),
                "e".repeat(64)
            ));
            lock["model"]
                .as_array_mut()
                .unwrap()
                .push(toml::from_str(&entry).unwrap());
        }
        good.insert(variant, lock);
    }
    let models_before = tree(&ctx.models());
    let sentinel_before = tree(world.sentinel.path());

    let mut failures = Vec::new();
    for path in &cases {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        // Placeholders are filled in the text, so a case may write `size = {secret_size}`.
        let text = world.fill(&std::fs::read_to_string(path).unwrap());
        let case: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let variant = case.get("config").and_then(|v| v.as_str()).unwrap_or("base");
        let field = case["expect_field"].as_str().unwrap();
        let mut lock = good[variant].clone();
        apply(&mut lock, &case, &world);
        let lock_text = toml::to_string(&lock).unwrap();
        std::fs::write(ctx.path().join("config.yaml"), world.config(variant)).unwrap();
        std::fs::write(ctx.path().join("models.lock"), &lock_text).unwrap();
        world.clear_requests();

        let run = ctx.mdl(&["sync", "--locked", "--no-verify"]);
        let err = run.stderr();
        let mut problems = Vec::new();
        match run.output.status.code() {
            None => problems.push(format!("killed by a signal: {:?}", run.output.status)),
            Some(2) => {}
            Some(code) => problems.push(format!("exit {code}, not 2")),
        }
        if !err.contains(&format!("field `{field}`")) {
            problems.push(format!("the error does not name the field `{field}`"));
        }
        if !(err.contains("models.lock:") || err.contains("models.lock line ")) {
            problems.push("the error does not name the line".into());
        }
        for (server, request) in world.requests() {
            let auth = request.authorization.clone().unwrap_or_default();
            if server == "foreign" {
                problems.push(format!(
                    "the foreign host was asked: {} {}",
                    request.method, request.path
                ));
            }
            if auth.contains(TOKEN) && server != "hub" {
                problems.push(format!("the token reached {server}"));
            }
            if auth.starts_with("Basic") {
                problems.push(format!("registry credentials reached {server}"));
            }
        }
        if tree(world.sentinel.path()) != sentinel_before {
            problems.push("a file outside the project changed".into());
        }
        let models_now = tree(&ctx.models());
        for (file, bytes) in &models_before {
            if models_now.get(file) != Some(bytes) && !file.to_string_lossy().contains("/.mdl/") {
                problems.push(format!("`{}` was lost or changed", file.display()));
            }
        }
        if tree(ctx.path())
            .values()
            .any(|bytes| bytes.windows(SECRET.len()).any(|w| w == SECRET))
        {
            problems.push("the secret file's bytes are in the project".into());
        }
        if err.contains(TOKEN) || err.contains(PASSWORD) || run.stdout().contains(TOKEN) {
            problems.push("a secret was printed".into());
        }

        // A stale entry (a lock for another config) is re-resolved by a
        // plain sync, which ends with the good lock and the same files.
        if case.get("stale").and_then(|v| v.as_bool()) == Some(true) && problems.is_empty() {
            let run = ctx.mdl(&["sync", "--no-verify"]);
            if run.code() != 0 {
                problems.push(format!("a plain sync did not re-resolve it:\n{}", run.stderr()));
            }
            for (server, request) in world.requests() {
                if server == "foreign" {
                    problems.push(format!("re-resolving asked the foreign host: {}", request.path));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}\n--- stderr\n{err}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A 4.6 KB `.pt` whose zip directory claims a 32 GiB stored record (issue
/// 19, reproduction 5) once made `mdl` allocate the claim and abort. It is a
/// model that fails verification, named, on every run — never a crash.
#[test]
fn a_checkpoint_that_claims_32_gib_fails_verification_without_a_crash() {
    let ctx = TestContext::new();
    let hostile = include_bytes!("../fixtures/hostile_32g_claim.pt");
    ctx.hub.put_file("w/claim.pt", Blob::regular(&hostile[..]));
    ctx.write_config("models:\n  require:\n    - id: url:{hub}/files/w/claim.pt\n      name: claim\n");
    for _ in 0..2 {
        let run = ctx.mdl(&["sync"]);
        assert_eq!(
            run.output.status.code(),
            Some(1),
            "{:?}\n{}",
            run.output.status,
            run.stderr()
        );
        let err = run.stderr();
        assert!(err.contains("claim.pt"), "{err}");
        assert!(err.contains("claims 34359738368 bytes"), "{err}");
    }
}

/// Files mdl writes follow the umask as any tool's do (issue 19,
/// reproduction 7): a Docker image's runtime user, not the build user, must
/// read the lock, the registry and each model's `model_info.json`.
#[test]
fn files_mdl_writes_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    let mut cmd = ctx.command(&["sync", "--no-verify"]);
    // SAFETY: umask is async-signal-safe; the child sets it before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    assert!(cmd.status().unwrap().success());
    for rel in [
        "models.lock",
        "models/model_registry.json",
        "models/huggingface_acme--tiny-bert/model_info.json",
        "models/huggingface_acme--tiny-bert/config.json",
    ] {
        let mode = std::fs::metadata(ctx.path().join(rel)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o044, "`{rel}` is {mode:o}: others cannot read it");
    }
}

/// What a Hub (or a mirror posing as one) answers is input too: hashes that
/// are not hashes and names that escape are refused before they become a
/// path, and a redirect to another origin never carries the token.
#[test]
fn hostile_hub_answers_are_refused_and_the_token_stays_home() {
    let world = World::new();
    let ctx = &world.ctx;
    let sentinel_before = tree(world.sentinel.path());
    ctx.write_config("models:\n  require:\n    - acme/tiny-bert\n  download:\n    hf_cache: true\n");
    let sha = "a".repeat(40);
    let answer = |siblings: &str| format!(r#"{{"sha": "{sha}", "siblings": [{siblings}]}}"#);
    let cases = [
        (
            r#"{"rfilename": "model.bin", "size": 4, "lfs": {"sha256": "../../../../x", "size": 4}}"#.to_string(),
            "malformed `lfs.sha256` or `blobId`",
        ),
        (
            format!(
                r#"{{"rfilename": "model.bin", "size": 4, "lfs": {{"sha256": "{}", "size": 4}}}}"#,
                "*".repeat(64)
            ),
            "malformed `lfs.sha256` or `blobId`",
        ),
        (
            format!(
                r#"{{"rfilename": "config.json", "size": 2, "blobId": "{}/../../x"}}"#,
                "0".repeat(30)
            ),
            "malformed `lfs.sha256` or `blobId`",
        ),
        (
            r#"{"rfilename": "../../../escape.bin", "size": 2, "blobId": "0000000000000000000000000000000000000000"}"#
                .to_string(),
            "would escape the model directory",
        ),
    ];
    for (siblings, needle) in cases {
        ctx.hub.update_behaviour(|b| b.api_answer = Some(answer(&siblings)));
        world.clear_requests();
        let run = ctx.mdl(&["sync", "--no-verify"]);
        assert_eq!(run.output.status.code(), Some(1), "{siblings}: {}", run.stderr());
        assert!(run.stderr().contains(needle), "{siblings}: {}", run.stderr());
    }
    ctx.hub.update_behaviour(|b| b.api_answer = None);
    assert!(!ctx.path().join("models.lock").exists(), "nothing was locked");

    // The Hub redirects a file to another origin: the token stays behind
    // (whatever that host then answers, the bytes are hash-checked).
    let foreign = world.foreign.url();
    ctx.hub.update_behaviour(|b| {
        b.lfs_redirect = true;
        b.redirect_location = Some(format!("{foreign}/files/stolen.bin"));
    });
    world.foreign.put_file("stolen.bin", Blob::regular(SAFETENSORS));
    let run = ctx.mdl(&["sync", "--no-verify"]);
    assert!(!world.foreign.requests().is_empty(), "the redirect was followed");
    for request in world.foreign.requests() {
        assert_eq!(
            request.authorization, None,
            "the token reached another origin: {request:?}"
        );
    }
    assert!(!run.stderr().contains(TOKEN));
    assert_eq!(
        tree(world.sentinel.path()),
        sentinel_before,
        "nothing outside the project changed"
    );
}

/// A config.yaml that points the Hub elsewhere (a pull request can change it
/// too) gets no token there without `send_token: true`, and plain HTTP to
/// another machine never does.
#[test]
fn a_config_endpoint_gets_the_token_only_when_it_opts_in() {
    let world = World::new();
    let ctx = &world.ctx;
    world.foreign.commit(
        "acme/tiny-bert",
        "main",
        vec![("config.json", Some(Blob::regular(&b"{}"[..])))],
    );
    let config = |opt_in: bool| {
        format!(
            "models:\n  require: [acme/tiny-bert]\n  download:\n    sources:\n      huggingface:\n        endpoint: {}\n{}",
            world.foreign.url(),
            if opt_in { "        send_token: true\n" } else { "" }
        )
    };
    ctx.write_config(&config(false));
    let run = ctx.mdl(&["lock"]).success();
    assert!(
        run.stderr().contains("the Hub token is not sent there"),
        "{}",
        run.stderr()
    );
    assert!(world.foreign.requests().iter().all(|r| r.authorization.is_none()));

    world.clear_requests();
    std::fs::remove_file(ctx.path().join("models.lock")).unwrap();
    ctx.write_config(&config(true));
    ctx.mdl(&["lock"]).success();
    assert!(
        (world.foreign.requests().iter()).any(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "the opted-in endpoint (loopback) gets the token"
    );
}

/// Links planted under `models/.mdl/` (a pull request can commit them, a CI
/// cache can restore them) are never followed: a "partial download" whose
/// sidecar and bytes are links to an old file and a victim, a `tmp/` that is
/// a link out of the project, and `.mdl` itself a link.
#[test]
fn links_planted_under_models_mdl_are_never_followed() {
    use std::os::unix::fs::symlink;
    let setup = || {
        let ctx = TestContext::new();
        ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
        ctx.write_config(
            "models:\n  require:\n    - id: url:{hub}/files/w/model.pt\n      name: m\n      verify: false\n",
        );
        std::fs::write(ctx.path().join("victim.bin"), b"precious").unwrap();
        ctx
    };
    // The stem is predictable: the blake3 of the destination path.
    let ctx = setup();
    let tmp = ctx.path().join("models/.mdl/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let old = ctx.path().join("old.json");
    std::fs::write(&old, b"{}").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let stem = blake3::hash(b"./models/url_m/model.pt").to_hex()[..32].to_string();
    symlink(&old, tmp.join(format!("{stem}.x.part.json"))).unwrap();
    symlink(ctx.path().join("victim.bin"), tmp.join(format!("{stem}.x.part"))).unwrap();
    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read("victim.bin"), b"precious");
    let model = ctx.path().join("models/url_m/model.pt");
    assert!(
        std::fs::symlink_metadata(&model).unwrap().is_file(),
        "the model is a file, not a link"
    );
    assert_eq!(std::fs::read(&model).unwrap(), STATE_DICT);
    assert!(
        !tmp.join(format!("{stem}.x.part")).exists(),
        "the planted links are removed"
    );

    // `tmp/` as a link to a folder outside the project: removed, not used.
    let ctx = setup();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ctx.path().join("models/.mdl")).unwrap();
    symlink(outside.path(), ctx.path().join("models/.mdl/tmp")).unwrap();
    ctx.mdl(&["sync"]).success();
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert!(std::fs::symlink_metadata(ctx.path().join("models/.mdl/tmp"))
        .unwrap()
        .is_dir());

    // `.mdl` itself a link: refused, naming it.
    let ctx = setup();
    std::fs::create_dir_all(ctx.path().join("models")).unwrap();
    symlink(outside.path(), ctx.path().join("models/.mdl")).unwrap();
    ctx.mdl(&["sync"]).failure(1).stderr_has("models/.mdl");
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
}

/// The lock caches what the source said; it never decides what the source
/// serves. `acme/good` and `acme/other` (and `acme/twin`, `good`'s size with
/// other bytes) are synced by a first project, filling the shared store and
/// the Hugging Face cache; a second project's lock of `acme/good` is then
/// edited — the commit untouched — to point at their bytes.
#[test]
fn a_lock_edit_cannot_swap_another_repos_bytes_in() {
    let ctx = TestContext::new();
    ctx.hub
        .update_behaviour(|b| b.xet = Some(hub_emulator::XetSettings::default()));
    let good = hub_emulator::pseudo_random_bytes(1, 300_000).to_vec();
    let twin = hub_emulator::pseudo_random_bytes(2, 300_000).to_vec();
    let other = hub_emulator::pseudo_random_bytes(3, 200_000).to_vec();
    for (repo, bytes) in [("acme/good", &good), ("acme/twin", &twin), ("acme/other", &other)] {
        ctx.hub.commit(
            repo,
            "main",
            vec![("model.safetensors", Some(Blob::lfs(bytes.clone())))],
        );
    }
    // The first project, beside the second: the same shared store and cache.
    let first = ctx.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::write(
        first.join("config.yaml"),
        "models:\n  require: [acme/good, acme/twin, acme/other]\n  download:\n    hf_cache: true\n",
    )
    .unwrap();
    let out = ctx
        .command(&["sync", "--no-verify"])
        .current_dir(&first)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let locked: toml::Value = toml::from_str(&std::fs::read_to_string(first.join("models.lock")).unwrap()).unwrap();
    let file_of = |name: &str| {
        let model = locked["model"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .unwrap();
        model["file"][0].clone()
    };
    let (g, t, o) = (file_of("acme/good"), file_of("acme/twin"), file_of("acme/other"));

    ctx.write_config("models:\n  require: [acme/good]\n");
    ctx.mdl(&["lock"]).success();
    let lock = ctx.read_str("models.lock");
    let _ = std::fs::remove_dir_all(ctx.models());
    let field = |f: &toml::Value, k: &str| f[k].as_str().map(str::to_string).unwrap_or_else(|| f[k].to_string());
    let swap = |pairs: &[(&str, &toml::Value)]| {
        let mut text = lock.clone();
        for (k, from) in pairs {
            let (old, new) = (field(&g, k), field(from, k));
            text = text.replace(&format!("{k} = \"{old}\""), &format!("{k} = \"{new}\""));
            text = text.replace(&format!("{k} = {old}\n"), &format!("{k} = {new}\n"));
        }
        assert_ne!(text, lock, "the edit took");
        std::fs::write(ctx.path().join("models.lock"), text).unwrap();
    };
    let model = ctx.path().join("models/huggingface_acme--good/model.safetensors");

    // The issue's edit: size, blake3 and xet_hash of another repo's file.
    swap(&[("size", &o), ("blake3", &o), ("xet_hash", &o)]);
    let run = ctx.mdl(&["sync", "--locked"]).failure(2);
    run.stderr_has("names content its source does not state")
        .stderr_has("of file `model.safetensors` of model `acme/good` (models.lock line");
    assert!(!model.exists(), "nothing placed");
    // Only the Xet hash.
    swap(&[("xet_hash", &o)]);
    ctx.mdl(&["sync", "--locked"]).failure(2).stderr_has("field `xet_hash`");
    assert!(!model.exists());
    // blake3 and size of a blob the shared store holds.
    swap(&[("size", &o), ("blake3", &o)]);
    ctx.mdl(&["sync", "--locked"]).failure(2).stderr_has("field `size`");
    assert!(!model.exists());
    // An etag naming another blob of the Hugging Face cache.
    swap(&[("etag", &o), ("sha256", &o)]);
    ctx.mdl(&["sync", "--locked"]).failure(2).stderr_has("field `etag`");
    assert!(!model.exists());
    // The blake3 alone, to a blob of the same size: the store's blob does not
    // hash to the Hub's sha256, so it is not placed; the download then fails
    // the edited blake3. Never the twin's bytes.
    swap(&[("blake3", &t)]);
    let run = ctx.mdl(&["sync", "--locked"]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert!(!model.exists() || std::fs::read(&model).unwrap() != twin);
    // The lock as `mdl lock` wrote it syncs.
    std::fs::write(ctx.path().join("models.lock"), &lock).unwrap();
    ctx.mdl(&["sync", "--locked", "--no-verify"]).success();
    assert_eq!(std::fs::read(&model).unwrap(), good);
}
