//! Every environment variable mdl reads, in one place.
//!
//! | variable | effect |
//! |---|---|
//! | `HF_ENDPOINT` | Hub base URL (default `https://huggingface.co`); a mirror or the emulator |
//! | `HF_TOKEN` | bearer token for private and gated repos (else `$HF_HOME/token`) |
//! | `HF_HOME` | where the Hugging Face token file lives (`~/.cache/huggingface`) |
//! | `HF_HUB_OFFLINE` | `1`/`true`/`yes`/`on`: behave as `--offline` |
//! | `HF_HUB_CACHE` | the Hugging Face cache, read and (with `download.hf_cache: true`) written (else `$HF_HOME/hub`) |
//! | `MDL_CACHE_DIR` | the content store shared by all projects (default `$XDG_CACHE_HOME/mdl`, `~/.cache/mdl`) |
//! | `MDL_NO_CACHE` | set: no shared store; each project downloads for itself |
//! | `TORCH_HOME` | torch hub's directory (`~/.cache/torch`), written with `download.torch_hub: true` |
//! | `MDL_CONFIG` | the config file (as `--config`) |
//! | `CI` | set: plain progress lines instead of bars |
//! | `MDL_MIRROR` | OCI mirrors (`oci://HOST/REPO`, comma-separated) tried before upstream, ahead of `download.mirrors` |
//! | `DOCKER_CONFIG` | where Docker's `config.json` (registry credentials) lives (default `~/.docker`) |

pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
pub const HF_TOKEN: &str = "HF_TOKEN";
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";
pub const MDL_CONFIG: &str = "MDL_CONFIG";
pub const CI: &str = "CI";
pub const MDL_MIRROR: &str = "MDL_MIRROR";

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
    flag(HF_HUB_OFFLINE)
}

/// An environment switch, true as the Python client reads one (`1`, `ON`,
/// `YES`, `TRUE`): `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_XET`.
pub fn flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
        .unwrap_or(false)
}

/// `~/.cache`, or `$XDG_CACHE_HOME`.
fn cache_home() -> std::path::PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default()
                .join(".cache")
        })
}

fn set(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}

/// The shared content store: `MDL_CACHE_DIR`, else `~/.cache/mdl`; none with
/// `MDL_NO_CACHE` (as uv's `UV_NO_CACHE`).
pub fn mdl_cache_dir() -> Option<std::path::PathBuf> {
    if std::env::var_os("MDL_NO_CACHE").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    Some(set("MDL_CACHE_DIR").unwrap_or_else(|| cache_home().join("mdl")))
}

/// The Hugging Face cache, by `huggingface_hub`'s rules: `HF_HUB_CACHE`, else
/// `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hf_hub_cache() -> std::path::PathBuf {
    set("HF_HUB_CACHE")
        .or_else(|| set("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| set("HF_HOME").map(|h| h.join("hub")))
        .unwrap_or_else(|| cache_home().join("huggingface").join("hub"))
}

/// `torch.hub.get_dir()`: `$TORCH_HOME/hub`, else `$XDG_CACHE_HOME/torch/hub`,
/// else `~/.cache/torch/hub`.
pub fn torch_hub_dir() -> std::path::PathBuf {
    set("TORCH_HOME")
        .unwrap_or_else(|| cache_home().join("torch"))
        .join("hub")
}

pub fn is_ci() -> bool {
    std::env::var_os(CI).is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Where Docker keeps `config.json`: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir() -> std::path::PathBuf {
    set("DOCKER_CONFIG").unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".docker")
    })
}

/// `MDL_MIRROR`'s mirrors, in order (comma- or space-separated).
pub fn mirrors() -> Vec<String> {
    std::env::var(MDL_MIRROR)
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}
