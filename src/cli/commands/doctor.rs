//! `mdl doctor`: what mdl finds on this machine (endpoint, token, verifier, devices, mirrors) and how to fix each problem.

use clap::Args;
use mdl::Error;

use crate::cli::{runtime, Context};

#[derive(Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `mdl doctor`: checks the verifier, libtorch, devices, the Hub, the token,
/// free space and the lock; changes nothing. Exit 1 when something is wrong.
pub fn run(context: &Context, args: DoctorArgs) -> Result<(), Error> {
    let config = match context.load_config(&[]) {
        Ok(config) => config,
        // No config: check the machine as an empty project would.
        Err(_) => mdl::config::Config::parse(&context.config_path(), "", &[])?,
    };
    let project = context.project(config);
    let findings = runtime().block_on(project.doctor());
    let ok = findings.iter().all(|f| f.ok);
    if args.json {
        crate::cli::json::print(serde_json::json!({
            "version": crate::cli::json::VERSION,
            "command": "doctor",
            "ok": ok,
            "findings": findings,
        }));
    } else {
        for f in &findings {
            let verb = if f.ok {
                f.check.to_string()
            } else {
                format!("PROBLEM {}", f.check)
            };
            context.printer.status(&verb, &f.detail);
            if let Some(hint) = &f.hint {
                eprintln!("{:>12} hint: {hint}", "");
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err(Error::Doctor)
    }
}
