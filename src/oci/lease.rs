//! Leases on a writable mirror, so that runners of a fleet that start cold
//! together fetch a model from upstream once, not once each.
//!
//! One lease covers all the models a runner must fetch from upstream (its
//! tag is a hash of their mirror tags): runners of one lock that start cold
//! together want the same set, so one of them leads for all of it, and no
//! runner ever holds one lease while waiting on another (which could wait in
//! a circle).
//!
//! A registry has no compare-and-swap, so a lease is a small manifest at the
//! tag `mdl-<hash>-lease` naming its holder and when it expires: a runner
//! that finds no live lease writes its own, waits [`SETTLE`] (longer on a
//! loaded machine), and reads the tag back, twice — whoever's lease is there
//! then leads (fetches from upstream,
//! verifies, pushes); everyone else follows, polling until the model's
//! manifest appears on the mirror, then fetches it from there. Two runners
//! whose writes straddle a read-back can both lead: at worst the model
//! crosses the uplink twice, which is the bound the fleet benchmark checks.
//! A leader renews its lease while it works and releases it when it is done
//! (pushed or not); a leader that dies stops renewing, its lease expires
//! after [`TTL`], and its followers fall back to upstream.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::artifact::{self, EMPTY_CONFIG, EMPTY_CONFIG_BYTES, EMPTY_CONFIG_DIGEST, OCI_MANIFEST};
use super::{OciError, OciRef, Registry};

/// How long a lease lives without renewal.
pub const TTL: Duration = Duration::from_secs(60);
/// How often a leader renews.
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// Between writing a lease and reading it back: longer than the spread of
/// writes that raced, so all racers read the same last write.
pub const SETTLE: Duration = Duration::from_millis(400);
/// Between a follower's looks at the mirror.
const POLL_EVERY: Duration = Duration::from_millis(250);

const LEASE_ARTIFACT: &str = "application/vnd.mdl.lease.v1";
const HOLDER: &str = "dev.mdl.lease.holder";
const EXPIRES: &str = "dev.mdl.lease.expires";

/// A lease this runner holds; renewed until released or dropped.
pub struct Held {
    registry: Arc<Registry>,
    at: OciRef,
    holder: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// What claiming a model's lease gave.
pub enum Claim {
    /// This runner fetches the model from upstream and pushes it.
    Lead(Held),
    /// Another runner does; wait for its push.
    Follow { holder: String },
}

/// How a wait for another runner's push ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The model's manifest is on the mirror.
    Pushed,
    /// The lease was released or expired without a push.
    Abandoned,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// This process, unique enough among a fleet's runners.
fn holder_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let seed = format!("{}/{}/{nanos}", host.trim(), std::process::id());
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_string()
}

/// The lease tag of a set of models (their mirror tags, in any order).
pub fn lease_tag(model_tags: &[String]) -> String {
    let mut tags = model_tags.to_vec();
    tags.sort();
    let hash = blake3::hash(tags.join("\n").as_bytes()).to_hex();
    format!("mdl-{}-lease", &hash[..40])
}

/// The lease manifest: the empty blob as config and only layer (as OCI's
/// artifact guidance has it), the holder and expiry in annotations.
fn lease_manifest(holder: &str, expires: u64) -> Vec<u8> {
    let empty = json!({ "mediaType": EMPTY_CONFIG, "digest": EMPTY_CONFIG_DIGEST, "size": EMPTY_CONFIG_BYTES.len() });
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": LEASE_ARTIFACT,
        "config": empty,
        "layers": [empty],
        "annotations": { HOLDER: holder, EXPIRES: expires.to_string() },
    }))
    .expect("serialises")
}

/// The live lease at `at` (holder), if any.
async fn live(registry: &Registry, at: &OciRef) -> Result<Option<String>, OciError> {
    Ok(lease_at(registry, at).await?.map(|(holder, _)| holder))
}

/// The live lease at `at`: its holder and its expiry as written. Only the
/// two annotations are read; anything else there is treated as no lease.
/// The expiry is the registry's word: a waiter counts it only up to a
/// lease's life from when it last saw it change ([`wait_for_push`]).
async fn lease_at(registry: &Registry, at: &OciRef) -> Result<Option<(String, u64)>, OciError> {
    let Some((bytes, _)) = registry.manifest(at).await? else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let annotations = &value["annotations"];
    let holder = annotations[HOLDER].as_str().filter(|h| h.len() <= 64 && !h.is_empty());
    let expires = annotations[EXPIRES]
        .as_str()
        .and_then(|e| e.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(holder
        .filter(|_| expires > now_secs())
        .map(|h| (h.to_string(), expires)))
}

/// Claims the lease on the models whose mirror tags are `model_tags`.
pub async fn claim(registry: Arc<Registry>, mirror: &OciRef, model_tags: &[String]) -> Result<Claim, OciError> {
    let at = mirror.at_tag(&lease_tag(model_tags));
    // The lease manifest refers to the empty blob: put it there first, so
    // that between reading the tag and writing it there is one request.
    ensure_empty_blob(&registry, mirror).await?;
    let started = std::time::Instant::now();
    if let Some(holder) = live(&registry, &at).await? {
        return Ok(Claim::Follow { holder });
    }
    let me = holder_id();
    retrying(|| write(&registry, &at, &me, now_secs() + TTL.as_secs())).await?;
    // A racer's read-then-write takes about as long as this one's did: on
    // a loaded machine, wait correspondingly longer before trusting the
    // read-back, and read back twice, so a write that landed late is seen.
    let settle = SETTLE.max(started.elapsed() * 4);
    for _ in 0..2 {
        tokio::time::sleep(settle).await;
        if let Some(holder) = live(&registry, &at).await?.filter(|h| *h != me) {
            return Ok(Claim::Follow { holder });
        }
    }
    let renewal = tokio::spawn({
        let registry = registry.clone();
        let at = at.clone();
        let me = me.clone();
        async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let _ = write(&registry, &at, &me, now_secs() + TTL.as_secs()).await;
            }
        }
    });
    Ok(Claim::Lead(Held {
        registry,
        at,
        holder: me,
        renewal,
    }))
}

/// The empty blob in `mirror`. Runners that start together all upload it
/// at once, and a registry may refuse some of those uploads (distribution
/// answers `DIGEST_INVALID` to a racing one): it is there if anyone's
/// upload landed.
async fn ensure_empty_blob(registry: &Registry, mirror: &OciRef) -> Result<(), OciError> {
    if registry.has_blob(mirror, EMPTY_CONFIG_DIGEST).await? {
        return Ok(());
    }
    match registry
        .push_small_blob(mirror, EMPTY_CONFIG_BYTES.to_vec(), EMPTY_CONFIG_DIGEST)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => {
            retrying(|| async {
                match registry.has_blob(mirror, EMPTY_CONFIG_DIGEST).await? {
                    true => Ok(()),
                    false => Err(OciError::Registry {
                        registry: mirror.registry.clone(),
                        message: format!("the empty blob could not be uploaded ({e})"),
                    }),
                }
            })
            .await
        }
    }
}

/// `attempt`, up to three times, 200 ms apart: a registry under a burst of
/// concurrent writes refuses some of them for a moment.
async fn retrying<F, Fut>(mut attempt: F) -> Result<(), OciError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), OciError>>,
{
    let mut last = None;
    for _ in 0..3 {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.expect("three attempts"))
}

async fn write(registry: &Registry, at: &OciRef, holder: &str, expires: u64) -> Result<(), OciError> {
    registry
        .push_manifest(at, lease_manifest(holder, expires), artifact::OCI_MANIFEST)
        .await
        .map(|_| ())
}

/// Gives the lease up (the model was pushed, or will not be): followers stop
/// waiting at once instead of at expiry.
pub async fn release(held: Held) {
    held.renewal.abort();
    if live(&held.registry, &held.at).await.ok().flatten().as_deref() == Some(held.holder.as_str()) {
        let _ = write(&held.registry, &held.at, &held.holder, 0).await;
    }
}

/// Waits while another runner holds the lease on `model_tags`, until every
/// one of those models' manifests is on the mirror or the lease ends first.
///
/// Every wait has a deadline: whatever expiry a lease claims, it counts only
/// for [`TTL`] after this runner last saw it renewed (a leader rewrites it
/// every [`RENEW_EVERY`] with a new expiry). A lease planted with a
/// far-future expiry, or left by a leader that died, is therefore abandoned
/// after one lease life, and the runner fetches from upstream itself.
pub async fn wait_for_push(registry: &Registry, mirror: &OciRef, model_tags: &[String]) -> Result<Waited, OciError> {
    let lease = mirror.at_tag(&lease_tag(model_tags));
    let mut waiting: Vec<OciRef> = model_tags.iter().map(|t| mirror.at_tag(t)).collect();
    let mut last_seen: Option<(String, u64)> = None;
    let mut renewed_at = std::time::Instant::now();
    loop {
        let mut still = Vec::new();
        for model in waiting {
            if registry.manifest(&model).await?.is_none() {
                still.push(model);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return Ok(Waited::Pushed);
        }
        let now = lease_at(registry, &lease).await?;
        if now.is_some() && now != last_seen {
            (last_seen, renewed_at) = (now.clone(), std::time::Instant::now());
        }
        if now.is_none() || renewed_at.elapsed() > TTL {
            // Pushed between the two looks, or abandoned (released, expired,
            // or not renewed within a lease's life).
            for model in &waiting {
                if registry.manifest(model).await?.is_none() {
                    return Ok(Waited::Abandoned);
                }
            }
            return Ok(Waited::Pushed);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_names_its_holder_and_expiry() {
        let bytes = lease_manifest("abc", 42);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["annotations"][HOLDER], "abc");
        assert_eq!(value["annotations"][EXPIRES], "42");
        assert_eq!(value["layers"][0]["digest"], EMPTY_CONFIG_DIGEST);
        let (a, b) = ("mdl-a".to_string(), "mdl-b".to_string());
        assert_eq!(lease_tag(&[a.clone(), b.clone()]), lease_tag(&[b.clone(), a.clone()]));
        assert_ne!(lease_tag(std::slice::from_ref(&a)), lease_tag(&[a, b]));
        assert!(lease_tag(&[]).ends_with("-lease") && lease_tag(&[]).len() < 128);
        assert_ne!(holder_id(), "");
    }
}
