//! `mdl lock`: resolves and pins models in models.lock (`ops::lock`); `--offline` locks from the Hugging Face cache.

use clap::Args;
use mdl::ops::{LockMode, Upgrade};
use mdl::{human_bytes, Error};

use crate::cli::{runtime, Context};

#[derive(Args)]
pub struct LockArgs {
    /// Re-resolve locked models (all, or the NAMEs given) instead of keeping their pins.
    #[arg(long, value_name = "NAME", num_args = 0.., require_equals = false)]
    pub upgrade: Option<Vec<String>>,
    /// Fail instead of changing the lockfile.
    #[arg(long)]
    pub locked: bool,
    /// Make no request: lock Hub models from the Hugging Face cache alone, as
    /// huggingface_hub's offline mode finds them (also `HF_HUB_OFFLINE=1`).
    #[arg(long)]
    pub offline: bool,
    /// Print what was done as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn upgrade_from(arg: Option<Vec<String>>) -> Upgrade {
    match arg {
        None => Upgrade::None,
        Some(names) if names.is_empty() => Upgrade::All,
        Some(names) => Upgrade::Names(names),
    }
}

pub fn run(context: &Context, args: LockArgs) -> Result<(), Error> {
    let config = context.load_config(&[])?;
    if args.locked && args.upgrade.is_some() {
        return Err(Error::usage(
            "`--locked` and `--upgrade` contradict each other",
            Some("drop one of them".to_string()),
        ));
    }
    let project = context.project(config);
    let offline = args.offline || mdl::env::hf_offline();
    if offline && args.upgrade.is_some() {
        return Err(Error::usage(
            "`--offline` cannot `--upgrade`: upgrading asks the network",
            Some("drop `--upgrade`, or run online".to_string()),
        ));
    }
    let mode = match (args.locked, offline) {
        (true, _) => LockMode::Locked,
        (false, true) => LockMode::Offline,
        (false, false) => LockMode::Write,
    };
    let outcome = runtime().block_on(project.lock(&upgrade_from(args.upgrade), mode))?;
    let p = &context.printer;
    if args.json {
        crate::cli::json::print(crate::cli::json::lock(&outcome));
    }
    let moved = outcome.moved;
    if moved.fetched.files > 0 {
        p.status(
            "Fetched",
            &format!(
                "{} file(s), {}{}",
                moved.fetched.files,
                human_bytes(moved.fetched.bytes),
                match moved.reused_bytes {
                    0 => String::new(),
                    n => format!(" ({} of it copied from chunks already on disk)", human_bytes(n)),
                }
            ),
        );
    }
    if moved.linked.files > 0 {
        p.status(
            "Linked",
            &format!(
                "{} file(s), {} from the shared store or the Hugging Face cache",
                moved.linked.files,
                human_bytes(moved.linked.bytes)
            ),
        );
    }
    for name in &outcome.removed {
        p.status("Removed", &format!("{name} from the lockfile"));
    }
    let verb = if outcome.written { "Locked" } else { "Up to date" };
    p.status(
        verb,
        &format!(
            "{} model(s) in `{}` ({} resolved, {} kept)",
            outcome.lock.models.len(),
            project.lock_path().display(),
            outcome.resolved.len(),
            outcome.kept.len()
        ),
    );
    Ok(())
}
