//! Local development mode: [`DevelopmentSigner`] plays Entra ID's part, holding an RSA key on
//! disk, publishing its public half as a JWKS and minting v2-shaped access tokens with it.
//!
//! The service then verifies those tokens with
//! [`EntraAuthenticator::with_static_keys`](crate::EntraAuthenticator::with_static_keys), which
//! runs every production check against the local key set instead of Entra's. Nothing here is
//! meant for production: anyone who can read the key file can mint tokens.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rsa::sha2::{Digest as _, Sha256};
use rsa::traits::PublicKeyParts as _;

use crate::settings::{DEFAULT_AUTHORITY, parse_guid};

/// Size of the development key's modulus, in bits (what Entra ID uses).
const KEY_BITS: usize = 2048;

/// What a minted token says. Permissions are written as given; whether they suffice is
/// checked after authentication, so a token with the wrong role still authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// `tid`: the caller's tenant (a GUID; it must be in `allowed_tenants` to be accepted).
    pub tenant_id: String,
    /// `oid` and `sub`: the caller's object id.
    pub object_id: String,
    /// `azp`: the client application's id.
    pub app_id: String,
    /// `roles`: app roles. Given roles make an app-only token (`idtyp` = `app`).
    pub roles: Vec<String>,
    /// `scp`: delegated scopes, joined with spaces. Scopes without roles make a delegated
    /// token (`idtyp` = `user`).
    pub scopes: Vec<String>,
    /// From issue (`iat` = `nbf` = now) to `exp`; whole seconds, at least one.
    pub lifetime: Duration,
    /// `aud`: our API's client id, as listed in `audiences`.
    pub audience: String,
}

/// An RSA-2048 signing key kept in a file, which mints v2-shaped RS256 access tokens and
/// publishes its public key as a JWKS.
pub struct DevelopmentSigner {
    /// The private key, ready for jsonwebtoken.
    encoding_key: EncodingKey,
    /// The RFC 7638 thumbprint of the public key: stable for the life of the key file, so
    /// tokens survive a restart.
    kid: String,
    /// Modulus, base64url.
    modulus: String,
    /// Public exponent, base64url.
    exponent: String,
    /// The base of the `iss` claim, `{authority}/{tid}/v2.0`; it must equal the verifying
    /// settings' `authority`.
    authority: String,
    /// Where the key lives.
    key_path: PathBuf,
}

impl fmt::Debug for DevelopmentSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevelopmentSigner")
            .field("kid", &self.kid)
            .field("authority", &self.authority)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl DevelopmentSigner {
    /// Name of the key file inside the directory given to [`DevelopmentSigner::load_or_create`].
    pub const KEY_FILE_NAME: &'static str = "dev-signing-key.pem";

    /// Loads the key from `dir/dev-signing-key.pem`, or creates the directory and a new
    /// RSA-2048 key there (PKCS#8 PEM, permissions 0600) when the file does not exist. The
    /// issuer authority starts as the public cloud's; set it with
    /// [`DevelopmentSigner::with_authority`].
    ///
    /// # Errors
    /// When the directory or file cannot be created or read, or the file does not hold an
    /// RSA private key of at least 2048 bits.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the key directory {}", dir.display()))?;
        let key_path = dir.join(Self::KEY_FILE_NAME);
        let pem = match std::fs::read_to_string(&key_path) {
            Ok(pem) => {
                warn_if_readable_by_others(&key_path);
                pem
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(&key_path)?,
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", key_path.display()));
            }
        };
        Self::from_pem(&pem, key_path)
    }

    fn from_pem(pem: &str, key_path: PathBuf) -> anyhow::Result<Self> {
        let private_key = rsa::PrivateKey::from_pkcs8_pem(pem).with_context(|| {
            format!(
                "{} does not hold a PKCS#8 RSA private key; delete it to have a new one made",
                key_path.display()
            )
        })?;
        ensure!(
            private_key.size() * 8 >= KEY_BITS,
            "{} holds an RSA key under {KEY_BITS} bits",
            key_path.display()
        );
        let encoding_key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .with_context(|| format!("loading {} for signing", key_path.display()))?;
        let modulus = URL_SAFE_NO_PAD.encode(private_key.n_bytes());
        let exponent = URL_SAFE_NO_PAD.encode(private_key.e_bytes());
        Ok(Self {
            encoding_key,
            kid: thumbprint(&modulus, &exponent),
            modulus,
            exponent,
            authority: DEFAULT_AUTHORITY.to_owned(),
            key_path,
        })
    }

    /// Sets the authority minted issuers are built from (`{authority}/{tid}/v2.0`); use the
    /// `authority` of the settings that verify the tokens. A trailing `/` is ignored.
    #[must_use]
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = authority.into().trim_end_matches('/').to_owned();
        self
    }

    /// The key id put in minted tokens' headers and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The public key set (`{"keys": [{"kty": "RSA", ...}]}`), for the service to serve at a
    /// path of its choosing and to give to
    /// [`EntraAuthenticator::with_static_keys`](crate::EntraAuthenticator::with_static_keys).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": self.modulus,
                "e": self.exponent,
            }]
        })
    }

    /// Mints a v2-shaped RS256 access token: `iss` = `{authority}/{tid}/v2.0`, `ver` = `2.0`,
    /// `aud`, `tid`, `oid`, `sub`, `azp`, `idtyp`, `roles` and/or `scp`, `uti`, and `iat` =
    /// `nbf` = now (system clock, as the verifier's `exp`/`nbf` check uses), `exp` = now +
    /// lifetime.
    ///
    /// # Errors
    /// When `tenant_id` is not a GUID, `lifetime` is under a second, or signing fails.
    pub fn mint(&self, request: &MintRequest) -> anyhow::Result<String> {
        if parse_guid(&request.tenant_id).is_none() {
            bail!("tenant_id must be a GUID");
        }
        let lifetime = request.lifetime.as_secs();
        ensure!(lifetime >= 1, "lifetime must be at least one second");
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = serde_json::json!({
            "aud": request.audience,
            "iss": format!("{}/{}/v2.0", self.authority, request.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(lifetime),
            "ver": "2.0",
            "tid": request.tenant_id,
            "oid": request.object_id,
            "sub": request.object_id,
            "azp": request.app_id,
            "uti": uuid::Uuid::new_v4().simple().to_string(),
        });
        let is_application = !request.roles.is_empty() || request.scopes.is_empty();
        claims["idtyp"] = serde_json::Value::from(if is_application { "app" } else { "user" });
        if !request.roles.is_empty() {
            claims["roles"] = serde_json::Value::from(request.roles.clone());
        }
        if !request.scopes.is_empty() {
            claims["scp"] = serde_json::Value::from(request.scopes.join(" "));
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding_key)
            .context("signing a development token")
    }
}

/// Generates a key and writes it to `path`, readable by the owner only. `create_new` means an
/// existing file is never overwritten; if another process created it first, its key is used.
fn create_key_file(path: &Path) -> anyhow::Result<String> {
    let mut rng = getrandom::SysRng;
    let private_key =
        rsa::PrivateKey::new(&mut rng, KEY_BITS).context("generating the development RSA key")?;
    let pem = private_key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the development RSA key")?;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()));
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "created a development signing key");
    Ok(pem.to_string())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the development signing key is readable by other users"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// The RFC 7638 JWK thumbprint of an RSA public key: SHA-256 over the required members in
/// lexicographic order, base64url.
fn thumbprint(modulus: &str, exponent: &str) -> String {
    let canonical = format!(r#"{{"e":"{exponent}","kty":"RSA","n":"{modulus}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbprint_matches_rfc_7638s_example() {
        // The example of RFC 7638, section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(DevelopmentSigner::KEY_FILE_NAME);
        std::fs::write(&path, "not a key").expect("write");

        let error = DevelopmentSigner::load_or_create(dir.path()).expect_err("refused");

        assert!(format!("{error:#}").contains("dev-signing-key.pem"));
    }
}
