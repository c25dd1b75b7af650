//! `mdl verify`: loads every synced model again (`ops::verify`).

use clap::Args;
use mdl::Error;

use crate::cli::commands::sync::print_checks;
use crate::cli::{runtime, Context};

#[derive(Args)]
pub struct VerifyArgs {
    /// Models to verify (default: all).
    pub names: Vec<String>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Verify on this device for this run, whatever the config says.
    #[arg(long, value_name = "DEVICE", value_parser = crate::cli::parse_device)]
    pub device: Option<mdl::config::Device>,
}

pub fn run(context: &Context, args: VerifyArgs) -> Result<(), Error> {
    let mut config = context.load_config(&[])?;
    if let Some(device) = args.device {
        config.override_device(device);
    }
    let project = context.project(config);
    let checks = runtime().block_on(project.verify(&args.names))?;
    if args.json {
        crate::cli::json::print(crate::cli::json::verify(&checks));
    }
    print_checks(context, &checks)
}
