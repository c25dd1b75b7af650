//! `mdl config`: validates config.yaml and prints it as mdl reads it (presets applied).

use mdl::Error;

use crate::cli::Context;

/// `mdl config`: the effective configuration (the seed's `--list-config`).
pub fn run(context: &Context) -> Result<(), Error> {
    let config = context.load_config(&[])?;
    print!("{}", config.effective_yaml());
    Ok(())
}
