//! The models directory on disk: where each model's files live, how they get
//! there atomically, and what mdl remembers about them.
//!
//! Layout (under `models/` by default):
//! ```text
//! models/
//! ├── model_registry.json            the seed's registry of synced models
//! ├── huggingface_acme--tiny-bert/   one directory per model: <source>_<name>
//! │   ├── model_info.json
//! │   └── config.json, model.safetensors, …
//! └── .mdl/
//!     ├── state.json                 size+mtime+inode → blake3, and verification results
//!     ├── lock                       held by the running mdl (advisory file lock)
//!     └── tmp/                       partial downloads (resumable), same file system
//! ```
//! A file only ever appears under its real name by `rename` after its bytes were
//! fsync'd and checked, so no file sits under its real name with wrong content.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub mod caches;
pub mod hf_cache;
pub mod link;
pub mod shared;
pub mod torch_hub;

pub use caches::{Caches, Placed};
pub use hf_cache::HfCache;
pub use link::LinkMode;
pub use shared::SharedStore;
pub use torch_hub::TorchHub;

use serde::{Deserialize, Serialize};

use crate::fs::{is_disk_full, safe_relative_path, write_atomic, FileRecord, FileStat, UnsafePath};
use crate::hash::{digest_file, hash_file};
use crate::lock::{LockedFile, LockedModel, Lockfile};
use crate::plan::{file_key, Observed, Survey};
use crate::report::FileReport;
use crate::reporter::{Event, Reporter};
use crate::sources::RemoteFile;
use crate::sources::Source;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    UnsafePath(#[from] UnsafePath),
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` would be written through a symbolic link to `{}`, outside the models directory", path.display(), target.display())]
    Escapes { path: PathBuf, target: PathBuf },
    #[error("{} must be downloaded into `{}`, but its file system has only {} free", crate::units::human_bytes(*needed), path.display(), crate::units::human_bytes(*free))]
    NoSpace { path: PathBuf, needed: u64, free: u64 },
}

impl StoreError {
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::UnsafePath { .. } => Some(
                "the upstream repository holds a file name mdl refuses to write; exclude it with `exclude:` or report it upstream".into(),
            ),
            StoreError::Escapes { .. } => Some(
                "remove the link: mdl writes only inside the models directory (to keep models on another disk, point `models.download.cache_dir` there)".into(),
            ),
            StoreError::NoSpace { needed, free, .. } => Some(format!(
                "free at least {} (or point `models.download.cache_dir` at a larger disk); `--no-space-check` starts anyway",
                crate::units::human_bytes(needed - free)
            )),
            StoreError::Io { source, .. } if is_disk_full(source) => {
                Some("the disk is full: free space or point `models.download.cache_dir` elsewhere; files already synced are untouched".into())
            }
            _ => None,
        }
    }

    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    }
}

/// `models/.mdl/state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreState {
    /// Keyed by the path relative to the models dir (`dir/file`).
    #[serde(default)]
    pub files: BTreeMap<String, FileRecord>,
    /// Successful load verifications, keyed by `{blake3}@{device}#{forward shape}`.
    /// A failure is never recorded, so the next sync tries again.
    #[serde(default)]
    pub verified: BTreeMap<String, FileReport>,
    /// blake3 of files known not to be weights (configs, tokenizers, `.bin`
    /// files of other formats), so a no-op sync does not sniff them again.
    #[serde(default)]
    pub not_weights: BTreeSet<String>,
    /// blake3 of weight files in formats mdl cannot load or check, with why:
    /// a no-op sync reports them from here, without opening them, and warns
    /// about them only when they are new.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hash_only: BTreeMap<String, String>,
}

/// The models directory.
#[derive(Clone, Debug)]
pub struct Store {
    /// The state as last read or written, so that saving an unchanged state
    /// costs a comparison, not a serialisation and a read of the file.
    last_state: std::sync::Arc<std::sync::Mutex<Option<StoreState>>>,
    root: PathBuf,
    /// Where `local:` models' relative paths start (the directory of config.yaml).
    project_dir: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store {
            root: root.into(),
            project_dir: PathBuf::from("."),
            last_state: Default::default(),
        }
    }

    pub fn with_project_dir(mut self, dir: impl Into<PathBuf>) -> Store {
        self.project_dir = dir.into();
        self
    }

    pub fn project_dir(&self) -> &Path {
        &self.project_dir
    }

    /// Where a locked file lives: in its model directory, or — for `local:`
    /// models, which are used in place — at its path from the project directory.
    pub fn locate(&self, model: &LockedModel, file: &LockedFile) -> PathBuf {
        if model.source.used_in_place() {
            return self.project_dir.join(crate::fs::expand_home(&file.url));
        }
        // Every path in a lockfile was checked by `safe_relative_path` when the
        // lock was parsed (or resolved), so a plain join suffices on this hot
        // path: re-checking cost a fifth of a no-op sync.
        debug_assert!(safe_relative_path(&file.path).is_ok(), "{}", file.path);
        let mut path = self.root.join(model.dir_name());
        path.push(&file.path);
        path
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn model_dir(&self, dir_name: &str) -> PathBuf {
        self.root.join(dir_name)
    }

    /// The path of `file` (a remote name) in the model directory, checked safe.
    pub fn file_path(&self, dir_name: &str, file: &str) -> Result<PathBuf, StoreError> {
        Ok(self.model_dir(dir_name).join(safe_relative_path(file)?))
    }

    /// The state key of a file.
    pub fn key(dir_name: &str, file: &str) -> String {
        file_key(dir_name, file)
    }

    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(".mdl")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.meta_dir().join("tmp")
    }

    fn state_path(&self) -> PathBuf {
        self.meta_dir().join("state.json")
    }

    /// Reads the recorded state. A missing or unreadable state only costs a
    /// rehash, so it is never an error.
    pub fn load_state(&self) -> StoreState {
        let mut state: StoreState = crate::fs::read_nofollow(&self.state_path(), 1 << 30)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        *self.last_state.lock().unwrap() = Some(state.clone());
        // Files that completed after the state was last saved (a run that was
        // killed, or is still going): their records count too.
        for line in crate::fs::read_nofollow(&self.journal_path(), 1 << 30)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
        {
            let Ok(entry) = serde_json::from_slice::<crate::fs::JournalEntry>(line) else {
                continue; // a torn last line
            };
            let Ok(rel) = entry.path.strip_prefix(&self.root) else {
                continue;
            };
            state.files.insert(rel.to_string_lossy().into_owned(), entry.record);
        }
        state
    }

    fn journal_path(&self) -> PathBuf {
        self.meta_dir().join("journal.jsonl")
    }

    pub fn save_state(&self, state: &StoreState) -> Result<(), StoreError> {
        if self.last_state.lock().unwrap().as_ref() == Some(state) {
            return Ok(());
        }
        let path = self.state_path();
        let bytes = serde_json::to_vec(state).expect("state serialises");
        let existing = std::fs::read(&path).ok();
        if existing.as_deref() == Some(bytes.as_slice()) || (existing.is_none() && *state == StoreState::default()) {
            return Ok(());
        }
        crate::failpoint::kill_point("store::state_saving");
        write_atomic(&path, &bytes).map_err(|source| StoreError::Io { path, source })?;
        *self.last_state.lock().unwrap() = Some(state.clone());
        // Everything the journal held is in the state now.
        let _ = std::fs::remove_file(self.journal_path());
        Ok(())
    }

    /// Takes the store's advisory lock for this process's lifetime (released on
    /// drop), so that two `mdl` processes never write the same models dir at once.
    pub fn lock(&self) -> Result<std::fs::File, StoreError> {
        let dir = self.meta_dir();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        fs_err::create_dir_all(&dir).map_err(io(&dir))?;
        self.check_meta_dir()?;
        let path = dir.join("lock");
        let file = crate::fs::open_nofollow(&path, crate::fs::Open::Keep).map_err(io(&path))?;
        if std::env::var_os("MDL_TEST_FLOCK_NOOP").is_some() {
            // Tests only: a file system where `flock` succeeds for everyone
            // (NFS and friends), to prove correctness does not depend on it.
            return Ok(file);
        }
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                // Another process holds it: wait for it rather than fail, as cargo does.
                eprintln!("Blocking: waiting for another mdl process on `{}`", self.root.display());
                file.lock().map_err(io(&path))?;
                Ok(file)
            }
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
        }
    }
}

impl Store {
    /// Looks at the disk for every locked file, using recorded metadata to avoid
    /// re-reading files that did not change. `rehash` ignores the records
    /// (`mdl sync --check`). Records for files that were hashed are updated in `state`.
    ///
    /// A tree copied elsewhere (`cp -a`, `COPY --from`, a restored CI cache)
    /// has new inodes but keeps each file's size and mtime to the nanosecond:
    /// its records still apply, as rsync and make would judge. Files that must
    /// be read anyway are hashed on every core, after saying why.
    pub fn survey(
        &self,
        lock: &Lockfile,
        state: &mut StoreState,
        rehash: bool,
        reporter: &dyn Reporter,
    ) -> Result<Survey, StoreError> {
        let mut survey = Survey::default();
        if let Ok(entries) = std::fs::read_dir(self.root()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().is_ok_and(|t| t.is_dir()) && Source::of_dir_name(&name).is_some() {
                    survey.model_dirs.insert(name);
                }
            }
        }
        let mut to_hash = Vec::new();
        let mut why = RehashWhy::default();
        for model in lock.models.values() {
            let dir = model.dir_name();
            let model_dir = self.model_dir(&dir);
            if survey.model_dirs.contains(&dir) {
                walk(&model_dir, &dir, &mut survey.files_in_model_dirs);
            }
            for file in &model.files {
                let key = file_key(&dir, &file.path);
                let path = self.locate(model, file);
                match observe(&path, file.size, state.files.get_mut(&key), rehash, &mut why) {
                    Seen::Known(observed, copy) => {
                        survey.recognised_copies += usize::from(copy);
                        survey.files.insert(key, observed);
                    }
                    Seen::Resized => {
                        // Different size: different content, no need to read it.
                        state.files.remove(&key);
                        survey.files.insert(key, Observed::Present { blake3: String::new() });
                    }
                    Seen::ToHash(stat) => to_hash.push((key, path, stat)),
                }
            }
        }
        if !to_hash.is_empty() {
            let bytes = to_hash.iter().map(|(_, _, stat)| stat.size).sum();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            reporter.report(Event::Rehashing {
                files: to_hash.len(),
                bytes,
                threads,
                why: &why.to_string(),
            });
            let paths: Vec<&Path> = to_hash.iter().map(|(_, path, _)| path.as_path()).collect();
            for ((key, path, stat), blake3) in to_hash.iter().zip(hash_files(&paths, threads)) {
                let blake3 = blake3.map_err(StoreError::io(path))?;
                state.files.insert(key.clone(), stat.with_blake3(blake3.clone()));
                survey.files.insert(key.clone(), Observed::Present { blake3 });
            }
            survey.rehashed = to_hash.len();
        }
        Ok(survey)
    }

    /// The blake3 of a file being locked, when it need not be downloaded: a
    /// model used in place is hashed where it is; a file already at its place in
    /// `models/` is taken when it holds what upstream publishes (checked against
    /// the Hub's sha256 or git blob id). `None`: download it.
    pub fn known_content(
        &self,
        model: &LockedModel,
        remote: &RemoteFile,
        state: &mut StoreState,
    ) -> Result<Option<String>, StoreError> {
        let dir = model.dir_name();
        let key = file_key(&dir, &remote.path);
        if model.source.used_in_place() {
            let location = self.project_dir.join(crate::fs::expand_home(&remote.url));
            let blake3 = hash_file(&location).map_err(StoreError::io(&location))?;
            if let Ok(record) = FileRecord::stat(&location, blake3.clone()) {
                state.files.insert(key, record);
            }
            return Ok(Some(blake3));
        }
        let dest = self.file_path(&dir, &remote.path)?;
        let Ok(meta) = std::fs::metadata(&dest) else {
            return Ok(None);
        };
        if remote.sha256.is_none() && remote.git_oid.is_none() {
            // Nothing published to check against (a URL's file): the record of
            // a download under the same ETag, if the file is still as recorded.
            let record = state.files.get(&key).filter(|r| {
                remote.etag.is_some()
                    && r.etag == remote.etag
                    && remote.size.is_none_or(|s| s == r.size)
                    && FileStat::of(&meta).matches(r)
            });
            return Ok(record.map(|r| r.blake3.clone()));
        }
        if Some(meta.len()) != remote.size {
            return Ok(None);
        }
        let Ok(digests) = digest_file(&dest, remote.sha256.is_some(), remote.sha256.is_none()) else {
            return Ok(None);
        };
        let matches = match (&remote.sha256, &remote.git_oid) {
            (Some(want), _) => digests.sha256.as_ref() == Some(want),
            (None, Some(want)) => digests.git_oid.as_ref() == Some(want),
            _ => false,
        };
        if !matches {
            return Ok(None);
        }
        if let Ok(record) = FileRecord::stat(&dest, digests.blake3.clone()) {
            state.files.insert(key, record);
        }
        Ok(Some(digests.blake3))
    }

    /// A path about to be written stays inside the models directory, even
    /// through symbolic links already there (a model directory replaced by a
    /// link to elsewhere): its nearest existing ancestor, resolved, must be
    /// inside the resolved models directory.
    /// `models/.mdl/` is mdl's own: it must be a directory here, not a link
    /// (refused), and a link planted among its folders and files (`tmp/`,
    /// `xet/`, the state, the journal) is removed before anything is written.
    fn check_meta_dir(&self) -> Result<(), StoreError> {
        let dir = self.meta_dir();
        let meta = std::fs::symlink_metadata(&dir).map_err(StoreError::io(&dir))?;
        if !meta.is_dir() {
            let target = std::fs::read_link(&dir).unwrap_or_default();
            return Err(StoreError::Escapes { path: dir, target });
        }
        for name in ["tmp", "xet", "state.json", "journal.jsonl", "lock"] {
            let path = dir.join(name);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
            }
        }
        Ok(())
    }

    pub fn check_contained(&self, path: &Path) -> Result<(), StoreError> {
        let Ok(root) = self.root.canonicalize() else {
            return Ok(()); // nothing exists yet: nothing can redirect a write
        };
        let mut at = path.parent();
        while let Some(dir) = at {
            if std::fs::symlink_metadata(dir).is_ok() {
                let real = dir.canonicalize().map_err(StoreError::io(dir))?;
                if !real.starts_with(&root) {
                    return Err(StoreError::Escapes {
                        path: path.to_path_buf(),
                        target: real,
                    });
                }
                return Ok(());
            }
            at = dir.parent();
        }
        Ok(())
    }

    /// Removes a model's directory (its files, or for a model used in place
    /// only its `model_info.json`'s directory).
    pub fn remove_model_dir(&self, model: &LockedModel) -> Result<(), StoreError> {
        let dir = self.model_dir(&model.dir_name());
        if model.source.used_in_place() || !dir.exists() {
            return Ok(());
        }
        fs_err::remove_dir_all(&dir).map_err(StoreError::io(&dir))
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}/{name}");
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&entry.path(), &rel, out),
            Ok(_) => {
                out.insert(rel);
            }
            Err(_) => {}
        }
    }
}

/// Why files are being re-read, for the line that says so before a long hash.
/// What the disk says of one locked file, against its record.
enum Seen {
    /// Missing, or present with the recorded content (`true`: a copy with
    /// the recorded size and mtime, its new inode now recorded).
    Known(Observed, bool),
    /// Present with another size than locked: other content, not read.
    Resized,
    /// Present, but only reading it says what it holds.
    ToHash(FileStat),
}

/// One locked file of `size` bytes at `path`, against its `record`: what a
/// stat alone tells, else why it must be read (added to `why`).
fn observe(path: &Path, size: u64, record: Option<&mut FileRecord>, rehash: bool, why: &mut RehashWhy) -> Seen {
    let meta = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        _ => return Seen::Known(Observed::Missing, false),
    };
    let stat = FileStat::of(&meta);
    match record {
        Some(record) if !rehash && stat.matches(record) => Seen::Known(
            Observed::Present {
                blake3: record.blake3.clone(),
            },
            false,
        ),
        Some(record) if !rehash && stat.is_copy_of(record) => {
            record.inode = stat.inode;
            Seen::Known(
                Observed::Present {
                    blake3: record.blake3.clone(),
                },
                true,
            )
        }
        _ if stat.size != size => Seen::Resized,
        record => {
            match record {
                _ if rehash => why.asked = true,
                Some(r) if r.inode != stat.inode => why.copied = true,
                Some(_) => why.touched = true,
                None => why.unrecorded = true,
            }
            Seen::ToHash(stat)
        }
    }
}

#[derive(Debug, Default)]
struct RehashWhy {
    asked: bool,
    copied: bool,
    touched: bool,
    unrecorded: bool,
}

impl std::fmt::Display for RehashWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut reasons = Vec::new();
        if self.asked {
            reasons.push("`--check` asks to read every file");
        }
        if self.copied {
            reasons.push("they were copied without their modification times (new inodes and new mtimes; `cp -a` or `rsync -a` keeps them)");
        }
        if self.touched {
            reasons.push("their modification time changed since mdl recorded them");
        }
        if self.unrecorded {
            reasons.push("mdl has no record of them (`models/.mdl/state.json` is missing or older)");
        }
        f.write_str(&reasons.join("; "))
    }
}

/// blake3 of each file, `threads` files at a time (large files use every
/// core by themselves too), in the order given.
fn hash_files(paths: &[&Path], threads: usize) -> Vec<std::io::Result<String>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<std::io::Result<String>>>> =
        paths.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, paths.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                *results[i].lock().unwrap() = Some(hash_file(path));
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap().expect("every file was hashed"))
        .collect()
}
