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
    /// Bytes of locked files whose inode is shared (a hard link into the
    /// content store, which other projects may also link): counted in `total`,
    /// stored once on disk.
    pub shared: u64,
    /// The content store: its directory and size, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::store::shared::Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_dir: Option<std::path::PathBuf>,
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
        use std::os::unix::fs::MetadataExt;
        usage.shared = (lock.models.values())
            .filter(|m| !m.source.used_in_place())
            .flat_map(|m| m.files.iter().map(move |f| self.store.locate(m, f)))
            .filter_map(|p| std::fs::metadata(p).ok())
            .filter(|meta| meta.nlink() > 1)
            .map(|meta| meta.len())
            .sum();
        if let Some(shared) = &self.caches.shared {
            usage.store = Some(shared.usage());
            usage.store_dir = Some(shared.root().to_path_buf());
        }
        Ok(usage)
    }
}
