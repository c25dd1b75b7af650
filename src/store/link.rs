//! Placing one file's bytes at another path without copying them where the
//! file system allows: a reflink (copy-on-write clone: independent files that
//! share blocks), else a hard link (one inode, so it is made read-only), else a
//! copy. Every placement goes through a temporary name in the destination's
//! directory and a rename, so a reader sees the old file or the new one.

use std::path::Path;

pub use crate::fs::LinkMode;

/// Places `from`'s bytes at `to` (replacing it) in `mode`; returns the mode
/// that was used (`Auto` resolves to one of the others). A mode the file
/// system cannot do is an error, except under `Auto`, which falls through.
pub fn place(from: &Path, to: &Path, mode: LinkMode) -> std::io::Result<LinkMode> {
    let dir = to.parent().expect("a destination has a parent");
    fs_err::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".mdl-link-{}-{}",
        crate::fs::unique_suffix(),
        to.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    let attempts: &[LinkMode] = match mode {
        LinkMode::Auto => &[LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Copy],
        LinkMode::Reflink => &[LinkMode::Reflink],
        LinkMode::Hardlink => &[LinkMode::Hardlink],
        LinkMode::Copy => &[LinkMode::Copy],
    };
    let mut last = None;
    for &attempt in attempts {
        let made = match attempt {
            LinkMode::Reflink => reflink_copy::reflink(from, &tmp),
            LinkMode::Hardlink => std::fs::hard_link(from, &tmp),
            LinkMode::Copy => copy_durably(from, &tmp),
            LinkMode::Auto => unreachable!("Auto is resolved above"),
        };
        match made {
            Ok(()) => {
                if attempt != LinkMode::Hardlink {
                    // An independent file: the user may edit it.
                    make_writable(&tmp)?;
                }
                crate::failpoint::kill_point("link::before_rename");
                std::fs::rename(&tmp, to)?;
                crate::fs::sync_dir(dir);
                return Ok(attempt);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                last = Some(e);
            }
        }
    }
    Err(last.expect("one attempt at least"))
}

fn copy_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()
}

fn make_writable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Read-only for everyone: a file whose inode the shared store also holds
/// must not be edited in place (that would change every project's copy).
pub fn make_read_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_share_an_inode_and_copies_do_not() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"weights").unwrap();
        let linked = dir.path().join("a/linked");
        assert_eq!(place(&blob, &linked, LinkMode::Hardlink).unwrap(), LinkMode::Hardlink);
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&linked), ino(&blob));
        let copied = dir.path().join("b/copied");
        assert_eq!(place(&blob, &copied, LinkMode::Copy).unwrap(), LinkMode::Copy);
        assert_ne!(ino(&copied), ino(&blob));
        assert_eq!(std::fs::read(&copied).unwrap(), b"weights");
        // Auto takes what the file system can do, and the result has the bytes.
        let auto = dir.path().join("c/auto");
        assert_ne!(place(&blob, &auto, LinkMode::Auto).unwrap(), LinkMode::Auto);
        assert_eq!(std::fs::read(&auto).unwrap(), b"weights");
    }
}
