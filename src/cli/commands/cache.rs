//! `mdl cache dir|du|prune`: the content store shared by projects (`store::SharedStore`).

use clap::{Args, Subcommand};
use mdl::store::SharedStore;
use mdl::{human_bytes, Error};

use crate::cli::Context;

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Print the shared store's directory (`MDL_CACHE_DIR`, else ~/.cache/mdl).
    Dir,
    /// Disk usage of the shared store, and the projects that use it.
    Du,
    /// Remove blobs no project's models.lock on this machine needs.
    Prune {
        /// Count only projects synced within this many days; blobs only older
        /// projects need are removed too.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u64>,
    },
}

fn store() -> Result<SharedStore, Error> {
    SharedStore::from_env().ok_or_else(|| {
        Error::usage(
            "there is no shared store: `MDL_NO_CACHE` is set",
            Some("unset `MDL_NO_CACHE` to use one".to_string()),
        )
    })
}

pub fn run(context: &Context, args: CacheArgs) -> Result<(), Error> {
    let store = store()?;
    let p = &context.printer;
    match args.command {
        CacheCommand::Dir => println!("{}", store.root().display()),
        CacheCommand::Du => {
            let usage = store.usage();
            println!(
                "{:>10}  {} blob(s) in `{}`",
                human_bytes(usage.bytes),
                usage.blobs,
                store.root().display()
            );
            for (lock, _) in store.projects() {
                println!("{:>10}  used by `{}`", "", lock.display());
            }
        }
        CacheCommand::Prune { older_than } => {
            let age = older_than.map(|days| std::time::Duration::from_secs(days * 86_400));
            let pruned = store.prune(age).map_err(|source| Error::Io {
                action: "prune",
                path: store.root().to_path_buf(),
                source,
            })?;
            p.status(
                "Pruned",
                &format!(
                    "{} blob(s), {}; {} kept for the projects on this machine",
                    pruned.blobs,
                    human_bytes(pruned.bytes),
                    pruned.kept
                ),
            );
        }
    }
    Ok(())
}
