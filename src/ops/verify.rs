//! `mdl verify`: load every model (or the named ones) again, ignoring
//! remembered results, and record what was found in the registry.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::registry;
use crate::verify::{self, ModelCheck};

use super::Project;

impl Project {
    pub async fn verify(&self, names: &[String]) -> Result<Vec<ModelCheck>> {
        self.check_names(names)?;
        let _guard = self.store.lock()?;
        let lock = self.read_lock()?.ok_or_else(|| {
            Error::usage(
                "there is no `models.lock` yet",
                Some("run `mdl sync` first".to_string()),
            )
        })?;
        let mut state = self.store.load_state();
        let wanted: BTreeSet<String> = (self.config.specs.iter())
            .filter(|s| names.is_empty() || names.iter().any(|n| s.matches(n)))
            .map(|s| s.name.clone())
            .collect();
        let mut subset = lock.clone();
        subset.models.retain(|n, _| wanted.contains(n));
        let checks =
            verify::verify_models(&self.config, &self.store, &subset, &mut state, &wanted, &*self.reporter).await?;
        self.store.save_state(&state)?;
        let mut all = registry::recorded(&self.registry_path());
        for c in &checks {
            all.insert(c.name.clone(), (c.verification.clone(), false));
        }
        registry::write(&self.store, &self.registry_path(), &lock, &all, false)?;
        Ok(checks)
    }
}
