//! `mdl doctor`: what this machine and project look like to mdl — the
//! verifier and its libtorch, the devices libtorch sees, whether the Hub is
//! reachable, whether a token is set (never its value), free space against
//! the lock's size, a stale lock, each mirror and its login. It changes nothing.

use std::time::Duration;

use serde::Serialize;

use crate::verify::{libtorch_dir, Verifier};

use super::Project;

/// One finding: what was checked, what was found, and whether it is a problem.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Project {
    /// Every check, in order; nothing is changed.
    pub async fn doctor(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        self.check_verifier(&mut out);
        self.check_hub(&mut out).await;
        self.check_mirrors(&mut out).await;
        self.check_project(&mut out);
        out
    }

    /// The verifier, the libtorch it would load, and the devices libtorch sees.
    fn check_verifier(&self, out: &mut Vec<Finding>) {
        match Verifier::discover() {
            Verifier::StructureOnly { reason } => add(
                out,
                "verifier",
                false,
                format!("models are not loaded: {reason}"),
                Some("`pip install torch` (any version from 2.0) in the active Python environment, or install `mdl-torch` next to `mdl`"),
            ),
            Verifier::Python { torch } => check_python_verifier(out, &torch),
            Verifier::Helper { path, libtorch } => check_helper(out, &path, libtorch.as_ref()),
        }
    }

    /// The Hub's endpoint, briefly, and whether a token is set (never its value).
    async fn check_hub(&self, out: &mut Vec<Finding>) {
        // The Hub, briefly.
        let url = format!("{}/api/models?limit=1", self.endpoint);
        let reached = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("client")
            .get(&url)
            .send()
            .await;
        match reached {
            Ok(r) => add(out, "endpoint", true, format!("`{}` answered {}", self.endpoint, r.status()), None),
            Err(e) => add(
                out,
                "endpoint",
                false,
                format!("`{}` is unreachable: {}", self.endpoint, crate::http::describe_reqwest(&e)),
                Some("check the network, proxies and `HF_ENDPOINT`; `mdl sync --frozen` works from a complete lock without it"),
            ),
        }
        add(
            out,
            "token",
            true,
            if self.token.is_some() {
                "a Hub token is set (not shown)"
            } else {
                "no Hub token (public repos only)"
            }
            .into(),
            None,
        );
    }

    /// Each mirror: reachable, and its login accepted (a blob HEAD needs both).
    async fn check_mirrors(&self, out: &mut Vec<Finding>) {
        // Mirrors: reachable, and the credentials accepted (a blob HEAD needs both).
        let mirrors = self.mirrors().unwrap_or_default();
        if !mirrors.is_empty() {
            if let Ok(fetcher) = self.fetcher() {
                for (mirror, _) in mirrors {
                    let checked = async {
                        let registry = fetcher.registries().get(&mirror.registry).await?;
                        registry
                            .has_blob(&mirror, crate::oci::artifact::EMPTY_CONFIG_DIGEST)
                            .await?;
                        Ok::<_, crate::oci::OciError>(registry.credentials().username().map(str::to_string))
                    }
                    .await;
                    match checked {
                        Ok(user) => add(
                            out,
                            "mirror",
                            true,
                            format!(
                                "`oci://{mirror}` answers{}",
                                user.map(|u| format!(" (logged in as `{u}`)")).unwrap_or_default()
                            ),
                            None,
                        ),
                        Err(e) => out.push(Finding {
                            check: "mirror",
                            ok: false,
                            detail: format!("`oci://{mirror}`: {e}"),
                            hint: e.hint(),
                        }),
                    }
                }
            }
        }
    }

    /// The lock against the config, free space against its size, the shared store.
    fn check_project(&self, out: &mut Vec<Finding>) {
        // The project.
        match self.read_lock() {
            Ok(Some(lock)) => {
                let stale: Vec<String> = (lock.differences(&self.config.specs, self.url_context()).iter())
                    .map(ToString::to_string)
                    .collect();
                add(
                    out,
                    "lock",
                    stale.is_empty(),
                    if stale.is_empty() {
                        "models.lock matches the config".to_string()
                    } else {
                        stale.join("; ")
                    },
                    (!stale.is_empty()).then_some("run `mdl lock`"),
                );
                let size: u64 = lock.models.values().map(|m| m.size()).sum();
                if let Some(free) = crate::fs::free_space(self.store.root()) {
                    add(
                        out,
                        "space",
                        free >= size,
                        format!(
                            "the lock's models take {}; {} free at `{}`",
                            crate::units::human_bytes(size),
                            crate::units::human_bytes(free),
                            self.store.root().display()
                        ),
                        (free < size).then_some("free space, or point `models.download.cache_dir` elsewhere"),
                    );
                }
            }
            Ok(None) => add(out, "lock", true, "no models.lock yet".into(), None),
            Err(e) => add(
                out,
                "lock",
                false,
                e.to_string(),
                e.hint()
                    .as_deref()
                    .map(|_| "restore it from git, or delete it and run `mdl lock`"),
            ),
        }
        if let Some(shared) = &self.caches.shared {
            let usage = shared.usage();
            add(
                out,
                "store",
                true,
                format!(
                    "`{}`: {} blob(s), {}",
                    shared.root().display(),
                    usage.blobs,
                    crate::units::human_bytes(usage.bytes)
                ),
                None,
            );
        }
    }
}

/// Records one finding.
fn add(out: &mut Vec<Finding>, check: &'static str, ok: bool, detail: String, hint: Option<&str>) {
    out.push(Finding {
        check,
        ok,
        detail,
        hint: hint.map(str::to_string),
    })
}

/// Runs the verifier's device probe: what its torch sees, or why it could not start.
fn add_devices(out: &mut Vec<Finding>, mut command: std::process::Command, failed: &str, hint: &'static str) {
    match command.output() {
        Ok(o) if o.status.success() => add(
            out,
            "devices",
            true,
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            None,
        ),
        Ok(o) => add(
            out,
            "devices",
            false,
            format!(
                "{failed}: {}",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").trim()
            ),
            Some(hint),
        ),
        Err(e) => add(
            out,
            "devices",
            false,
            format!("`{}` did not run: {e}", command.get_program().to_string_lossy()),
            None,
        ),
    }
}

/// The Python verifier: its torch, and the devices that torch sees.
fn check_python_verifier(out: &mut Vec<Finding>, torch: &libtorch_dir::Libtorch) {
    let python = torch.python.clone().unwrap_or_else(|| "python3".into());
    let helper_note = if crate::verify::LIBTORCH {
        format!(
            "; mdl-torch needs {}, so the Python verifier loads models",
            libtorch_dir::NEEDED
        )
    } else {
        String::new()
    };
    add(
        out,
        "verifier",
        true,
        format!(
            "torch {} in Python `{}` (found by {}){helper_note}",
            torch.version.as_deref().unwrap_or("of unknown version"),
            python.display(),
            torch.found_by,
        ),
        None,
    );
    let script = "import json, torch\nprint(json.dumps({'torch': torch.__version__, 'cuda_devices': torch.cuda.device_count() if torch.cuda.is_available() else 0, 'threads': torch.get_num_threads()}))";
    let mut command = std::process::Command::new(&python);
    command.args(["-I", "-c", script]);
    add_devices(
        out,
        command,
        "`import torch` failed",
        "`pip install torch` in that environment (a full install: `import torch` needs its CUDA libraries)",
    );
}

/// The mdl-torch helper: the libtorch it would load, and the devices it sees.
fn check_helper(out: &mut Vec<Finding>, path: &std::path::Path, libtorch: Option<&libtorch_dir::Libtorch>) {
    add(out, "verifier", true, format!("`{}`", path.display()), None);
    let version = |found: &libtorch_dir::Libtorch| found.version.clone();
    match libtorch {
        Some(found) if found.matches() => add(
            out,
            "libtorch",
            true,
            format!(
                "{} at `{}` (found by {}); mdl-torch needs {}",
                version(found).unwrap_or_else(|| "version unknown".into()),
                found.lib.display(),
                found.found_by,
                libtorch_dir::NEEDED
            ),
            None,
        ),
        Some(found) => add(
            out,
            "libtorch",
            false,
            format!(
                "{} at `{}` (found by {}), but mdl-torch needs {}",
                version(found).unwrap_or_else(|| "?".into()),
                found.lib.display(),
                found.found_by,
                libtorch_dir::NEEDED
            ),
            Some(libtorch_dir::FIX),
        ),
        None => add(
            out,
            "libtorch",
            true,
            "none found by `MDL_LIBTORCH`, `LIBTORCH` or Python; mdl-torch uses the one it was built against".into(),
            None,
        ),
    }
    let mut command = std::process::Command::new(path);
    command.arg("--devices");
    if let Some(found) = libtorch {
        command.env("LD_LIBRARY_PATH", &found.lib);
    }
    add_devices(
        out,
        command,
        "mdl-torch could not start libtorch",
        "set `MDL_LIBTORCH` to a libtorch 2.13 directory, or `pip install torch==2.13.0`",
    );
}
