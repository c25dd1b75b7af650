use clap::Args;
use mdl::Error;

use crate::cli::commands::sync::print_checks;
use crate::cli::{runtime, Context};

#[derive(Args)]
pub struct VerifyArgs {
    /// Models to verify (default: all).
    pub names: Vec<String>,
}

pub fn run(context: &Context, args: VerifyArgs) -> Result<(), Error> {
    let config = context.load_config(&[])?;
    let project = context.project(config);
    let checks = runtime().block_on(project.verify(&args.names))?;
    print_checks(context, &checks)
}
