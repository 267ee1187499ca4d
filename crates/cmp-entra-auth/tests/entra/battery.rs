//! The forged-token battery, one case per way a token can fail the checks of `docs/auth.md`
//! ("The checks, in order", numbered as there), and the callers that valid tokens become.

use cmp_application::{CallerAuthenticator, CallerKind};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use wiremock::MockServer;

use crate::support::*;

/// A fake Entra ID serving `key-1` for both allowed tenants.
async fn entra() -> MockServer {
    let server = MockServer::start().await;
    for tenant in [TENANT, OTHER_TENANT] {
        mount_metadata(&server, tenant).await;
        mount_jwks(&server, tenant, &[&TestKey::primary()]).await;
    }
    server
}

#[tokio::test]
async fn forged_tokens_are_refused_with_their_reason_and_valid_ones_accepted() {
    let server = entra().await;
    let auth = authenticator(&server, TestClock::new());
    let key = TestKey::primary();
    let other_key = TestKey::secondary();
    let authority = server.uri();
    let valid = app_claims(&authority, TENANT);
    let now = now();
    let valid_token = key.sign(&valid);
    let tampered_token = {
        let mut parts: Vec<String> = valid_token.split('.').map(str::to_owned).collect();
        parts[1] = segment(&patched(
            &valid,
            json!({"roles": ["Directory.ReadWrite.All"]}),
        ));
        parts.join(".")
    };
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let secret = EncodingKey::from_secret(key.public_pem().as_bytes()).expect("secret");
        jsonwebtoken::encode(&header, &valid, &secret).expect("signs")
    };
    let alg_none = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "typ": "JWT", "kid": key.kid})),
        segment(&valid)
    );
    let es256_header = format!(
        "{}.{}.c2lnbmF0dXJl",
        segment(&json!({"alg": "ES256", "typ": "JWT", "kid": key.kid})),
        segment(&valid)
    );
    let signature_removed = {
        let (signed_part, _) = valid_token.rsplit_once('.').expect("three parts");
        format!("{signed_part}.")
    };
    let claims = |patch: serde_json::Value| key.sign(&patched(&valid, patch));

    let cases: Vec<(&str, String, Result<(), &str>)> = vec![
        // Check 1 leftovers and unreadable tokens.
        ("no token", String::new(), Err("missing bearer token")),
        ("whitespace", " ".into(), Err("token malformed")),
        ("garbage", "not-a-jwt".into(), Err("token malformed")),
        (
            "three garbage segments",
            "a.b.c".into(),
            Err("token malformed"),
        ),
        (
            "scheme left in",
            format!("Bearer {valid_token}"),
            Err("token malformed"),
        ),
        (
            "five segments (JWE)",
            format!("{valid_token}.x.y"),
            Err("token malformed"),
        ),
        (
            "oversized",
            format!("{valid_token}{}", "A".repeat(20_000)),
            Err("token too large"),
        ),
        // Check 2: algorithm and kid.
        ("alg none", alg_none, Err("algorithm not accepted")),
        (
            "HS256 signed with the public key",
            hs256_with_public_key,
            Err("algorithm not accepted"),
        ),
        (
            "RS384 header, genuinely signed",
            key.sign_with(Algorithm::RS384, Some(&key.kid), &valid),
            Err("algorithm not accepted"),
        ),
        ("ES256 header", es256_header, Err("algorithm not accepted")),
        (
            "missing kid",
            key.sign_with(Algorithm::RS256, None, &valid),
            Err("missing key id"),
        ),
        (
            "empty kid",
            key.sign_with(Algorithm::RS256, Some(""), &valid),
            Err("missing key id"),
        ),
        // Check 3: the tenant, on the unverified tid before any key lookup.
        (
            "tenant not allowed",
            claims(
                json!({"tid": FOREIGN_TENANT, "iss": format!("{authority}/{FOREIGN_TENANT}/v2.0")}),
            ),
            Err("tenant not allowed"),
        ),
        (
            "personal-account tenant",
            claims(
                json!({"tid": PERSONAL_TENANT, "iss": format!("{authority}/{PERSONAL_TENANT}/v2.0")}),
            ),
            Err("personal microsoft accounts are not accepted"),
        ),
        (
            "tid not a guid",
            claims(json!({"tid": "contoso.onmicrosoft.com"})),
            Err("tenant id is not a guid"),
        ),
        (
            "tid without hyphens",
            claims(json!({"tid": TENANT.replace('-', "")})),
            Err("tenant id is not a guid"),
        ),
        (
            "missing tid",
            claims(json!({"tid": null})),
            Err("missing tenant id"),
        ),
        // Checks 4 and 5: key and signature.
        (
            "unknown kid",
            other_key.sign_with(Algorithm::RS256, Some("key-unknown"), &valid),
            Err("unknown signing key"),
        ),
        (
            "our kid, another key's signature",
            other_key.sign_with(Algorithm::RS256, Some(&key.kid), &valid),
            Err("invalid signature"),
        ),
        ("payload tampered", tampered_token, Err("invalid signature")),
        (
            "signature removed",
            signature_removed,
            Err("invalid signature"),
        ),
        // Check 6: lifetime, with 60 s leeway.
        (
            "expired beyond the leeway",
            claims(json!({"iat": now - 4000, "nbf": now - 4000, "exp": now - 600})),
            Err("token expired"),
        ),
        (
            "expired within the leeway",
            claims(json!({"iat": now - 4000, "nbf": now - 4000, "exp": now - 30})),
            Ok(()),
        ),
        (
            "not yet valid",
            claims(json!({"iat": now, "nbf": now + 600, "exp": now + 4000})),
            Err("token not yet valid"),
        ),
        (
            "nbf within the leeway",
            claims(json!({"iat": now, "nbf": now + 30, "exp": now + 4000})),
            Ok(()),
        ),
        (
            "missing exp",
            claims(json!({"exp": null})),
            Err("missing expiry"),
        ),
        (
            "missing nbf",
            claims(json!({"nbf": null})),
            Err("missing not-before"),
        ),
        // Check 7: audience.
        (
            "wrong audience",
            claims(json!({"aud": "11111111-2222-4333-8444-555555555555"})),
            Err("audience not accepted"),
        ),
        (
            "graph's audience as a uri",
            claims(json!({"aud": "https://graph.microsoft.com"})),
            Err("token is for microsoft graph"),
        ),
        (
            "graph's audience as an app id",
            claims(json!({"aud": "00000003-0000-0000-c000-000000000000"})),
            Err("token is for microsoft graph"),
        ),
        (
            "several audiences including ours",
            claims(json!({"aud": [API_CLIENT_ID, "11111111-2222-4333-8444-555555555555"]})),
            Err("audience not accepted"),
        ),
        (
            "missing audience",
            claims(json!({"aud": null})),
            Err("missing audience"),
        ),
        // Check 8: version and issuer.
        (
            "wrong issuer",
            claims(json!({"iss": format!("https://login.evil.example/{TENANT}/v2.0")})),
            Err("issuer not accepted"),
        ),
        (
            "issuer of another allowed tenant",
            claims(json!({"iss": format!("{authority}/{OTHER_TENANT}/v2.0")})),
            Err("issuer not accepted"),
        ),
        (
            "v1 token while v2 is pinned",
            claims(json!({
                "ver": "1.0",
                "iss": format!("https://sts.windows.net/{TENANT}/"),
                "appid": CALLER_APP_ID,
                "azp": null,
            })),
            Err("token version not accepted"),
        ),
        (
            "v2 ver with a v1 issuer",
            claims(json!({"iss": format!("https://sts.windows.net/{TENANT}/")})),
            Err("issuer not accepted"),
        ),
        (
            "missing ver",
            claims(json!({"ver": null})),
            Err("token version not accepted"),
        ),
        (
            "missing issuer",
            claims(json!({"iss": null})),
            Err("missing issuer"),
        ),
        // Who is calling (`docs/auth.md`, "The caller").
        (
            "neither oid nor sub",
            claims(json!({"oid": null, "sub": null})),
            Err("missing object id"),
        ),
        // Valid tokens.
        ("valid app token", valid_token.clone(), Ok(())),
        (
            "valid delegated token",
            key.sign(&delegated_claims(&authority, TENANT)),
            Ok(()),
        ),
        (
            "valid token of the other allowed tenant",
            key.sign(&app_claims(&authority, OTHER_TENANT)),
            Ok(()),
        ),
    ];
    assert!(cases.len() >= 20);

    for (name, token, expected) in cases {
        let outcome = auth.authenticate(&token).await;

        let reason = outcome.as_ref().err().map(|e| e.reason.clone());
        assert_eq!(
            outcome.map(|_| ()).map_err(|e| e.reason),
            expected.map_err(str::to_owned),
            "case '{name}'"
        );
        if let Some(reason) = reason {
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(
                    !reason.contains(part),
                    "case '{name}': reason leaks the token"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_valid_app_token_becomes_an_application_caller_with_its_roles() {
    let server = entra().await;
    let auth = authenticator(&server, TestClock::new());
    let token = app_token(&server);

    let caller = auth.authenticate(&token).await.expect("accepted");

    assert_the_calling_application(&caller);
    assert_eq!(
        caller.to_string(),
        format!("app:{TENANT}/{CALLER_OBJECT_ID}")
    );
}

#[tokio::test]
async fn a_valid_delegated_token_becomes_a_delegated_caller_with_its_scopes_split_on_spaces() {
    let server = entra().await;
    let auth = authenticator(&server, TestClock::new());
    let token = TestKey::primary().sign(&delegated_claims(&server.uri(), TENANT));

    let caller = auth.authenticate(&token).await.expect("accepted");

    assert_eq!(caller.kind, CallerKind::Delegated);
    assert_eq!(caller.object_id, CALLER_OBJECT_ID);
    assert_eq!(caller.app_id.as_deref(), Some(CALLER_APP_ID));
    assert_eq!(
        caller.permissions,
        vec![
            "DeviceManagementServiceConfig.ReadWrite.All".to_owned(),
            "DeviceManagementConfiguration.Read.All".to_owned(),
        ]
    );
}

#[tokio::test]
async fn a_token_without_idtyp_is_an_application_when_it_has_roles_and_no_scp() {
    let server = entra().await;
    let auth = authenticator(&server, TestClock::new());
    let claims = patched(&app_claims(&server.uri(), TENANT), json!({"idtyp": null}));

    let caller = auth
        .authenticate(&TestKey::primary().sign(&claims))
        .await
        .expect("accepted");

    assert_eq!(caller.kind, CallerKind::Application);
    assert_eq!(caller.permissions, vec![ROLE.to_owned()]);
}

#[tokio::test]
async fn the_caller_is_identified_by_sub_when_oid_is_absent_or_empty_and_never_by_name_claims() {
    let server = entra().await;
    let auth = authenticator(&server, TestClock::new());

    for oid in [json!(null), json!("")] {
        let claims = patched(
            &app_claims(&server.uri(), TENANT),
            json!({"oid": oid, "sub": "subject-of-the-app"}),
        );

        let caller = auth
            .authenticate(&TestKey::primary().sign(&claims))
            .await
            .expect("accepted");

        assert_eq!(caller.object_id, "subject-of-the-app", "oid {oid}");
        assert!(!caller.to_string().contains("contoso.example"), "oid {oid}");
    }
}

#[tokio::test]
async fn a_token_with_a_wrong_role_still_authenticates_with_that_role_listed() {
    let server = entra().await;
    let auth = authenticator(&server, TestClock::new());
    let claims = patched(
        &app_claims(&server.uri(), TENANT),
        json!({"roles": ["Directory.Read.All"]}),
    );

    let caller = auth
        .authenticate(&TestKey::primary().sign(&claims))
        .await
        .expect("authenticated; authorisation is not this port's job");

    assert_eq!(caller.permissions, vec!["Directory.Read.All".to_owned()]);
    assert!(!caller.has_any(&[ROLE]));
}
