//! `mdl watch`, driven as a real process; every wait is on an observable
//! event (a JSON line on its stdout) with a timeout.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::common::*;

struct Watcher {
    child: Child,
    events: Receiver<serde_json::Value>,
}

impl Watcher {
    /// Starts `mdl watch --json --config sub/config.yaml` from the project root,
    /// so the config lives in a directory given by `--config`.
    fn start(ctx: &TestContext, extra: &[&str]) -> Watcher {
        let mut args = vec!["watch", "--json", "--config", "sub/config.yaml"];
        args.extend_from_slice(extra);
        let mut child = ctx
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut w = Watcher { child, events };
        w.next_event("watching");
        w
    }

    /// The next event of `kind`, failing on a timeout or on an unexpected `failed`.
    #[track_caller]
    fn next_event(&mut self, kind: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == kind => return v,
                Ok(v) if v["event"] == "failed" && kind != "failed" => panic!("watch run failed: {v}"),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!("no `{kind}` event within 30 s"),
                Err(RecvTimeoutError::Disconnected) => panic!("mdl watch exited while waiting for `{kind}`"),
            }
        }
    }

    /// The next `synced` event for which `what` holds. A run that changed
    /// nothing (an editor's second event for one save) may come first; it is
    /// skipped, but a failed run still fails the test.
    #[track_caller]
    fn synced_where(&mut self, what: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            let event = self.next_event("synced");
            if what(&event) {
                return event;
            }
            let changed = ["added", "updated", "removed", "pruned"]
                .iter()
                .any(|k| !names(&event, k).is_empty());
            assert!(!changed, "a run changed something else than expected: {event}");
        }
    }

    /// Asserts no further run happens within `window`.
    #[track_caller]
    fn quiet_for(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        while let Ok(v) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let noop = v["event"] == "synced"
                && ["added", "updated", "removed", "pruned"]
                    .iter()
                    .all(|k| names(&v, k).is_empty());
            assert!(noop, "a second run happened: {v}");
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "mdl watch did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(ctx: &TestContext, yaml: &str) {
    std::fs::create_dir_all(ctx.path().join("sub")).unwrap();
    std::fs::write(
        ctx.path().join("sub/config.yaml"),
        yaml.replace("{hub}", &ctx.hub.url()),
    )
    .unwrap();
}

fn names(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn watch_follows_edits_and_survives_a_half_typed_config() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    write(&ctx, "models:\n  require:\n    - acme/tiny-bert\n");
    let mut w = Watcher::start(&ctx, &[]);
    let first = w.synced_where(|e| !names(e, "added").is_empty());
    assert_eq!(names(&first, "added"), ["acme/tiny-bert"]);
    assert!(ctx
        .path()
        .join("sub/models/huggingface_acme--tiny-bert/model.safetensors")
        .exists());

    write(
        &ctx,
        "models:\n  require:\n    - acme/tiny-bert\n    - id: url:{hub}/files/w/model.pt\n      name: custom\n",
    );
    let second = w.synced_where(|e| !names(e, "added").is_empty());
    assert_eq!(names(&second, "added"), ["custom"]);
    assert_eq!(names(&second, "verified"), ["custom"], "the new model is verified");
    assert_eq!(ctx.read("sub/models/url_custom/model.pt"), STATE_DICT);

    // A half-typed line: the error with its position, once; the watcher lives on.
    write(
        &ctx,
        "models:\n  require:\n    - acme/tiny-bert\n    - id: url:{hub}/files/w/model.pt\n      name: [cust\n",
    );
    let invalid = w.next_event("invalid_config");
    assert!(
        invalid["message"].as_str().unwrap().contains("config.yaml:5:"),
        "{invalid}"
    );
    assert!(w.alive());
    assert!(
        ctx.path().join("sub/models/url_custom/model.pt").exists(),
        "the last good state is kept"
    );

    // Fixed, minus the URL model: it leaves the lock but not the disk (no --prune).
    write(&ctx, "models:\n  require:\n    - acme/tiny-bert\n");
    let fixed = w.synced_where(|e| !names(e, "removed").is_empty());
    assert_eq!(names(&fixed, "removed"), ["custom"]);
    assert!(ctx.path().join("sub/models/url_custom/model.pt").exists());
}

#[test]
fn quick_edits_make_one_run_and_rename_saves_are_seen() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.hub.put_file("w/other.pt", Blob::regular(LEGACY));
    write(&ctx, "models:\n  require: [acme/tiny-bert]\n");
    let mut w = Watcher::start(&ctx, &["--prune"]);
    w.next_event("synced");

    // Two saves in a burst: one run, with the final content.
    write(
        &ctx,
        "models:\n  require: [acme/tiny-bert, \"url:{hub}/files/w/model.pt\"]\n",
    );
    write(
        &ctx,
        "models:\n  require: [acme/tiny-bert, \"url:{hub}/files/w/other.pt\"]\n",
    );
    let run = w.synced_where(|e| !names(e, "added").is_empty());
    assert_eq!(names(&run, "added"), ["other"]);
    w.quiet_for(Duration::from_millis(1500));
    assert!(
        !ctx.path().join("sub/models/url_model").exists(),
        "the intermediate content never ran"
    );

    // Saved the way vim does: a new file renamed over the config.
    let tmp = ctx.path().join("sub/.config.yaml.swp");
    std::fs::write(&tmp, "models:\n  require: [acme/tiny-bert]\n").unwrap();
    std::fs::rename(&tmp, ctx.path().join("sub/config.yaml")).unwrap();
    let renamed = w.synced_where(|e| !names(e, "removed").is_empty());
    assert_eq!(names(&renamed, "removed"), ["other"]);
    assert_eq!(
        names(&renamed, "pruned"),
        ["url_other"],
        "--prune deletes what left the config"
    );
    assert!(!ctx.path().join("sub/models/url_other").exists());
}

#[test]
fn sigint_stops_cleanly_and_leaves_only_resumable_partials() {
    let ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(31, 40 << 20);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(big.clone())))],
    );
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(4 << 20));
    write(&ctx, "models:\n  require: [acme/big]\n");
    let w = Watcher::start(&ctx, &[]);
    // Wait until the download is under way (a partial file exists).
    let tmp = ctx.path().join("sub/models/.mdl/tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&tmp).map(|d| d.count() > 0).unwrap_or(false) {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = w.interrupt();
    assert_eq!(status.code(), Some(0), "Ctrl-C is how a watch ends");
    let files: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with(".part")),
        "the interrupted download left a partial file: {files:?}"
    );
    for f in files.iter().filter(|f| f.ends_with(".part")) {
        assert!(
            files.contains(&format!("{f}.json")),
            "{f} has no resume state: {files:?}"
        );
    }
    // And a later sync continues it.
    ctx.hub.update_behaviour(|b| b.bandwidth = None);
    ctx.mdl(&["sync", "--no-verify", "--config", "sub/config.yaml"])
        .success();
    assert_eq!(ctx.read("sub/models/huggingface_acme--big/model.safetensors"), &big[..]);
}

/// `mdl watch` and `mdl sync` at once, on a file system where `flock` does not
/// keep them apart: both end correct, and the project is whole.
#[test]
fn watch_and_sync_at_once_both_end_correct() {
    let mut ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(1 << 20));
    ctx.env.push(("MDL_TEST_FLOCK_NOOP".into(), "1".into()));
    write(&ctx, "models:\n  require:\n    - acme/tiny-bert\n");
    let mut w = Watcher::start(&ctx, &["--no-verify"]);
    w.synced_where(|e| !names(e, "added").is_empty());
    // A change the watcher acts on, and a sync of the same project meanwhile.
    write(&ctx, "models:\n  require:\n    - acme/tiny-bert\n    - acme/tiny-gpt\n");
    let out = ctx
        .command(&["sync", "--no-verify", "--config", "sub/config.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The watcher acts on the change (whichever of the two got there first).
    w.synced_where(|_| true);
    assert!(w.alive(), "the watcher survived the concurrent sync");
    w.interrupt();
    ctx.hub.update_behaviour(|b| b.bandwidth = None);
    toml::from_str::<toml::Value>(&ctx.read_str("sub/models.lock")).expect("the lock parses");
    serde_json::from_slice::<serde_json::Value>(&ctx.read("sub/models/model_registry.json"))
        .expect("the registry parses");
    ctx.hub.clear_requests();
    let out = ctx
        .command(&["sync", "--no-verify", "--config", "sub/config.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        ctx.body_requests().is_empty(),
        "whole after both: {:?}",
        ctx.body_requests()
    );
    assert_eq!(
        ctx.read("sub/models/huggingface_acme--tiny-gpt/model.safetensors"),
        SAFETENSORS
    );
}
