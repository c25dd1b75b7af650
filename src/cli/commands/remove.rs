//! `mdl remove NAME`: removes a model from config.yaml, the lock and `models/`.

use clap::Args;
use mdl::Error;

use crate::cli::Context;

#[derive(Args)]
pub struct RemoveArgs {
    /// The model's name (or its id).
    pub name: String,
}

/// `mdl remove`: from the config, the lock and the disk.
pub fn run(context: &Context, args: RemoveArgs) -> Result<(), Error> {
    let project = context.project(context.load_config(&[])?);
    let removed = project.remove(&args.name)?;
    context
        .printer
        .status("Removed", &format!("{removed} (config, lock and disk)"));
    Ok(())
}
