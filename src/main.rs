//! The `mdl` binary: parse arguments, run the command, map the outcome to an
//! exit code (see `mdl::error` for what each code means).
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    mdl::failpoint::setup();
    cli::main()
}
