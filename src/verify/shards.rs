//! Sharded checkpoints: a `*.index.json` (`model.safetensors.index.json`,
//! `pytorch_model.bin.index.json`) names, in its `weight_map`, the shard that
//! holds each tensor. A model is complete only when every shard it names is
//! synced and holds the tensors the index says it does — an `include:` that
//! drops a shard must not sync and "verify" half a model.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::VerifyError;
use crate::config::Config;
use crate::lock::{LockedModel, Lockfile};
use crate::store::Store;

/// An index larger than this is not an index.
const MAX_INDEX_BYTES: u64 = 64 << 20;
/// A safetensors header larger than this is refused (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// Checks every sharded checkpoint of every locked model.
pub fn check_shards(config: &Config, store: &Store, lock: &Lockfile) -> Result<(), VerifyError> {
    for model in lock.models.values() {
        check_model(config, store, model)?;
    }
    Ok(())
}

fn check_model(config: &Config, store: &Store, model: &LockedModel) -> Result<(), VerifyError> {
    let files: BTreeSet<&str> = model.files.iter().map(|f| f.path.as_str()).collect();
    for file in model.files.iter().filter(|f| f.path.ends_with(".index.json")) {
        let path = store.locate(model, file);
        let Some(index) = read_index(&path)? else {
            continue; // an `.index.json` of another kind (no `weight_map`)
        };
        let dir = file
            .path
            .rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default();
        let mut by_shard: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (tensor, shard) in &index.weight_map {
            by_shard.entry(format!("{dir}{shard}")).or_default().push(tensor);
        }
        for (shard, tensors) in by_shard {
            if !files.contains(shard.as_str()) {
                let spec = config.specs.iter().find(|s| s.name == model.name);
                let filter = spec
                    .map(|s| describe_filter(&s.include, &s.exclude))
                    .unwrap_or_else(|| "its filters".into());
                return Err(VerifyError::MissingShard {
                    model: model.name.clone(),
                    index: file.path.clone(),
                    shard,
                    filter,
                });
            }
            if !shard.ends_with(".safetensors") {
                continue; // other formats' tensor names need the whole pickle; loading checks them
            }
            let located = model.files.iter().find(|f| f.path == shard).expect("listed");
            let held = safetensors_names(&store.locate(model, located))?;
            if let Some(missing) = tensors.iter().find(|t| !held.contains(**t)) {
                return Err(VerifyError::ShardLacksTensor {
                    model: model.name.clone(),
                    index: file.path.clone(),
                    shard,
                    tensor: missing.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn describe_filter(include: &[String], exclude: &[String]) -> String {
    let list = |v: &[String]| v.iter().map(|g| format!("\"{g}\"")).collect::<Vec<_>>().join(", ");
    match (include.is_empty(), exclude.is_empty()) {
        (false, true) => format!("`include: [{}]`", list(include)),
        (true, false) => format!("`exclude: [{}]`", list(exclude)),
        (false, false) => format!("`include: [{}]` with `exclude: [{}]`", list(include), list(exclude)),
        (true, true) => "the repository's file list (the shard is not in it)".into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_index(path: &Path) -> Result<Option<Index>, VerifyError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io(path))?
        .take(MAX_INDEX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    Ok(serde_json::from_slice::<Index>(&bytes).ok())
}

/// The tensor names in a safetensors header (read alone: 8 bytes of length,
/// then the JSON).
fn safetensors_names(path: &Path) -> Result<BTreeSet<String>, VerifyError> {
    let bad = |reason: String| VerifyError::Load {
        path: path.to_path_buf(),
        format: Some(crate::report::Format::Safetensors),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad("shorter than a safetensors header".into()))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES || len > file.metadata().map_err(io(path))?.len() {
        return Err(bad(format!("its header claims {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io(path))?;
    let map: BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    Ok(map.into_keys().filter(|k| k != "__metadata__").collect())
}
