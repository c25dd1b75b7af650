//! `mdl sync`: makes `models/` match the lock and verifies it (`ops::sync`); this file only prints the outcome.

use clap::Args;
use mdl::ops::{LockMode, ModelCheck, SyncOptions};
use mdl::registry::VerifyStatus;
use mdl::{human_bytes, Error};

use crate::cli::commands::lock::upgrade_from;
use crate::cli::{runtime, Context};

#[derive(Args)]
pub struct SyncArgs {
    /// Fail if the lockfile is missing or would change.
    #[arg(long)]
    pub locked: bool,
    /// Use no network for resolution; fail if anything must be downloaded.
    #[arg(long, env = mdl::env::HF_HUB_OFFLINE, value_parser = clap::builder::FalseyValueParser::new())]
    pub offline: bool,
    /// `--locked --offline`: never resolve, never download (as cargo's).
    #[arg(long, conflicts_with = "upgrade")]
    pub frozen: bool,
    /// Verify on this device for this run, whatever the config says (`cpu`,
    /// `cuda`, `cuda:N`, `mps`, `auto`).
    #[arg(long, value_name = "DEVICE", value_parser = crate::cli::parse_device)]
    pub device: Option<mdl::config::Device>,
    /// Re-resolve locked models (all, or the NAMEs given) before syncing.
    #[arg(long, value_name = "NAME", num_args = 0..)]
    pub upgrade: Option<Vec<String>>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip loading models with libtorch.
    #[arg(long)]
    pub no_verify: bool,
    /// Download and verify these models again (all with no NAME).
    #[arg(long, value_name = "NAME", num_args = 0..)]
    pub force: Option<Vec<String>>,
    /// Re-hash every file instead of trusting recorded size/mtime/inode.
    #[arg(long)]
    pub check: bool,
    /// Also want this preset for this run.
    #[arg(long, value_name = "NAME")]
    pub preset: Vec<String>,
    /// Print what was done (or, with `--dry-run`, the plan) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(context: &Context, args: SyncArgs) -> Result<(), Error> {
    let mut config = context.load_config(&args.preset)?;
    if let Some(device) = args.device {
        config.override_device(device);
    }
    let options = options(&args, &config)?;
    let project = context.project(config);
    let outcome = runtime().block_on(project.sync(&options))?;
    if args.dry_run {
        if args.json {
            crate::cli::json::print(crate::cli::json::plan(&outcome.plan));
        } else {
            print!("{}", outcome.plan);
        }
        return Ok(());
    }
    if args.json {
        crate::cli::json::print(crate::cli::json::sync(&outcome));
    }
    print_moved(context, &outcome);
    print_checks(context, &outcome.checks)?;
    print_written_back(context, &outcome);
    let files = outcome.plan.cached.len() + outcome.plan.fetch.len();
    context.printer.status(
        "Synced",
        &format!(
            "{} model(s), {files} file(s) in {} ms",
            outcome.checks.len().max(count_models(&outcome.plan)),
            outcome.elapsed_ms
        ),
    );
    Ok(())
}

/// The sync's options from its flags (and `HF_HUB_OFFLINE`); contradictory
/// flags are a usage error.
fn options(args: &SyncArgs, config: &mdl::config::Config) -> Result<SyncOptions, Error> {
    if args.locked && args.upgrade.is_some() {
        return Err(Error::usage(
            "`--locked` and `--upgrade` contradict each other",
            Some("drop one of them".to_string()),
        ));
    }
    let force = match &args.force {
        Some(names) if names.is_empty() => config.specs.iter().map(|s| s.name.clone()).collect(),
        Some(names) => names.clone(),
        None => Vec::new(),
    };
    let offline = args.offline || mdl::env::hf_offline();
    if offline && args.upgrade.is_some() {
        return Err(Error::usage(
            "`--offline` cannot `--upgrade`: upgrading asks the network",
            None,
        ));
    }
    let mode = match (args.frozen || (args.locked && offline), args.locked, offline) {
        (true, _, _) => LockMode::Frozen,
        (false, true, _) => LockMode::Locked,
        (false, false, true) => LockMode::Offline,
        (false, false, false) => LockMode::Write,
    };
    Ok(SyncOptions {
        mode,
        upgrade: upgrade_from(args.upgrade.clone()),
        dry_run: args.dry_run,
        verify: !args.no_verify,
        force,
        rehash: args.check,
    })
}

/// What was locked, fetched, linked and left in place.
fn print_moved(context: &Context, outcome: &mdl::ops::SyncOutcome) {
    let p = &context.printer;
    if let Some(lock) = outcome.lock.as_ref().filter(|l| l.written) {
        let (models, resolved) = (lock.lock.models.len(), lock.resolved.len());
        p.status("Locked", &format!("{models} model(s) ({resolved} resolved)"));
    }
    let moved = outcome.all_moved();
    if moved.fetched.files > 0 {
        let mirrored = match moved.mirrored.files {
            0 => String::new(),
            n => format!(" ({n} file(s), {} from a mirror)", human_bytes(moved.mirrored.bytes)),
        };
        let reused = match moved.reused_bytes {
            0 => String::new(),
            n => format!(" ({} of it copied from chunks already on disk)", human_bytes(n)),
        };
        let (files, bytes) = (moved.fetched.files, human_bytes(moved.fetched.bytes));
        p.status("Fetched", &format!("{files} file(s), {bytes}{mirrored}{reused}"));
    }
    if moved.linked.files > 0 {
        let (files, bytes, mode) = (
            moved.linked.files,
            human_bytes(moved.linked.bytes),
            outcome.link_mode.as_str(),
        );
        p.status(
            "Linked",
            &format!("{files} file(s), {bytes} from the shared store or the Hugging Face cache (`{mode}`)"),
        );
    }
    if !outcome.plan.extraneous.is_empty() {
        let n = outcome.plan.extraneous.len();
        p.status("Extraneous", &format!("{n} path(s) not in the lock are left in place"));
    }
}

/// What was pushed to mirrors marked `push: true`.
fn print_written_back(context: &Context, outcome: &mdl::ops::SyncOutcome) {
    for w in &outcome.written_back {
        context.printer.status(
            "Mirrored",
            &format!(
                "{} model(s) fetched from upstream into `oci://{}`: {} file(s) uploaded ({}), {} already there, in {} ms",
                w.models,
                w.mirror,
                w.uploaded_files,
                human_bytes(w.uploaded_bytes),
                w.present_files,
                w.elapsed_ms
            ),
        );
    }
}

/// One line per model: what verification found.
pub fn print_checks(context: &Context, checks: &[ModelCheck]) -> Result<(), Error> {
    let p = &context.printer;
    let mut format_only = None;
    let mut hash_only = false;
    for c in checks {
        let v = &c.verification;
        let tensors: u64 = v.files.values().map(|f| f.tensors).sum();
        let params: u64 = v.files.values().map(|f| f.parameters).sum();
        let ms: u64 = v.files.values().map(|f| f.load_ms).sum();
        let mut dtypes: Vec<&str> = v
            .files
            .values()
            .flat_map(|f| f.dtypes.iter().map(String::as_str))
            .collect();
        dtypes.sort();
        dtypes.dedup();
        let formats: Vec<String> = v.files.values().map(|f| f.format_label()).collect();
        let forward: Vec<String> = v
            .files
            .values()
            .filter_map(|f| f.forward_output.as_ref())
            .map(|s| format!(", forward → {s:?}"))
            .collect();
        let with = v
            .torch
            .as_ref()
            .map(|t| format!(" with {}", t.describe()))
            .unwrap_or_default();
        let detail = format!(
            "{} on {}{with}: {} weight file(s) [{}], {tensors} tensors, {params} parameters ({}){}",
            c.name,
            v.device,
            v.files.len(),
            formats.join(", "),
            dtypes.join(", "),
            forward.join("")
        );
        match v.status {
            VerifyStatus::Verified if c.cached => p.status("Verified", &format!("{detail} (remembered)")),
            VerifyStatus::Verified => p.status("Verified", &format!("{detail} in {ms} ms")),
            VerifyStatus::FormatChecked => {
                format_only = Some(c.not_loaded.clone().or(format_only.flatten()));
                p.status("Checked", &detail)
            }
            VerifyStatus::HashChecked => {
                let files: Vec<String> = v.hash_only.iter().map(|(f, why)| format!("`{f}` ({why})")).collect();
                p.status(
                    "Hashed",
                    &format!("{detail}; checked by hash only: {}", files.join(", ")),
                );
                hash_only |= c.new_hash_only;
            }
            VerifyStatus::Skipped => p.status("Skipped", &format!("{} (verify: false)", c.name)),
            VerifyStatus::Failed => p.status("FAILED", &format!("{}: {}", c.name, v.error.as_deref().unwrap_or(""))),
        }
    }
    if hash_only {
        p.warn("some weight files are in formats mdl cannot load or check, so only their hashes were checked; write `verify: { unknown: error }` in config.yaml to make that fail the sync, or `exclude:` them");
    }
    if let Some(reason) = format_only {
        let why = reason.unwrap_or_else(|| "no torch could load them when they were checked".into());
        p.warn(&format!(
            "hashes and file structure were checked, but models were not loaded: {why}; `pip install torch` (2.0 or newer) in the active Python environment to load them, and `mdl doctor` shows what mdl finds"
        ));
    }
    Ok(())
}

fn count_models(plan: &mdl::plan::Plan) -> usize {
    let mut models: Vec<&str> = plan
        .cached
        .iter()
        .map(|f| f.model.as_str())
        .chain(plan.fetch.iter().map(|(f, _)| f.model.as_str()))
        .collect();
    models.sort();
    models.dedup();
    models.len()
}
