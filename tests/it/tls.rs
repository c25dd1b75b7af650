//! TLS as users have it: a Hub behind a private CA (a TLS-intercepting proxy's,
//! made here by the test), trusted through `SSL_CERT_FILE` or
//! `REQUESTS_CA_BUNDLE`; `sources.url.verify_ssl: false` scoped to `url:` models.

use std::time::{Duration, Instant};

use hub_emulator::TlsIdentity;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::common::*;

/// A CA (PEM) and a certificate for 127.0.0.1 that it signed.
pub fn private_ca() -> (String, TlsIdentity) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "mdl test corporate CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = server.signed_by(&key, &issuer).unwrap();
    (
        ca_cert.pem(),
        TlsIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}

fn tls_context() -> (TestContext, std::path::PathBuf) {
    let (ca_pem, identity) = private_ca();
    let ctx = TestContext::with_hub(Hub::start_tls(identity));
    assert!(ctx.hub.url().starts_with("https://127.0.0.1:"));
    standard_hub(&ctx);
    let ca = ctx.path().join("corporate-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    (ctx, ca)
}

#[test]
fn a_private_ca_is_refused_clearly_and_trusted_through_ssl_cert_file() {
    let (mut ctx, ca) = tls_context();
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    let started = Instant::now();
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .snap("sync_untrusted_certificate")
        .stderr_has("is not trusted")
        .stderr_has("set `SSL_CERT_FILE` (or `REQUESTS_CA_BUNDLE`) to the CA's PEM bundle");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no retries of a certificate error"
    );

    ctx.env
        .push(("SSL_CERT_FILE".into(), ca.to_string_lossy().into_owned()));
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/model.safetensors"),
        SAFETENSORS
    );

    // What `requests` users set works the same.
    ctx.env.clear();
    ctx.env
        .push(("REQUESTS_CA_BUNDLE".into(), ca.to_string_lossy().into_owned()));
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.mdl(&["sync", "--no-verify"]).success();
}

#[test]
fn an_unusable_ca_bundle_is_named() {
    let (mut ctx, _) = tls_context();
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    ctx.env.push(("SSL_CERT_FILE".into(), "/nonexistent/ca.pem".into()));
    ctx.mdl(&["sync", "--no-verify"])
        .failure(2)
        .stderr_has("the CA bundle `/nonexistent/ca.pem` named by `SSL_CERT_FILE` cannot be used");
}

#[test]
fn verify_ssl_false_is_scoped_to_url_models_and_never_carries_the_token() {
    let (mut ctx, _) = tls_context();
    ctx.env.push(("HF_TOKEN".into(), "hf_secret_never_sent".into()));
    let insecure = "  download:\n    sources:\n      url: { verify_ssl: false }\n";
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: url:{{hub}}/redirect/w/model.pt\n      name: custom\n{insecure}"
    ));
    let run = ctx.mdl(&["sync", "--no-verify"]).success();
    assert!(
        run.stderr().contains("warning: `sources.url.verify_ssl: false`"),
        "warned on every run: {}",
        run.stderr()
    );
    assert_eq!(ctx.read("models/url_custom/model.pt"), STATE_DICT);
    assert!(
        ctx.requests().iter().all(|r| r.authorization.is_none()),
        "{:?}",
        ctx.requests()
    );

    // The Hub stays verified: its requests carry the token.
    ctx.write_config(&format!("models:\n  require:\n    - acme/tiny-bert\n    - id: url:{{hub}}/redirect/w/model.pt\n      name: custom\n{insecure}"));
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .stderr_has("is not trusted");
    assert!(
        ctx.requests().iter().all(|r| r.authorization.is_none()),
        "{:?}",
        ctx.requests()
    );
    for file in walk_files(ctx.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("hf_secret_never_sent"),
            "the token was written to {file:?}"
        );
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// An HTTPS Hub that redirects a file to plain HTTP (a downgrade a network
/// attacker or a hostile mirror would want): the redirect is not followed,
/// so no request — with or without the token — leaves over plain HTTP.
#[test]
fn a_redirect_from_https_to_plain_http_is_not_followed() {
    let (mut ctx, ca) = tls_context();
    let plain = Hub::start();
    plain.put_file("model.safetensors", Blob::regular(SAFETENSORS));
    ctx.hub.update_behaviour(|b| {
        b.lfs_redirect = true;
        b.redirect_location = Some(format!("{}/files/model.safetensors", plain.url()));
    });
    ctx.env
        .push(("SSL_CERT_FILE".into(), ca.to_string_lossy().into_owned()));
    ctx.env
        .push(("HF_TOKEN".into(), "hf_token_for_the_https_hub_only".into()));
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    let run = ctx.mdl(&["sync", "--no-verify"]).failure(1);
    assert!(run.stderr().contains("from HTTPS to plain HTTP"), "{}", run.stderr());
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
}
