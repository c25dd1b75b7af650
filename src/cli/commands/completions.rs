//! `mdl completions SHELL`: shell completion scripts, from clap.

use clap::{Args, CommandFactory};
use mdl::Error;

use crate::cli::{Cli, Context};

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    pub shell: clap_complete::Shell,
}

/// `mdl completions SHELL`: the completion script on stdout, e.g.
/// `mdl completions bash > /etc/bash_completion.d/mdl`.
pub fn run(_context: &Context, args: CompletionsArgs) -> Result<(), Error> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "mdl", &mut std::io::stdout());
    Ok(())
}
