//! Registry credentials as container users already have them: Docker's
//! `config.json` (`$DOCKER_CONFIG`, else `~/.docker`), with its `auths`
//! entries, `credsStore` and per-registry `credHelpers`, read by the
//! `docker_credential` crate exactly as the docker CLI reads them.
//!
//! Credentials are only ever handed to the OCI client; they are never printed,
//! logged or written to the lock (`Debug` on [`Credentials`] hides them).

use std::fmt;

use docker_credential::{CredentialRetrievalError, DockerCredential};

/// What mdl sends a registry, and where it came from (for messages).
#[derive(Clone)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An identity token (`docker login` against a token-issuing registry).
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <hidden>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<hidden>)"),
        }
    }
}

impl Credentials {
    /// The user name, for messages (never the secret).
    pub fn username(&self) -> Option<&str> {
        match self {
            Credentials::Basic { username, .. } => Some(username),
            _ => None,
        }
    }

    pub(super) fn to_registry_auth(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => RegistryAuth::Basic(username.clone(), password.clone()),
            // An identity token is a refresh token for the registry's token
            // endpoint; registries that issue one accept it as the password of
            // the `<token>` user.
            Credentials::IdentityToken(token) => RegistryAuth::Basic("<token>".into(), token.clone()),
        }
    }
}

/// Docker's credentials for `registry` (`host[:port]`), or anonymous when the
/// config has none. A config that exists but cannot be read, or a credential
/// helper that fails, is an error: silently pulling anonymously would turn a
/// broken login into a confusing "not found".
pub fn for_registry(registry: &str) -> Result<Credentials, String> {
    let config = crate::env::docker_config_dir().join("config.json");
    if !config.exists() {
        return Ok(Credentials::Anonymous);
    }
    // Docker Hub's credentials are stored under its legacy index URL.
    let keys: Vec<&str> = match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec!["https://index.docker.io/v1/", "index.docker.io", "docker.io"]
        }
        other => vec![other],
    };
    for key in keys {
        match docker_credential::get_credential(key) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Credentials::Basic { username, password })
            }
            Ok(DockerCredential::IdentityToken(token)) => return Ok(Credentials::IdentityToken(token)),
            Err(CredentialRetrievalError::ConfigNotFound | CredentialRetrievalError::NoCredentialConfigured) => {}
            Err(CredentialRetrievalError::ConfigReadError) => {
                return Err(format!("`{}` could not be read as Docker's config", config.display()))
            }
            // Not the helper's output: it may hold what it was asked for.
            Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
                return Err(format!(
                    "the credential helper `docker-credential-{helper}` failed for `{key}`"
                ))
            }
            Err(e) => return Err(format!("reading Docker's credentials for `{key}` failed: {e}")),
        }
    }
    Ok(Credentials::Anonymous)
}
