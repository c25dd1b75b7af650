//! `mdl clean`: delete what no locked model references — only inside mdl's
//! own model directories (one per source, see [`Source::ALL`]); other files in
//! the models directory are the user's.

use crate::error::Result;
use crate::fs::tree_size;
use crate::registry;
use crate::sources::Source;
use crate::store::StoreError;

use super::Project;

impl Project {
    /// Paths under the models directory that no locked model references, with
    /// their sizes (`mdl clean`). Only mdl's own model directories and files
    /// inside them are considered; other files in the directory are the user's.
    pub fn extraneous(&self) -> Result<Vec<(String, u64)>> {
        let lock = self.read_lock()?.unwrap_or_default();
        let (plan, _) = self.plan_now(&lock)?;
        Ok(plan
            .extraneous
            .into_iter()
            .filter(|p| Source::of_dir_name(p.split('/').next().unwrap_or_default()).is_some())
            .map(|p| {
                let size = tree_size(&self.store.root().join(&p));
                (p, size)
            })
            .collect())
    }

    /// Deletes what [`Project::extraneous`] lists; returns it.
    pub fn clean(&self, dry_run: bool) -> Result<Vec<(String, u64)>> {
        let _guard = self.store.lock()?;
        let extra = self.extraneous()?;
        if !dry_run {
            for (rel, _) in &extra {
                let path = self.store.root().join(rel);
                let result = if path.is_dir() {
                    fs_err::remove_dir_all(&path)
                } else {
                    fs_err::remove_file(&path)
                };
                result.map_err(StoreError::io(&path))?;
            }
            let lock = self.read_lock()?.unwrap_or_default();
            registry::refresh(&self.store, &self.registry_path(), &lock)?;
        }
        Ok(extra)
    }
}

impl Project {
    /// Deletes partial downloads that no running mdl is writing (`mdl clean
    /// --partial`): after a failed run on a full disk, they hold space until
    /// the download resumes. Returns them (relative to the models dir).
    pub fn clean_partial(&self, dry_run: bool) -> Result<Vec<(String, u64)>> {
        let _guard = self.store.lock()?;
        let mut removed = Vec::new();
        for path in crate::fetch::partial::abandoned_partials(&self.store.tmp_dir()) {
            let size = tree_size(&path);
            if !dry_run {
                fs_err::remove_file(&path).map_err(StoreError::io(&path))?;
            }
            let rel = path.strip_prefix(self.store.root()).unwrap_or(&path);
            removed.push((rel.to_string_lossy().into_owned(), size));
        }
        Ok(removed)
    }
}
