//! `mdl init`: writes a starting config.yaml.

use clap::Args;
use mdl::Error;

use crate::cli::Context;

#[derive(Args)]
pub struct InitArgs {}

/// The starter config: commented, valid, and pointing the YAML language server
/// at the schema mdl ships.
const STARTER: &str = r#"# yaml-language-server: $schema=./config.schema.json
# (editors validate this file against `mdl schema > config.schema.json`)
#
# The models this project wants. `mdl lock` pins them in models.lock (commit
# it); `mdl sync` makes models/ match it and loads every model with libtorch.
# `mdl add ID` appends here, keeping these comments. Forms of ID:
#   sentence-transformers/all-MiniLM-L6-v2      a Hugging Face Hub repo (@rev optional)
#   torchvision:resnet18                        torchvision weights
#   url:https://example.com/model.pt            a file at a URL
#   local:./checkpoints/best                    a local file or directory
# A table entry takes options: `- id: org/name` with `include: ["*.safetensors"]`.
device: cpu                # cpu, cuda, cuda:N, mps, auto
models:
  require: []
  download:
    hf_cache: false        # true: also where transformers and vLLM look
"#;

/// `mdl init`: a commented starter `config.yaml`; never overwrites one.
pub fn run(context: &Context, _args: InitArgs) -> Result<(), Error> {
    let path = context.config_path();
    if path.exists() {
        return Err(Error::usage(
            format!("`{}` already exists", path.display()),
            Some("edit it, or add models with `mdl add ID`".to_string()),
        ));
    }
    // The starter must be a config mdl accepts.
    mdl::config::Config::parse(&path, STARTER, &[])?;
    mdl::fs::write_atomic(&path, STARTER.as_bytes()).map_err(|source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })?;
    context.printer.status(
        "Created",
        &format!("`{}`; add models with `mdl add ID`", path.display()),
    );
    Ok(())
}
