//! `models.lock` is input, not mdl's own memory: it sits in git, a pull
//! request can change any byte of it, and CI runs `mdl sync` next to its
//! secrets. Every value is checked here, by kind, when the lock is read —
//! before it can become a path, a URL, a size to allocate or a place to send
//! a credential (SECURITY.md). What a field may hold:
//!
//! | field | kind |
//! |---|---|
//! | `name` | `/`-separated segments of `A-Za-z0-9._-`, none starting with `.` |
//! | `id` | what `config.yaml` would write for the source (parsed as a model id) |
//! | `commit` | Hub and PyTorch Hub: 40 hex; `oci:`: `sha256:` + 64 hex; else absent |
//! | `blake3` | 64 lowercase hex |
//! | `sha256` | 64 hex (Hub LFS files, registry layers) |
//! | `xet_hash` | 64 lowercase hex (Hub files stored in Xet) |
//! | `etag` | Hub: a git blob id (40 hex) or an LFS sha256 (64 hex); else a header-safe token |
//! | `size` | at most [`MAX_FILE_SIZE`] |
//! | `path` | a safe relative path, unique, and unique ignoring case |
//! | `url` | `url:` models: the model's id; `local:`: the id joined with the path; else http(s) |
//!
//! URLs of Hub, registry, torchvision and PyTorch Hub files are never taken
//! from the lock: the plan derives them (`plan::download_url`).

use crate::hash::{is_blake3, is_hex};
use crate::lock::{LockedFile, LockedModel};
use crate::sources::{is_http_url, ModelId};

/// The largest file a lock may declare: 1 PiB. Larger is a lie (and sums of
/// such sizes must not overflow).
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// A field of a lock entry that holds what it may not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The file's index in the model's list, for a file's field.
    pub file: Option<usize>,
    pub field: &'static str,
    pub reason: String,
}

fn invalid(file: Option<usize>, field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        file,
        field,
        reason: reason.into(),
    }
}

/// A model name as the lock writes it (`acme/tiny-bert`, `resnet18`).
fn is_name(value: &str) -> bool {
    value.len() <= 256
        && value.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

/// Checks one model entry, field by field; the first field that holds what it
/// may not is the error.
pub fn check_model(model: &LockedModel) -> Result<(), Invalid> {
    if !is_name(&model.name) {
        return Err(invalid(
            None,
            "name",
            "is not a model name (segments of letters, digits, `.`, `_` and `-`, separated by `/`)",
        ));
    }
    check_id(model)?;
    if let Some(revision) = &model.revision {
        if revision.is_empty() || revision.len() > 256 || revision.chars().any(|c| c.is_control() || c == '\\') {
            return Err(invalid(None, "revision", "is not a branch, tag or commit name"));
        }
    }
    let kind = model.source.kind();
    kind.check_commit(model.commit.as_deref())
        .map_err(|reason| invalid(None, "commit", reason))?;
    if let Some(weights) = &model.weights {
        if weights.is_empty() || !weights.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(invalid(
                None,
                "weights",
                "is not a weights name such as `IMAGENET1K_V1`",
            ));
        }
    }
    if model.resolved_url.as_deref().is_some_and(|u| !is_http_url(u)) {
        return Err(invalid(None, "resolved_url", "is not an http(s) URL"));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (i, file) in model.files.iter().enumerate() {
        let at = Some(i);
        crate::fs::safe_relative_path(&file.path).map_err(|e| invalid(at, "path", e.to_string()))?;
        if let Some(first) = seen.insert(file.path.to_lowercase(), &file.path) {
            let reason = if *first == file.path {
                "is listed twice".to_string()
            } else {
                format!("is the same file as `{first}` on a case-insensitive file system")
            };
            return Err(invalid(at, "path", reason));
        }
        if file.size > MAX_FILE_SIZE {
            return Err(invalid(at, "size", "is larger than any model file (1 PiB)"));
        }
        if !is_blake3(&file.blake3) {
            return Err(invalid(at, "blake3", "is not a blake3 hash (64 lowercase hex digits)"));
        }
        if file.sha256.as_deref().is_some_and(|s| !is_hex(s, 64)) {
            return Err(invalid(at, "sha256", "is not a sha256 (64 hex digits)"));
        }
        // It becomes a path segment of CAS requests: only the hash itself.
        if file.xet_hash.as_deref().is_some_and(|s| !is_blake3(s)) {
            return Err(invalid(at, "xet_hash", "is not a Xet hash (64 lowercase hex digits)"));
        }
        if let Some(etag) = &file.etag {
            kind.check_etag(etag).map_err(|reason| invalid(at, "etag", reason))?;
        }
        kind.check_file_url(&model.pinned(), &file.pinned())
            .map_err(|reason| invalid(at, "url", reason))?;
    }
    let files: Vec<_> = model.files.iter().map(LockedFile::pinned).collect();
    kind.check_files(&files)
        .map_err(|(i, field, reason)| invalid(Some(i), field, reason))?;
    Ok(())
}

/// The id must be what config.yaml would say for the source.
fn check_id(model: &LockedModel) -> Result<(), Invalid> {
    if model.id.chars().any(char::is_control) {
        return Err(invalid(None, "id", "holds control characters"));
    }
    let written = match model.source.id_is_the_file_url() {
        true => model.id.clone(),
        false => format!("{}:{}", model.source, model.id),
    };
    let parsed = ModelId::parse(&written).map_err(|e| invalid(None, "id", e.to_string()))?;
    // A source that pins weights keeps them in their own field, not the id.
    let revision_ok = parsed.revision().is_none() || model.source.pins_weights();
    if parsed.source() != Some(model.source) || parsed.locator() != model.id || !revision_ok {
        return Err(invalid(
            None,
            "id",
            format!("is not a {} id as config.yaml writes one", model.source),
        ));
    }
    Ok(())
}

/// The 1-based line of `field` in the `model`-th `[[model]]` table of a lock's
/// text (in its `file`-th `[[model.file]]` table for a file's field), for
/// messages. `None` when the text is not laid out as mdl writes it.
pub fn line_of(text: &str, model: usize, file: Option<usize>, field: &str) -> Option<usize> {
    let mut models = 0usize;
    let mut files = 0usize;
    let mut in_model = false;
    let mut in_file = false;
    let mut table_line = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed == "[[model]]" {
            models += 1;
            files = 0;
            in_model = models == model + 1;
            in_file = false;
            if in_model && file.is_none() {
                table_line = Some(n + 1);
            }
            continue;
        }
        if trimmed == "[[model.file]]" {
            files += 1;
            in_file = in_model && file == Some(files - 1);
            if in_file {
                table_line = Some(n + 1);
            }
            continue;
        }
        if trimmed.starts_with('[') {
            in_file = false;
            continue;
        }
        let wanted = match file {
            None => in_model && files == 0,
            Some(_) => in_file,
        };
        if wanted {
            let key = trimmed.split('=').next().unwrap_or("").trim().trim_matches('"');
            if key == field {
                return Some(n + 1);
            }
        }
    }
    table_line
}

/// What the lock fuzz target (and the replay of its regressions) checks of
/// any text: it parses or is refused without a panic, and a lock that parses
/// holds only what validation admits — hashes that are hashes, paths that
/// stay inside, Hub URLs derived on the endpoint — and reads back the same.
pub fn fuzz_check(text: &str) {
    use crate::lock::Lockfile;
    let path = std::path::Path::new("models.lock");
    let Ok(lock) = Lockfile::parse(path, text) else {
        return;
    };
    let sources = crate::sources::Sources::default();
    let cx = crate::lock::derive::UrlContext {
        hub_endpoint: "https://huggingface.co",
        sources: &sources,
    };
    for model in lock.models.values() {
        for file in &model.files {
            assert!(is_blake3(&file.blake3), "{}", file.blake3);
            assert!(crate::fs::safe_relative_path(&file.path).is_ok(), "{}", file.path);
            assert!(file.size <= MAX_FILE_SIZE);
            if let Ok(url) = crate::lock::derive::file_url(model, file, cx) {
                if model.source.fetched_from_hub_endpoint() {
                    let url = reqwest::Url::parse(&url).expect("a derived URL parses");
                    assert_eq!(url.host_str(), Some("huggingface.co"), "{url}");
                }
            }
        }
    }
    let again = Lockfile::parse(path, &lock.to_toml()).expect("a lock mdl writes reads back");
    assert_eq!(again.to_toml(), lock.to_toml());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{is_hub_etag, is_sha256_digest};

    #[test]
    fn kinds() {
        assert!(is_blake3(&"a".repeat(64)));
        assert!(!is_blake3(&"A".repeat(64)));
        assert!(!is_blake3(&format!("xx/{}", "a".repeat(61))));
        assert!(is_hub_etag(&"0".repeat(40)) && is_hub_etag(&"f".repeat(64)));
        assert!(!is_hub_etag(&"*".repeat(64)) && !is_hub_etag("../../../x"));
        assert!(is_sha256_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_sha256_digest(&format!("sha256:{}/..", "a".repeat(61))));
        assert!(is_name("acme/tiny-bert") && is_name("resnet18"));
        assert!(!is_name("../x") && !is_name("a//b") && !is_name(".hidden"));
    }

    #[test]
    fn lines_are_found_in_the_written_layout() {
        let text = "version = 1\n\n[[model]]\nname = \"a\"\ncommit = \"x\"\n\n[[model.file]]\npath = \"f\"\nblake3 = \"b\"\n\n[[model]]\nname = \"b\"\n\n[[model.file]]\npath = \"g\"\n\n[[model.file]]\npath = \"h\"\nblake3 = \"z\"\n";
        assert_eq!(line_of(text, 0, None, "commit"), Some(5));
        assert_eq!(line_of(text, 0, Some(0), "blake3"), Some(9));
        assert_eq!(line_of(text, 1, Some(1), "blake3"), Some(19));
        assert_eq!(
            line_of(text, 1, Some(1), "etag"),
            Some(17),
            "the table when the field is absent"
        );
    }
}
