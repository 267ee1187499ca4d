//! Shared fixtures: a fake Entra ID on 127.0.0.1 (wiremock), signing keys from PEM fixtures,
//! token builders and a clock the tests move by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cmp_application::{AuthenticationError, Caller, CallerKind, Clock};
use cmp_domain::Timestamp;
use cmp_entra_auth::{EntraAuthSettings, EntraAuthenticator, TokenVersion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The tenant most tests' callers belong to; allowed.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// A second allowed tenant.
pub const OTHER_TENANT: &str = "b1f4c6a2-3d5e-4f70-8a9b-1c2d3e4f5a6b";
/// A real-looking tenant that is not in the allow-list.
pub const FOREIGN_TENANT: &str = "0d3f6e2a-9b8c-4d7e-a6f5-4e3d2c1b0a99";
/// The personal Microsoft account tenant.
pub const PERSONAL_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// Our API's client id: the `aud` of v2 tokens for us.
pub const API_CLIENT_ID: &str = "6f0a3c2e-1b7d-4e55-9a8b-0c1d2e3f4a5b";
/// Our API's App ID URI: the `aud` of v1 tokens for us.
pub const API_APP_ID_URI: &str = "api://compliance-partners";
/// The calling client application.
pub const CALLER_APP_ID: &str = "c0ffee00-1111-4222-8333-944445555666";
/// The calling principal's object id.
pub const CALLER_OBJECT_ID: &str = "a9d1e0c7-2b3f-4c58-9e7d-6f5a4b3c2d1e";
/// The app role the seed's permission table asks for.
pub const ROLE: &str = "DeviceManagementServiceConfig.ReadWrite.All";

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct TestClock(AtomicI64);

impl TestClock {
    /// Starts at 2096-10-02T07:06:40Z, after the `exp` of every token the tests sign, so that
    /// no token is remembered as verified and every call runs every check; beyond that only
    /// its movements matter.
    pub fn new() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(4_000_000_000)))
    }

    /// Starts at the system clock's current second, which `exp`/`nbf` are checked against:
    /// for tests where the remembered tokens' expiry and the clock must agree.
    pub fn at_system_time() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(now())))
    }

    /// Moves the clock forward.
    pub fn advance_seconds(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.0.load(Ordering::SeqCst), 0).expect("in range")
    }
}

/// An RSA signing key from `tests/fixtures`, with the key id it is published under.
pub struct TestKey {
    pem: Vec<u8>,
    /// The `kid` of the key in the JWKS and token headers.
    pub kid: String,
    modulus: String,
    exponent: String,
    public_pem: String,
}

impl TestKey {
    /// Loads `tests/fixtures/{file}` (generated with `openssl genpkey -algorithm RSA
    /// -pkeyopt rsa_keygen_bits:2048`).
    pub fn load(file: &str, kid: &str) -> Self {
        let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        let pem = std::fs::read_to_string(&path).expect("fixture key");
        let key = rsa::PrivateKey::from_pkcs8_pem(&pem).expect("PKCS#8 RSA key");
        Self {
            pem: pem.clone().into_bytes(),
            kid: kid.to_owned(),
            modulus: URL_SAFE_NO_PAD.encode(key.n_bytes()),
            exponent: URL_SAFE_NO_PAD.encode(key.e_bytes()),
            public_pem: key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("public PEM"),
        }
    }

    /// The primary fixture key, `key-1`.
    pub fn primary() -> Self {
        Self::load("signing-key-1.pem", "key-1")
    }

    /// The second fixture key, `key-2` (rotation, foreign signer).
    pub fn secondary() -> Self {
        Self::load("signing-key-2.pem", "key-2")
    }

    /// The public key as a JWKS entry, shaped as Entra ID publishes it.
    pub fn jwk(&self) -> Value {
        json!({"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": self.modulus, "e": self.exponent})
    }

    /// The public key in SPKI PEM, for the HS256 key-confusion forgery.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Signs `claims` with RS256 under this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(Algorithm::RS256, Some(&self.kid), claims)
    }

    /// Signs `claims` with `algorithm` (an RSA one) and the given `kid` header.
    pub fn sign_with(&self, algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_rsa_pem(&self.pem).expect("signing key");
        jsonwebtoken::encode(&header, claims, &key).expect("signs")
    }
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

/// The v2 metadata path of `tenant`.
pub fn metadata_path(tenant: &str) -> String {
    format!("/{tenant}/v2.0/.well-known/openid-configuration")
}

/// The key-set path of `tenant`, as Entra ID names it.
pub fn jwks_path(tenant: &str) -> String {
    format!("/{tenant}/discovery/v2.0/keys")
}

/// Mounts `tenant`'s v2 metadata on `server`, pointing at [`jwks_path`].
pub async fn mount_metadata(server: &MockServer, tenant: &str) {
    Mock::given(method("GET"))
        .and(path(metadata_path(tenant)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": format!("{}/{tenant}/v2.0", server.uri()),
            "jwks_uri": format!("{}{}", server.uri(), jwks_path(tenant)),
        })))
        .named(format!("metadata of {tenant}"))
        .mount(server)
        .await;
}

/// Mounts `tenant`'s key set on `server`, answering `keys` every time.
pub async fn mount_jwks(server: &MockServer, tenant: &str, keys: &[&TestKey]) {
    Mock::given(method("GET"))
        .and(path(jwks_path(tenant)))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(keys)))
        .named(format!("keys of {tenant}"))
        .mount(server)
        .await;
}

/// A fake Entra ID serving [`TENANT`]'s metadata and no key set yet: the test mounts its own.
pub async fn entra_without_keys() -> MockServer {
    let server = MockServer::start().await;
    mount_metadata(&server, TENANT).await;
    server
}

/// A valid app-only token of [`TENANT`] from the Entra ID at `server`, signed with the primary
/// key.
pub fn app_token(server: &MockServer) -> String {
    TestKey::primary().sign(&app_claims(&server.uri(), TENANT))
}

/// A fake Entra ID serving `keys` for [`TENANT`].
pub async fn entra_serving(keys: &[&TestKey]) -> MockServer {
    let server = entra_without_keys().await;
    mount_jwks(&server, TENANT, keys).await;
    server
}

/// A mock answering `GET request_path` with `response`; the test sets its limits and mounts it.
pub fn answering(request_path: impl Into<String>, response: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path(request_path))
        .respond_with(response)
}

/// The reason `outcome` was refused for; panics if it was accepted.
pub fn refusal(outcome: Result<Caller, AuthenticationError>) -> String {
    outcome.expect_err("refused").reason
}

/// Asserts that `caller` is the application that [`app_claims`] describe, holding [`ROLE`].
pub fn assert_the_calling_application(caller: &Caller) {
    assert_eq!(caller.tenant_id, TENANT);
    assert_eq!(caller.object_id, CALLER_OBJECT_ID);
    assert_eq!(caller.app_id.as_deref(), Some(CALLER_APP_ID));
    assert_eq!(caller.kind, CallerKind::Application);
    assert_eq!(caller.permissions, vec![ROLE.to_owned()]);
}

/// How many requests `server` received for `request_path`.
pub async fn requests_to(server: &MockServer, request_path: &str) -> usize {
    server
        .received_requests()
        .await
        .expect("recording is on")
        .iter()
        .filter(|r| r.url.path() == request_path)
        .count()
}

/// v2 settings for a fake Entra ID at `authority`, allowing [`TENANT`] and [`OTHER_TENANT`].
pub fn settings(authority: &str) -> EntraAuthSettings {
    EntraAuthSettings {
        authority: authority.to_owned(),
        ..EntraAuthSettings::new(
            TokenVersion::V2,
            vec![API_CLIENT_ID.into()],
            vec![TENANT.into(), OTHER_TENANT.into()],
        )
    }
}

/// An authenticator against `server` with `clock`.
pub fn authenticator(server: &MockServer, clock: Arc<TestClock>) -> EntraAuthenticator {
    EntraAuthenticator::new(&settings(&server.uri()), clock).expect("valid settings")
}

/// Seconds since the Unix epoch by the system clock, which `exp`/`nbf` are checked against.
pub fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).expect("fits")
}

/// The claims of a valid v2 app-only token of `tenant` for our API, issued by `authority`.
/// It carries name and e-mail claims that must never identify the caller.
pub fn app_claims(authority: &str, tenant: &str) -> Value {
    let now = now();
    json!({
        "aud": API_CLIENT_ID,
        "iss": format!("{authority}/{tenant}/v2.0"),
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "ver": "2.0",
        "tid": tenant,
        "oid": CALLER_OBJECT_ID,
        "sub": CALLER_OBJECT_ID,
        "azp": CALLER_APP_ID,
        "azpacr": "1",
        "idtyp": "app",
        "roles": [ROLE],
        "name": "Contoso Admin",
        "preferred_username": "admin@contoso.example",
        "email": "admin@contoso.example",
        "upn": "admin@contoso.example",
        "unique_name": "admin@contoso.example",
    })
}

/// The claims of a valid v2 delegated token of `tenant` for our API.
pub fn delegated_claims(authority: &str, tenant: &str) -> Value {
    patched(
        &app_claims(authority, tenant),
        json!({
            "idtyp": "user",
            "roles": null,
            "scp": "DeviceManagementServiceConfig.ReadWrite.All  DeviceManagementConfiguration.Read.All",
        }),
    )
}

/// `base` with the members of `patch` set, and those set to `null` in `patch` removed.
pub fn patched(base: &Value, patch: Value) -> Value {
    let mut claims = base.clone();
    let target = claims.as_object_mut().expect("claims object");
    for (name, value) in patch.as_object().expect("patch object") {
        if value.is_null() {
            target.remove(name);
        } else {
            target.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// Base64url of a JSON value, for hand-made tokens.
pub fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}
