//! `--json` output: one JSON document on stdout per command, in one shape
//! documented in the README ("Machine-readable output"). Every document has
//! `version` (this shape's version) and `command`; human output on stderr is
//! unchanged.

use mdl::ops::{LockOutcome, ModelCheck, PushOutcome, SyncOutcome};
use mdl::plan::{FetchReason, Plan};
use serde_json::{json, Value};

/// The version of the JSON documents below.
pub const VERSION: u32 = 1;

pub fn print(value: Value) {
    println!("{}", serde_json::to_string_pretty(&value).expect("serialises"));
}

pub fn lock(outcome: &LockOutcome) -> Value {
    json!({
        "version": VERSION,
        "command": "lock",
        "written": outcome.written,
        "models": outcome.lock.models.len(),
        "resolved": outcome.resolved,
        "kept": outcome.kept,
        "removed": outcome.removed,
        "downloaded": { "files": outcome.moved.fetched.files, "bytes": outcome.moved.fetched.bytes, "reused_chunk_bytes": outcome.moved.reused_bytes },
        "linked": { "files": outcome.moved.linked.files, "bytes": outcome.moved.linked.bytes },
    })
}

pub fn plan(plan: &Plan) -> Value {
    let reason = |r: &FetchReason| match r {
        FetchReason::Missing => "missing",
        FetchReason::Changed => "changed",
        FetchReason::Forced => "forced",
    };
    json!({
        "version": VERSION,
        "command": "sync --dry-run",
        "cached": plan.cached.iter().map(|f| json!({ "model": f.model, "path": f.file.path, "size": f.file.size })).collect::<Vec<_>>(),
        "fetch": plan.fetch.iter().map(|(f, r)| json!({ "model": f.model, "path": f.file.path, "size": f.file.size, "reason": reason(r) })).collect::<Vec<_>>(),
        "fetch_bytes": plan.fetch_bytes(),
        "extraneous": plan.extraneous,
    })
}

pub fn checks(checks: &[ModelCheck]) -> Value {
    Value::Array(
        checks
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "status": c.verification.status,
                    "device": c.verification.device,
                    "remembered": c.cached,
                    "error": c.verification.error,
                    "torch": c.verification.torch,
                    "not_loaded": c.not_loaded,
                    "files": c.verification.files,
                    "hash_only": c.verification.hash_only,
                })
            })
            .collect(),
    )
}

pub fn sync(outcome: &SyncOutcome) -> Value {
    json!({
        "version": VERSION,
        "command": "sync",
        "lock": outcome.lock.as_ref().map(lock),
        "fetched": { "files": outcome.moved.fetched.files, "bytes": outcome.moved.fetched.bytes, "reused_chunk_bytes": outcome.moved.reused_bytes },
        "linked": { "files": outcome.moved.linked.files, "bytes": outcome.moved.linked.bytes, "mode": outcome.link_mode.as_str() },
        "mirrored": { "files": outcome.moved.mirrored.files, "bytes": outcome.moved.mirrored.bytes },
        "written_back": outcome.written_back.iter().map(|w| json!({
            "mirror": w.mirror,
            "models": w.models,
            "uploaded": { "files": w.uploaded_files, "bytes": w.uploaded_bytes },
            "present": { "files": w.present_files },
        })).collect::<Vec<_>>(),
        "files": outcome.plan.cached.len() + outcome.plan.fetch.len(),
        "hashed": { "files": outcome.rehashed_files, "copies_recognised": outcome.recognised_copies },
        "extraneous": outcome.plan.extraneous,
        "models": checks(&outcome.checks),
        "elapsed_ms": outcome.elapsed_ms,
    })
}

pub fn push(outcome: &PushOutcome) -> Value {
    json!({
        "version": VERSION,
        "command": "push",
        "target": outcome.target,
        "index": outcome.index_digest,
        "models": outcome.models.iter().map(|(name, tag, digest, _)| json!({ "name": name, "tag": tag, "digest": digest })).collect::<Vec<_>>(),
        "uploaded": { "files": outcome.uploaded_files, "bytes": outcome.uploaded_bytes },
        "present": { "files": outcome.present_files, "bytes": outcome.present_bytes },
        "mounted": { "files": outcome.mounted_files },
        "elapsed_ms": outcome.elapsed_ms,
    })
}

pub fn verify(checked: &[ModelCheck]) -> Value {
    json!({ "version": VERSION, "command": "verify", "models": checks(checked) })
}
