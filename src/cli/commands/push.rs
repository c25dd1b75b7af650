//! `mdl push oci://HOST/REPO`: publishes the lock's models to an OCI registry (`ops::push`).

use clap::Args;
use mdl::oci::OciRef;
use mdl::{human_bytes, Error};

use crate::cli::{runtime, Context};

#[derive(Args)]
pub struct PushArgs {
    /// Where to publish: `oci://HOST/REPO[:TAG]` (tag default `latest`).
    /// Credentials come from Docker's config.json (`docker login HOST`).
    #[arg(value_name = "oci://HOST/REPO[:TAG]")]
    pub target: String,
    /// Print what was done as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `mdl push`: the locked models, from `models/`, to an OCI registry.
pub fn run(context: &Context, args: PushArgs) -> Result<(), Error> {
    if !args.target.starts_with("oci://") {
        return Err(Error::usage(
            format!("`{}` is not a registry to push to", args.target),
            Some("write `oci://HOST/REPO[:TAG]`, e.g. `mdl push oci://ghcr.io/acme/models:v1`".to_string()),
        ));
    }
    let target = OciRef::parse(&args.target)?;
    let project = context.project(context.load_config(&[])?);
    let outcome = runtime().block_on(project.push(&target))?;
    if args.json {
        crate::cli::json::print(crate::cli::json::push(&outcome));
    }
    let p = &context.printer;
    p.status(
        "Pushed",
        &format!(
            "{} model(s) to `{}` in {:.1} s: {} file(s) uploaded ({}), {} already there ({}), {} mounted",
            outcome.models.len(),
            outcome.target,
            outcome.elapsed_ms as f64 / 1000.0,
            outcome.uploaded_files,
            human_bytes(outcome.uploaded_bytes),
            outcome.present_files,
            human_bytes(outcome.present_bytes),
            outcome.mounted_files,
        ),
    );
    p.status("Index", &outcome.index_digest);
    Ok(())
}
