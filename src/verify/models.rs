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
/// Three steps: plan (what to load), run (one batch, within the memory
/// budget), fold (each answer into its model's verification).
pub async fn verify_models(
    config: &Config,
    store: &Store,
    lock: &Lockfile,
    state: &mut StoreState,
    reload: &BTreeSet<String>,
    reporter: &dyn Reporter,
) -> Result<Vec<ModelCheck>, VerifyError> {
    let mut planned = Planned::default();
    for model in lock.models.values() {
        let Some(spec) = config.specs.iter().find(|s| s.name == model.name) else {
            continue;
        };
        planned.model(spec, model, store, state, reload, reporter);
    }
    let Planned {
        mut checks,
        requests,
        pending,
    } = planned;
    if !requests.is_empty() {
        let (results, not_loaded) = run(config, requests, reporter).await?;
        for (p, result) in pending.into_iter().zip(results) {
            fold(&mut checks[p.model], p, result, not_loaded.as_deref(), state)?;
        }
    }
    for check in &mut checks {
        settle(check, config.verify.unknown);
    }
    Ok(checks)
}

/// A file sent to the verifier: its model (an index into the checks), path
/// and the key its result is remembered by.
struct Pending {
    model: usize,
    path: String,
    key: String,
}

/// What verification will do: each model's check (what is remembered
/// already filled in) and the files to load.
#[derive(Default)]
struct Planned {
    checks: Vec<ModelCheck>,
    requests: Vec<super::Request>,
    pending: Vec<Pending>,
}

impl Planned {
    /// One model: skipped, or each of its files remembered, not weights,
    /// checked by hash only, or to load.
    fn model(
        &mut self,
        spec: &crate::config::ModelSpec,
        model: &crate::lock::LockedModel,
        store: &Store,
        state: &mut StoreState,
        reload: &BTreeSet<String>,
        reporter: &dyn Reporter,
    ) {
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
            self.checks.push(check);
            return;
        }
        reporter.report(Event::Verifying { model: &model.name });
        let forward = forward_key(spec.verify.forward.as_deref(), spec.verify.run_code);
        for file in &model.files {
            let key = format!("{}@{device}#{forward}", file.blake3);
            if !reload.contains(&model.name) {
                if let Some(record) = state.verified.get(&key) {
                    check.verification.files.insert(file.path.clone(), record.clone());
                    continue;
                }
            }
            let path = store.locate(model, file);
            if !is_weights(&mut check, file, &path, state) {
                continue;
            }
            let (model, path_in_model) = (self.checks.len(), file.path.clone());
            self.pending.push(Pending {
                model,
                path: path_in_model,
                key,
            });
            self.requests.push(super::Request {
                path,
                device: device.clone(),
                forward: spec.verify.forward.clone(),
                run_code: spec.verify.runs_code(),
                format: None,
                spans: Vec::new(),
            });
        }
        self.checks.push(check);
    }
}

/// Whether a file goes to the verifier: only weight files do (configs and
/// tokenizers need no load), and a weight file in a format mdl cannot read
/// is checked by hash only. Both are remembered by blake3, so a no-op opens
/// no weight file.
fn is_weights(
    check: &mut ModelCheck,
    file: &crate::lock::LockedFile,
    path: &std::path::Path,
    state: &mut StoreState,
) -> bool {
    if state.not_weights.contains(&file.blake3) {
        return false;
    }
    if let Some(reason) = state.hash_only.get(&file.blake3) {
        check.verification.hash_only.insert(file.path.clone(), reason.clone());
        return false;
    }
    match super::detect(path) {
        Ok(super::Detected::Other) => {
            state.not_weights.insert(file.blake3.clone());
            false
        }
        Ok(super::Detected::Unknown { reason }) => {
            state.hash_only.insert(file.blake3.clone(), reason.clone());
            check.verification.hash_only.insert(file.path.clone(), reason);
            check.new_hash_only = true;
            false
        }
        _ => true,
    }
}

type Answers = Vec<Result<Option<crate::report::FileReport>, VerifyError>>;

/// Loads every request in one batch, spread over the cores within the
/// memory budget (a tensor larger than the budget is refused before any
/// load). Returns the answers, in order, and why nothing was loaded when no
/// torch could load them.
async fn run(
    config: &Config,
    requests: Vec<super::Request>,
    reporter: &dyn Reporter,
) -> Result<(Answers, Option<String>), VerifyError> {
    // Found only when something must load: finding libtorch may ask
    // Python, which a sync whose verifications are all remembered (the
    // no-op) must not pay for.
    let verifier = Verifier::discover();
    verifier.check_libtorch()?;
    let not_loaded = match &verifier {
        Verifier::StructureOnly { reason } => Some(reason.clone()),
        _ => None,
    };
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
            let path = request.path.clone();
            return Err(VerifyError::OverBudget {
                path,
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
    let results = tokio::task::spawn_blocking(move || verifier.verify_in_lanes(&requests, &lanes))
        .await
        .map_err(|e| VerifyError::BatchPanicked { reason: e.to_string() })?;
    Ok((results, not_loaded))
}

/// One answer into its model's check: remembered when it loaded; a failure
/// is said (and never remembered: the next sync tries again). A missing
/// device or libtorch fails the whole verification.
fn fold(
    check: &mut ModelCheck,
    p: Pending,
    result: Result<Option<crate::report::FileReport>, VerifyError>,
    not_loaded: Option<&str>,
    state: &mut StoreState,
) -> Result<(), VerifyError> {
    check.cached = false;
    check.not_loaded = not_loaded.map(str::to_string);
    match result {
        Ok(Some(report)) => {
            state.verified.insert(p.key, report.clone());
            check.verification.files.insert(p.path, report);
        }
        Ok(None) => {}
        Err(
            e @ (VerifyError::DeviceUnavailable { .. } | VerifyError::LibtorchMissing { .. } | VerifyError::Shared(_)),
        ) => return Err(e),
        Err(e) => {
            state.verified.remove(&p.key);
            check.verification.status = VerifyStatus::Failed;
            let reason = match &e {
                VerifyError::Load { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            let line = format!("`{}` cannot be loaded: {reason}", p.path);
            check.verification.error = Some(match check.verification.error.take() {
                Some(prev) => format!("{prev}; {line}"),
                None => line,
            });
        }
    }
    Ok(())
}

/// A model's status from its files: checked only by structure when none
/// loaded; never `verified` while a weight file could only be hash-checked
/// (an error under `verify.unknown: error`).
fn settle(check: &mut ModelCheck, unknown: UnknownWeights) {
    let v = &mut check.verification;
    v.torch = v.files.values().find_map(|f| f.torch.clone());
    let loaded = v.files.values().all(|f| f.loaded);
    if v.status == VerifyStatus::Verified && !loaded {
        v.status = VerifyStatus::FormatChecked;
    }
    if v.hash_only.is_empty() || !matches!(v.status, VerifyStatus::Verified | VerifyStatus::FormatChecked) {
        return;
    }
    check.cached = false;
    match unknown {
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
