//! Which libtorch the verifier helper runs with, found at run time: a machine
//! whose Python already has `torch` (every ML Docker image) uses that one, and
//! moving or deleting the checkout `mdl-torch` was built in does not stop
//! verification. The order: `MDL_LIBTORCH` / `LIBTORCH`, else the `torch`
//! package of the active Python (`$VIRTUAL_ENV`, else the Python mdl runs in
//! when it is the Python module, else `python3` on `PATH`),
//! else the location `mdl-torch` was built against (its rpath). The helper is
//! started with that `lib/` first on `LD_LIBRARY_PATH` (which wins over a
//! RUNPATH), after checking the version is the one it was built for.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The libtorch `mdl-torch` is built for (tch 0.26): its major.minor must match.
pub const NEEDED: &str = "2.13";
/// The one command that installs it into a Python environment.
pub const FIX: &str = "pip install torch==2.13.0";

/// A libtorch found at run time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Libtorch {
    /// Its `lib/` directory (holding `libtorch_cpu.so`).
    pub lib: PathBuf,
    /// Its version (`2.13.0+cu130`), when it says.
    pub version: Option<String>,
    /// How it was found, for messages and `mdl doctor`: `` `VIRTUAL_ENV` ``,
    /// `` `python3` ``, `` `MDL_LIBTORCH` ``, `` `LIBTORCH` ``.
    pub found_by: String,
    /// The Python interpreter whose `torch` package this is, when it is one:
    /// the Python verifier runs there.
    pub python: Option<PathBuf>,
}

impl Libtorch {
    /// Whether its version is the one the helper needs (unknown counts as yes:
    /// the helper itself then fails to start if it is not).
    pub fn matches(&self) -> bool {
        self.version.as_deref().is_none_or(|v| {
            let mut parts = v.split(['.', '+']);
            let major_minor = format!("{}.{}", parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            major_minor == NEEDED
        })
    }

    /// Its `(major, minor)`, when its version says.
    pub fn major_minor(&self) -> Option<(u32, u32)> {
        let v = self.version.as_deref()?;
        let mut parts = v.split(['.', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }
}

/// The interpreter mdl runs inside, when it is the Python module: its torch
/// is the one the user's code imports, so it comes before `python3` on `PATH`.
static RUNNING_PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tells [`find`] which Python this process is (the Python module does, with
/// `sys.executable`).
pub fn set_running_python(python: PathBuf) {
    let _ = RUNNING_PYTHON.set(python);
}

/// The libtorch to use, by the order above; `None`: the helper's own rpath.
pub fn find() -> Option<Libtorch> {
    for var in ["MDL_LIBTORCH", "LIBTORCH"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from) {
            return Some(at(&dir, format!("`{var}`")));
        }
    }
    let (python, found_by) = std::env::var_os("VIRTUAL_ENV")
        .filter(|v| !v.is_empty())
        .map(|venv| (PathBuf::from(venv).join("bin/python"), "`VIRTUAL_ENV`"))
        .or_else(|| RUNNING_PYTHON.get().map(|p| (p.clone(), "`sys.executable`")))
        .unwrap_or_else(|| (PathBuf::from("python3"), "`python3`"));
    python_torch(&python).map(|dir| Libtorch {
        python: Some(python),
        ..at(&dir, found_by.to_string())
    })
}

/// A libtorch at `dir`: a `torch` Python package or an unpacked libtorch.
fn at(dir: &Path, found_by: String) -> Libtorch {
    Libtorch {
        lib: dir.join("lib"),
        version: version_of(dir),
        found_by,
        python: None,
    }
}

/// `torch/version.py`'s `__version__`, or libtorch's `build-version`.
fn version_of(dir: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("version.py")) {
        let line = text.lines().find(|l| l.trim_start().starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    std::fs::read_to_string(dir.join("build-version"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// Where `python` would import `torch` from, without importing it (importing
/// costs seconds, and fails in environments without its CUDA libraries).
fn python_torch(python: &Path) -> Option<PathBuf> {
    let script =
        "import importlib.util as u\ns = u.find_spec('torch')\nprint(s.submodule_search_locations[0] if s else '')";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    let dir = PathBuf::from(out.trim());
    dir.join("lib").is_dir().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_matched_by_major_minor() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("version.py"),
            "__version__ = '2.13.0+cu130'\ngit_version = 'x'\n",
        )
        .unwrap();
        let found = at(dir.path(), "test".into());
        assert_eq!(found.version.as_deref(), Some("2.13.0+cu130"));
        assert!(found.matches());
        std::fs::write(dir.path().join("version.py"), "__version__ = \"2.5.1\"\n").unwrap();
        assert!(!at(dir.path(), "test".into()).matches());
        assert_eq!(at(dir.path(), "test".into()).major_minor(), Some((2, 5)));
    }
}
