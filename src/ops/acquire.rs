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
    /// For a file being locked: its lock entry and file, which what it got fills.
    pub entry: Option<(usize, usize)>,
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

/// Files and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub files: usize,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// What moved to put files in place: placed from a cache (`linked`),
/// downloaded (`fetched`), of which from a mirror (`mirrored`), and bytes of
/// fetched Xet files copied from chunks already on disk (an earlier
/// revision's) instead of downloaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub linked: Count,
    pub fetched: Count,
    pub mirrored: Count,
    pub reused_bytes: u64,
}

impl std::ops::Add for Moved {
    type Output = Moved;
    fn add(self, o: Moved) -> Moved {
        let sum = |a: Count, b: Count| Count {
            files: a.files + b.files,
            bytes: a.bytes + b.bytes,
        };
        Moved {
            linked: sum(self.linked, o.linked),
            fetched: sum(self.fetched, o.fetched),
            mirrored: sum(self.mirrored, o.mirrored),
            reused_bytes: self.reused_bytes + o.reused_bytes,
        }
    }
}

/// What acquiring did: each wanted file that is in place with what it got
/// (in the order wanted), every failure, and what moved.
pub(super) struct Acquired {
    pub got: Vec<(Want, Got)>,
    pub errors: Vec<Error>,
    pub moved: Moved,
}

impl Acquired {
    /// Pairs each want with what it got (`None`: it failed, and its error is
    /// in `errors`), and counts what moved.
    fn of(wants: Vec<Want>, slots: Vec<Option<Got>>, errors: Vec<Error>) -> Acquired {
        let got: Vec<(Want, Got)> = (wants.into_iter().zip(slots))
            .filter_map(|(w, g)| Some((w, g?)))
            .collect();
        let mut moved = Moved::default();
        for (_, got) in &got {
            match got {
                Got::Placed(p) => moved.linked.add(p.record.size),
                Got::Fetched { fetched, mirrored } => {
                    moved.fetched.add(fetched.size);
                    if *mirrored {
                        moved.mirrored.add(fetched.size);
                    }
                    moved.reused_bytes += fetched.xet_reused;
                }
            }
        }
        Acquired { got, errors, moved }
    }

    /// The models of which at least one file was downloaded from upstream,
    /// not a mirror or cache.
    pub fn models_fetched_upstream(&self) -> std::collections::BTreeSet<String> {
        (self.got.iter())
            .filter(|(_, got)| matches!(got, Got::Fetched { mirrored: false, .. }))
            .filter_map(|(want, _)| want.model.clone())
            .collect()
    }
}

/// What acquiring has done so far, per wanted file by index.
struct Slots {
    got: Vec<Option<Got>>,
    errors: Vec<Error>,
}

impl Slots {
    fn pair(self, wants: Vec<Want>) -> Acquired {
        Acquired::of(wants, self.got, self.errors)
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
        mode: crate::lock::LockMode,
    ) -> Result<Acquired> {
        let mut acquired = Slots {
            got: (0..wants.len()).map(|_| None).collect(),
            errors: Vec::new(),
        };
        for want in &wants {
            self.store.check_contained(&want.download.dest)?;
        }
        let todo = self.place_cached(&wants, state, &mut acquired)?;
        if todo.is_empty() {
            return Ok(acquired.pair(wants));
        }
        if mode.offline() {
            // Offline, only a cache may place a file (the plan of a locked
            // sync refused earlier; this is a file being locked).
            let frozen = mode == crate::lock::LockMode::Frozen;
            for &i in &todo {
                let label = wants[i].download.label.clone();
                (acquired.errors).push(crate::plan::PlanError::Offline { label, frozen }.into());
            }
            return Ok(acquired.pair(wants));
        }
        // fetch, if it fits: from a mirror where one has the file, else upstream
        self.check_space(todo.iter().map(|&i| &wants[i].download))?;
        let fetcher = self.fetcher()?;
        let alternatives = self.on_mirrors(&fetcher, &wants, &todo, lock).await?;
        let alternatives = self.coordinate(&fetcher, &wants, &todo, alternatives, lock).await?;
        let upstream = self
            .fetch_mirrored(&fetcher, &wants, &todo, alternatives, &mut acquired)
            .await;
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
        Ok(acquired.pair(wants))
    }

    /// Places what a cache holds; returns the files left to fetch.
    fn place_cached(&self, wants: &[Want], state: &mut StoreState, acquired: &mut Slots) -> Result<Vec<usize>> {
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
        Ok(todo)
    }

    /// Fetches each file of `todo` a mirror has (`alternatives`, in `todo`'s
    /// order); returns the files left to upstream, in order: those no mirror
    /// has and those a mirror failed (said as a warning).
    async fn fetch_mirrored(
        &self,
        fetcher: &crate::fetch::Fetcher,
        wants: &[Want],
        todo: &[usize],
        alternatives: Vec<Option<Download>>,
        acquired: &mut Slots,
    ) -> Vec<usize> {
        let mut upstream = Vec::new();
        let (mirrored, jobs): (Vec<usize>, Vec<Download>) = (todo.iter().zip(alternatives))
            .filter_map(|(&i, alt)| alt.map(|d| (i, d)))
            .unzip();
        let names: Vec<String> = (jobs.iter())
            .map(|d| d.registry.as_ref().map(|m| m.to_string()).unwrap_or_default())
            .collect();
        for ((&i, mirror), result) in mirrored.iter().zip(names).zip(fetcher.fetch_all(jobs).await) {
            match result {
                Ok(fetched) => {
                    acquired.got[i] = Some(Got::Fetched {
                        fetched,
                        mirrored: true,
                    })
                }
                Err(e) => {
                    let label = &wants[i].download.label;
                    let message =
                        format!("the mirror `oci://{mirror}` failed for `{label}` ({e}); fetching it from upstream");
                    self.reporter.report(Event::Warning { message: &message });
                    upstream.push(i);
                }
            }
        }
        upstream.extend(todo.iter().filter(|i| !mirrored.contains(i)));
        upstream.sort();
        upstream
    }

    /// With a writable mirror (`push: true`), runners of a fleet that start
    /// cold together fetch each model from upstream once: for the models
    /// with files no mirror has, this runner claims the mirror's lease on
    /// that set (`oci::lease`) and either leads — fetches from upstream; the
    /// sync's write-back pushes and releases — or waits for the leader's push
    /// and takes the files from the mirror. A lease that cannot be claimed,
    /// or a leader that gives up, leaves the files to upstream.
    async fn coordinate(
        &self,
        fetcher: &crate::fetch::Fetcher,
        wants: &[Want],
        todo: &[usize],
        mut alternatives: Vec<Option<Download>>,
        lock: Option<&Lockfile>,
    ) -> Result<Vec<Option<Download>>> {
        let (Some(lock), Some(mirror)) = (lock, self.writable_mirrors().into_iter().next()) else {
            return Ok(alternatives);
        };
        let mut missing = std::collections::BTreeSet::new();
        for (&i, alt) in todo.iter().zip(&alternatives) {
            if let (None, Some(model)) = (alt, &wants[i].model) {
                if lock.models.contains_key(model) {
                    missing.insert(model.clone());
                }
            }
        }
        if missing.is_empty() {
            return Ok(alternatives);
        }
        let registry = match fetcher.registries().get(&mirror.registry).await {
            Ok(r) => r,
            Err(_) => return Ok(alternatives), // said by `on_mirrors` already
        };
        let tags: Vec<String> = (missing.iter())
            .map(|name| {
                let files = &lock.models[name].files;
                crate::oci::artifact::model_tag(files.iter().map(|f| (f.path.as_str(), f.size, f.blake3.as_str())))
            })
            .collect();
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        let names = names.join("`, `");
        let pushed = self.lead_or_follow(&registry, &mirror, &tags, &names).await;
        if !pushed {
            return Ok(alternatives);
        }
        // The files of the models a peer pushed, from the mirror now.
        let now: Vec<usize> = (todo.iter().zip(&alternatives))
            .filter(|(&i, alt)| alt.is_none() && wants[i].model.as_ref().is_some_and(|m| missing.contains(m)))
            .map(|(&i, _)| i)
            .collect();
        let found = self.on_mirrors(fetcher, wants, &now, Some(lock)).await?;
        for (i, alt) in now.into_iter().zip(found) {
            let slot = todo.iter().position(|&t| t == i).expect("a file to do");
            alternatives[slot] = alt;
        }
        Ok(alternatives)
    }

    /// Claims the mirror's lease on `tags` (the models `names`): a leader
    /// fetches from upstream (`false`); a follower waits for the leader's
    /// push (`true` once pushed). Whatever fails leaves the files to upstream.
    async fn lead_or_follow(
        &self,
        registry: &std::sync::Arc<crate::oci::Registry>,
        mirror: &crate::oci::OciRef,
        tags: &[String],
        names: &str,
    ) -> bool {
        use crate::oci::lease::{self, Claim, Waited};
        let warn = |message: String| {
            self.reporter.report(Event::Warning { message: &message });
            false
        };
        match lease::claim(registry.clone(), mirror, tags).await {
            Ok(Claim::Lead(held)) => {
                self.leases.lock().unwrap().push(held);
                false
            }
            Ok(Claim::Follow { .. }) => {
                let label = mirror.to_string();
                self.reporter.report(Event::WaitingForPeer {
                    model: names,
                    mirror: &label,
                });
                match lease::wait_for_push(registry, mirror, tags).await {
                    Ok(Waited::Pushed) => true,
                    Ok(Waited::Abandoned) => warn(format!("the runner fetching `{names}` gave up its lease on `oci://{mirror}` (released, or left to expire) without pushing; fetching from upstream")),
                    Err(e) => warn(format!("waiting for `{names}` on `oci://{mirror}` failed ({e}); fetching from upstream")),
                }
            }
            Err(e) => warn(format!(
                "the lease on `{names}` in `oci://{mirror}` could not be claimed ({e}); fetching from upstream"
            )),
        }
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
