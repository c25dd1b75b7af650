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
