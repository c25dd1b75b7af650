//! `mdl schema`: prints config.yaml's JSON Schema (`config::json_schema`).

use mdl::Error;

use crate::cli::Context;

/// `mdl schema`: the JSON Schema of `config.yaml` (as committed in
/// `config.schema.json`), for editors and validators.
pub fn run(_context: &Context) -> Result<(), Error> {
    println!(
        "{}",
        serde_json::to_string_pretty(&mdl::config::json_schema()).expect("serialises")
    );
    Ok(())
}
