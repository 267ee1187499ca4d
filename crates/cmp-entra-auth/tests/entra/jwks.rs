//! Key fetching and caching (check 4 of `docs/auth.md`): discovery, the 24 h refresh,
//! the throttled unknown-`kid` refetch, keeping the last good set, the fetch timeout, and no
//! traffic for tenants we do not serve.

use std::time::Duration;

use cmp_application::CallerAuthenticator;
use cmp_entra_auth::{EntraAuthSettings, EntraAuthenticator, TokenVersion};
use jsonwebtoken::Algorithm;
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

/// A key-set answer publishing `keys`.
fn keys_answer(keys: &[&TestKey]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(jwks(keys))
}

#[tokio::test]
async fn keys_are_discovered_through_the_tenants_metadata_and_cached_for_the_refresh_period() {
    let server = entra_serving(&[&TestKey::primary()]).await;
    let clock = TestClock::new();
    let auth = authenticator(&server, clock.clone());
    let token = app_token(&server);

    for _ in 0..3 {
        auth.authenticate(&token).await.expect("accepted");
    }
    clock.advance_seconds(86_399);
    auth.authenticate(&token).await.expect("accepted");

    assert_eq!(requests_to(&server, &metadata_path(TENANT)).await, 1);
    assert_eq!(requests_to(&server, &jwks_path(TENANT)).await, 1);
}

#[tokio::test]
async fn keys_are_fetched_again_after_the_refresh_period() {
    let server = entra_serving(&[&TestKey::primary()]).await;
    let clock = TestClock::new();
    let auth = authenticator(&server, clock.clone());
    let token = app_token(&server);
    auth.authenticate(&token).await.expect("accepted");

    clock.advance_seconds(86_400);
    auth.authenticate(&token).await.expect("accepted");

    assert_eq!(requests_to(&server, &jwks_path(TENANT)).await, 2);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_one_refetch() {
    let server = entra_without_keys().await;
    let (old, new) = (TestKey::primary(), TestKey::secondary());
    answering(jwks_path(TENANT), keys_answer(&[&old]))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    answering(jwks_path(TENANT), keys_answer(&[&old, &new]))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    let auth = authenticator(&server, TestClock::new());
    let claims = app_claims(&server.uri(), TENANT);
    auth.authenticate(&old.sign(&claims))
        .await
        .expect("old key accepted");

    let with_new_key = auth.authenticate(&new.sign(&claims)).await;

    assert!(with_new_key.is_ok(), "{with_new_key:?}");
    auth.authenticate(&new.sign(&claims))
        .await
        .expect("new key now cached");
    server.verify().await;
}

#[tokio::test]
async fn unknown_kids_within_the_throttle_period_cause_only_one_refetch() {
    let server = entra_without_keys().await;
    let key = TestKey::primary();
    answering(jwks_path(TENANT), keys_answer(&[&key]))
        // The first fetch, then one refetch for the unknown kid; none for the second.
        .expect(2)
        .mount(&server)
        .await;
    let clock = TestClock::new();
    let auth = authenticator(&server, clock.clone());
    let claims = app_claims(&server.uri(), TENANT);
    auth.authenticate(&key.sign(&claims))
        .await
        .expect("known key accepted");
    let forged = TestKey::secondary().sign_with(Algorithm::RS256, Some("key-forged"), &claims);

    let first = auth.authenticate(&forged).await;
    clock.advance_seconds(299);
    let second = auth.authenticate(&forged).await;

    assert_eq!(refusal(first), "unknown signing key");
    assert_eq!(refusal(second), "unknown signing key");
    server.verify().await;
}

#[tokio::test]
async fn an_unknown_kid_may_cause_a_refetch_again_once_the_throttle_period_is_over() {
    let server = entra_serving(&[&TestKey::primary()]).await;
    let clock = TestClock::new();
    let auth = authenticator(&server, clock.clone());
    let claims = app_claims(&server.uri(), TENANT);
    let forged = TestKey::secondary().sign_with(Algorithm::RS256, Some("key-forged"), &claims);
    auth.authenticate(&TestKey::primary().sign(&claims))
        .await
        .expect("accepted");
    let _ = auth.authenticate(&forged).await;

    clock.advance_seconds(300);
    let refused = auth.authenticate(&forged).await;

    assert_eq!(refusal(refused), "unknown signing key");
    assert_eq!(requests_to(&server, &jwks_path(TENANT)).await, 3);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_keys() {
    let server = entra_without_keys().await;
    let key = TestKey::primary();
    answering(jwks_path(TENANT), keys_answer(&[&key]))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    answering(jwks_path(TENANT), ResponseTemplate::new(500))
        .with_priority(2)
        .mount(&server)
        .await;
    let clock = TestClock::new();
    let auth = authenticator(&server, clock.clone());
    let token = key.sign(&app_claims(&server.uri(), TENANT));
    auth.authenticate(&token).await.expect("accepted");

    clock.advance_seconds(86_401);
    let after_failed_refresh = auth.authenticate(&token).await;

    assert!(after_failed_refresh.is_ok(), "{after_failed_refresh:?}");
    assert_eq!(requests_to(&server, &jwks_path(TENANT)).await, 2);
}

#[tokio::test]
async fn a_tenant_whose_keys_cannot_be_fetched_is_refused_and_retried_only_after_the_back_off() {
    let server = entra_without_keys().await;
    answering(jwks_path(TENANT), ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let clock = TestClock::new();
    let auth = authenticator(&server, clock.clone());
    let token = app_token(&server);

    let first = auth.authenticate(&token).await;
    clock.advance_seconds(29);
    let within_back_off = auth.authenticate(&token).await;
    let requests_during_back_off = requests_to(&server, &jwks_path(TENANT)).await;
    clock.advance_seconds(1);
    let _ = auth.authenticate(&token).await;

    assert_eq!(refusal(first), "signing keys unavailable");
    assert_eq!(refusal(within_back_off), "signing keys unavailable");
    assert_eq!(requests_during_back_off, 1);
    assert_eq!(requests_to(&server, &jwks_path(TENANT)).await, 2);
}

#[tokio::test]
async fn a_fetch_slower_than_the_timeout_fails() {
    let server = MockServer::start().await;
    answering(
        metadata_path(TENANT),
        ResponseTemplate::new(200).set_delay(Duration::from_secs(10)),
    )
    .mount(&server)
    .await;
    let settings = EntraAuthSettings {
        fetch_timeout_ms: 100,
        ..settings(&server.uri())
    };
    let auth = EntraAuthenticator::new(&settings, TestClock::new()).expect("valid");
    let token = app_token(&server);

    let refused = auth.authenticate(&token).await;

    assert_eq!(refusal(refused), "signing keys unavailable");
}

#[tokio::test]
async fn a_jwks_uri_in_plain_http_to_another_host_is_not_followed() {
    let server = MockServer::start().await;
    answering(
        metadata_path(TENANT),
        ResponseTemplate::new(200).set_body_json(json!({
            "jwks_uri": format!("http://keys.example.com/{TENANT}/discovery/v2.0/keys"),
        })),
    )
    .mount(&server)
    .await;
    let auth = authenticator(&server, TestClock::new());
    let token = app_token(&server);

    let refused = auth.authenticate(&token).await;

    assert_eq!(refusal(refused), "signing keys unavailable");
}

#[tokio::test]
async fn tokens_naming_tenants_we_do_not_serve_cause_no_request_to_entra() {
    let server = MockServer::start().await;
    let auth = authenticator(&server, TestClock::new());
    let key = TestKey::primary();
    let authority = server.uri();
    let tokens = [
        key.sign(&app_claims(&authority, FOREIGN_TENANT)),
        key.sign(&app_claims(&authority, PERSONAL_TENANT)),
        key.sign(&patched(
            &app_claims(&authority, TENANT),
            json!({"tid": "../common"}),
        )),
        key.sign(&patched(
            &app_claims(&authority, TENANT),
            json!({"tid": null}),
        )),
        // A forged kid too: still nothing is fetched.
        key.sign_with(
            Algorithm::RS256,
            Some("key-forged"),
            &app_claims(&authority, FOREIGN_TENANT),
        ),
    ];

    for token in &tokens {
        assert!(auth.authenticate(token).await.is_err());
    }

    assert_eq!(
        server.received_requests().await.expect("recording").len(),
        0
    );
}

#[tokio::test]
async fn v1_tokens_are_verified_against_the_v1_metadata_when_v1_is_pinned() {
    let server = MockServer::start().await;
    answering(
        format!("/{TENANT}/.well-known/openid-configuration"),
        ResponseTemplate::new(200).set_body_json(json!({
            "jwks_uri": format!("{}/{TENANT}/discovery/keys", server.uri()),
        })),
    )
    .expect(1)
    .mount(&server)
    .await;
    answering(
        format!("/{TENANT}/discovery/keys"),
        keys_answer(&[&TestKey::primary()]),
    )
    .expect(1)
    .mount(&server)
    .await;
    let settings = EntraAuthSettings {
        authority: server.uri(),
        ..EntraAuthSettings::new(
            TokenVersion::V1,
            vec![API_APP_ID_URI.into()],
            vec![TENANT.into()],
        )
    };
    let auth = EntraAuthenticator::new(&settings, TestClock::new()).expect("valid");
    let v1 = patched(
        &app_claims(&server.uri(), TENANT),
        json!({
            "ver": "1.0",
            "aud": API_APP_ID_URI,
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "appid": CALLER_APP_ID,
            "azp": null,
        }),
    );
    let v2 = patched(
        &app_claims(&server.uri(), TENANT),
        json!({"aud": API_APP_ID_URI}),
    );

    let caller = auth
        .authenticate(&TestKey::primary().sign(&v1))
        .await
        .expect("v1 accepted");
    let refused = auth.authenticate(&TestKey::primary().sign(&v2)).await;

    assert_eq!(caller.app_id.as_deref(), Some(CALLER_APP_ID));
    assert_eq!(refusal(refused), "token version not accepted");
    server.verify().await;
}
