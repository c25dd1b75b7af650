//! Names of partial downloads, unique per writer.
//!
//! The process lock (`models/.mdl/lock`, `flock`) keeps two `mdl`s apart on a
//! local disk, but not on every file system two writers can share (NFS,
//! Lustre, two containers on one volume), and sharing one `.part` file is how
//! caches get poisoned. So each process writes its own partial files,
//! `<dest-id>.<writer>.part` beside `<dest-id>.<writer>.part.json`, and a
//! partial left by a writer that is gone (killed, crashed) is *claimed* by one
//! atomic rename of its sidecar to the claimer's name: of several writers that
//! try, one wins and resumes it, the others start their own. Whatever happens
//! to a partial file, it only reaches its final name through the download's
//! hash check and a rename.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// A partial file, opened for writing without following a link: emptied
/// first when `empty`, then sized to `size` when it is known (a file written
/// at offsets, piece by piece or term by term). Every transport opens its
/// partial file here.
pub fn open(part: &Path, empty: bool, size: Option<u64>) -> std::io::Result<std::fs::File> {
    let file = crate::fs::open_nofollow(part, crate::fs::Open::Keep)?;
    if empty {
        file.set_len(0)?;
    }
    if let Some(size) = size {
        file.set_len(size)?;
    }
    Ok(file)
}

/// This process's writer id: its pid, the pid namespace it counts in, and a
/// random part (pids are reused, and every container has a pid 1).
pub fn writer() -> &'static str {
    static WRITER: OnceLock<String> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (pid, random) = crate::fs::unique_suffix().split_once('-').unwrap_or(("0", "0"));
        format!("{pid}-{}-{}", namespace(), &random[..8.min(random.len())])
    })
}

/// A short id of the pid namespace on this host: `kill(pid, 0)` means
/// something only for a writer that counts pids the same way.
fn namespace() -> &'static str {
    static NS: OnceLock<String> = OnceLock::new();
    NS.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let ns = std::fs::read_link("/proc/self/ns/pid").unwrap_or_default();
        let id = blake3::hash(format!("{}|{}", boot.trim(), ns.display()).as_bytes()).to_hex();
        id[..8].to_string()
    })
}

/// The writer's pid, when its id has one and it counts pids in our namespace.
fn local_pid_of(writer: &str) -> Option<i32> {
    let mut parts = writer.split('-');
    let pid = parts.next()?.parse().ok()?;
    (parts.next()? == namespace()).then_some(pid)
}

/// Whether the writer of a partial is gone. Its lease is the partial's mtime,
/// which a live writer keeps fresh (every write, and [`renew`] between
/// attempts): a partial untouched for `stale_after` is abandoned, whoever
/// wrote it. Sooner only when its writer is provably dead: a pid of this
/// namespace that no longer exists (`ESRCH`; `EPERM` is another user's live
/// process).
fn abandoned(writer: &str, part: &Path, stale_after: Duration) -> bool {
    let dead = local_pid_of(writer).is_some_and(|pid| {
        // SAFETY: signal 0 only checks that the process exists.
        pid as u32 != std::process::id()
            && unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    });
    if dead {
        return true;
    }
    // The lease is the newer of the partial's and its sidecar's mtimes: a
    // writer writes its sidecar before its first byte, so a partial that
    // does not exist yet is not free for the taking.
    let sidecar = PathBuf::from(format!("{}.json", part.display()));
    let touched = [part, sidecar.as_path()]
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    SystemTime::now().duration_since(touched).unwrap_or_default() > stale_after
}

/// Renews this writer's lease on a partial it is about to work on again.
pub fn renew(part: &Path) {
    if std::fs::symlink_metadata(part).is_ok_and(|m| m.is_file()) {
        if let Ok(file) = crate::fs::open_nofollow(part, crate::fs::Open::Keep) {
            let _ = file.set_modified(SystemTime::now());
        }
    }
}

/// The partial file and its sidecar this writer uses for `stem`: an abandoned
/// partial of the same download claimed (so it resumes), else fresh names.
pub fn claim(tmp_dir: &Path, stem: &str, stale_after: Duration) -> (PathBuf, PathBuf) {
    let me = writer();
    let mine = (
        tmp_dir.join(format!("{stem}.{me}.part")),
        tmp_dir.join(format!("{stem}.{me}.part.json")),
    );
    if std::fs::symlink_metadata(&mine.1).is_ok_and(|m| m.is_file()) {
        return mine;
    }
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return mine;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(other) = name
            .strip_prefix(&format!("{stem}."))
            .and_then(|rest| rest.strip_suffix(".part.json"))
        else {
            continue;
        };
        // `<stem>.part.json` is a partial of an mdl from before writer ids.
        let (part, sidecar) = if other == "part" {
            (tmp_dir.join(format!("{stem}.part")), entry.path())
        } else {
            (tmp_dir.join(format!("{stem}.{other}.part")), entry.path())
        };
        let writer = if other == "part" { "0" } else { other };
        // Only regular files are partials: a link planted here (by a pull
        // request, a restored cache) is removed, never followed or claimed.
        if !is_regular_or_missing(&sidecar) || !is_regular_or_missing(&part) {
            for planted in [&sidecar, &part] {
                if std::fs::symlink_metadata(planted).is_ok_and(|m| !m.is_file()) {
                    let _ = std::fs::remove_file(planted);
                }
            }
            continue;
        }
        if !abandoned(writer, &part, stale_after) {
            continue;
        }
        // The sidecar's rename is the claim: exactly one claimer succeeds.
        if std::fs::rename(&sidecar, &mine.1).is_ok() {
            if std::fs::rename(&part, &mine.0).is_err() {
                // Claimed a sidecar whose bytes are gone: start over.
                let _ = std::fs::remove_file(&mine.1);
            }
            // A Xet download's term log goes with its bytes (`fetch::xet`).
            let log = part.with_extension("part.xet");
            let _ = std::fs::remove_file(mine.0.with_extension("part.xet"));
            let _ = std::fs::rename(&log, mine.0.with_extension("part.xet"));
            return mine;
        }
    }
    mine
}

fn is_regular_or_missing(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.is_file(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Partial downloads no live writer is using (`mdl clean --partial`).
pub fn abandoned_partials(tmp_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(tmp_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = name.trim_end_matches(".json").trim_end_matches(".part");
        let writer = base.split_once('.').map(|(_, w)| w).unwrap_or("0");
        if abandoned(writer, &entry.path(), Duration::from_secs(3600)) {
            out.push(entry.path());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_writers_partial_is_claimed_once_and_a_live_ones_is_left() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0x7ffffffe does not exist here; its partial is abandoned.
        let dead = format!("2147483646-{}-deadbeef", namespace());
        std::fs::write(dir.path().join(format!("s.{dead}.part")), b"bytes").unwrap();
        std::fs::write(dir.path().join(format!("s.{dead}.part.json")), b"{}").unwrap();
        let (part, sidecar) = claim(dir.path(), "s", Duration::from_secs(60));
        assert_eq!(std::fs::read(&part).unwrap(), b"bytes");
        assert!(sidecar.ends_with(format!("s.{}.part.json", writer())));
        // A live writer's (this process's parent: alive) is not taken.
        let live = format!("{}-{}-00000001", std::os::unix::process::parent_id(), namespace());
        std::fs::write(dir.path().join(format!("t.{live}.part")), b"x").unwrap();
        std::fs::write(dir.path().join(format!("t.{live}.part.json")), b"{}").unwrap();
        let (part, _) = claim(dir.path(), "t", Duration::from_secs(60));
        assert!(!part.exists(), "a fresh name, not the live writer's file");
        assert!(dir.path().join(format!("t.{live}.part")).exists());
        // Another namespace's writer (another container on this volume): its
        // pid means nothing here, so only its lease counts. Fresh: left alone.
        let other = "2147483646-0ther0ns-00000002";
        std::fs::write(dir.path().join(format!("u.{other}.part")), b"x").unwrap();
        std::fs::write(dir.path().join(format!("u.{other}.part.json")), b"{}").unwrap();
        let (part, _) = claim(dir.path(), "u", Duration::from_secs(60));
        assert!(!part.exists(), "a live lease in another namespace is not claimed");
        // Its lease lapsed: claimed.
        let old = SystemTime::now() - Duration::from_secs(120);
        for name in [format!("u.{other}.part"), format!("u.{other}.part.json")] {
            let file = std::fs::File::options()
                .write(true)
                .open(dir.path().join(name))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        let (part, _) = claim(dir.path(), "u", Duration::from_secs(60));
        assert_eq!(std::fs::read(&part).unwrap(), b"x");
    }
}
