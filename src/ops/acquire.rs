//! Acquire: put the files a verb needs in place, from wherever they are
//! cheapest — the one sequence `lock` and `sync` share (uv's `Preparer`).
//!
//! For each wanted file: it must stay inside the models directory; a cache
//! that holds it places it (the shared store by blake3, the Hugging Face cache
//! by ETag — checked against the lock's blake3, or for a file being locked
//! against upstream's sha256 or git blob id); what is left must fit the disk;
//! a mirror that has it serves it, else upstream (and upstream again when the
//! mirror fails); each fetched file is kept in the shared store; every placed
//! or fetched file is recorded in the store's state. Failures are collected,
//! not raised one by one, so a verb reports them all.

use crate::error::{Error, Result};
use crate::fetch::Fetched;
use crate::lock::Lockfile;
use crate::plan::Download;
use crate::reporter::Event;
use crate::store::{Placed, StoreState};

use super::Project;

/// One file a verb needs in place.
pub(super) struct Want {
    /// The store's key of the file (`dir/path`).
    pub key: String,
    /// The locked model it belongs to, when it is locked (mirrors find
    /// files by their model's locked files).
    pub model: Option<String>,
    pub download: Download,
    /// Re-hash a shared-store blob before placing it (`--check`, or a file
    /// that changed on disk).
    pub check: bool,
}

/// Where a wanted file came from.
pub(super) enum Got {
    /// From a cache (no network).
    Placed(Placed),
    /// Downloaded; `mirrored` when a mirror served it.
    Fetched { fetched: Fetched, mirrored: bool },
}

/// What acquiring did: per wanted file (in order) what it got, or `None`
/// for a failure, which is in `errors`.
#[derive(Default)]
pub(super) struct Acquired {
    pub got: Vec<Option<Got>>,
    pub errors: Vec<Error>,
}

impl Acquired {
    /// (files, bytes) placed from a cache, fetched, and fetched from a mirror.
    pub fn counts(&self) -> [(usize, u64); 3] {
        let mut counts = [(0, 0); 3];
        for got in self.got.iter().flatten() {
            let (slot, bytes) = match got {
                Got::Placed(p) => (0, p.record.size),
                Got::Fetched { fetched, mirrored } => {
                    if *mirrored {
                        counts[2].0 += 1;
                        counts[2].1 += fetched.size;
                    }
                    (1, fetched.size)
                }
            };
            counts[slot].0 += 1;
            counts[slot].1 += bytes;
        }
        counts
    }

    /// The models (`models_of`: each wanted file's model, in order) of which
    /// at least one file was downloaded from upstream, not a mirror or cache.
    pub fn models_fetched_upstream(&self, models_of: &[Option<String>]) -> std::collections::BTreeSet<String> {
        (self.got.iter().zip(models_of))
            .filter(|(got, _)| matches!(got, Some(Got::Fetched { mirrored: false, .. })))
            .filter_map(|(_, model)| model.clone())
            .collect()
    }
}

impl Project {
    /// Puts every wanted file in place (see the module's comment) and records
    /// it in `state`. `lock`: the lock the files belong to, when they are
    /// locked, so mirrors can be asked for them.
    pub(super) async fn acquire(
        &self,
        wants: Vec<Want>,
        lock: Option<&Lockfile>,
        state: &mut StoreState,
    ) -> Result<Acquired> {
        let mut acquired = Acquired {
            got: (0..wants.len()).map(|_| None).collect(),
            errors: Vec::new(),
        };
        for want in &wants {
            self.store.check_contained(&want.download.dest)?;
        }
        // caches
        let mut todo = Vec::new();
        for (i, want) in wants.iter().enumerate() {
            match self.caches.place_any(&want.download, want.check)? {
                Some(placed) => {
                    state.files.insert(want.key.clone(), placed.record.clone());
                    acquired.got[i] = Some(Got::Placed(placed));
                }
                None => todo.push(i),
            }
        }
        if todo.is_empty() {
            return Ok(acquired);
        }
        // fetch, if it fits: from a mirror where one has the file, else upstream
        self.check_space(todo.iter().map(|&i| &wants[i].download))?;
        let fetcher = self.fetcher()?;
        let alternatives = self.on_mirrors(&fetcher, &wants, &todo, lock).await?;
        let mut upstream = Vec::new();
        let (mirrored, jobs): (Vec<usize>, Vec<Download>) = todo
            .iter()
            .zip(alternatives)
            .filter_map(|(&i, alt)| alt.map(|d| (i, d)))
            .unzip();
        let names: Vec<String> = (jobs.iter())
            .map(|d| d.registry.as_ref().map(|m| m.to_string()).unwrap_or_default())
            .collect();
        for ((i, mirror), result) in mirrored.iter().zip(names).zip(fetcher.fetch_all(jobs).await) {
            match result {
                Ok(fetched) => {
                    acquired.got[*i] = Some(Got::Fetched {
                        fetched,
                        mirrored: true,
                    })
                }
                Err(e) => {
                    let label = &wants[*i].download.label;
                    let message =
                        format!("the mirror `oci://{mirror}` failed for `{label}` ({e}); fetching it from upstream");
                    self.reporter.report(Event::Warning { message: &message });
                    upstream.push(*i);
                }
            }
        }
        upstream.extend(todo.iter().filter(|i| !mirrored.contains(i)));
        upstream.sort();
        let jobs = upstream.iter().map(|&i| wants[i].download.clone()).collect();
        for (&i, result) in upstream.iter().zip(fetcher.fetch_all(jobs).await) {
            match result {
                Ok(fetched) => {
                    acquired.got[i] = Some(Got::Fetched {
                        fetched,
                        mirrored: false,
                    })
                }
                Err(e) => acquired.errors.push(Error::from(e)),
            }
        }
        // keep and record
        for (want, got) in wants.iter().zip(&acquired.got) {
            if let Some(Got::Fetched { fetched, .. }) = got {
                self.caches.keep(&want.download.dest, &fetched.blake3)?;
                state.files.insert(want.key.clone(), fetched.record.clone());
            }
        }
        Ok(acquired)
    }

    /// Per file still to fetch (`todo`, indices into `wants`): the same file
    /// on the first mirror that has it. Unusable mirrors are said and skipped.
    async fn on_mirrors(
        &self,
        fetcher: &crate::fetch::Fetcher,
        wants: &[Want],
        todo: &[usize],
        lock: Option<&Lockfile>,
    ) -> Result<Vec<Option<Download>>> {
        let mirrors: Vec<_> = self.mirrors()?.into_iter().map(|(m, _)| m).collect();
        let (Some(lock), false) = (lock, mirrors.is_empty()) else {
            return Ok(vec![None; todo.len()]);
        };
        let asked: Vec<usize> = (todo.iter().copied())
            .filter(|&i| wants[i].model.as_ref().is_some_and(|m| lock.models.contains_key(m)))
            .collect();
        let pairs: Vec<_> = (asked.iter())
            .map(|&i| (&lock.models[wants[i].model.as_ref().unwrap()], &wants[i].download))
            .collect();
        let found = fetcher.find_on_mirrors(&mirrors, &pairs).await;
        for (mirror, why) in &found.unusable {
            let message = format!("the mirror `oci://{mirror}` is skipped: {why}");
            self.reporter.report(Event::Warning { message: &message });
        }
        let mut out = vec![None; todo.len()];
        for (&i, alternative) in asked.iter().zip(found.alternatives) {
            let slot = todo.iter().position(|&t| t == i).expect("asked files are to do");
            out[slot] = alternative;
        }
        Ok(out)
    }
}
