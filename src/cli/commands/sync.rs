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
    if args.locked && args.upgrade.is_some() {
        return Err(Error::usage(
            "`--locked` and `--upgrade` contradict each other",
            Some("drop one of them".to_string()),
        ));
    }
    let force = match args.force {
        Some(names) if names.is_empty() => config.specs.iter().map(|s| s.name.clone()).collect(),
        Some(names) => names,
        None => Vec::new(),
    };
    let offline = args.offline || mdl::env::hf_offline();
    if offline && args.upgrade.is_some() {
        return Err(Error::usage(
            "`--offline` cannot `--upgrade`: upgrading asks the network",
            None,
        ));
    }
    let options = SyncOptions {
        mode: if args.frozen || (args.locked && offline) {
            LockMode::Frozen
        } else if args.locked {
            LockMode::Locked
        } else if offline {
            LockMode::Offline
        } else {
            LockMode::Write
        },
        upgrade: upgrade_from(args.upgrade),
        dry_run: args.dry_run,
        verify: !args.no_verify,
        force,
        rehash: args.check,
    };
    let project = context.project(config);
    let outcome = runtime().block_on(project.sync(&options))?;
    let p = &context.printer;
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
    if let Some(lock) = &outcome.lock {
        if lock.written {
            p.status(
                "Locked",
                &format!("{} model(s) ({} resolved)", lock.lock.models.len(), lock.resolved.len()),
            );
        }
    }
    let fetched = outcome.fetched_files + outcome.lock.as_ref().map_or(0, |l| l.downloaded_files);
    let bytes = outcome.fetched_bytes + outcome.lock.as_ref().map_or(0, |l| l.downloaded_bytes);
    if fetched > 0 {
        let mirrored = match outcome.mirrored_files {
            0 => String::new(),
            n => format!(" ({n} file(s), {} from a mirror)", human_bytes(outcome.mirrored_bytes)),
        };
        let reused = outcome.reused_bytes + outcome.lock.as_ref().map_or(0, |l| l.reused_bytes);
        let reused = match reused {
            0 => String::new(),
            n => format!(" ({} of it copied from chunks already on disk)", human_bytes(n)),
        };
        p.status(
            "Fetched",
            &format!("{fetched} file(s), {}{mirrored}{reused}", human_bytes(bytes)),
        );
    }
    let linked = outcome.linked_files + outcome.lock.as_ref().map_or(0, |l| l.linked_files);
    let linked_bytes = outcome.linked_bytes + outcome.lock.as_ref().map_or(0, |l| l.linked_bytes);
    if linked > 0 {
        p.status(
            "Linked",
            &format!(
                "{linked} file(s), {} from the shared store or the Hugging Face cache (`{}`)",
                human_bytes(linked_bytes),
                outcome.link_mode.as_str()
            ),
        );
    }
    if !outcome.plan.extraneous.is_empty() {
        p.status(
            "Extraneous",
            &format!(
                "{} path(s) not in the lock are left in place",
                outcome.plan.extraneous.len()
            ),
        );
    }
    print_checks(context, &outcome.checks)?;
    for w in &outcome.written_back {
        p.status(
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
    let files = outcome.plan.cached.len() + outcome.plan.fetch.len();
    p.status(
        "Synced",
        &format!(
            "{} model(s), {files} file(s) in {} ms",
            outcome.checks.len().max(count_models(&outcome.plan)),
            outcome.elapsed_ms
        ),
    );
    Ok(())
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
