//! The guarantees that must hold when things go wrong (see RELIABILITY.md).

use crate::common::*;

/// Four syncs of one project at once, on a "file system" where `flock`
/// succeeds for everyone (NFS, two containers sharing a volume): each writes
/// its own partial files, checks content before its atomic renames, and every
/// state file is rewritten whole — so all end correct.
#[test]
fn four_writers_that_flock_cannot_stop_all_end_correct() {
    let mut ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(51, 40 << 20);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("big.bin", Some(Blob::lfs(big.clone()))),
        ],
    );
    ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
    // Slow enough that the four overlap.
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(16 << 20));
    ctx.write_config("models:\n  require:\n    - acme/big\n    - id: url:{hub}/files/w/model.pt\n      name: custom\n");
    ctx.env.push(("MDL_TEST_FLOCK_NOOP".into(), "1".into()));
    let children: Vec<_> = (0..4)
        .map(|_| {
            ctx.command(&["sync", "--no-verify"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(ctx.read("models/huggingface_acme--big/big.bin"), big);
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), SAFETENSORS);
    assert_eq!(ctx.read("models/url_custom/model.pt"), STATE_DICT);
    toml::from_str::<toml::Value>(&ctx.read_str("models.lock")).expect("models.lock parses");
    for json in [
        "models/.mdl/state.json",
        "models/model_registry.json",
        "models/huggingface_acme--big/model_info.json",
    ] {
        serde_json::from_slice::<serde_json::Value>(&ctx.read(json)).unwrap_or_else(|e| panic!("{json}: {e}"));
    }
    // And the project is whole: a fifth sync changes nothing and fetches nothing.
    ctx.hub.update_behaviour(|b| b.bandwidth = None);
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert!(ctx.body_requests().is_empty(), "{:?}", ctx.body_requests());
}

/// Unmounts the test's tmpfs when the test ends, however it ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_refused_before_downloading_and_its_error_is_the_one_reported() {
    let mut ctx = TestContext::new();
    let small = ctx.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"])
        .arg(&small)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a 40 MiB tmpfs here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run `mount` ({e})");
            return;
        }
    }
    let _unmount = Mounted(small.clone());
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![
            (
                "a.bin",
                Some(Blob::lfs(hub_emulator::pseudo_random_bytes(61, 30 << 20))),
            ),
            (
                "b.bin",
                Some(Blob::lfs(hub_emulator::pseudo_random_bytes(62, 30 << 20))),
            ),
        ],
    );
    ctx.env.push(("MDL_NO_CACHE".into(), "1".into()));
    ctx.write_config("models:\n  require: [acme/big]\n  download:\n    cache_dir: small/models\n");

    // 60 MiB cannot fit in 40: refused before a byte is fetched.
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .stderr_has("must be downloaded into")
        .stderr_has("--no-space-check");
    assert!(ctx.body_requests().is_empty(), "{:?}", ctx.body_requests());

    // Forced: the download's own ENOSPC is what is reported, not a later write.
    let run = ctx
        .mdl(&["sync", "--no-verify", "--no-space-check"])
        .failure(1)
        .stderr_has("the disk is full: writing")
        .stderr_has("mdl clean --partial");
    assert!(!run.stderr().contains("state.json"), "{}", run.stderr());

    // Partial downloads can be removed to give the space back.
    let cleaned = ctx.mdl(&["clean", "--partial"]).success();
    assert!(cleaned.stderr().contains("Removed"), "{}", cleaned.stderr());
    let tmp = small.join("models/.mdl/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
