//! The CLI's human output on the main paths, pinned as snapshots (error paths
//! are pinned where each is tested). A change in wording shows up in review as
//! a diff of `tests/it/snapshots/`.

use crate::common::*;

#[test]
fn main_paths_speak_in_one_voice() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["lock"]).success().snap("lock_first");
    ctx.mdl(&["lock"]).success().snap("lock_up_to_date");
    ctx.mdl(&["sync"]).success().snap("sync_first");
    ctx.mdl(&["sync"]).success().snap("sync_noop");
    std::fs::remove_file(ctx.models().join("huggingface_acme--tiny-bert/config.json")).unwrap();
    std::fs::write(ctx.models().join("huggingface_acme--tiny-bert/stray.bin"), b"stray").unwrap();
    ctx.mdl(&["sync", "--dry-run"]).success().snap("sync_dry_run");
    ctx.mdl(&["list"]).success().snap("list");
    ctx.mdl(&["sync", "--no-verify"]).success().snap("sync_repairs");
    ctx.mdl(&["verify", "acme/tiny-gpt"]).success().snap("verify_one");
    ctx.mdl(&["du"]).success().snap_without_sizes("du");
    ctx.mdl(&["clean", "--dry-run"]).success().snap("clean_dry_run");
    ctx.mdl(&["remove", "custom_model"]).success().snap("remove");
}

#[test]
fn colour_follows_color_flag_and_no_color() {
    let ctx = TestContext::new();
    // No config: an error with a hint, the same in every mode but for colour.
    let esc = "\u{1b}[";
    let plain = ctx.mdl(&["sync"]).failure(2);
    assert!(!plain.stderr().contains(esc), "not a terminal: no colour");
    let always = ctx.mdl(&["--color", "always", "sync"]).failure(2);
    assert!(always.stderr().contains(esc), "--color always colours a pipe");
    assert_eq!(
        strip_ansi(&always.stderr()),
        plain.stderr(),
        "colour changes nothing else"
    );
    let never = ctx
        .command(&["--color", "never", "sync"])
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&never.stderr).contains(esc),
        "--color never wins"
    );
    let forced = ctx.command(&["sync"]).env("CLICOLOR_FORCE", "1").output().unwrap();
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains(esc),
        "CLICOLOR_FORCE colours a pipe"
    );
    let no_color = ctx
        .command(&["sync"])
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&no_color.stderr).contains(esc),
        "NO_COLOR: no colour"
    );
}

fn strip_ansi(text: &str) -> String {
    regex::Regex::new("\u{1b}\\[[0-9;]*m")
        .unwrap()
        .replace_all(text, "")
        .into_owned()
}
