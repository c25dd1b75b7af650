//! torch hub's directory, as `torch.hub` reads it (`download.torch_hub: true`):
//!
//! ```text
//! $TORCH_HOME/hub (else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub)
//! ├── checkpoints/<file name>      what load_state_dict_from_url(url) finds
//! │                                without a network: basename of the URL's
//! │                                path; torchvision checks its `-<sha256
//! │                                prefix>.` against the bytes
//! ├── <owner>_<repo>_<ref>/        a PyTorch Hub repository at the locked
//! │                                commit, as torch.hub.load(…, source="github")
//! │                                extracts it (the zipball's top folder)
//! └── trusted_list                 `owner_repo` lines: repos already trusted
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use super::link::{self, LinkMode};

#[derive(Clone, Debug)]
pub struct TorchHub {
    dir: PathBuf,
}

impl TorchHub {
    pub fn at(dir: impl Into<PathBuf>) -> TorchHub {
        TorchHub { dir: dir.into() }
    }

    /// `torch.hub.get_dir()` ([`crate::env::torch_hub_dir`]).
    pub fn from_env() -> TorchHub {
        TorchHub::at(crate::env::torch_hub_dir())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Places a checkpoint where `load_state_dict_from_url` looks for it.
    pub fn add_checkpoint(&self, file_name: &str, source: &Path, size: u64, mode: LinkMode) -> std::io::Result<()> {
        let name = crate::fs::safe_relative_path(file_name).map_err(std::io::Error::other)?;
        let dest = self
            .dir
            .join("checkpoints")
            .join(name.file_name().unwrap_or(name.as_os_str()));
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            return Ok(());
        }
        link::place(source, &dest, mode).map(|_| ())
    }

    /// Extracts a repository archive (a GitHub zipball) into
    /// `<owner>_<repo>_<ref>/` as torch.hub does — the archive's top folder
    /// becomes that directory — and trusts the repository.
    pub fn add_repo(
        &self,
        owner: &str,
        repo: &str,
        reference: &str,
        commit: &str,
        archive: &Path,
    ) -> std::io::Result<()> {
        let name = format!("{owner}_{repo}_{}", reference.replace('/', "_"));
        crate::fs::safe_relative_path(&name).map_err(std::io::Error::other)?;
        let repo_dir = self.dir.join(&name);
        let marker = repo_dir.join(".mdl-commit");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(commit) {
            let staging = self.dir.join(format!(".{name}.mdl-{}", crate::fs::unique_suffix()));
            let _ = std::fs::remove_dir_all(&staging);
            extract_top_folder(archive, &staging)?;
            crate::fs::write_atomic(&staging.join(".mdl-commit"), commit.as_bytes())?;
            let _ = std::fs::remove_dir_all(&repo_dir);
            std::fs::rename(&staging, &repo_dir)?;
        }
        let trusted = self.dir.join("trusted_list");
        let line = format!("{owner}_{repo}");
        let current = std::fs::read_to_string(&trusted).unwrap_or_default();
        if !current.lines().any(|l| l.trim() == line) {
            let mut text = current;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&line);
            text.push('\n');
            crate::fs::write_atomic(&trusted, text.as_bytes())?;
        }
        Ok(())
    }
}

/// What one archive may extract to: a repository's code, not a zip bomb.
const MAX_EXTRACTED: u64 = 2 << 30;
const MAX_ENTRIES: usize = 200_000;

/// The archive's entries under its first entry's top folder, written below
/// `dest` (every name checked to stay inside it, every entry a plain file or
/// directory), streamed and bounded in total ([`MAX_EXTRACTED`]).
fn extract_top_folder(archive: &Path, dest: &Path) -> std::io::Result<()> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(archive)?).map_err(std::io::Error::other)?;
    if zip.len() > MAX_ENTRIES {
        return Err(std::io::Error::other(format!(
            "the archive `{}` has {} entries (at most {MAX_ENTRIES} are extracted)",
            archive.display(),
            zip.len()
        )));
    }
    let mut budget = MAX_EXTRACTED;
    let top = zip
        .name_for_index(0)
        .and_then(|n| n.split('/').next())
        .map(str::to_string)
        .unwrap_or_default();
    fs_err::create_dir_all(dest)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(std::io::Error::other)?;
        let name = entry.name().to_string();
        let Some(rest) = name.strip_prefix(&format!("{top}/")).filter(|r| !r.is_empty()) else {
            continue;
        };
        let rel = crate::fs::safe_relative_path(rest.trim_end_matches('/')).map_err(std::io::Error::other)?;
        let path = dest.join(rel);
        if entry.is_dir() {
            fs_err::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        if entry.is_symlink() {
            continue; // a link could point anywhere; torch.hub needs none
        }
        let mut out = std::fs::File::create(&path)?;
        let written = std::io::copy(&mut (&mut entry).take(budget + 1), &mut out)?;
        if written > budget {
            return Err(std::io::Error::other(format!(
                "the archive `{}` extracts to more than {} GiB",
                archive.display(),
                MAX_EXTRACTED >> 30
            )));
        }
        budget -= written;
    }
    Ok(())
}
