//! Forged bearer tokens (`docs/auth.md`, "The checks, in order"): each is refused with its
//! status, Graph error code and `WWW-Authenticate` challenge, none is echoed back, and none
//! writes anything.
//! Then the positive controls: well-formed tokens of each caller kind get through, and the
//! development key set is published.
//!
//! Tokens are forged here with jsonwebtoken and the fixture key the instances load, with
//! headers and claims built by hand, so that each case breaks exactly one thing.

use cmp_entra_auth::{DevelopmentSigner, PERSONAL_ACCOUNT_TENANT_ID};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{
    DEVELOPMENT_PRIVATE_KEY, DEVELOPMENT_PUBLIC_KEY, SEED_REQUEST, TestApp, header, json_body,
    spawn_app,
};

const WRITE_PERMISSION: &str = "DeviceManagementServiceConfig.ReadWrite.All";
const READ_PERMISSION: &str = "DeviceManagementServiceConfig.Read.All";

/// The object id of the forged callers.
const CALLER_OBJECT_ID: &str = "5e1f0c2a-3b4d-4e6f-8a9b-0c1d2e3f4a5b";

/// A well-formed tenant that is not in `allowed_tenants`.
const FOREIGN_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Another API's client id.
const FOREIGN_AUDIENCE: &str = "11111111-2222-3333-4444-555555555555";

/// The challenge of a 401 for a token that was sent but is not acceptable.
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

/// The challenge of a 401 when no usable `Authorization` header was sent.
const NO_TOKEN: &str = "Bearer";

/// The challenge of a 403.
const INSUFFICIENT_SCOPE: &str = r#"Bearer error="insufficient_scope""#;

/// Mints tokens the way Entra ID would for the instance under test, and every way it would not.
struct Forge {
    tenant: String,
    audience: String,
    authority: String,
    kid: String,
    key: EncodingKey,
}

impl Forge {
    fn new(app: &TestApp) -> Self {
        let entra = &app.settings.auth.entra;
        let signer = DevelopmentSigner::load_or_create(&app.settings.auth.development_key_dir)
            .expect("the instance's key loads");
        Self {
            tenant: entra.allowed_tenants[0].clone(),
            audience: entra.audiences[0].clone(),
            authority: entra.authority.trim_end_matches('/').to_owned(),
            kid: signer.kid().to_owned(),
            key: EncodingKey::from_rsa_pem(DEVELOPMENT_PRIVATE_KEY.as_bytes())
                .expect("the fixture key is an RSA PEM"),
        }
    }

    /// The v2 issuer of `tenant`.
    fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.authority)
    }

    /// Claims of a v2 app-only token of an allowed tenant for our API, valid for an hour.
    fn app_claims(&self, roles: &[&str]) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "aud": self.audience,
            "iss": self.issuer(&self.tenant),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "ver": "2.0",
            "tid": self.tenant,
            "oid": CALLER_OBJECT_ID,
            "sub": CALLER_OBJECT_ID,
            "azp": "0f1e2d3c-4b5a-4968-8776-655443322110",
            "idtyp": "app",
            "roles": roles,
        })
    }

    /// Claims of a v2 delegated token with the scopes `scp` and no `idtyp`, as Entra ID issues
    /// them when the optional claim is not configured.
    fn delegated_claims(&self, scp: &str) -> Value {
        let mut claims = self.app_claims(&[]);
        let object = claims.as_object_mut().expect("an object");
        object.remove("idtyp");
        object.remove("roles");
        object.insert("scp".into(), Value::from(scp));
        claims
    }

    /// A token of `claims` moved to `tenant`: its `tid`, and an issuer consistent with it.
    fn token_of_tenant(&self, claims: &Value, tenant: &str) -> String {
        self.token(&with(
            with(claims.clone(), "tid", json!(tenant)),
            "iss",
            json!(self.issuer(tenant)),
        ))
    }

    /// An RS256 header naming our key.
    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header
    }

    /// `claims` signed with the fixture key under `header`.
    fn sign(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.key).expect("the fixture key signs")
    }

    /// `claims` signed as Entra ID would sign them.
    fn token(&self, claims: &Value) -> String {
        self.sign(&self.header(), claims)
    }
}

/// `claims` with `key` set to `value`.
fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// `claims` without `key`.
fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("an object").remove(key);
    claims
}

/// A compact JWS assembled by hand, for headers jsonwebtoken refuses to produce.
fn hand_built(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    )
}

/// Base64url without padding (RFC 7515, section 2); the root package has no base64 dependency.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let index = (group >> (18 - 6 * i)) & 0x3f;
            text.push(char::from(ALPHABET[index as usize]));
        }
    }
    text
}

struct Case {
    name: &'static str,
    /// The `Authorization` header value, or none.
    authorization: Option<String>,
    status: u16,
    code: &'static str,
    challenge: &'static str,
    /// A phrase of the message naming the check that refused the token, so that each case is
    /// known to fail the check it was forged for and not an earlier one.
    reason: &'static str,
}

/// A token refused as invalid for `reason`: 401 with `error="invalid_token"`.
fn refused(name: &'static str, reason: &'static str, token: String) -> Case {
    Case {
        name,
        authorization: Some(format!("Bearer {token}")),
        status: 401,
        code: "InvalidAuthenticationToken",
        challenge: INVALID_TOKEN,
        reason,
    }
}

/// A valid token without the permission a write needs: 403 with `error="insufficient_scope"`.
fn forbidden(name: &'static str, token: String) -> Case {
    Case {
        name,
        authorization: Some(format!("Bearer {token}")),
        status: 403,
        code: "Authorization_RequestDenied",
        challenge: INSUFFICIENT_SCOPE,
        reason: "the token needs DeviceManagementServiceConfig.ReadWrite.All",
    }
}

fn cases(forge: &Forge) -> Vec<Case> {
    let valid = forge.app_claims(&[WRITE_PERMISSION]);
    let now = jsonwebtoken::get_current_timestamp();
    let spliced = {
        // Our key's signature over a read-only token, carrying a payload that grants writes.
        let signed = forge.token(&forge.app_claims(&[READ_PERMISSION]));
        let upgraded = forge.token(&valid);
        let signed: Vec<&str> = signed.split('.').collect();
        let upgraded: Vec<&str> = upgraded.split('.').collect();
        format!("{}.{}.{}", signed[0], upgraded[1], signed[2])
    };
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(forge.kid.clone());
    let public_key_as_secret = EncodingKey::from_secret(DEVELOPMENT_PUBLIC_KEY.as_bytes())
        .expect("any bytes are an HMAC secret");
    let mut unknown_kid = forge.header();
    unknown_kid.kid = Some("bm90LW91ci1rZXk".into());
    let mut no_kid = forge.header();
    no_kid.kid = None;
    let mut rs512 = Header::new(Algorithm::RS512);
    rs512.kid = Some(forge.kid.clone());
    let v1 = {
        let claims = with(valid.clone(), "ver", json!("1.0"));
        let claims = with(
            claims,
            "iss",
            json!(format!("https://sts.windows.net/{}/", forge.tenant)),
        );
        let claims = without(claims, "azp");
        with(
            claims,
            "appid",
            json!("0f1e2d3c-4b5a-4968-8776-655443322110"),
        )
    };

    vec![
        Case {
            name: "no Authorization header",
            authorization: None,
            status: 401,
            code: "InvalidAuthenticationToken",
            challenge: NO_TOKEN,
            reason: "Access token is empty",
        },
        Case {
            name: "Basic scheme",
            authorization: Some("Basic ZGV2ZWxvcGVyOnMzY3JldC1wYXNzd29yZA==".into()),
            status: 401,
            code: "InvalidAuthenticationToken",
            challenge: NO_TOKEN,
            reason: "must be 'Bearer <token>'",
        },
        refused(
            "garbage token",
            "token malformed",
            "this-is-not-a-jwt-at-all".into(),
        ),
        refused(
            "alg none with an empty signature",
            "algorithm not accepted",
            hand_built(
                &json!({"alg": "none", "typ": "JWT", "kid": forge.kid}),
                &valid,
                "",
            ),
        ),
        refused(
            "HS256 signed with the public key as the secret",
            "algorithm not accepted",
            jsonwebtoken::encode(&hs256, &valid, &public_key_as_secret).expect("HS256 signs"),
        ),
        refused(
            "RS512 signed with our own key",
            "algorithm not accepted",
            forge.sign(&rs512, &valid),
        ),
        refused(
            "unknown kid",
            "unknown signing key",
            forge.sign(&unknown_kid, &valid),
        ),
        refused("missing kid", "missing key id", forge.sign(&no_kid, &valid)),
        refused(
            "tampered payload under a genuine signature",
            "invalid signature",
            spliced,
        ),
        refused(
            "expired an hour ago",
            "token expired",
            forge.token(&with(
                with(
                    with(valid.clone(), "exp", json!(now - 3600)),
                    "nbf",
                    json!(now - 7200),
                ),
                "iat",
                json!(now - 7200),
            )),
        ),
        refused(
            "not valid before an hour from now",
            "token not yet valid",
            forge.token(&with(
                with(valid.clone(), "nbf", json!(now + 3600)),
                "exp",
                json!(now + 7200),
            )),
        ),
        refused(
            "no expiry",
            "missing expiry",
            forge.token(&without(valid.clone(), "exp")),
        ),
        refused(
            "another API's audience",
            "audience not accepted",
            forge.token(&with(valid.clone(), "aud", json!(FOREIGN_AUDIENCE))),
        ),
        refused(
            "Graph's audience as a URI",
            "token is for microsoft graph",
            forge.token(&with(
                valid.clone(),
                "aud",
                json!("https://graph.microsoft.com"),
            )),
        ),
        refused(
            "Graph's audience as an application id",
            "token is for microsoft graph",
            forge.token(&with(
                valid.clone(),
                "aud",
                json!("00000003-0000-0000-c000-000000000000"),
            )),
        ),
        refused(
            "two audiences, ours among them",
            "audience not accepted",
            forge.token(&with(
                valid.clone(),
                "aud",
                json!([forge.audience, FOREIGN_AUDIENCE]),
            )),
        ),
        refused(
            "issuer on another host",
            "issuer not accepted",
            forge.token(&with(
                valid.clone(),
                "iss",
                json!(format!("https://login.example.net/{}/v2.0", forge.tenant)),
            )),
        ),
        refused(
            "issuer naming another tenant than tid",
            "issuer not accepted",
            forge.token(&with(
                valid.clone(),
                "iss",
                json!(forge.issuer(FOREIGN_TENANT)),
            )),
        ),
        refused(
            "tenant not allowed, issuer consistent",
            "tenant not allowed",
            forge.token_of_tenant(&valid, FOREIGN_TENANT),
        ),
        refused(
            "personal-account tenant",
            "personal microsoft accounts are not accepted",
            forge.token_of_tenant(&valid, PERSONAL_ACCOUNT_TENANT_ID),
        ),
        refused(
            "tenant id not a GUID",
            "tenant id is not a guid",
            forge.token_of_tenant(&valid, "contoso.onmicrosoft.com"),
        ),
        refused(
            "v1 token while v2 is pinned",
            "token version not accepted",
            forge.token(&v1),
        ),
        refused(
            "20 KiB token",
            "token too large",
            forge.token(&with(
                valid.clone(),
                "padding",
                json!("p".repeat(20 * 1024)),
            )),
        ),
        forbidden(
            "app token without any role",
            forge.token(&without(valid.clone(), "roles")),
        ),
        forbidden(
            "read-only role on a write",
            forge.token(&forge.app_claims(&[READ_PERMISSION])),
        ),
        forbidden(
            "delegated token with User.Read only",
            forge.token(&forge.delegated_claims("User.Read")),
        ),
    ]
}

/// POSTs the seed request with `authorization` as the `Authorization` header (or none).
async fn post_seed(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let request = cmp_fake_graph::http_client()
        .post(app.collection_url())
        .header("Content-Type", "application/json")
        .body(SEED_REQUEST);
    let request = match authorization {
        Some(value) => request.header("Authorization", value),
        None => request,
    };
    request.send().await.expect("the request is answered")
}

#[tokio::test]
async fn forged_tokens_are_refused_with_graphs_errors_and_write_nothing() {
    let app = spawn_app().await;
    let forge = Forge::new(&app);
    let cases = cases(&forge);
    assert!(cases.len() >= 20, "the battery has {} cases", cases.len());

    for case in &cases {
        let response = post_seed(&app, case.authorization.as_deref()).await;

        assert_eq!(
            response.status().as_u16(),
            case.status,
            "case: {}",
            case.name
        );
        assert_eq!(
            header(&response, "www-authenticate"),
            case.challenge,
            "case: {}",
            case.name
        );
        let request_id = header(&response, "request-id");
        let body = json_body(response).await;
        let error = &body["error"];
        assert_eq!(error["code"], case.code, "case: {} ({body})", case.name);
        assert_eq!(
            error["innerError"]["request-id"],
            Value::String(request_id),
            "case: {}",
            case.name
        );
        let message = error["message"].as_str().expect("a message");
        assert!(
            message.contains(case.reason),
            "case: {}: refused for another reason: {message}",
            case.name
        );
        if let Some(authorization) = &case.authorization {
            let credential = authorization
                .split_once(' ')
                .map_or(authorization.as_str(), |(_, credential)| credential);
            assert!(
                !message.contains(credential),
                "case: {}: the message repeats the token",
                case.name
            );
            for segment in credential.split('.').filter(|s| s.len() >= 16) {
                assert!(
                    !message.contains(segment),
                    "case: {}: the message repeats part of the token",
                    case.name
                );
            }
        }
    }

    for (table, rows) in app.table_counts().await {
        assert_eq!(rows, 0, "table {table} must be empty after the battery");
    }
}

#[tokio::test]
async fn a_valid_app_token_creates_and_the_audit_log_names_its_tenant_and_object_id() {
    let app = spawn_app().await;
    let forge = Forge::new(&app);
    let token = forge.token(&forge.app_claims(&[WRITE_PERMISSION]));

    let response = post_seed(&app, Some(&format!("Bearer {token}"))).await;

    assert_eq!(response.status(), 201);
    assert_eq!(
        app.audit_callers().await,
        vec![format!("app:{}/{CALLER_OBJECT_ID}", forge.tenant)]
    );
}

#[tokio::test]
async fn a_delegated_token_with_the_write_scope_creates() {
    let app = spawn_app().await;
    let forge = Forge::new(&app);
    let token = forge.token(&forge.delegated_claims(&format!("User.Read {WRITE_PERMISSION}")));

    let response = post_seed(&app, Some(&format!("Bearer {token}"))).await;

    assert_eq!(response.status(), 201);
    assert_eq!(
        app.audit_callers().await,
        vec![format!("user:{}/{CALLER_OBJECT_ID}", forge.tenant)]
    );
}

#[tokio::test]
async fn a_read_only_token_can_get_a_created_partner() {
    let app = spawn_app().await;
    let forge = Forge::new(&app);
    let created = json_body(app.post_partner(SEED_REQUEST).await).await;
    let id = created["id"].as_str().expect("id");
    let read_only = forge.token(&forge.app_claims(&[READ_PERMISSION]));

    let response = cmp_fake_graph::http_client()
        .get(format!("{}/{id}", app.collection_url()))
        .bearer_auth(read_only)
        .send()
        .await
        .expect("GET reaches the service");

    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await, created);
}

#[tokio::test]
async fn the_development_key_set_answers_inside_the_graph_envelope() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let url = app.url_outside_root("/development/keys");

    let read = client
        .get(&url)
        .header("client-request-id", "keys-check")
        .send()
        .await
        .expect("GET reaches the service");
    let wrong_method = client
        .post(&url)
        .send()
        .await
        .expect("POST reaches the service");

    assert_eq!(read.status(), 200);
    assert!(!header(&read, "request-id").is_empty(), "{read:?}");
    assert_eq!(header(&read, "client-request-id"), "keys-check");
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(header(&wrong_method, "allow"), "GET");
    let request_id = header(&wrong_method, "request-id");
    let body = json_body(wrong_method).await;
    assert_eq!(body["error"]["code"], "BadRequest", "{body}");
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        request_id.as_str()
    );
}

#[tokio::test]
async fn the_development_key_set_is_served_outside_the_root_without_authentication() {
    let app = spawn_app().await;
    let forge = Forge::new(&app);

    let response = cmp_fake_graph::http_client()
        .get(app.url_outside_root("/development/keys"))
        .send()
        .await
        .expect("GET reaches the service");

    assert_eq!(response.status(), 200);
    let jwks = json_body(response).await;
    let keys = jwks["keys"].as_array().expect("a JWKS has keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kid"], forge.kid.as_str());
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(
        keys[0].get("d").is_none(),
        "the private exponent is never published"
    );
}
