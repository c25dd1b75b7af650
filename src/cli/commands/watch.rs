//! `mdl watch`: syncs again whenever config.yaml or models.lock changes (`ops::watch`).

use clap::Args;
use mdl::ops::watch::{WatchEvent, WatchOptions};
use mdl::{human_bytes, Error};

use crate::cli::{runtime, Context};
use mdl::progress::{paint, ERROR};

#[derive(Args)]
pub struct WatchArgs {
    /// Delete models removed from the config (default: leave them on disk).
    #[arg(long)]
    pub prune: bool,
    /// One JSON object per run on stdout, for tools.
    #[arg(long)]
    pub json: bool,
    /// Skip loading models with libtorch.
    #[arg(long)]
    pub no_verify: bool,
}

fn names(verb: &str, list: &[String]) -> Option<String> {
    (!list.is_empty()).then(|| format!("{verb} {}", list.join(", ")))
}

/// `mdl watch`: re-sync whenever config.yaml (or models.lock) changes. Ctrl-C
/// stops it cleanly (exit 0), leaving any interrupted download resumable.
pub fn run(context: &Context, args: WatchArgs) -> Result<(), Error> {
    let path = context.config_path();
    let options = WatchOptions {
        prune: args.prune,
        verify: !args.no_verify,
        ..WatchOptions::default()
    };
    let json = args.json;
    let printer = context.printer.clone();
    let on_event = move |event: &WatchEvent| {
        if json {
            println!("{}", serde_json::to_string(event).expect("serialises"));
            return;
        }
        match event {
            WatchEvent::Watching { config } => {
                printer.status("Watching", &format!("{} (Ctrl-C to stop)", config.display()))
            }
            WatchEvent::Synced(s) => {
                let parts: Vec<String> = [
                    names("added", &s.added),
                    names("updated", &s.updated),
                    names("removed from the lock", &s.removed),
                    names("pruned", &s.pruned),
                    names("verified", &s.verified),
                    (s.fetched_files > 0)
                        .then(|| format!("fetched {} file(s), {}", s.fetched_files, human_bytes(s.fetched_bytes))),
                ]
                .into_iter()
                .flatten()
                .collect();
                let what = if parts.is_empty() {
                    "no changes".to_string()
                } else {
                    parts.join("; ")
                };
                printer.status("Synced", &format!("{what} in {} ms", s.ms));
            }
            WatchEvent::InvalidConfig { message } => {
                eprintln!(
                    "{}: {message}\n(waiting for the config to be fixed; the last good state is kept)",
                    paint(ERROR, "error")
                )
            }
            WatchEvent::Failed { message } => {
                eprintln!("{}: {message}\n(will retry on the next change)", paint(ERROR, "error"))
            }
            WatchEvent::Cancelled => printer.status(
                "Cancelled",
                "the previous run (a newer change arrived); its downloads resume",
            ),
            WatchEvent::Stopped => printer.status("Stopped", "watching"),
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let reporter = context.printer.clone();
    runtime().block_on(mdl::ops::watch::watch(&path, options, reporter, on_event, shutdown))
}
