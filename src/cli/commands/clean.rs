//! `mdl clean`: removes what no locked model owns, and abandoned partial downloads.

use clap::Args;
use mdl::{human_bytes, Error};

use crate::cli::Context;

#[derive(Args)]
pub struct CleanArgs {
    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete partial downloads no running mdl is using (they would resume).
    #[arg(long)]
    pub partial: bool,
}

/// `mdl clean`: delete what no locked model references.
pub fn run(context: &Context, args: CleanArgs) -> Result<(), Error> {
    let project = context.project(context.load_config(&[])?);
    let removed = if args.partial {
        project.clean_partial(args.dry_run)?
    } else {
        project.clean(args.dry_run)?
    };
    let verb = if args.dry_run { "Would remove" } else { "Removed" };
    for (path, size) in &removed {
        context
            .printer
            .status(verb, &format!("{path} ({})", human_bytes(*size)));
    }
    let total: u64 = removed.iter().map(|(_, s)| s).sum();
    context.printer.status(
        if args.dry_run { "Would free" } else { "Freed" },
        &format!("{} in {} path(s)", human_bytes(total), removed.len()),
    );
    Ok(())
}
