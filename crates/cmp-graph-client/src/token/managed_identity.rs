//! Tokens of an Azure managed identity, from the platform's identity endpoint: the instance
//! metadata service (`Metadata: true`, api-version 2018-02-01) or the App Service form
//! (`X-IDENTITY-HEADER`, api-version 2019-08-01). Both are a GET with the resource and, for a
//! user-assigned identity, its client id; both answer with `access_token` and `expires_on`
//! and/or `expires_in`.

use cmp_domain::Timestamp;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use super::response::{error_or_status, says_try_later, transient};
use super::{InvalidCredential, TokenError};
use crate::settings::ManagedIdentityEndpoint;

/// The API version of the instance metadata service's token endpoint.
const INSTANCE_METADATA_API_VERSION: &str = "2018-02-01";

/// The API version of the App Service identity endpoint.
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// The header App Service checks against `IDENTITY_HEADER`.
const IDENTITY_HEADER: &str = "X-IDENTITY-HEADER";

/// A managed identity asking its platform for tokens of one resource.
pub(super) struct ManagedIdentity {
    /// The identity endpoint.
    url: Url,
    /// The form's API version.
    api_version: &'static str,
    /// The header the form requires: `Metadata: true`, or `X-IDENTITY-HEADER` (sensitive).
    header: (&'static str, HeaderValue),
    /// The form, for logs and `Debug` output.
    name: &'static str,
    /// The resource (Graph's host URL): these endpoints take the v1 `resource`, not a scope.
    resource: String,
    /// The user-assigned identity's client id; `None` for the system-assigned identity.
    client_id: Option<String>,
}

impl ManagedIdentity {
    /// The identity at `endpoint`, asking for tokens of `resource`.
    ///
    /// # Errors
    /// [`InvalidCredential`] when `IDENTITY_HEADER` holds characters no header can carry.
    pub(super) fn new(
        endpoint: &ManagedIdentityEndpoint,
        resource: String,
        client_id: Option<String>,
    ) -> Result<Self, InvalidCredential> {
        let (api_version, header, name) = match endpoint {
            ManagedIdentityEndpoint::InstanceMetadata(_) => (
                INSTANCE_METADATA_API_VERSION,
                ("Metadata", HeaderValue::from_static("true")),
                "managed identity (instance metadata)",
            ),
            ManagedIdentityEndpoint::AppService { header, .. } => {
                let mut value = HeaderValue::from_str(header.expose_secret()).map_err(|_| {
                    InvalidCredential::new(
                        "IDENTITY_HEADER holds characters an HTTP header cannot carry",
                    )
                })?;
                // Keeps it out of reqwest's and hyper's debug output.
                value.set_sensitive(true);
                (
                    APP_SERVICE_API_VERSION,
                    (IDENTITY_HEADER, value),
                    "managed identity (App Service)",
                )
            }
        };
        Ok(Self {
            url: endpoint.url().clone(),
            api_version,
            header,
            name,
            resource,
            client_id,
        })
    }

    /// The form's name, for logs and `Debug` output.
    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    /// The token request. These endpoints take no `claims`: after a Graph challenge the
    /// provider asks for a fresh token without them, which is all a managed identity can do.
    pub(super) fn request(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        let mut url = self.url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("api-version", self.api_version)
                .append_pair("resource", &self.resource);
            if let Some(client_id) = &self.client_id {
                query.append_pair("client_id", client_id);
            }
        }
        let (name, value) = &self.header;
        http.get(url).header(*name, value.clone())
    }

    /// Classifies the endpoint's non-2xx answer: throttling (429), "try again" (408, 410:
    /// the metadata service is updating) and server errors are transient; everything else
    /// (400 identity not found, 401, 403, 404 wrong endpoint) is our configuration.
    pub(super) fn refusal(
        &self,
        status: StatusCode,
        body: &[u8],
        retry_after: Option<&str>,
        now: Timestamp,
    ) -> TokenError {
        let response: ErrorResponse = serde_json::from_slice(body).unwrap_or_default();
        let description = response.error_description.or(response.message);
        tracing::warn!(
            token.status = status.as_u16(),
            token.error = response.error.as_deref().unwrap_or("-"),
            token.correlation_id = response.correlation_id.as_deref().unwrap_or("-"),
            token.credential = self.name,
            "managed identity token request refused"
        );
        if says_try_later(status) || status == StatusCode::GONE {
            return transient(status, response.error.as_deref(), retry_after, now);
        }
        TokenError::Configuration {
            error: error_or_status(response.error, status),
            error_codes: Vec::new(),
            description: description.unwrap_or_default(),
            trace_id: None,
            correlation_id: response.correlation_id,
        }
    }
}

/// The body of an error answer. The metadata service answers in OAuth's shape (`error`,
/// `error_description`); App Service with `message` and `correlationId`.
#[derive(Default, Deserialize)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
    #[serde(rename = "correlationId")]
    correlation_id: Option<String>,
}
