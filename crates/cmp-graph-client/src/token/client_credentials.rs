//! Entra ID's client-credentials grant: `POST {authority}/{tenant}/oauth2/v2.0/token` with a
//! form proving who we are by a client secret, a certificate's signed assertion, or a federated
//! token (workload identity federation), and the classification of Entra's refusals.

use std::path::{Path, PathBuf};

use cmp_domain::Timestamp;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::TokenError;
use super::assertion::AssertionSigner;
use super::response::{error_or_status, says_try_later, transient};

/// `client_assertion_type` of a JWT assertion (RFC 7523): a certificate's signed assertion
/// and a federated token alike.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One app registration asking Entra ID for tokens of one scope.
pub(super) struct ClientCredentials {
    /// `{authority}/{tenant}/oauth2/v2.0/token`; also the `aud` of a signed assertion, which
    /// Entra requires to be exactly this URL.
    pub(super) token_url: Url,
    /// The app registration's client id; also `iss` and `sub` of a signed assertion.
    pub(super) client_id: String,
    /// The resource's `/.default` scope.
    pub(super) scope: String,
    /// How each request proves who we are.
    pub(super) proof: Proof,
}

/// How a request proves who we are; a certificate is parsed once, when the provider is built.
pub(super) enum Proof {
    /// Sent as `client_secret`.
    Secret(SecretString),
    /// Signs a fresh `client_assertion` for every request.
    Certificate(AssertionSigner),
    /// The federated token in this file is the `client_assertion`. The platform rotates the
    /// file in place (AKS: about hourly), so it is read again for every request.
    FederatedTokenFile(PathBuf),
}

impl Proof {
    /// The name `Debug` output shows.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::Certificate(_) => "certificate",
            Self::FederatedTokenFile(_) => "workload identity",
        }
    }
}

/// What one request presents to Entra ID.
enum Presented<'a> {
    /// The client secret.
    Secret(&'a SecretString),
    /// A client assertion: signed for this request, or the federated token read for it.
    Assertion(SecretString),
}

impl ClientCredentials {
    /// The token request at `now`, with `claims` from a Graph challenge when there are some.
    ///
    /// # Errors
    /// [`TokenError::Configuration`] when the assertion cannot be signed or the federated token
    /// file cannot be read: no request is sent, and an operator must act.
    pub(super) fn request(
        &self,
        http: &reqwest::Client,
        claims: Option<&str>,
        now: Timestamp,
    ) -> Result<reqwest::RequestBuilder, TokenError> {
        // Made before the form so that the form can borrow it.
        let presented = match &self.proof {
            Proof::Secret(secret) => Presented::Secret(secret),
            Proof::Certificate(signer) => Presented::Assertion(
                signer
                    .sign(&self.token_url, &self.client_id, now)
                    .map_err(|reason| unusable("client_assertion_not_signed", reason))?,
            ),
            Proof::FederatedTokenFile(path) => Presented::Assertion(read_federated_token(path)?),
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", &self.client_id),
            ("scope", &self.scope),
            ("grant_type", "client_credentials"),
        ];
        match &presented {
            Presented::Secret(secret) => form.push(("client_secret", secret.expose_secret())),
            Presented::Assertion(assertion) => {
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION));
                form.push(("client_assertion", assertion.expose_secret()));
            }
        }
        if let Some(claims) = claims {
            form.push(("claims", claims));
        }
        Ok(http.post(self.token_url.clone()).form(&form))
    }
}

/// The federated token, read now. Reading a few kilobytes from the local volume the platform
/// mounts, once per token request (about hourly), blocks for microseconds: not worth a
/// blocking-pool hop.
fn read_federated_token(path: &Path) -> Result<SecretString, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        unusable(
            "federated_token_unreadable",
            format!(
                "cannot read the federated token file {}: {e}",
                path.display()
            ),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(unusable(
            "federated_token_unreadable",
            format!("the federated token file {} is empty", path.display()),
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// A credential that cannot be presented; never names key material or the token.
fn unusable(error: &str, description: String) -> TokenError {
    TokenError::Configuration {
        error: error.into(),
        error_codes: Vec::new(),
        description,
        trace_id: None,
        correlation_id: None,
    }
}

/// The body of Entra's error answer (every field optional: a proxy may answer instead).
#[derive(Default, Deserialize)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

/// Classifies Entra's non-2xx answer. The OAuth `error` value decides, with the status as
/// fallback; `error_codes` only make the alert readable.
pub(super) fn refusal(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<&str>,
    now: Timestamp,
) -> TokenError {
    let response: ErrorResponse = serde_json::from_slice(body).unwrap_or_default();
    tracing::warn!(
        token.status = status.as_u16(),
        token.error = response.error.as_deref().unwrap_or("-"),
        token.error_codes = ?response.error_codes,
        token.trace_id = response.trace_id.as_deref().unwrap_or("-"),
        token.correlation_id = response.correlation_id.as_deref().unwrap_or("-"),
        "token request refused"
    );
    if says_try_later(status) || response.error.as_deref() == Some("temporarily_unavailable") {
        return transient(status, response.error.as_deref(), retry_after, now);
    }
    // invalid_client, unauthorized_client, invalid_scope, invalid_request, anything else
    // refused with 400/401, and every status that should never come from a token endpoint
    // (404 from a wrong authority, say): retrying soon will not help, an operator must act.
    TokenError::Configuration {
        error: error_or_status(response.error, status),
        error_codes: response.error_codes,
        description: response.error_description.unwrap_or_default(),
        trace_id: response.trace_id,
        correlation_id: response.correlation_id,
    }
}
