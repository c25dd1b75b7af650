//! Files on disk, the bottom of every stage: atomic writes, durable renames,
//! remote names made safe to join, `~` expansion, and the cheap `stat` record
//! that lets a no-op sync trust a file without reading it.
//!
//! Nothing here knows about models, locks or sources, so every stage may use it.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How files are placed from the shared store into `models/`
/// (`download.link_mode`, `--link-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// Reflink, else hard link, else copy.
    #[default]
    Auto,
    Reflink,
    Hardlink,
    /// Independent bytes: what a Docker image layer needs when the store is a
    /// BuildKit cache mount.
    Copy,
}

impl LinkMode {
    pub fn parse(text: &str) -> Option<LinkMode> {
        Some(match text {
            "auto" => LinkMode::Auto,
            "reflink" => LinkMode::Reflink,
            "hardlink" => LinkMode::Hardlink,
            "copy" => LinkMode::Copy,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Auto => "auto",
            LinkMode::Reflink => "reflink",
            LinkMode::Hardlink => "hardlink",
            LinkMode::Copy => "copy",
        }
    }
}

/// A remote file name that would land outside its model directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the remote file name `{name}` would escape the model directory")]
pub struct UnsafePath {
    pub name: String,
}

/// Checks a remote file name (`a/b.bin`) and turns it into a relative path that
/// stays inside the model directory: no `..`, no absolute paths, no empty or `.`
/// components, no backslashes or NULs (which mean different things on other
/// platforms).
pub fn safe_relative_path(name: &str) -> Result<PathBuf, UnsafePath> {
    let unsafe_path = || UnsafePath { name: name.to_string() };
    if name.is_empty() || name.starts_with('/') || name.contains('\\') || name.chars().any(char::is_control) {
        // NUL, newlines, escape sequences: nothing a file name of a model needs,
        // and each means something else to a terminal or another platform.
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

/// `~/x` → `$HOME/x`; other paths unchanged.
pub fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(path),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsync,
/// rename, fsync of the directory: readers see the old or the new file, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    // 0666 less the umask, as any tool's new file (tempfile's default is
    // 0600): a Docker image's runtime user must be able to read the lock,
    // the registry and a rewritten config.yaml.
    use std::os::unix::fs::PermissionsExt;
    // A file being replaced keeps its mode (a config.yaml made 0644 stays so).
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o666);
    let mut tmp = tempfile::Builder::new()
        .prefix(".mdl-tmp-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    if mode != 0o666 {
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    crate::failpoint::kill_point("fs::atomic_before_rename");
    tmp.persist(path).map_err(|e| e.error)?;
    crate::failpoint::kill_point("fs::atomic_after_rename");
    sync_dir(dir);
    Ok(())
}

/// A part for temporary names that no other writer uses: the pid alone
/// collides across containers sharing a volume (each has its pid 1), so a
/// random part (std's per-process random hash seed, from the OS) follows it.
pub fn unique_suffix() -> &'static str {
    static SUFFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SUFFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        format!("{}-{random:016x}", std::process::id())
    })
}

/// Makes a rename durable. Failure is ignored: some file systems refuse to fsync
/// a directory, and the rename itself already happened.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Starts writing `len` bytes at `offset` out to disk, without waiting: a
/// file fetched piece by piece is then mostly on disk by the time its fsync
/// comes, where otherwise the fsync began writing the whole file (0.6 s a GiB
/// here) after the last byte arrived. Advisory, so failure is ignored: the
/// fsync still decides.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: an open descriptor; the call only schedules writeback.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Bytes free for an unprivileged writer on the file system holding `path`
/// (or its nearest existing ancestor).
pub fn free_space(path: &Path) -> Option<u64> {
    let mut at = path;
    while !at.exists() {
        at = at.parent()?;
    }
    let c = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string, `stat` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(28) // ENOSPC
}

/// What mdl knows about a file it placed: if size, mtime and inode still match,
/// its blake3 is known without reading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
    pub blake3: String,
    /// The upstream ETag the bytes were downloaded under, when known: what
    /// identifies a URL's file that publishes no hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// A line of `models/.mdl/journal.jsonl`: a file that reached its final name,
/// appended the moment it did, so that a run killed before it saves its state
/// still tells the next run what is complete (see `Store::load_state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub path: PathBuf,
    pub record: FileRecord,
}

/// Appends `entry` to the journal at `journal` (one JSON line, `O_APPEND`, so
/// concurrent writers' lines do not interleave). Best effort: a lost line only
/// costs a re-hash or a download later.
pub fn append_journal(journal: &Path, entry: &JournalEntry) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let Ok(mut line) = serde_json::to_vec(entry) else {
        return;
    };
    line.push(b'\n');
    let opened = (std::fs::OpenOptions::new().create(true).append(true))
        .custom_flags(libc::O_NOFOLLOW)
        .open(journal);
    if let Ok(mut file) = opened.and_then(regular) {
        let _ = file.write_all(&line);
    }
}

// Files mdl writes under `models/.mdl/` and the caches are input too (a pull
// request can commit a link there, a CI cache can restore one): they are
// opened without following links (`O_NOFOLLOW`), and must be regular files.

/// How [`open_nofollow`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// Read and write; created if missing; kept as it is.
    Keep,
    /// Read and write; created if missing; emptied.
    Truncate,
}

/// Opens `path` for reading and writing without following a link: a link
/// there is an error (`ELOOP`), as is anything but a regular file.
pub fn open_nofollow(path: &Path, how: Open) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(how == Open::Truncate)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    regular(file)
}

/// A file's bytes, read without following a link; `None` when it is missing,
/// a link, not a regular file, or larger than `limit`.
pub fn read_nofollow(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = (std::fs::OpenOptions::new().read(true))
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(regular)
        .ok()?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}

/// `file`, if it is a regular file (not a FIFO or a device).
fn regular(file: std::fs::File) -> std::io::Result<std::fs::File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(std::io::Error::other("not a regular file"))
    }
}

impl FileRecord {
    pub fn stat(path: &Path, blake3: String) -> std::io::Result<FileRecord> {
        let meta = std::fs::metadata(path)?;
        Ok(FileStat::of(&meta).with_blake3(blake3))
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

    pub fn with_blake3(self, blake3: String) -> FileRecord {
        FileRecord {
            size: self.size,
            mtime_ns: self.mtime_ns,
            inode: self.inode,
            blake3,
            etag: None,
        }
    }

    pub fn matches(&self, record: &FileRecord) -> bool {
        self.size == record.size && self.mtime_ns == record.mtime_ns && self.inode == record.inode
    }

    /// The recorded file, copied with its times kept (`cp -a`, `COPY --from`,
    /// a restored cache): a new inode, the same size and nanosecond mtime.
    pub fn is_copy_of(&self, record: &FileRecord) -> bool {
        self.size == record.size && self.mtime_ns == record.mtime_ns && self.inode != record.inode
    }
}

/// Bytes under `path` (a file, or a directory walked without following links).
pub fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_follow_the_umask_and_keep_a_replaced_files_mode() {
        use std::os::unix::fs::PermissionsExt;
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string()))
            })
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .expect("the umask");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.lock");
        write_atomic(&path, b"a").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask, "{mode:o}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"b").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn escaping_names_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "",
            "a/..",
            "a\0b",
            "a\nb",
            "\u{1b}[31m",
        ] {
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
