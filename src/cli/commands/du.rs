//! `mdl du`: disk use of `models/`, and how much of it is shared with the store.

use clap::Args;
use mdl::{human_bytes, Error};

use crate::cli::Context;

#[derive(Args)]
pub struct DuArgs {
    #[arg(long)]
    pub json: bool,
}

/// `mdl du`: disk usage of the models directory.
pub fn run(context: &Context, args: DuArgs) -> Result<(), Error> {
    let project = context.project(context.load_config(&[])?);
    let usage = project.disk_usage()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&usage).expect("serialises"));
        return Ok(());
    }
    for (name, size) in &usage.models {
        println!("{:>10}  {name}", human_bytes(*size));
    }
    println!(
        "{:>10}  (extraneous: `mdl clean` removes it)",
        human_bytes(usage.extraneous)
    );
    println!(
        "{:>10}  (partial downloads, resumable)",
        human_bytes(usage.partial_downloads)
    );
    println!(
        "{:>10}  total in `{}`",
        human_bytes(usage.total),
        project.store.root().display()
    );
    if usage.shared > 0 {
        println!(
            "{:>10}  of it shared with the content store (hard links: on disk once, saved here)",
            human_bytes(usage.shared)
        );
    }
    if let (Some(store), Some(dir)) = (&usage.store, &usage.store_dir) {
        println!(
            "{:>10}  in the content store `{}` ({} blob(s), {} project(s))",
            human_bytes(store.bytes),
            dir.display(),
            store.blobs,
            store.projects
        );
    }
    Ok(())
}
