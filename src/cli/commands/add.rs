//! `mdl add`: adds a model to config.yaml (and locks and syncs it), a thin layer over `ops::add`.

use clap::Args;
use mdl::Error;

use crate::cli::{runtime, Context};

#[derive(Args)]
pub struct AddArgs {
    /// Model identifiers to add to `models.require`.
    pub ids: Vec<String>,
    /// Preset names to add to `models.presets`.
    #[arg(long, value_name = "NAME")]
    pub preset: Vec<String>,
}

/// `mdl add`: adds to config.yaml (keeping its comments), then locks.
pub fn run(context: &Context, args: AddArgs) -> Result<(), Error> {
    if args.ids.is_empty() && args.preset.is_empty() {
        return Err(Error::usage(
            "nothing to add",
            Some("give a model id (`mdl add acme/model`) or `--preset NAME`".to_string()),
        ));
    }
    let path = context.config_path();
    let outcome = runtime().block_on(mdl::ops::add(&path, &args.ids, &args.preset, context.printer.clone()))?;
    for id in args.ids.iter().chain(&args.preset) {
        context
            .printer
            .status("Added", &format!("{id} to `{}`", path.display()));
    }
    context.printer.status(
        "Locked",
        &format!(
            "{} model(s) ({} resolved); run `mdl sync` to verify",
            outcome.lock.models.len(),
            outcome.resolved.len()
        ),
    );
    Ok(())
}
