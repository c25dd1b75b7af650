//! `mdl du`: bytes on disk per locked model, extraneous paths and partial
//! downloads.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::fs::tree_size;

use super::Project;

/// Disk usage of the models directory.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskUsage {
    pub models: BTreeMap<String, u64>,
    pub extraneous: u64,
    pub partial_downloads: u64,
    pub total: u64,
}

impl Project {
    /// Bytes on disk per locked model, extraneous paths and partial downloads.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let lock = self.read_lock()?.unwrap_or_default();
        let mut usage = DiskUsage::default();
        for model in lock.models.values() {
            if !model.source.used_in_place() {
                usage
                    .models
                    .insert(model.name.clone(), tree_size(&self.store.model_dir(&model.dir_name())));
            }
        }
        usage.extraneous = self.extraneous()?.iter().map(|(_, s)| s).sum();
        usage.partial_downloads = tree_size(&self.store.tmp_dir());
        usage.total = tree_size(self.store.root());
        Ok(usage)
    }
}
