//! A single file at an HTTP(S) URL: a HEAD that follows redirects gives its
//! ETag and size; servers that refuse HEAD are resolved by the download itself.

use reqwest::header::ETAG;

use super::{RemoteFile, ResolveError, ResolvedModel, Resolver, Via};
use crate::config::ModelSpec;
use crate::fs::safe_relative_path;
use crate::http::normalize_etag;
use crate::model_id::ModelId;
use crate::source::Source;

impl Resolver<'_> {
    /// A HEAD that follows redirects gives the final URL, ETag and size. Servers
    /// that refuse HEAD are resolved by the download itself.
    pub(super) async fn resolve_url(&self, spec: &ModelSpec, url: &str) -> Result<ResolvedModel, ResolveError> {
        let model = &spec.name;
        // Only a `url:` model itself may skip certificate checks, never the
        // torchvision or PyTorch Hub files that resolve through here.
        let via = match spec.id {
            ModelId::Url { .. } if self.unverified_http.is_some() => Via::Unverified,
            _ => Via::Plain,
        };
        let response = self.send(model, reqwest::Method::HEAD, url, via).await?;
        let status = response.status();
        let file_name = url_file_name(url);
        let (etag, size) = if status.is_success() {
            let etag = response
                .headers()
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(normalize_etag);
            // Not `content_length()`: for HEAD that is the (empty) body's size.
            let size = response
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|_| etag_or_size_trusted(&response));
            (etag, size)
        } else if matches!(status.as_u16(), 405 | 501) {
            (None, None)
        } else {
            let message = response
                .headers()
                .get("x-error-message")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(ResolveError::Http {
                model: model.clone(),
                url: url.into(),
                status: status.as_u16(),
                message,
            });
        };
        safe_relative_path(&file_name).map_err(|source| ResolveError::Unsafe {
            model: model.clone(),
            source,
        })?;
        Ok(ResolvedModel {
            source: Source::Url,
            id: url.to_string(),
            revision: None,
            commit: None,
            files: vec![RemoteFile {
                path: file_name,
                size,
                // What the user wrote: where it redirects to may be a signed
                // URL that expires, and is followed afresh on every download.
                url: url.to_string(),
                etag,
                sha256: None,
                git_oid: None,
                needs_token: false,
                sha256_prefix: None,
                xet_hash: None,
            }],
        })
    }
}

/// The file name a URL's file is locked under: its last path segment.
pub fn url_file_name(url: &str) -> String {
    url.split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .unwrap_or("model")
        .to_string()
}

/// A HEAD's Content-Length is only the body's size when no content coding applies.
fn etag_or_size_trusted(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}
