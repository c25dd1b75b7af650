//! The Hub as the Hugging Face cache remembers it: what a repo's files are
//! when the listing does not say (a mirror that answers `siblings` with bare
//! names), and a whole model at a revision with no network at all
//! (`mdl lock --offline`, `HF_HUB_OFFLINE=1`), as huggingface_hub's offline
//! mode resolves it: `refs/<revision>` → commit, `trees/<commit>.json` (else
//! the snapshot's links) → each file's ETag → its blob.
//!
//! The cache is input like any other: each blob is checked by content
//! against what its name claims — the sha256 of an LFS ETag, the git blob
//! id of a plain one — before its ETag, size and hash are used.

use crate::sources::kind::{check_case_collisions, filters, RemoteFile, ResolveError, ResolvedModel, Resolver, Want};

impl Resolver<'_> {
    /// The model from the Hugging Face cache alone: no request is made.
    pub(super) fn resolve_hub_offline(
        &self,
        spec: &Want,
        repo: &str,
        requested: Option<&str>,
    ) -> Result<ResolvedModel, ResolveError> {
        let revision = requested.unwrap_or("main");
        let missing = |reason: String| ResolveError::NotInHfCache {
            model: spec.name.clone(),
            repo: repo.to_string(),
            revision: revision.to_string(),
            reason,
        };
        let commit = (self.hf_cache.commit_of(repo, revision))
            .ok_or_else(|| missing(format!("it has no `refs/{revision}` holding a commit")))?;
        let listed = self.hf_cache.listed(repo, &commit);
        let (include, exclude) = filters(spec);
        let mut files = Vec::new();
        for path in listed {
            if include.as_ref().is_some_and(|g| !g.is_match(&path)) || exclude.is_match(&path) {
                continue;
            }
            let cached = (self.hf_cache.cached(repo, &commit, &path))
                .ok_or_else(|| missing(format!("`{path}` of commit {commit} is missing or damaged")))?;
            let mut remote = RemoteFile {
                url: self.file_url(repo, &commit, &path),
                path,
                size: None,
                etag: None,
                sha256: None,
                git_oid: None,
                needs_token: true,
                sha256_prefix: None,
                xet_hash: None,
            };
            cached.fill(&mut remote);
            files.push(remote);
        }
        if files.is_empty() {
            return Err(missing(format!("it lists no file of commit {commit} for this model")));
        }
        check_case_collisions(&spec.name, &files)?;
        Ok(super::hub_model(repo, requested, commit, files))
    }
}
