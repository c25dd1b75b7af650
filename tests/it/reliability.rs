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
