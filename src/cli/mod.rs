//! Command-line interface: argument definitions, the runtime, and error printing
//! in one voice (a sentence, its causes, then `hint:` lines).

mod commands;
pub mod json;
use mdl::progress as printer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use mdl::config::Config;
use mdl::ops::Project;
use mdl::Error;

pub use printer::{Level, Printer};

#[derive(Parser)]
#[command(name = "mdl", version, about = "Lock, sync and verify ML model weights", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// The config file (default: `config.yaml` in the current directory).
    #[arg(long, global = true, env = mdl::env::MDL_CONFIG, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log each request and step.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Files downloaded at once (default: `download.concurrency`, else 8).
    #[arg(short = 'j', long, global = true, value_name = "N")]
    pub jobs: Option<usize>,
    /// How files are placed from the shared store: auto, reflink, hardlink, copy
    /// (default: `download.link_mode`, else auto).
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_link_mode)]
    pub link_mode: Option<mdl::fs::LinkMode>,
    /// Start downloads even when they do not fit the free disk space.
    #[arg(long, global = true)]
    pub no_space_check: bool,
    /// Colour in messages: auto (a terminal, unless `NO_COLOR` is set),
    /// always, never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorWhen,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum Command {
    /// Resolve every wanted model and write `models.lock`.
    Lock(commands::lock::LockArgs),
    /// Make the models directory match the lock, then verify every model.
    Sync(commands::sync::SyncArgs),
    /// Load models with libtorch again (ignoring remembered results).
    Verify(commands::verify::VerifyArgs),
    /// Re-sync whenever config.yaml or models.lock changes.
    Watch(commands::watch::WatchArgs),
    /// List wanted, locked and synced models.
    List(commands::list::ListArgs),
    /// Add models (or presets) to config.yaml, keeping its comments, and lock them.
    Add(commands::add::AddArgs),
    /// Remove a model from config.yaml, the lock and the disk.
    Remove(commands::remove::RemoveArgs),
    /// Delete files in the models directory that no locked model references.
    Clean(commands::clean::CleanArgs),
    /// Disk usage of the models directory.
    Du(commands::du::DuArgs),
    /// Publish the locked models to an OCI registry (`oci://HOST/REPO[:TAG]`).
    Push(commands::push::PushArgs),
    /// The content store shared by all projects: `dir`, `du`, `prune`.
    Cache(commands::cache::CacheArgs),
    /// Print the effective configuration, defaults filled in.
    Config,
    /// Write a commented starter config.yaml (never overwrites one).
    Init(commands::init::InitArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(commands::completions::CompletionsArgs),
    /// Print the JSON Schema of config.yaml.
    Schema,
    /// Check the verifier, libtorch, devices, the Hub, the token, disk space and the lock.
    Doctor(commands::doctor::DoctorArgs),
}

pub struct Context {
    pub global: GlobalArgs,
    pub printer: Arc<Printer>,
}

impl Context {
    pub fn config_path(&self) -> PathBuf {
        self.global
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("config.yaml"))
    }

    pub fn load_config(&self, presets: &[String]) -> Result<Config, Error> {
        Ok(Config::load_with_presets(&self.config_path(), presets)?)
    }

    pub fn project(&self, config: Config) -> Project {
        let mut project = Project::new(config, self.printer.clone());
        if let Some(jobs) = self.global.jobs {
            project.settings.jobs = jobs.max(1);
        }
        if let Some(mode) = self.global.link_mode {
            project.caches.mode = mode;
        }
        project.check_free_space = !self.global.no_space_check;
        project
    }
}

pub fn parse_device(text: &str) -> Result<mdl::config::Device, String> {
    mdl::config::Device::parse(text)
        .ok_or_else(|| format!("`{text}` is not a device: write cpu, cuda, cuda:N, mps or auto"))
}

fn parse_link_mode(text: &str) -> Result<mdl::fs::LinkMode, String> {
    mdl::fs::LinkMode::parse(text)
        .ok_or_else(|| format!("`{text}` is not a link mode: write auto, reflink, hardlink or copy"))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.global.color {
        // anstream's auto: a terminal, and neither NO_COLOR nor CLICOLOR=0 (CLICOLOR_FORCE wins).
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    }
    .write_global();
    let level = if cli.global.quiet {
        Level::Quiet
    } else if cli.global.verbose {
        Level::Verbose
    } else {
        Level::Default
    };
    let context = Context {
        global: cli.global.clone(),
        printer: Arc::new(Printer::new(level)),
    };
    let result = match cli.command {
        Command::Lock(args) => commands::lock::run(&context, args),
        Command::Sync(args) => commands::sync::run(&context, args),
        Command::Verify(args) => commands::verify::run(&context, args),
        Command::Watch(args) => commands::watch::run(&context, args),
        Command::List(args) => commands::list::run(&context, args),
        Command::Add(args) => commands::add::run(&context, args),
        Command::Remove(args) => commands::remove::run(&context, args),
        Command::Clean(args) => commands::clean::run(&context, args),
        Command::Du(args) => commands::du::run(&context, args),
        Command::Push(args) => commands::push::run(&context, args),
        Command::Cache(args) => commands::cache::run(&context, args),
        Command::Config => commands::config::run(&context),
        Command::Init(args) => commands::init::run(&context, args),
        Command::Completions(args) => commands::completions::run(&context, args),
        Command::Schema => commands::schema::run(&context),
        Command::Doctor(args) => commands::doctor::run(&context, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// `error: …`, its causes, then `hint: …`.
pub fn print_error(error: &Error) {
    match error {
        Error::Many { summary, errors } => {
            eprintln!("{}: {summary}", printer::paint(printer::ERROR, "error"));
            for e in errors {
                eprintln!("  - {e}");
                print_causes(e, "      ");
                print_hints(e, "    ");
            }
        }
        e => {
            eprintln!("{}: {e}", printer::paint(printer::ERROR, "error"));
            print_causes(e, "  ");
            print_hints(e, "");
        }
    }
}

/// A hint may span several lines: a line starting with `hint: ` begins a new
/// hint, any other line continues the one before, indented under its text.
fn print_hints(e: &Error, indent: &str) {
    let Some(hint) = e.hint() else {
        return;
    };
    for (i, line) in hint.lines().enumerate() {
        match line.strip_prefix("hint: ") {
            Some(rest) => eprintln!("{indent}{}: {rest}", printer::paint(printer::HINT, "hint")),
            None if i == 0 => eprintln!("{indent}{}: {line}", printer::paint(printer::HINT, "hint")),
            None => eprintln!("{indent}      {line}"),
        }
    }
}

fn print_causes(e: &dyn std::error::Error, indent: &str) {
    let mut source = e.source();
    // `#[error(transparent)]` repeats the inner error as its source; skip echoes.
    let mut last = e.to_string();
    while let Some(s) = source {
        let text = s.to_string();
        if text != last {
            eprintln!("{indent}caused by: {text}");
        }
        last = text;
        source = s.source();
    }
}
