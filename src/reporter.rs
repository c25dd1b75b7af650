//! Progress events. The library reports what it does through [`Reporter`]; only
//! the CLI knows how to draw it (bars on a terminal, plain lines in CI), and a
//! library user can ignore it or forward it anywhere.

use std::time::Duration;

/// Something that happened while locking, fetching or verifying.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// Asking the source what a model is (Hub API call, URL probe).
    Resolving { model: &'a str },
    /// A file download starts; `size` when known. `resumed_from` bytes were
    /// already on disk from an earlier attempt.
    DownloadStarted {
        id: usize,
        label: &'a str,
        size: Option<u64>,
        resumed_from: u64,
    },
    /// `bytes` more bytes of download `id` arrived.
    DownloadProgress { id: usize, bytes: u64 },
    /// Download `id` ended (successfully or not).
    DownloadFinished { id: usize, label: &'a str, ok: bool },
    /// An attempt failed and will be retried after `wait`.
    Retrying {
        label: &'a str,
        attempt: u32,
        reason: &'a str,
        wait: Duration,
    },
    /// An HTTP request was sent (for `-v`).
    Request { method: &'a str, url: &'a str },
    /// Loading a model to verify it.
    Verifying { model: &'a str },
    /// Weight files to load, by this many helper processes in parallel, holding
    /// at most `budget` bytes of tensors at once.
    VerifyPlan { files: usize, helpers: usize, budget: u64 },
    /// Files on disk must be read again to know their content: `bytes` in
    /// all, on `threads` threads, because `why`.
    Rehashing {
        files: usize,
        bytes: u64,
        threads: usize,
        why: &'a str,
    },
    /// An upload to a registry starts (`mdl push`); its progress arrives as
    /// [`Event::DownloadProgress`] with the same `id`.
    UploadStarted { id: usize, label: &'a str, size: u64 },
    /// Upload `id` ended.
    UploadFinished { id: usize, label: &'a str, ok: bool },
    /// Another runner holds the lease on `model` and is fetching it from
    /// upstream; this one waits for its push to `mirror`.
    WaitingForPeer { model: &'a str, mirror: &'a str },
    /// Something the user should know that is not an error.
    Warning { message: &'a str },
}

pub trait Reporter: Send + Sync {
    fn report(&self, event: Event<'_>);
}

/// Reports nothing.
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: Event<'_>) {}
}
