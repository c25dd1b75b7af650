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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the remote file name `{name}` would escape the model directory")]
    UnsafePath { name: String },
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another mdl process is working on `{}`", path.display())]
    Busy { path: PathBuf },
}

impl StoreError {
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::UnsafePath { .. } => Some(
                "the upstream repository holds a file name mdl refuses to write; exclude it with `exclude:` or report it upstream".into(),
            ),
            StoreError::Io { source, .. } if is_disk_full(source) => {
                Some("the disk is full: free space or point `models.download.cache_dir` elsewhere; files already synced are untouched".into())
            }
            StoreError::Busy { .. } => Some("wait for it to finish, or stop it".into()),
            _ => None,
        }
    }
}

pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(28) // ENOSPC
}

/// Checks a remote file name (`a/b.bin`) and turns it into a relative path that
/// stays inside the model directory: no `..`, no absolute paths, no empty or `.`
/// components, no backslashes or NULs (which mean different things on other
/// platforms).
pub fn safe_relative_path(name: &str) -> Result<PathBuf, StoreError> {
    let unsafe_path = || StoreError::UnsafePath { name: name.to_string() };
    if name.is_empty() || name.starts_with('/') || name.contains('\\') || name.contains('\0') {
        return Err(unsafe_path());
    }
    let mut out = PathBuf::new();
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(unsafe_path());
        }
        out.push(part);
    }
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(unsafe_path());
    }
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsync,
/// rename, fsync of the directory: readers see the old or the new file, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".mdl-tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable. Failure is ignored: some file systems refuse to fsync
/// a directory, and the rename itself already happened.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What mdl knows about a file it placed: if size, mtime and inode still match,
/// its blake3 is known without reading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
    pub blake3: String,
}

impl FileRecord {
    pub fn stat(path: &Path, blake3: String) -> std::io::Result<FileRecord> {
        let meta = std::fs::metadata(path)?;
        Ok(FileRecord {
            blake3,
            ..FileStat::of(&meta).into_record()
        })
    }
}

/// The cheap part of a record: from one `stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
}

impl FileStat {
    pub fn of(meta: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            inode: meta.ino(),
        }
    }

    fn into_record(self) -> FileRecord {
        FileRecord {
            size: self.size,
            mtime_ns: self.mtime_ns,
            inode: self.inode,
            blake3: String::new(),
        }
    }

    pub fn matches(&self, record: &FileRecord) -> bool {
        self.size == record.size && self.mtime_ns == record.mtime_ns && self.inode == record.inode
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
    pub verified: BTreeMap<String, crate::verify::FileReport>,
    /// blake3 of files known not to be weights (configs, tokenizers, `.bin`
    /// files of other formats), so a no-op sync does not sniff them again.
    #[serde(default)]
    pub not_weights: std::collections::BTreeSet<String>,
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
    pub fn locate(
        &self,
        model: &crate::lock::LockedModel,
        file: &crate::lock::LockedFile,
    ) -> Result<PathBuf, StoreError> {
        if model.source == crate::model_id::Source::Local {
            return Ok(self.project_dir.join(crate::resolve::expand_home(&file.url)));
        }
        // Every path in a lockfile was checked by `safe_relative_path` when the
        // lock was parsed (or resolved), so a plain join suffices on this hot
        // path: re-checking cost a fifth of a no-op sync.
        debug_assert!(safe_relative_path(&file.path).is_ok(), "{}", file.path);
        let mut path = self.root.join(model.dir_name());
        path.push(&file.path);
        Ok(path)
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
        format!("{dir_name}/{file}")
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
        let state: StoreState = std::fs::read(self.state_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        *self.last_state.lock().unwrap() = Some(state.clone());
        state
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
        write_atomic(&path, &bytes).map_err(|source| StoreError::Io { path, source })?;
        *self.last_state.lock().unwrap() = Some(state.clone());
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
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
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

/// blake3 of a file, read with a large buffer (memory-mapped and multi-threaded
/// for big files).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let len = std::fs::metadata(path)?.len();
    if len >= 16 << 20 {
        hasher.update_mmap_rayon(path)?;
    } else {
        hasher.update_reader(std::fs::File::open(path)?)?;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_names_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\b", "", "a/.."] {
            assert!(safe_relative_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            safe_relative_path("onnx/model.onnx").unwrap(),
            PathBuf::from("onnx/model.onnx")
        );
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
