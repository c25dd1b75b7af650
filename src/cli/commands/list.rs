//! `mdl list`: the locked models, their files and their verification status.

use clap::Args;
use mdl::ops::State;
use mdl::{human_bytes, Error};

use crate::cli::Context;

#[derive(Args)]
pub struct ListArgs {
    /// One JSON array on stdout, for tools.
    #[arg(long)]
    pub json: bool,
}

/// `mdl list`: wanted vs locked vs on disk.
pub fn run(context: &Context, args: ListArgs) -> Result<(), Error> {
    let project = context.project(context.load_config(&[])?);
    let status = project.status()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status).expect("serialises"));
        return Ok(());
    }
    if status.is_empty() {
        eprintln!(
            "No models in `{}`; add one with `mdl add ID`.",
            project.config.path.display()
        );
        return Ok(());
    }
    println!(
        "{:<32} {:<12} {:>10} {:<11} {:<14} ID",
        "NAME", "SOURCE", "SIZE", "STATE", "VERIFIED"
    );
    for s in status {
        let state = match s.state {
            State::Synced => "synced".to_string(),
            State::Incomplete => format!("{}/{} files", s.files_present, s.files),
            State::NotLocked => "not locked".to_string(),
            State::Unwanted => "unwanted".to_string(),
        };
        let verified = s
            .verification
            .and_then(|v| serde_json::to_value(v).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "-".into());
        let source = s.source.map(|s| s.to_string()).unwrap_or_else(|| "(auto)".into());
        let revision = s
            .commit
            .as_deref()
            .map(|c| &c[..c.len().min(8)])
            .or(s.revision.as_deref());
        let id = match revision {
            Some(r) => format!("{}@{r}", s.id),
            None => s.id.clone(),
        };
        println!(
            "{:<32} {:<12} {:>10} {:<11} {:<14} {id}",
            s.name,
            source,
            human_bytes(s.size),
            state,
            verified
        );
    }
    Ok(())
}
