//! Local files and directories (`local:path`, `./path`): hashed and locked by
//! content, used in place, never copied.

use futures_util::future::BoxFuture;

use crate::fs::expand_home;
use crate::sources::kind::{
    IdError, Pinned, PinnedFile, RemoteFile, ResolveError, ResolvedModel, Resolver, Source, SourceKind, UrlContext,
    Want,
};

/// A file or directory on disk (`local:path`, `./path`), locked by content
/// and used in place.
pub struct Local;

impl SourceKind for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["file"]
    }
    fn form(&self) -> &'static str {
        "`local:path`"
    }
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
        if rest.is_empty() {
            return Err(IdError::new(id, "the path after `local:` is empty"));
        }
        Ok((rest.to_string(), None))
    }
    fn display(&self, locator: &str, _revision: Option<&str>) -> String {
        format!("local:{locator}")
    }
    fn default_name(&self, locator: &str) -> String {
        super::url::file_stem(locator)
    }
    fn used_in_place(&self) -> bool {
        true
    }
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want) -> BoxFuture<'a, Result<ResolvedModel, ResolveError>> {
        Box::pin(std::future::ready(r.resolve_local(want, &want.id.locator)))
    }
    fn file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, _cx: &UrlContext<'_>) -> Result<String, String> {
        let base = model.id.trim_end_matches('/');
        Ok(match model.files {
            1 if file.url == model.id => model.id.to_string(),
            _ => format!("{base}/{}", file.path),
        })
    }
    /// The model's path joined with the file's (or the path itself, for one file).
    fn check_file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>) -> Result<(), &'static str> {
        let in_dir = format!("{}/{}", model.id.trim_end_matches('/'), file.path);
        let single = model.files == 1 && file.url == model.id;
        (file.url == in_dir || single)
            .then_some(())
            .ok_or("is not the model's path joined with the file's")
    }
}

impl Resolver<'_> {
    /// A local file or directory: its files, used in place (never copied).
    /// Each file's `url` is its path as reachable from the project directory.
    pub(super) fn resolve_local(&self, spec: &Want, path: &str) -> Result<ResolvedModel, ResolveError> {
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
            source: Source(&Local),
            id: path.to_string(),
            revision: None,
            commit: None,
            files,
        })
    }
}
