//! Local files and directories (`local:path`, `./path`): hashed and locked by
//! content, used in place, never copied.

use super::{RemoteFile, ResolveError, ResolvedModel, Resolver};
use crate::config::ModelSpec;
use crate::fs::expand_home;
use crate::source::Source;

impl Resolver<'_> {
    /// A local file or directory: its files, used in place (never copied).
    /// Each file's `url` is its path as reachable from the project directory.
    pub(super) fn resolve_local(&self, spec: &ModelSpec, path: &str) -> Result<ResolvedModel, ResolveError> {
        let full = self.project_dir.join(expand_home(path));
        let meta = std::fs::metadata(&full).map_err(|_| ResolveError::LocalMissing {
            name: spec.name.clone(),
            path: full.clone(),
        })?;
        let io = |e| ResolveError::LocalIo {
            name: spec.name.clone(),
            path: full.clone(),
            source: e,
        };
        let local = |rel: String, location: String, size: u64| RemoteFile {
            path: rel,
            size: Some(size),
            url: location,
            etag: None,
            sha256: None,
            git_oid: None,
            needs_token: false,
            sha256_prefix: None,
            xet_hash: None,
        };
        let mut files = Vec::new();
        if meta.is_file() {
            let name = full
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            files.push(local(name, path.to_string(), meta.len()));
        } else {
            let mut stack = vec![(full.clone(), String::new())];
            while let Some((dir, prefix)) = stack.pop() {
                for entry in std::fs::read_dir(&dir).map_err(io)? {
                    let entry = entry.map_err(io)?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue; // .git, editor swap files, …
                    }
                    let rel = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    let kind = entry.file_type().map_err(io)?;
                    if kind.is_dir() {
                        stack.push((entry.path(), rel));
                    } else if kind.is_file() {
                        let size = entry.metadata().map_err(io)?.len();
                        files.push(local(
                            rel.clone(),
                            format!("{}/{rel}", path.trim_end_matches('/')),
                            size,
                        ));
                    }
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ResolvedModel {
            source: Source::Local,
            id: path.to_string(),
            revision: None,
            commit: None,
            files,
        })
    }
}
