//! A single file at an HTTP(S) URL: a HEAD that follows redirects gives its
//! ETag and size; servers that refuse HEAD are resolved by the download itself.

use reqwest::header::ETAG;

use futures_util::future::BoxFuture;

use crate::fs::safe_relative_path;
use crate::http::normalize_etag;
use crate::sources::kind::{
    IdError, Pinned, PinnedFile, RemoteFile, ResolveError, ResolvedModel, Resolver, Source, SourceKind,
    UrlContext, Via, Want,
};

/// A single file at an HTTP(S) URL (`url:https://…`, a bare `https://…`).
pub struct Url;

/// `models.download.sources.url`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlTable {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub verify_ssl: bool,
    /// Per-request timeout for connecting and for each read (the seed's key).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> u64 {
    300
}

impl Default for UrlTable {
    fn default() -> Self {
        UrlTable {
            enabled: true,
            verify_ssl: true,
            timeout_seconds: default_timeout(),
        }
    }
}

source_table!(UrlTable);

impl SourceKind for Url {
    fn name(&self) -> &'static str {
        "url"
    }
    fn form(&self) -> &'static str {
        "`url:https://host/path/file`"
    }
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
        let url = reqwest::Url::parse(rest).map_err(|e| IdError::new(id, format!("the URL is invalid ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(IdError::new(id, "only http:// and https:// URLs can be downloaded"));
        }
        if url.path_segments().and_then(|mut s| s.next_back()).is_none_or(str::is_empty) {
            return Err(IdError::new(id, "the URL must name a file"));
        }
        Ok((rest.to_string(), None))
    }
    fn display(&self, locator: &str, _revision: Option<&str>) -> String {
        format!("url:{locator}")
    }
    fn default_name(&self, locator: &str) -> String {
        file_stem(locator)
    }
    fn id_is_the_file_url(&self) -> bool {
        true
    }
    fn is_single_file(&self) -> bool {
        true
    }
    table_of!(UrlTable);
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want) -> BoxFuture<'a, Result<ResolvedModel, ResolveError>> {
        // Only a `url:` model itself may skip certificate checks, never the
        // torchvision or PyTorch Hub files that resolve through here.
        let via = if r.unverified_http.is_some() { Via::Unverified } else { Via::Plain };
        Box::pin(r.resolve_url(want, &want.id.locator, via))
    }
    fn file_url(&self, model: &Pinned<'_>, _file: &PinnedFile<'_>, _cx: &UrlContext<'_>) -> Result<String, String> {
        Ok(model.id.to_string())
    }
    fn check_file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>) -> Result<(), &'static str> {
        (file.url == model.id && model.files == 1)
            .then_some(())
            .ok_or("is not the URL the model's id names")
    }
}

/// The stem of a URL's or path's last segment (`model` when there is none).
pub(crate) fn file_stem(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let file = path
        .rsplit('/')
        .find(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("model");
    let stem = file.split('.').next().filter(|s| !s.is_empty()).unwrap_or(file);
    stem.to_string()
}

impl Resolver<'_> {
    /// A HEAD that follows redirects gives the final URL, ETag and size. Servers
    /// that refuse HEAD are resolved by the download itself.
    pub(crate) async fn resolve_url(&self, spec: &Want, url: &str, via: Via) -> Result<ResolvedModel, ResolveError> {
        let model = &spec.name;
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
            source: Source(&Url),
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
