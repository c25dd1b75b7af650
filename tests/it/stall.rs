//! Every wait has a deadline: a server that accepts a request and then goes
//! silent (no response headers, or a body that stops), on every route mdl
//! uses — the Hub's listing, file GETs (whole and in ranged pieces), the CDN,
//! a `url:` server that answers `HEAD` but never a `GET`, Xet's token,
//! reconstructions and xorbs, and an OCI registry's manifests, blobs and
//! pushes — is retried like any transient failure and then a clear error
//! naming the host, well under a minute with `stall_timeout_seconds: 2`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_emulator::{Silence, XetSettings};

use crate::common::*;

/// Two tries at most, two seconds of silence each.
const DEADLINES: &str = "  download:\n    stall_timeout_seconds: 2\n    retries: 2\n";

fn hub_model(ctx: &TestContext, repo: &str, weights: usize) {
    ctx.hub.commit(
        repo,
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            (
                "model.safetensors",
                Some(Blob::lfs(hub_emulator::pseudo_random_bytes(3, weights))),
            ),
        ],
    );
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: {repo}\n      verify: false\n{DEADLINES}"
    ));
}

/// Runs `mdl args`, which must fail within `limit` and say `said`.
#[track_caller]
fn fails_fast(ctx: &TestContext, args: &[&str], said: &[&str]) -> Run {
    let started = Instant::now();
    let run = ctx.mdl(args).failure(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(40), "took {took:?}:\n{}", run.stderr());
    for needle in said {
        assert!(
            run.stderr().contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr()
        );
    }
    run
}

/// How messages name the emulator: `127.0.0.1:PORT`.
fn hub_host(ctx: &TestContext) -> String {
    format!("`{}`", ctx.hub.url().trim_start_matches("http://"))
}

/// How many requests reached `prefix`.
fn tries(ctx: &TestContext, prefix: &str) -> usize {
    ctx.requests().iter().filter(|r| r.path.starts_with(prefix)).count()
}

#[test]
fn a_hub_listing_that_never_answers_is_an_error_naming_the_host() {
    let ctx = TestContext::new();
    hub_model(&ctx, "acme/x", 1000);
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::before_headers("GET", "/api/models/")]);
    fails_fast(&ctx, &["lock"], &[&hub_host(&ctx), "sent no answer", "stall deadline"]);
    assert_eq!(tries(&ctx, "/api/models/"), 2, "retried once");
    // A body that stops half-way is the same.
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::mid_body("GET", "/api/models/", 20)]);
    fails_fast(&ctx, &["lock"], &[&hub_host(&ctx), "stopped sending the answer's body"]);
}

#[test]
fn a_file_get_that_never_answers_or_stops_midway_is_an_error() {
    let ctx = TestContext::new();
    hub_model(&ctx, "acme/x", 1000);
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::before_headers("GET", "/acme/x/resolve/")]);
    fails_fast(&ctx, &["sync"], &[&hub_host(&ctx), "sent no answer"]);
    ctx.hub.clear_requests();
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::mid_body("GET", "/acme/x/resolve/", 100)]);
    fails_fast(&ctx, &["sync"], &["stopped sending the answer's body", "(stalled)"]);
    // Recovered, the next sync completes.
    ctx.hub.update_behaviour(|b| b.silences.clear());
    ctx.mdl(&["sync"]).success();
}

#[test]
fn ranged_pieces_of_a_large_file_that_stall_are_an_error() {
    let ctx = TestContext::new();
    hub_model(&ctx, "acme/big", 33 << 20);
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::mid_body("GET", "/acme/big/resolve/", 1 << 20)]);
    fails_fast(&ctx, &["sync"], &["stopped sending the answer's body"]);
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::before_headers("GET", "/acme/big/resolve/")]);
    fails_fast(&ctx, &["sync"], &["sent no answer"]);
}

#[test]
fn a_cdn_that_never_answers_is_an_error() {
    let ctx = TestContext::new();
    ctx.hub.update_behaviour(|b| b.lfs_redirect = true);
    hub_model(&ctx, "acme/x", 1000);
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::before_headers("GET", "/cdn/")]);
    fails_fast(&ctx, &["sync"], &["sent no answer"]);
}

#[test]
fn a_url_server_that_answers_head_but_never_get_is_an_error() {
    let ctx = TestContext::new();
    ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: url:{{hub}}/files/w/model.pt\n      verify: false\n{DEADLINES}"
    ));
    ctx.hub
        .update_behaviour(|b| b.silences = vec![Silence::before_headers("GET", "/files/")]);
    fails_fast(&ctx, &["lock"], &["sent no answer"]);
    assert!(
        ctx.requests().iter().any(|r| r.method == "HEAD"),
        "{:?}",
        ctx.requests()
    );
    assert_eq!(
        ctx.requests().iter().filter(|r| r.method == "GET").count(),
        2,
        "{:?}",
        ctx.requests()
    );
}

/// `acme/xet` on a Hub that serves it over Xet.
fn xet_model(ctx: &TestContext) {
    ctx.hub.update_behaviour(|b| b.xet = Some(XetSettings::default()));
    hub_model(ctx, "acme/xet", 2 << 20);
}

#[test]
fn each_xet_route_that_goes_silent_is_an_error() {
    for (silence, said) in [
        (
            Silence::before_headers("GET", "/api/models/acme/xet/xet-read-token/"),
            "sent no answer",
        ),
        (Silence::before_headers("GET", "/v2/reconstructions/"), "sent no answer"),
        (Silence::mid_body("GET", "/v2/reconstructions/", 10), "stopped sending"),
        (Silence::before_headers("GET", "/xorbs/"), "sent no answer"),
        (Silence::mid_body("GET", "/xorbs/", 1000), "stopped sending"),
    ] {
        let ctx = TestContext::new();
        xet_model(&ctx);
        let path = silence.path_prefix.clone();
        let host = "`127.0.0.1:".to_string();
        ctx.hub.update_behaviour(|b| b.silences = vec![silence]);
        fails_fast(&ctx, &["sync"], &[&host, said]);
        assert!(tries(&ctx, &path) >= 2, "{path}: retried: {:?}", ctx.requests());
    }
}

/// A TCP proxy in front of `upstream` that goes silent on a connection once
/// a request whose bytes hold `pattern` has passed: no answer at all, or
/// `after` bytes of it. What registries and their load balancers do when
/// they hang.
struct SilentProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SilentProxy {
    fn start(upstream: String, pattern: &'static str, after: usize) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let silenced = Arc::new(AtomicBool::new(false));
                let (c2, s2, flag) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    silenced.clone(),
                );
                std::thread::spawn(move || pump_requests(c2, s2, pattern, flag));
                std::thread::spawn(move || pump_answers(server, client, after, silenced));
            }
        });
        SilentProxy { port, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pump_requests(mut from: TcpStream, mut to: TcpStream, pattern: &str, silenced: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        if String::from_utf8_lossy(&buf[..n]).contains(pattern) {
            silenced.store(true, Ordering::Relaxed);
        }
    }
}

fn pump_answers(mut from: TcpStream, mut to: TcpStream, mut after: usize, silenced: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        let pass = if silenced.load(Ordering::Relaxed) {
            n.min(after)
        } else {
            n
        };
        if silenced.load(Ordering::Relaxed) {
            after -= pass;
        }
        if to.write_all(&buf[..pass]).is_err() {
            break;
        }
    }
    // Keep the client's side open and quiet.
    std::thread::sleep(Duration::from_secs(120));
}

/// The registry's login, for the proxy's host too.
fn logged_in_through(ctx: &mut TestContext, proxy: &SilentProxy) {
    use base64::Engine as _;
    let dir = ctx.path().join("docker");
    std::fs::create_dir_all(&dir).unwrap();
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", crate::oci::USER, crate::oci::PASSWORD));
    let config = serde_json::json!({ "auths": { proxy.host(): { "auth": auth } } });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    ctx.env.retain(|(k, _)| k != "DOCKER_CONFIG");
    ctx.env.push(("DOCKER_CONFIG".into(), dir.display().to_string()));
}

#[test]
fn an_oci_registry_that_goes_silent_on_manifests_blobs_or_pushes_is_an_error() {
    let registry = crate::oci::Registry::start();
    let (_, pushed) = crate::oci::pushed_tiny_bert(&registry, "published");
    let tag = pushed["models"][0]["tag"].as_str().unwrap().to_string();
    for (pattern, after, said) in [
        ("/manifests/", 0, "stalled"),
        ("GET /v2/published/blobs/sha256:", 0, "sent no answer"),
    ] {
        let proxy = SilentProxy::start(registry.host.clone(), pattern, after);
        let mut ctx = TestContext::new();
        logged_in_through(&mut ctx, &proxy);
        ctx.write_config(&format!(
            "models:\n  require:\n    - id: oci:{}/published:{tag}\n      name: bert\n      verify: false\n{DEADLINES}",
            proxy.host()
        ));
        fails_fast(&ctx, &["sync"], &[&proxy.host(), said]);
    }
    // A push whose upload PATCH is never answered.
    let proxy = SilentProxy::start(registry.host.clone(), "PATCH /v2/", 0);
    let (mut ctx, _) = crate::oci::pushed_tiny_bert(&registry, "first");
    logged_in_through(&mut ctx, &proxy);
    ctx.write_config(&format!(
        "models:\n  require:\n    - huggingface:acme/tiny-bert\n{DEADLINES}"
    ));
    fails_fast(
        &ctx,
        &["push", &format!("oci://{}/again", proxy.host())],
        &[&proxy.host()],
    );
}
