//! OCI registries, against a real one: CNCF distribution (Debian's
//! `docker-registry`, installed by `scripts/setup`) on 127.0.0.1 with htpasswd
//! auth. `mdl push`, `download.mirrors` / `MDL_MIRROR`, `oci:` models.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::*;

pub const USER: &str = "ci";
pub const PASSWORD: &str = "s3cret-pa55";

/// A running registry; dropping it stops it.
pub struct Registry {
    child: Child,
    pub host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None, None)
    }

    /// A registry that speaks HTTPS with `identity` (a certificate for
    /// 127.0.0.1 from a private CA, as a corporate registry has).
    pub fn start_tls(identity: hub_emulator::TlsIdentity) -> Registry {
        Registry::start_with(Some(identity), None)
    }

    /// A registry that sends clients to `tokens` for a bearer token
    /// (`WWW-Authenticate: Bearer realm=…`), as GHCR, Docker Hub and Harbor do.
    pub fn start_with_token_auth(tokens: &TokenServer) -> Registry {
        Registry::start_with(None, Some(tokens))
    }

    fn start_with(tls: Option<hub_emulator::TlsIdentity>, tokens: Option<&TokenServer>) -> Registry {
        let binary = std::env::var("MDL_TEST_REGISTRY").unwrap_or_else(|_| "/usr/bin/docker-registry".into());
        assert!(
            Path::new(&binary).exists(),
            "the OCI tests need Debian's docker-registry at `{binary}`: run scripts/setup (or set MDL_TEST_REGISTRY)"
        );
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        std::fs::write(dir.path().join("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
        let port = free_port();
        let tls = match tls {
            None => String::new(),
            Some(identity) => {
                std::fs::write(dir.path().join("cert.pem"), identity.cert_pem).unwrap();
                std::fs::write(dir.path().join("key.pem"), identity.key_pem).unwrap();
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("cert.pem").display(),
                    dir.path().join("key.pem").display()
                )
            }
        };
        let auth = match tokens {
            None => format!(
                "  htpasswd:\n    realm: mdl-tests\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ),
            Some(tokens) => {
                std::fs::write(dir.path().join("token-ca.pem"), &tokens.cert_pem).unwrap();
                format!(
                    "  token:\n    realm: {}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    tokens.url,
                    dir.path().join("token-ca.pem").display()
                )
            }
        };
        let config = format!(
            r#"version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{tls}auth:
{auth}"#,
            root = dir.path().join("data").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting `{binary}`: {e}"));
        let registry = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        for _ in 0..200 {
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("the registry did not start: {}", self.log());
    }

    /// What the registry logged (its access log among it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Upload sessions started for `repo` (`POST /v2/<repo>/blobs/uploads/`),
    /// mounts excluded: how many blobs were sent.
    pub fn uploads_started(&self, repo: &str) -> usize {
        let needle = format!("\"POST /v2/{repo}/blobs/uploads/ ");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Requests for blob bodies of `repo` that the registry answered.
    pub fn blob_gets(&self, repo: &str) -> usize {
        let needle = format!("\"GET /v2/{repo}/blobs/sha256:");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Removes a blob from the registry's storage (as a garbage collection
    /// or a partial replication would leave it).
    pub fn delete_blob(&self, digest: &str) {
        let hex = digest.trim_start_matches("sha256:");
        let path = self
            .dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex);
        std::fs::remove_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// A Docker config dir whose `config.json` logs in as `user`/`password`.
    pub fn docker_config(&self, user: &str, password: &str) -> PathBuf {
        use base64::Engine as _;
        let dir = self.dir.path().join(format!("docker-{user}-{}", password.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let config = serde_json::json!({ "auths": { &self.host: { "auth": auth } } });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        dir
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A context whose mdl logs in to `registry`.
pub(crate) fn logged_in(ctx: &mut TestContext, registry: &Registry) {
    ctx.env.push((
        "DOCKER_CONFIG".into(),
        registry.docker_config(USER, PASSWORD).display().to_string(),
    ));
}

pub(crate) fn json_of(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

/// A Hub repo with one large file (fetched in ranged pieces) and the
/// standard small ones.
pub(crate) fn two_models_one_large(ctx: &TestContext) -> Vec<u8> {
    standard_hub(ctx);
    let large = hub_emulator::pseudo_random_bytes(7, 40 << 20).to_vec();
    ctx.hub.commit(
        "acme/large",
        "main",
        vec![
            (
                "config.json",
                Some(hub_emulator::Blob::regular(&br#"{"model_type": "x"}"#[..])),
            ),
            ("weights.bin", Some(hub_emulator::Blob::lfs(large.clone()))),
        ],
    );
    large
}

pub(crate) const TWO_MODELS: &str = r#"
models:
  require:
    - huggingface:acme/tiny-bert
    - huggingface:acme/large
"#;

#[test]
fn push_then_a_fresh_project_syncs_everything_from_the_mirror_with_the_hub_stopped() {
    let registry = Registry::start();
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    let large = two_models_one_large(&ctx);
    ctx.write_config(TWO_MODELS);
    ctx.mdl(&["sync", "--no-verify"]).success();
    let target = format!("oci://{}/team/models:v1", registry.host);
    let pushed = json_of(&ctx.mdl(&["push", &target, "--json"]).success());
    assert_eq!(pushed["models"].as_array().unwrap().len(), 2, "{pushed}");
    assert_eq!(pushed["uploaded"]["files"], 5, "{pushed}");
    assert_eq!(
        registry.uploads_started("team/models"),
        5 + 2,
        "five files and each model's ModelPack config"
    );

    // Again: nothing is sent twice.
    let again = json_of(&ctx.mdl(&["push", &target, "--json"]).success());
    assert_eq!(again["uploaded"]["files"], 0, "{again}");
    assert_eq!(again["present"]["files"], 5, "{again}");
    assert_eq!(again["index"], pushed["index"], "the same lock makes the same index");
    assert_eq!(registry.uploads_started("team/models"), 7, "no blob uploaded twice");

    // A fresh project with only the config and the lock, the Hub stopped.
    let mut fresh = TestContext::new();
    logged_in(&mut fresh, &registry);
    std::fs::write(fresh.path().join("config.yaml"), ctx.read("config.yaml")).unwrap();
    std::fs::write(fresh.path().join("models.lock"), ctx.read("models.lock")).unwrap();
    let stopped_hub = ctx.hub.url();
    drop(ctx);
    fresh.env.push(("HF_ENDPOINT".into(), stopped_hub));
    fresh
        .env
        .push(("MDL_MIRROR".into(), format!("oci://{}/team/models", registry.host)));
    let synced = json_of(&fresh.mdl(&["sync", "--json"]).success());
    assert_eq!(synced["fetched"]["files"], 5, "{synced}");
    assert_eq!(synced["mirrored"]["files"], 5, "{synced}");
    assert_eq!(fresh.read("models/huggingface_acme--large/weights.bin"), large);
    assert!(fresh.requests().is_empty(), "the context's own hub saw nothing either");
    // The large file came in ranged pieces: more GETs than files.
    assert!(registry.blob_gets("team/models") > 5, "{}", registry.log());
    for model in synced["models"].as_array().unwrap() {
        // `weights.bin` is random bytes: a weight file mdl cannot read is
        // checked by hash only, and never called verified.
        let want = if model["name"] == "acme/large" {
            "hash_checked"
        } else {
            "verified"
        };
        assert_eq!(model["status"], want, "{synced}");
    }
    assert_eq!(
        synced["models"][0]["hash_only"]["weights.bin"],
        "a `.bin` file that is not torch, safetensors or GGUF"
    );
    // The lock is what it was: a mirror never changes it.
    fresh.mdl(&["sync", "--locked", "--offline"]).success();
}

#[test]
fn a_mirror_missing_one_file_falls_back_to_upstream_for_that_file_only() {
    let registry = Registry::start();
    let mut ctx = synced_tiny_bert();
    logged_in(&mut ctx, &registry);
    let mirror = format!("oci://{}/mirror", registry.host);
    ctx.mdl(&["push", &mirror]).success().snap_without_sizes("oci_push");
    let lock = ctx.read_str("models.lock");
    let vocab_sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(b"[PAD]\n[UNK]\nhello\n"))
    };
    registry.delete_blob(&vocab_sha256);

    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.clear_shared_store();
    ctx.write_config(&format!(
        r#"
models:
  require:
    - huggingface:acme/tiny-bert
  download:
    mirrors: ["{mirror}"]
"#
    ));
    let before = ctx.body_requests().len();
    let run = ctx.mdl(&["sync", "--json", "--no-verify"]).success();
    let synced = json_of(&run);
    assert_eq!(synced["fetched"]["files"], 3, "{synced}");
    assert_eq!(synced["mirrored"]["files"], 2, "{synced}");
    let upstream: Vec<String> = ctx.body_requests()[before..].iter().map(|r| r.path.clone()).collect();
    assert_eq!(upstream.len(), 1, "{upstream:?}");
    assert!(upstream[0].ends_with("tokenizer/vocab.txt"), "{upstream:?}");
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/tokenizer/vocab.txt"),
        b"[PAD]\n[UNK]\nhello\n"
    );
    run.stderr_has("from upstream");
    assert_eq!(ctx.read_str("models.lock"), lock, "a mirror never changes the lock");
}

#[test]
fn an_oci_model_locks_to_its_digest_and_syncs_and_verifies() {
    let registry = Registry::start();
    let mut ctx = synced_tiny_bert();
    logged_in(&mut ctx, &registry);
    let pushed = json_of(
        &ctx.mdl(&["push", &format!("oci://{}/published", registry.host), "--json"])
            .success(),
    );
    let tag = pushed["models"][0]["tag"].as_str().unwrap().to_string();
    let digest = pushed["models"][0]["digest"].as_str().unwrap().to_string();

    let mut consumer = TestContext::new();
    logged_in(&mut consumer, &registry);
    consumer.write_config(&format!(
        r#"
models:
  require:
    - id: oci:{}/published:{tag}
      name: bert
"#,
        registry.host
    ));
    let run = consumer.mdl(&["sync", "--json"]).success();
    let synced = json_of(&run);
    assert_eq!(synced["models"][0]["status"], "verified", "{synced}");
    let lock = consumer.read_str("models.lock");
    assert!(lock.contains(&format!("commit = \"{digest}\"")), "{lock}");
    assert!(lock.contains("source = \"oci\""), "{lock}");
    assert!(!lock.contains(PASSWORD), "credentials never reach the lock");
    assert_eq!(consumer.read("models/oci_bert/model.safetensors"), SAFETENSORS);
    assert!(consumer.requests().is_empty(), "an oci: model needs no Hub");
}

#[test]
fn a_wrong_password_is_a_clear_error_that_never_shows_the_password() {
    let registry = Registry::start();
    let mut ctx = synced_tiny_bert();
    let wrong = "not-the-password-42";
    ctx.env.push((
        "DOCKER_CONFIG".into(),
        registry.docker_config(USER, wrong).display().to_string(),
    ));
    let run = ctx
        .mdl(&["push", &format!("oci://{}/team/models", registry.host)])
        .failure(1);
    assert!(!run.stderr().contains(wrong), "{}", run.stderr());
    assert!(!run.stdout().contains(wrong));
    run.snap("oci_wrong_password")
        .stderr_has("refused the credentials of user `ci`")
        .stderr_has("docker login");
    // No credentials at all: the same refusal, with the way to log in.
    ctx.env.retain(|(k, _)| k != "DOCKER_CONFIG");
    let none = ctx.path().join("no-docker").display().to_string();
    ctx.env.push(("DOCKER_CONFIG".into(), none));
    ctx.mdl(&["push", &format!("oci://{}/team/models", registry.host)])
        .failure(1)
        .stderr_has("docker login");
}

/// A project of the one standard Hub model (`acme/tiny-bert`), synced.
fn synced_tiny_bert() -> TestContext {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config("models:\n  require:\n    - huggingface:acme/tiny-bert\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    ctx
}

/// A lock of the one standard Hub model, synced and pushed to `repo`.
pub(crate) fn pushed_tiny_bert(registry: &Registry, repo: &str) -> (TestContext, serde_json::Value) {
    let mut ctx = synced_tiny_bert();
    logged_in(&mut ctx, registry);
    let pushed = json_of(
        &ctx.mdl(&["push", &format!("oci://{}/{repo}", registry.host), "--json"])
            .success(),
    );
    (ctx, pushed)
}

#[test]
fn a_second_repository_of_the_same_registry_mounts_what_a_mirror_has() {
    let registry = Registry::start();
    let (mut ctx, first) = pushed_tiny_bert(&registry, "team/models");
    assert_eq!(first["uploaded"]["files"], 3, "{first}");
    ctx.env
        .push(("MDL_MIRROR".into(), format!("oci://{}/team/models", registry.host)));
    let second = json_of(
        &ctx.mdl(&["push", &format!("oci://{}/team/other", registry.host), "--json"])
            .success(),
    );
    assert_eq!(second["mounted"]["files"], 3, "{second}");
    assert_eq!(second["uploaded"]["files"], 0, "{second}");
    assert_eq!(
        registry.uploads_started("team/other"),
        1,
        "only the 2-byte empty config"
    );
}

#[test]
fn credentials_from_a_docker_credential_helper() {
    let registry = Registry::start();
    let mut ctx = synced_tiny_bert();
    // A helper as `docker login` with `credHelpers` installs one.
    let bin = ctx.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-mdltest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = ctx.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({ "credHelpers": { &registry.host: "mdltest" } }).to_string(),
    )
    .unwrap();
    ctx.env.push(("DOCKER_CONFIG".into(), docker.display().to_string()));
    ctx.env.push((
        "PATH".into(),
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    ));
    let pushed = json_of(
        &ctx.mdl(&["push", &format!("oci://{}/helper", registry.host), "--json"])
            .success(),
    );
    assert_eq!(pushed["uploaded"]["files"], 3, "{pushed}");
}

#[test]
fn an_oci_model_by_digest_or_by_name_in_a_pushed_lock() {
    let registry = Registry::start();
    let mut pusher = TestContext::new();
    logged_in(&mut pusher, &registry);
    standard_hub(&pusher);
    pusher
        .write_config("models:\n  require:\n    - huggingface:acme/tiny-bert\n    - huggingface:acme/tiny-gpt@v1.0\n");
    pusher.mdl(&["sync", "--no-verify"]).success();
    let pushed = json_of(
        &pusher
            .mdl(&["push", &format!("oci://{}/published:v1", registry.host), "--json"])
            .success(),
    );
    let digest_of = |name: &str| {
        pushed["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);

    // By digest: pinned as written.
    let bert = digest_of("acme/tiny-bert");
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/published@{bert}\n      name: bert\n",
        registry.host
    ));
    ctx.mdl(&["sync", "--no-verify"]).success();
    let lock = ctx.read_str("models.lock");
    assert!(lock.contains(&format!("revision = \"{bert}\"")), "{lock}");
    assert!(lock.contains(&format!("commit = \"{bert}\"")), "{lock}");

    // The lock's index at `v1`, and a model of it by name: that model's own
    // manifest is pinned.
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/published:v1\n      name: tiny-gpt\n",
        registry.host
    ));
    ctx.mdl(&["sync", "--no-verify"]).success();
    let lock = ctx.read_str("models.lock");
    assert!(
        lock.contains(&format!("commit = \"{}\"", digest_of("acme/tiny-gpt"))),
        "{lock}"
    );
    assert!(lock.contains("revision = \"v1\""), "{lock}");
    assert_eq!(ctx.read("models/oci_tiny-gpt/model.safetensors"), SAFETENSORS);

    // A name the index does not hold: refused, listing what it holds.
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/published:v1\n      name: all\n",
        registry.host
    ));
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("oci_index_is_not_a_model")
        .stderr_has("is an index of 2 model(s), not one model")
        .stderr_has("`acme/tiny-bert` (`oci:")
        .stderr_has("`acme/tiny-gpt` (`oci:");
}

/// `curl` against the registry, as ORAS or a ModelPack tool would publish.
pub(crate) fn curl(registry: &Registry, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-f", "-u", &format!("{USER}:{PASSWORD}")])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = registry;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn curl_push_blob(registry: &Registry, repo: &str, data: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let headers = curl(
        registry,
        &[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            &format!("http://{}/v2/{repo}/blobs/uploads/", registry.host),
        ],
    );
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .expect("an upload location")
        .trim()
        .to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{}{location}", registry.host)
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    curl(
        registry,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.path().display()),
            &format!("{location}{sep}digest={digest}"),
        ],
    );
    digest
}

#[test]
fn an_oras_style_artifact_is_a_model_too() {
    let registry = Registry::start();
    let weights = curl_push_blob(&registry, "oras/model", SAFETENSORS);
    let config = curl_push_blob(&registry, "oras/model", b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.model",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2 },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": weights,
            "size": SAFETENSORS.len(),
            "annotations": { "org.opencontainers.image.title": "model.safetensors" },
        }],
    });
    curl_put_manifest(&registry, "oras/model", "v1", &manifest);
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/oras/model:v1\n      name: oras\n",
        registry.host
    ));
    let synced = json_of(&ctx.mdl(&["sync", "--json"]).success());
    assert_eq!(synced["models"][0]["status"], "verified", "{synced}");
    assert_eq!(ctx.read("models/oci_oras/model.safetensors"), SAFETENSORS);
    let lock = ctx.read_str("models.lock");
    assert!(
        lock.contains(&weights.trim_start_matches("sha256:").to_string()),
        "the layer's sha256 is locked: {lock}"
    );
}

#[test]
fn a_registry_behind_a_private_ca_is_trusted_through_ssl_cert_file() {
    let (ca_pem, identity) = crate::tls::private_ca();
    let registry = Registry::start_tls(identity);
    let mut ctx = synced_tiny_bert();
    logged_in(&mut ctx, &registry);
    let target = format!("oci://{}/secure", registry.host);
    // Spoken to over HTTPS (it answers TLS), and refused until its CA is trusted.
    ctx.mdl(&["push", &target])
        .failure(1)
        .snap("oci_untrusted_registry")
        .stderr_has("is not trusted")
        .stderr_has("SSL_CERT_FILE");
    let ca = ctx.path().join("corporate-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    ctx.env.push(("SSL_CERT_FILE".into(), ca.display().to_string()));
    let pushed = json_of(&ctx.mdl(&["push", &target, "--json"]).success());
    assert_eq!(pushed["uploaded"]["files"], 3, "{pushed}");
    // And a model synced from it, over the same trust.
    let mut consumer = TestContext::new();
    logged_in(&mut consumer, &registry);
    consumer.env.push(("SSL_CERT_FILE".into(), ca.display().to_string()));
    consumer.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/secure:{}\n      name: bert\n",
        registry.host,
        pushed["models"][0]["tag"].as_str().unwrap()
    ));
    consumer.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(consumer.read("models/oci_bert/model.safetensors"), SAFETENSORS);
}

#[test]
fn doctor_checks_each_mirror_and_its_login() {
    let registry = Registry::start();
    let mut ctx = TestContext::new();
    ctx.write_config(&format!(
        "models:\n  require: []\n  download:\n    mirrors: [\"oci://{}/team/models\"]\n",
        registry.host
    ));
    let mirror_finding = |ctx: &TestContext| {
        let out = ctx.command(&["doctor", "--json"]).output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "mirror")
            .cloned()
            .expect("a mirror finding")
    };
    ctx.env.push((
        "DOCKER_CONFIG".into(),
        registry.docker_config(USER, "wrong-one").display().to_string(),
    ));
    let refused = mirror_finding(&ctx);
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(refused["hint"].as_str().unwrap().contains("docker login"), "{refused}");
    assert!(!refused.to_string().contains("wrong-one"));
    ctx.env.retain(|(k, _)| k != "DOCKER_CONFIG");
    logged_in(&mut ctx, &registry);
    let accepted = mirror_finding(&ctx);
    assert_eq!(accepted["ok"], true, "{accepted}");
    assert!(
        accepted["detail"].as_str().unwrap().contains("logged in as `ci`"),
        "{accepted}"
    );
}

const SERVICE: &str = "mdl-test-registry";
const ISSUER: &str = "mdl-test-token-issuer";

/// A registry token server on 127.0.0.1, as the distribution spec's token
/// flow has one: basic credentials in, an ES256 JWT out, signed with a key
/// whose certificate the registry trusts (`rootcertbundle`).
pub struct TokenServer {
    pub url: String,
    pub cert_pem: String,
    /// Tokens issued (a refusal is not counted).
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The next token issued is already expired (a token that ran out
    /// during a long transfer).
    expire_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TokenServer {
    pub fn start() -> TokenServer {
        use std::io::{BufRead, Write};
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mdl-token-issuer".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let cert_der = cert.der().to_vec();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        let expire_next = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let expire = expire_next.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut authorization = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") {
                            authorization = Some(value.trim().to_string());
                        }
                    }
                }
                let target = request_line.split_whitespace().nth(1).unwrap_or("/");
                let expired = expire.swap(false, std::sync::atomic::Ordering::SeqCst);
                let answer = match token_for(target, authorization.as_deref(), &signer, &cert_der, expired) {
                    Some(token) => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let body =
                            serde_json::json!({ "token": token, "access_token": token, "expires_in": 300 }).to_string();
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    }
                    None => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        TokenServer {
            url,
            cert_pem: cert.pem(),
            issued,
            expire_next,
        }
    }

    pub fn expire_next_token(&self) {
        self.expire_next.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn issued(&self) -> usize {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The token for `GET /token?service=…&scope=repository:NAME:ACTIONS…`, if the
/// basic credentials are right.
fn token_for(
    target: &str,
    authorization: Option<&str>,
    signer: &ring::signature::EcdsaKeyPair,
    cert_der: &[u8],
    expired: bool,
) -> Option<String> {
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    if authorization != Some(expected.as_str()) {
        return None;
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        let Some(scope) = pair.strip_prefix("scope=") else {
            continue;
        };
        let scope = percent_decode(scope);
        // `repository:team/models:pull,push`
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        access
            .push(serde_json::json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }));
    }
    let mut now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if expired {
        // Issued an hour ago for 300 s: past any leeway the registry allows.
        now -= 3600;
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": USER,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = signer
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    Some(format!("{signing_input}.{}", b64(signature.as_ref())))
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .replace('+', " ")
}

#[test]
fn the_registry_token_flow_for_push_mirror_and_oci_models() {
    let tokens = TokenServer::start();
    let registry = Registry::start_with_token_auth(&tokens);
    let (_ctx, pushed) = pushed_tiny_bert(&registry, "team/models");
    assert_eq!(pushed["uploaded"]["files"], 3, "{pushed}");
    assert!(tokens.issued() > 0, "the push went through the token server");
    let issued_for_push = tokens.issued();

    // An `oci:` model: its blob GETs carry the bearer token.
    let mut consumer = TestContext::new();
    logged_in(&mut consumer, &registry);
    consumer.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/team/models:{}\n      name: bert\n",
        registry.host,
        pushed["models"][0]["tag"].as_str().unwrap()
    ));
    consumer.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(consumer.read("models/oci_bert/model.safetensors"), SAFETENSORS);
    assert!(tokens.issued() > issued_for_push);
    // One token for the manifest, one for all three blobs: not one per file.
    assert!(
        tokens.issued() - issued_for_push <= 2,
        "{} tokens",
        tokens.issued() - issued_for_push
    );

    // Without credentials the token server refuses: a clear error, not a hang.
    let mut anonymous = TestContext::new();
    anonymous.env.push((
        "DOCKER_CONFIG".into(),
        anonymous.path().join("none").display().to_string(),
    ));
    anonymous.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/team/models:{}\n      name: bert\n",
        registry.host,
        pushed["models"][0]["tag"].as_str().unwrap()
    ));
    anonymous.mdl(&["lock"]).failure(1).stderr_has("docker login");
}

#[test]
fn a_bearer_token_that_expired_is_renewed_and_the_download_goes_on() {
    let tokens = TokenServer::start();
    let registry = Registry::start_with_token_auth(&tokens);
    let (_pusher, pushed) = pushed_tiny_bert(&registry, "team/models");
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/team/models:{}\n      name: bert\n",
        registry.host,
        pushed["models"][0]["tag"].as_str().unwrap()
    ));
    ctx.mdl(&["lock"]).success();
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.clear_shared_store();
    // The sync's first token is already expired: the registry answers 401.
    tokens.expire_next_token();
    let before = tokens.issued();
    ctx.mdl(&["sync", "--no-verify", "-j", "1"]).success();
    assert_eq!(ctx.read("models/oci_bert/model.safetensors"), SAFETENSORS);
    assert!(tokens.issued() > before + 1, "a fresh token was asked for");
    assert!(
        registry.log().contains("token is expired") || registry.log().contains("\" 401 "),
        "the registry refused the expired token: {}",
        registry.log()
    );
}

/// `examples/configs/fleet.yaml`, with the test registry for the team's: a
/// private model from the registry, a public one from upstream (the mirror
/// lacks it).
#[test]
fn the_fleet_example_syncs_against_a_registry_and_the_hub() {
    let registry = Registry::start();
    let mut pusher = TestContext::new();
    logged_in(&mut pusher, &registry);
    standard_hub(&pusher);
    pusher.write_config("models:\n  require:\n    - id: huggingface:acme/tiny-bert\n      name: support-bert\n");
    pusher.mdl(&["sync", "--no-verify"]).success();
    pusher
        .mdl(&["push", &format!("oci://{}/ml/models:v3", registry.host)])
        .success();

    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    minilm_hub(&ctx);
    let example =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs/fleet.yaml"))
            .unwrap();
    std::fs::write(
        ctx.path().join("config.yaml"),
        example.replace("registry.acme.internal", &registry.host),
    )
    .unwrap();
    let synced = json_of(&ctx.mdl(&["sync", "--json"]).success());
    let models = synced["models"].as_array().unwrap();
    assert!(models.len() >= 2, "the fleet example's models: {synced}");
    for model in models {
        assert_eq!(model["status"], "verified", "{synced}");
    }
    assert_eq!(ctx.read("models/oci_support-bert/model.safetensors"), SAFETENSORS);
    assert!(ctx.read_str("models.lock").contains("source = \"oci\""));
}

/// A registry's manifest is input too (issue 19): pushed with plain
/// distribution-API calls, layers whose file names escape, collide or hide
/// are refused before anything is written, with the registry's password and
/// a secret beside the project untouched.
#[test]
fn hostile_registry_manifests_are_refused_and_nothing_is_written_outside() {
    let registry = Registry::start();
    let weights = curl_push_blob(&registry, "evil/model", SAFETENSORS);
    let config = curl_push_blob(&registry, "evil/model", b"{}");
    let cases = [
        ("../../../sentinel/evil.safetensors", "would escape the model directory"),
        ("/etc/evil.safetensors", "would escape the model directory"),
        ("a/../../b.safetensors", "would escape the model directory"),
        ("evil\u{1b}[2J.safetensors", "would escape the model directory"),
    ];
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    // Each name as an ORAS-style title, and as a ModelPack layer's
    // `org.cncf.model.filepath` with no title at all.
    let layouts = [
        (
            "application/vnd.oci.image.layer.v1.tar",
            "org.opencontainers.image.title",
        ),
        ("application/vnd.cncf.model.weight.v1.raw", "org.cncf.model.filepath"),
    ];
    for (i, ((title, needle), (media_type, key))) in cases
        .iter()
        .flat_map(|c| layouts.iter().map(move |l| (c, l)))
        .enumerate()
    {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2 },
            "layers": [{
                "mediaType": media_type,
                "digest": weights,
                "size": SAFETENSORS.len(),
                "annotations": { *key: title },
            }],
        });
        curl_put_manifest(&registry, "evil/model", &format!("t{i}"), &manifest);
        ctx.write_config(&format!(
            "models:\n  require:\n    - id: oci:{}/evil/model:t{i}\n      name: evil\n",
            registry.host
        ));
        let run = ctx.mdl(&["sync", "--no-verify"]);
        assert_eq!(run.output.status.code(), Some(1), "{key} {title:?}: {}", run.stderr());
        assert!(run.stderr().contains(needle), "{key} {title:?}: {}", run.stderr());
        assert!(!run.stderr().contains(PASSWORD), "the password was printed");
        assert!(!ctx.path().join("models.lock").exists(), "nothing was locked");
    }
    // Where the first name would have landed: beside the project.
    let target = ctx.path().parent().unwrap().join("sentinel/evil.safetensors");
    assert!(!target.exists(), "written outside the project: {}", target.display());
    assert!(!Path::new("/etc/evil.safetensors").exists());
}

/// PUTs an OCI manifest as any client would (plain distribution-API calls).
pub(crate) fn curl_put_manifest(registry: &Registry, repo: &str, tag: &str, manifest: &serde_json::Value) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest.to_string()).unwrap();
    curl(
        registry,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            &format!("@{}", file.path().display()),
            &format!("http://{}/v2/{repo}/manifests/{tag}", registry.host),
        ],
    );
}
