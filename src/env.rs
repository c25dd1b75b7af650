//! Every environment variable mdl reads, in one place.
//!
//! | variable | effect |
//! |---|---|
//! | `HF_ENDPOINT` | Hub base URL (default `https://huggingface.co`); a mirror or the emulator |
//! | `HF_TOKEN` | bearer token for private and gated repos (else `$HF_HOME/token`) |
//! | `HF_HOME` | where the Hugging Face token file lives (`~/.cache/huggingface`) |
//! | `HF_HUB_OFFLINE` | `1`/`true`/`yes`/`on`: behave as `--offline` |
//! | `MDL_CONFIG` | the config file (as `--config`) |
//! | `CI` | set: plain progress lines instead of bars |

pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
pub const HF_TOKEN: &str = "HF_TOKEN";
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";
pub const MDL_CONFIG: &str = "MDL_CONFIG";
pub const CI: &str = "CI";

pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// The Hub endpoint: config override, else `HF_ENDPOINT`, else the real Hub.
pub fn hf_endpoint(config_override: Option<&str>) -> String {
    config_override
        .map(str::to_string)
        .or_else(|| std::env::var(HF_ENDPOINT).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// The Hub token: `HF_TOKEN`, else the token file that `hf auth login` writes.
///
/// hf-hub's `Cache` knows where that file is (`$HF_HOME/token`, else
/// `~/.cache/huggingface/token`) and how to read it; it does not read `HF_TOKEN`,
/// which the Python client honours first, so that part is here.
pub fn hf_token() -> Option<String> {
    std::env::var(HF_TOKEN)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .or_else(|| hf_hub::Cache::from_env().token())
}

/// `HF_HUB_OFFLINE`, with the Python client's notion of true.
pub fn hf_offline() -> bool {
    std::env::var(HF_HUB_OFFLINE)
        .map(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
        .unwrap_or(false)
}

pub fn is_ci() -> bool {
    std::env::var_os(CI).is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}
