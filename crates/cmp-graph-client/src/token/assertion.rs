//! The signed client assertion (a JWT) that a certificate credential sends instead of a secret
//! (Microsoft identity platform "certificate credentials").
//!
//! Header `alg` PS256 with `x5t#S256`, the base64url SHA-256 thumbprint of the certificate's
//! DER, by which Entra finds the registered certificate. Claims `aud` = the exact token URL,
//! `iss` = `sub` = the client id, a fresh `jti`, and `nbf` = `iat` = now, `exp` = now + 10 min.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cmp_domain::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use super::InvalidCredential;

/// Lifetime of one assertion. Entra accepts up to 10 minutes; each request signs a new one,
/// so a short life costs nothing.
const ASSERTION_LIFETIME_SECONDS: i64 = 600;

/// Signs client assertions with the certificate's private key.
pub(super) struct AssertionSigner {
    /// The RSA private key, parsed once at start.
    key: EncodingKey,
    /// `x5t#S256`: base64url (no padding) of the SHA-256 of the certificate's DER.
    thumbprint: String,
}

/// The assertion's claims (RFC 7523, section 3).
#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl AssertionSigner {
    /// Parses the certificate (the first one in the PEM: the leaf, by convention) and its RSA
    /// private key (PKCS#8 or PKCS#1), and signs one trial assertion so that a key the signer
    /// cannot use is refused now rather than on the first token request.
    pub(super) fn from_pem(
        certificate_pem: &str,
        private_key_pem: &SecretString,
    ) -> Result<Self, InvalidCredential> {
        let der = first_certificate_der(certificate_pem)
            .ok_or_else(|| InvalidCredential::new("the certificate PEM holds no certificate"))?;
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
        let key = EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes())
            .map_err(|_| InvalidCredential::new("the private key is not a PEM RSA private key"))?;
        let signer = Self { key, thumbprint };
        let trial_audience = Url::parse("https://login.microsoftonline.com/trial")
            .map_err(|e| InvalidCredential::new(e.to_string()))?;
        signer
            .sign(&trial_audience, "trial", Timestamp::MIN)
            .map_err(|_| InvalidCredential::new("the private key cannot sign a PS256 assertion"))?;
        Ok(signer)
    }

    /// A fresh assertion for one request to `audience` (the token URL) by `client_id`.
    ///
    /// # Errors
    /// A message, naming no key material, when signing fails.
    pub(super) fn sign(
        &self,
        audience: &Url,
        client_id: &str,
        now: Timestamp,
    ) -> Result<SecretString, String> {
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        let now_seconds = now.unix_seconds();
        let claims = AssertionClaims {
            aud: audience.as_str(),
            iss: client_id,
            sub: client_id,
            jti: Uuid::new_v4().to_string(),
            nbf: now_seconds,
            iat: now_seconds,
            exp: now_seconds.saturating_add(ASSERTION_LIFETIME_SECONDS),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| format!("signing the client assertion failed: {e}"))
    }
}

/// The DER bytes of the first `CERTIFICATE` block of a PEM text.
fn first_certificate_der(pem: &str) -> Option<Vec<u8>> {
    let (_, after_begin) = pem.split_once("-----BEGIN CERTIFICATE-----")?;
    let (body, _) = after_begin.split_once("-----END CERTIFICATE-----")?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(base64).ok().filter(|der| !der.is_empty())
}
