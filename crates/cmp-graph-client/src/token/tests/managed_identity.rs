//! Managed identity: the instance metadata form and the App Service form, each against a fake
//! identity endpoint on 127.0.0.1.

use crate::settings::ManagedIdentityEndpoint;

use super::*;

/// The instance metadata service's token path.
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// A typical App Service identity path.
const APP_SERVICE_PATH: &str = "/msi/token";
/// The App Service identity header the platform would set.
const IDENTITY_HEADER: &str = "identity-header-value";
/// A user-assigned identity's client id.
const USER_ASSIGNED: &str = "99999999-8888-7777-6666-555555555555";

/// Which form of endpoint a test runs against.
#[derive(Debug, Clone, Copy)]
enum Form {
    InstanceMetadata,
    AppService,
}

impl Form {
    fn endpoint(self, server_uri: &str) -> ManagedIdentityEndpoint {
        match self {
            Self::InstanceMetadata => ManagedIdentityEndpoint::InstanceMetadata(
                Url::parse(&format!("{server_uri}{IMDS_PATH}")).expect("url"),
            ),
            Self::AppService => ManagedIdentityEndpoint::AppService {
                url: Url::parse(&format!("{server_uri}{APP_SERVICE_PATH}")).expect("url"),
                header: SecretString::from(IDENTITY_HEADER),
            },
        }
    }
}

/// A provider for the identity of `form`; `client_id` empty for the system-assigned one.
async fn identity(form: Form, client_id: &str) -> Harness {
    let client_id = client_id.to_owned();
    Harness::build(
        |uri| Credential::ManagedIdentity(form.endpoint(uri)),
        |config| config.client_id = client_id,
    )
    .await
}

/// What the identity endpoints answer: strings for every number, as they send them.
fn identity_response(token: &str, expires_on: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": token,
        "client_id": USER_ASSIGNED,
        "expires_in": (expires_on - START_SECONDS).to_string(),
        "expires_on": expires_on.to_string(),
        "ext_expires_in": (expires_on - START_SECONDS).to_string(),
        "not_before": START_SECONDS.to_string(),
        "resource": "https://graph.microsoft.com",
        "token_type": "Bearer",
    }))
}

/// The query of a received request, as a map.
fn query_of(request: &Request) -> BTreeMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

fn header_of<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn each_form_sends_a_get_with_its_api_version_header_resource_and_client_id() {
    let cases = [
        (
            "instance metadata, system-assigned",
            Form::InstanceMetadata,
            "",
            IMDS_PATH,
            "2018-02-01",
            ("metadata", "true"),
        ),
        (
            "instance metadata, user-assigned",
            Form::InstanceMetadata,
            USER_ASSIGNED,
            IMDS_PATH,
            "2018-02-01",
            ("metadata", "true"),
        ),
        (
            "App Service, system-assigned",
            Form::AppService,
            "",
            APP_SERVICE_PATH,
            "2019-08-01",
            ("x-identity-header", IDENTITY_HEADER),
        ),
        (
            "App Service, user-assigned",
            Form::AppService,
            USER_ASSIGNED,
            APP_SERVICE_PATH,
            "2019-08-01",
            ("x-identity-header", IDENTITY_HEADER),
        ),
    ];
    for (case, form, client_id, expected_path, api_version, (header, value)) in cases {
        let h = identity(form, client_id).await;
        h.answer(identity_response("mi-token", START_SECONDS + 3600), 1)
            .await;

        let token = h.provider.token(None).await.expect(case);

        assert_eq!(token.bearer(), "mi-token", "{case}");
        assert_eq!(token.expires_at(), h.after(3600), "{case}: from expires_on");
        let requests = h.requests().await;
        assert_eq!(requests.len(), 1, "{case}");
        let request = &requests[0];
        assert_eq!(request.method.as_str(), "GET", "{case}");
        assert_eq!(request.url.path(), expected_path, "{case}");
        let mut expected_query = vec![
            ("api-version", api_version),
            ("resource", "https://graph.microsoft.com"),
        ];
        if !client_id.is_empty() {
            expected_query.push(("client_id", client_id));
        }
        assert_eq!(query_of(request), map_of(&expected_query), "{case}");
        assert_eq!(header_of(request, header), Some(value), "{case}");
        assert!(request.body.is_empty(), "{case}: no body");
        h.server.verify().await;
    }
}

#[tokio::test]
async fn a_managed_identity_token_is_cached_and_refreshed_after_expiry() {
    let h = identity(Form::AppService, "").await;
    h.answer(identity_response("mi-token-1", START_SECONDS + 3600), 1)
        .await;
    h.answer(identity_response("mi-token-2", START_SECONDS + 7200), 1)
        .await;

    let [first, at_the_margin, refreshed] = tokens_around_the_refresh_margin(&h).await;

    assert_eq!(first, "mi-token-1");
    assert_eq!(at_the_margin, "mi-token-1");
    assert_eq!(refreshed, "mi-token-2");
    assert_eq!(h.request_count().await, 2);
    h.server.verify().await;
}

#[tokio::test]
async fn a_claims_challenge_gets_a_fresh_managed_identity_token_without_the_claims() {
    let h = identity(Form::InstanceMetadata, "").await;
    h.answer(identity_response("mi-token-1", START_SECONDS + 3600), 1)
        .await;
    h.answer(identity_response("mi-token-2", START_SECONDS + 3600), 1)
        .await;
    assert_eq!(h.token().await.expect("first"), "mi-token-1");

    let challenged = h.provider.token(Some(CLAIMS)).await.expect("a new token");

    assert_eq!(challenged.bearer(), "mi-token-2");
    let requests = h.requests().await;
    assert_eq!(requests.len(), 2);
    assert!(
        !query_of(&requests[1]).contains_key("claims"),
        "the identity endpoints take no claims"
    );
}

#[tokio::test]
async fn identity_endpoint_failures_are_classified_like_every_token_error() {
    let cases = [
        (
            "400 identity not found",
            ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_request",
                "error_description": "Identity not found"
            })),
            Err("invalid_request"),
        ),
        (
            "403 App Service refusal",
            ResponseTemplate::new(403).set_body_json(json!({
                "statusCode": 403,
                "message": "The identity header is not valid.",
                "correlationId": "c0ffee"
            })),
            Err("HTTP 403"),
        ),
        (
            "404 wrong endpoint",
            ResponseTemplate::new(404),
            Err("HTTP 404"),
        ),
        (
            "410 metadata service updating",
            ResponseTemplate::new(410),
            Ok(60),
        ),
        (
            "429 with Retry-After",
            ResponseTemplate::new(429).insert_header("Retry-After", "30"),
            Ok(30),
        ),
        ("500", ResponseTemplate::new(500), Ok(60)),
        (
            "503 with Retry-After",
            ResponseTemplate::new(503).insert_header("Retry-After", "5"),
            Ok(5),
        ),
    ];
    for form in [Form::InstanceMetadata, Form::AppService] {
        for (case, response, expected) in cases.clone() {
            let h = identity(form, "").await;
            h.answer(response, 1).await;

            let result = h.token().await;

            match expected {
                Err(expected_error) => {
                    let (error, codes) = configuration_error(result);
                    assert_eq!(error, expected_error, "{form:?} {case}");
                    assert!(codes.is_empty(), "{form:?} {case}");
                }
                Ok(seconds) => {
                    let retry_at = transient_retry_at(result);
                    assert_eq!(retry_at, h.after(seconds), "{form:?} {case}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_refusal_backs_off_60_seconds_and_the_next_request_may_succeed() {
    let h = identity(Form::InstanceMetadata, USER_ASSIGNED).await;
    h.answer(
        ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request",
            "error_description": "Identity not found"
        })),
        1,
    )
    .await;
    h.answer(identity_response("mi-token", START_SECONDS + 7200), 1)
        .await;

    let first = h.token().await;
    h.clock.advance(59);
    let within_backoff = h.token().await;
    let requests_within_backoff = h.request_count().await;
    h.clock.advance(2);
    let after_backoff = h.token().await;

    let Err(TokenError::Configuration { description, .. }) = &first else {
        panic!("expected a configuration error, got {first:?}")
    };
    assert_eq!(description, "Identity not found");
    assert_eq!(within_backoff, first, "the remembered error, unchanged");
    assert_eq!(requests_within_backoff, 1, "no request within 60 s");
    assert_eq!(after_backoff.expect("a token after 61 s"), "mi-token");
    h.server.verify().await;
}

#[tokio::test]
async fn debug_output_never_shows_the_identity_header() {
    let h = identity(Form::AppService, "").await;
    h.answer(identity_response("mi-token", START_SECONDS + 3600), 1)
        .await;

    let token = h.provider.token(None).await.expect("a token");
    let text = format!("{:?} {token:?} {:?}", h.provider, h.config);

    assert!(!text.contains(IDENTITY_HEADER), "{text}");
    assert!(!text.contains("mi-token"), "{text}");
    assert!(text.contains("managed identity (App Service)"), "{text}");
}

#[test]
fn an_identity_header_no_http_header_can_carry_is_refused_when_the_provider_is_built() {
    let config = config(
        "http://127.0.0.1:9",
        Credential::ManagedIdentity(ManagedIdentityEndpoint::AppService {
            url: Url::parse("http://127.0.0.1:9/msi/token").expect("url"),
            header: SecretString::from("line\nbreak"),
        }),
    );

    let error = TokenProvider::new(reqwest::Client::new(), &config, Arc::new(TestClock::new()))
        .expect_err("unusable header");

    assert!(error.to_string().contains("IDENTITY_HEADER"), "{error}");
    assert!(!error.to_string().contains("line"), "{error}");
}
