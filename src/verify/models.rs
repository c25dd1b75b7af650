//! Verifying a project's models: which files to load (weights only, and only
//! those not verified before for the same content, device and forward shape),
//! one batch to the verifier, and each model's [`Verification`] from the answers.

use std::collections::{BTreeMap, BTreeSet};

use super::{Verifier, VerifyError};
use crate::config::{Config, UnknownWeights};
use crate::lock::Lockfile;
use crate::report::{Verification, VerifyStatus};
use crate::reporter::{Event, Reporter};
use crate::store::{Store, StoreState};

/// One model's verification result in a sync.
#[derive(Clone, Debug)]
pub struct ModelCheck {
    pub name: String,
    pub verification: Verification,
    /// Served from the remembered result (no reload).
    pub cached: bool,
    /// Why its files were checked but not loaded, when no torch could load them.
    pub not_loaded: Option<String>,
    /// Some file is checked by hash only for the first time (its format was
    /// just sniffed, not remembered): the one time to warn about it.
    pub new_hash_only: bool,
}

/// Verifies each locked model on its configured device. Files whose
/// (blake3, device, forward shape) verified before are not reloaded unless
/// their model is in `reload`; all others go to the verifier in one batch.
pub async fn verify_models(
    config: &Config,
    store: &Store,
    lock: &Lockfile,
    state: &mut StoreState,
    reload: &BTreeSet<String>,
    reporter: &dyn Reporter,
) -> Result<Vec<ModelCheck>, VerifyError> {
    struct Pending {
        model: usize,
        path: String,
        key: String,
    }
    let mut checks = Vec::new();
    let mut requests = Vec::new();
    let mut pending = Vec::new();
    for model in lock.models.values() {
        let Some(spec) = config.specs.iter().find(|s| s.name == model.name) else {
            continue;
        };
        let device = spec.device.to_string();
        let mut check = ModelCheck {
            name: model.name.clone(),
            verification: Verification {
                status: VerifyStatus::Verified,
                device: device.clone(),
                files: BTreeMap::new(),
                error: None,
                hash_only: BTreeMap::new(),
                torch: None,
            },
            cached: true,
            not_loaded: None,
            new_hash_only: false,
        };
        if !spec.verify.load {
            check.verification.status = VerifyStatus::Skipped;
            check.cached = false;
            checks.push(check);
            continue;
        }
        reporter.report(Event::Verifying { model: &model.name });
        for file in &model.files {
            let key = format!(
                "{}@{device}#{}",
                file.blake3,
                forward_key(spec.verify.forward.as_deref(), spec.verify.run_code)
            );
            if !reload.contains(&model.name) {
                if let Some(record) = state.verified.get(&key) {
                    check.verification.files.insert(file.path.clone(), record.clone());
                    continue;
                }
            }
            // Only weight files go to the verifier; the rest (configs, tokenizers) need no load.
            let path = store.locate(model, file);
            if state.not_weights.contains(&file.blake3) {
                continue;
            }
            // Remembered: a no-op opens no weight file.
            if let Some(reason) = state.hash_only.get(&file.blake3) {
                check.verification.hash_only.insert(file.path.clone(), reason.clone());
                continue;
            }
            match super::detect(&path) {
                Ok(super::Detected::Other) => {
                    state.not_weights.insert(file.blake3.clone());
                    continue;
                }
                Ok(super::Detected::Unknown { reason }) => {
                    state.hash_only.insert(file.blake3.clone(), reason.clone());
                    check.verification.hash_only.insert(file.path.clone(), reason);
                    check.new_hash_only = true;
                    continue;
                }
                _ => {}
            }
            pending.push(Pending {
                model: checks.len(),
                path: file.path.clone(),
                key,
            });
            requests.push(super::Request {
                path,
                device: device.clone(),
                forward: spec.verify.forward.clone(),
                run_code: spec.verify.runs_code(),
                format: None,
                spans: Vec::new(),
            });
        }
        checks.push(check);
    }
    if !requests.is_empty() {
        // Found only when something must load: finding libtorch may ask
        // Python, which a sync whose verifications are all remembered (the
        // no-op) must not pay for.
        let verifier = Verifier::discover();
        verifier.check_libtorch()?;
        let not_loaded = match &verifier {
            Verifier::StructureOnly { reason } => Some(reason.clone()),
            _ => None,
        };
        // Within the memory budget, spread over the cores.
        let budget = config
            .verify
            .max_memory
            .map(|b| b.0)
            .unwrap_or_else(super::default_budget);
        let mut costs = Vec::with_capacity(requests.len());
        let mut sizes = Vec::with_capacity(requests.len());
        for request in &requests {
            let io = |source| VerifyError::Io {
                path: request.path.clone(),
                source,
            };
            let (tensor, bytes) = super::largest_tensor(&request.path).map_err(io)?.unwrap_or_default();
            if bytes > budget {
                return Err(VerifyError::OverBudget {
                    path: request.path.clone(),
                    tensor,
                    bytes,
                    budget,
                });
            }
            costs.push(bytes);
            sizes.push(std::fs::metadata(&request.path).map_err(io)?.len());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let lanes = super::plan_lanes(&costs, &sizes, budget, cores);
        reporter.report(Event::VerifyPlan {
            files: requests.len(),
            helpers: lanes.lanes.len(),
            budget,
        });
        let results = tokio::task::spawn_blocking({
            let verifier = verifier.clone();
            move || verifier.verify_in_lanes(&requests, &lanes)
        })
        .await
        .map_err(|e| VerifyError::BatchPanicked { reason: e.to_string() })?;
        for (p, result) in pending.into_iter().zip(results) {
            let check = &mut checks[p.model];
            check.cached = false;
            check.not_loaded.clone_from(&not_loaded);
            match result {
                Ok(Some(report)) => {
                    state.verified.insert(p.key, report.clone());
                    check.verification.files.insert(p.path, report);
                }
                Ok(None) => {}
                Err(
                    e @ (VerifyError::DeviceUnavailable { .. }
                    | VerifyError::LibtorchMissing { .. }
                    | VerifyError::Shared(_)),
                ) => return Err(e),
                Err(e) => {
                    // Never remembered: the next sync tries again.
                    state.verified.remove(&p.key);
                    check.verification.status = VerifyStatus::Failed;
                    let reason = match &e {
                        VerifyError::Load { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    };
                    let previous = check.verification.error.take();
                    let line = format!("`{}` cannot be loaded: {reason}", p.path);
                    check.verification.error = Some(match previous {
                        Some(prev) => format!("{prev}; {line}"),
                        None => line,
                    });
                }
            }
        }
    }
    for check in &mut checks {
        let v = &mut check.verification;
        v.torch = v.files.values().find_map(|f| f.torch.clone());
        let loaded = v.files.values().all(|f| f.loaded);
        if v.status == VerifyStatus::Verified && !loaded {
            v.status = VerifyStatus::FormatChecked;
        }
        // Nothing unverified is called verified: a weight file no check
        // could read keeps its model from being `verified`.
        if !v.hash_only.is_empty() && matches!(v.status, VerifyStatus::Verified | VerifyStatus::FormatChecked) {
            check.cached = false;
            match config.verify.unknown {
                UnknownWeights::Warn => v.status = VerifyStatus::HashChecked,
                UnknownWeights::Error => {
                    v.status = VerifyStatus::Failed;
                    let files: Vec<String> = v.hash_only.iter().map(|(p, why)| format!("`{p}` ({why})")).collect();
                    v.error = Some(format!(
                        "{} can only be checked against {} hash, and `verify.unknown` is `error`",
                        files.join(", "),
                        if files.len() == 1 { "its" } else { "their" }
                    ));
                }
            }
        }
    }
    Ok(checks)
}

/// What a remembered verification depended on besides the bytes and the
/// device: the forward shape, and whether code was allowed to run.
fn forward_key(forward: Option<&[i64]>, run_code: bool) -> String {
    let shape = forward
        .map(|s| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"))
        .unwrap_or_default();
    if run_code && forward.is_none() {
        format!("{shape}+code")
    } else {
        shape
    }
}
