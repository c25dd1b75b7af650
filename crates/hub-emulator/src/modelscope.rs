//! The ModelScope Hub's API over the emulator's repositories, as the
//! official client (`modelscope-hub`'s `_legacy_api.py`) asks it:
//!
//! * `GET /api/v1/models/{owner}/{name}/revisions`: `Data.RevisionMap` with
//!   `Branches` and `Tags`, each `[{"Revision": name}]`;
//! * `GET /api/v1/models/{owner}/{name}/repo/files?Revision=…&Recursive=…&Root=…`:
//!   `Data.Files[]` with `Path`, `Name`, `Type` (`blob` or `tree`), `Size`
//!   and `Sha256`, cut silently at `Behaviour::modelscope_listing_cap`
//!   entries (3,000 by default) as the real server cuts them;
//! * `GET /api/v1/models/{owner}/{name}/repo?Revision=…&FilePath=…`: the file
//!   (ranges, like every file the emulator serves).
//!
//! Every answer is the `{"Code", "Data", "Message", "Success"}` envelope; a
//! model or revision that does not exist is a 404.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::{json, serve_blob, Shared};

/// The real server's cap on one listing.
pub const DEFAULT_LISTING_CAP: usize = 3000;

pub(crate) fn route(state: &Shared, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> Option<Response> {
    let rest = path.strip_prefix("/api/v1/models/")?;
    let mut parts = rest.splitn(3, '/');
    let (owner, name, route) = (parts.next()?, parts.next()?, parts.next()?);
    let repo = format!("{}/{}", crate::decode(owner), crate::decode(name));
    let params = params(query);
    Some(match route {
        "revisions" => revisions(state, &repo),
        "repo/files" => files(state, &repo, &params),
        "repo" => file(state, method, headers, &repo, &params),
        _ => not_found("no such route"),
    })
}

/// A query's pairs, `+` read as a space (as `quote_plus` writes them).
fn params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (crate::decode(&k.replace('+', " ")), crate::decode(&v.replace('+', " "))))
        .collect()
}

fn envelope(data: serde_json::Value) -> Response {
    json(serde_json::json!({ "Code": 200, "Data": data, "Message": "success", "Success": true }))
}

fn not_found(message: &str) -> Response {
    let body = serde_json::json!({ "Code": 10010205, "Data": null, "Message": message, "Success": false });
    (StatusCode::NOT_FOUND, json(body)).into_response()
}

fn revisions(state: &Shared, repo: &str) -> Response {
    let inner = state.lock().unwrap();
    let Some(repo_state) = inner.repos.get(repo) else {
        return not_found(&format!("model {repo} does not exist"));
    };
    let listed = |tags: bool| {
        let names = repo_state.refs.keys().filter(|r| repo_state.tags.contains(*r) == tags);
        names.map(|r| serde_json::json!({ "Revision": r })).collect::<Vec<_>>()
    };
    envelope(serde_json::json!({ "RevisionMap": { "Branches": listed(false), "Tags": listed(true) } }))
}

fn files(state: &Shared, repo: &str, params: &BTreeMap<String, String>) -> Response {
    let inner = state.lock().unwrap();
    let revision = params.get("Revision").map_or("master", String::as_str);
    let Some(commit) = inner.repos.get(repo).and_then(|r| r.commits.get(r.refs.get(revision)?)) else {
        return not_found(&format!("revision {revision} of model {repo} does not exist"));
    };
    let recursive = params.get("Recursive").is_none_or(|r| r.eq_ignore_ascii_case("true"));
    let root = params
        .get("Root")
        .map(|r| r.trim_matches('/'))
        .filter(|r| !r.is_empty());
    let mut entries = BTreeMap::new();
    for (path, blob) in &commit.files {
        let Some(below) = (match root {
            Some(root) => path.strip_prefix(&format!("{root}/")),
            None => Some(path.as_str()),
        }) else {
            continue;
        };
        let prefix = &path[..path.len() - below.len()];
        // Every directory on the way down is a `tree` entry.
        let segments: Vec<&str> = below.split('/').collect();
        for depth in 1..segments.len() {
            if !recursive && depth > 1 {
                break;
            }
            let dir = format!("{prefix}{}", segments[..depth].join("/"));
            let entry = serde_json::json!({ "Name": segments[depth - 1], "Path": dir, "Type": "tree", "Size": 0 });
            entries.entry(dir).or_insert(entry);
        }
        if recursive || segments.len() == 1 {
            let entry = serde_json::json!({
                "Name": segments[segments.len() - 1], "Path": path, "Type": "blob",
                "Size": blob.content.len(), "Sha256": blob.sha256, "IsLFS": blob.lfs,
            });
            entries.insert(path.clone(), entry);
        }
    }
    let cap = inner.behaviour.modelscope_listing_cap.unwrap_or(DEFAULT_LISTING_CAP);
    let listed: Vec<_> = entries.into_values().take(cap).collect();
    envelope(serde_json::json!({ "Files": listed }))
}

fn file(
    state: &Shared,
    method: &Method,
    headers: &HeaderMap,
    repo: &str,
    params: &BTreeMap<String, String>,
) -> Response {
    let revision = params.get("Revision").map_or("master", String::as_str);
    let blob = {
        let inner = state.lock().unwrap();
        let commit = inner.repos.get(repo).and_then(|r| r.commits.get(r.refs.get(revision)?));
        let path = params.get("FilePath").map(|p| p.trim_start_matches('/'));
        commit.and_then(|c| c.files.get(path?).cloned())
    };
    match blob {
        Some(blob) => serve_blob(state, method, headers, &blob, None),
        None => not_found(&format!("no such file at revision {revision} of model {repo}")),
    }
}
