//! Confirm: the lock caches what the source said; it never decides what the
//! source serves. Before a locked file's content addresses select any bytes
//! (a Xet reconstruction, a shared-store or Hugging Face cache blob, a
//! mirror's layer), each Hub model with files to acquire is listed once at
//! its locked commit, and every such file's size, ETag, sha256 and Xet hash
//! must be what the source states (`lock::confirm`). The source's digest
//! then travels with the download, so bytes from a cache or a mirror are
//! checked against it too. A no-op (nothing to acquire) asks nothing, and
//! offline nothing can be asked (SECURITY.md says what is trusted then).

use std::collections::BTreeMap;

use crate::config::ModelSpec;
use crate::error::{Error, Result};
use crate::lock::{confirm, LockError, LockMode, Lockfile};
use crate::plan::{Download, PlannedFile};
use crate::sources::ModelId;
use crate::sources::RemoteFile;

use super::Project;

impl Project {
    /// Checks the lock entry of every Hub file in `files` against its
    /// source's listing at the locked commit, and gives each download in
    /// `downloads` (in the same order) the source's digest. Models in `fresh`
    /// were resolved by this run: their entries are the source's statement.
    pub(super) async fn confirm(
        &self,
        lock: &Lockfile,
        files: &[&PlannedFile],
        fresh: &[String],
        downloads: &mut [Download],
        mode: LockMode,
    ) -> Result<()> {
        if mode.offline() {
            return Ok(());
        }
        let asked: Vec<&PlannedFile> = files.iter().copied().filter(|p| !fresh.contains(&p.model)).collect();
        let statements = self.statements(lock, &asked).await?;
        let mut reasons = Vec::new();
        let text = std::fs::read_to_string(self.lock_path()).ok();
        for (planned, download) in files.iter().zip(downloads.iter_mut()) {
            if fresh.contains(&planned.model) {
                download.source_digest = confirm::digest_of_fresh(&planned.file);
                continue;
            }
            let (Some(model), Some(stated)) = (lock.models.get(&planned.model), statements.get(&planned.model)) else {
                continue;
            };
            let said = stated.get(&planned.file.path);
            match confirm::compare(model, &planned.file, said) {
                Ok(confirmed) => {
                    download.unconfirmed = confirmed.digest.is_none();
                    if !confirmed.xet || download.unconfirmed {
                        download.xet = None;
                    }
                    if download.unconfirmed {
                        download.hub_blob = None;
                    }
                    download.source_digest = confirmed.digest;
                }
                Err(stale) => reasons.push(stale.describe(text.as_deref())),
            }
        }
        if reasons.is_empty() {
            return Ok(());
        }
        Err(LockError::Unconfirmed {
            path: self.lock_path(),
            reasons,
        }
        .into())
    }

    /// What the source states for each Hub model of `files` at its locked
    /// commit: one listing per model, at most `jobs` at once.
    async fn statements(
        &self,
        lock: &Lockfile,
        files: &[&PlannedFile],
    ) -> Result<BTreeMap<String, BTreeMap<String, RemoteFile>>> {
        let mut specs: Vec<ModelSpec> = Vec::new();
        for planned in files {
            let Some(model) = lock.models.get(&planned.model) else {
                continue;
            };
            let hub = model.source.fetched_from_hub_endpoint();
            let (Some(commit), Some(spec)) = (&model.commit, self.config.specs.iter().find(|s| s.name == model.name))
            else {
                continue;
            };
            if !hub || specs.iter().any(|s| s.name == model.name) {
                continue;
            }
            // The same model, asked at the locked commit.
            specs.push(ModelSpec {
                id: ModelId::new(model.source, model.id.clone(), Some(commit.clone())),
                ..spec.clone()
            });
        }
        if specs.is_empty() {
            return Ok(BTreeMap::new());
        }
        let fetcher = self.fetcher()?;
        let mut resolver = self.resolver(&fetcher);
        resolver.cache_hints = false;
        let asked: Vec<_> = specs.iter().map(ModelSpec::want).collect();
        let mut statements = BTreeMap::new();
        let mut errors = Vec::new();
        for (spec, answer) in specs.iter().zip(resolver.resolve_all(&asked, self.settings.jobs).await) {
            match answer {
                Ok(resolved) => {
                    let files = resolved.files.into_iter().map(|f| (f.path.clone(), f)).collect();
                    statements.insert(spec.name.clone(), files);
                }
                // The source cannot be reached (the mirror's use case: the
                // Hub down): as offline, the lock's addresses are trusted.
                Err(e @ crate::sources::ResolveError::Network { .. }) => {
                    let message = format!(
                        "{e}; the lock's hashes of `{}` are trusted as with `--offline` (SECURITY.md)",
                        spec.name
                    );
                    self.reporter
                        .report(crate::reporter::Event::Warning { message: &message });
                }
                Err(e) => errors.push(Error::from(e)),
            }
        }
        if !errors.is_empty() {
            return Err(Error::many(
                "could not ask the source what the locked commit holds; nothing was placed",
                errors,
            ));
        }
        Ok(statements)
    }
}
