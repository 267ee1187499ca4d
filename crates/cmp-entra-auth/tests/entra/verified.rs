//! Tokens that passed every check are remembered: the same token again costs no signature
//! check, any other token (one byte apart included) is checked in full, and a remembered token
//! stops being served before it expires and once its signing key is withdrawn.

use cmp_application::{CallerAuthenticator, Clock as _};
use serde_json::json;

use crate::support::*;

/// `token` with one character inside its signature changed: still base64url of a signature of
/// the same length (the last character, whose spare bits must be zero, is left alone), so the
/// token reaches the signature check.
fn with_signature_byte_changed(token: &str) -> String {
    let signature_start = token.rfind('.').expect("three segments") + 1;
    let mut bytes = token.as_bytes().to_vec();
    let changed = &mut bytes[signature_start + 10];
    *changed = if *changed == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

#[tokio::test]
async fn a_token_presented_again_is_not_verified_again() {
    let server = entra_serving(&[&TestKey::primary()]).await;
    let auth = authenticator(&server, TestClock::at_system_time());
    let token = app_token(&server);

    let first = auth.authenticate(&token).await.expect("accepted");
    for _ in 0..4 {
        let again = auth.authenticate(&token).await.expect("accepted again");
        assert_eq!(again, first);
    }

    assert_eq!(auth.signature_checks(), 1);
}

#[tokio::test]
async fn a_token_one_signature_byte_apart_from_a_remembered_one_is_refused() {
    let server = entra_serving(&[&TestKey::primary()]).await;
    let auth = authenticator(&server, TestClock::at_system_time());
    let token = app_token(&server);
    auth.authenticate(&token).await.expect("accepted");
    let forged = with_signature_byte_changed(&token);
    assert_ne!(forged, token);

    let refused = auth.authenticate(&forged).await;

    assert_eq!(refused.expect_err("refused").reason, "invalid signature");
    assert_eq!(auth.signature_checks(), 2, "the forged token was checked");
    auth.authenticate(&token).await.expect("still accepted");
    assert_eq!(auth.signature_checks(), 2);
}

#[tokio::test]
async fn a_remembered_token_is_checked_again_from_the_leeway_before_its_expiry() {
    let server = entra_serving(&[&TestKey::primary()]).await;
    let clock = TestClock::at_system_time();
    let auth = authenticator(&server, clock.clone());
    // The settings' leeway is 60 s: remembered until `exp` - 60 s, 60 s after issue.
    let exp = clock.now().unix_seconds() + 120;
    let token = TestKey::primary().sign(&patched(
        &app_claims(&server.uri(), TENANT),
        json!({"exp": exp}),
    ));
    auth.authenticate(&token).await.expect("accepted");

    clock.advance_seconds(59);
    auth.authenticate(&token).await.expect("accepted");
    assert_eq!(
        auth.signature_checks(),
        1,
        "still remembered a second before"
    );

    clock.advance_seconds(1);
    auth.authenticate(&token)
        .await
        .expect("checked in full, and still valid by the signer's clock");
    assert_eq!(auth.signature_checks(), 2);
    auth.authenticate(&token).await.expect("accepted");
    assert_eq!(
        auth.signature_checks(),
        3,
        "a token that close to its expiry is not remembered"
    );
}

#[tokio::test]
async fn a_refused_token_is_checked_in_full_every_time() {
    let server = entra_serving(&[&TestKey::primary()]).await;
    let auth = authenticator(&server, TestClock::at_system_time());
    let token = TestKey::primary().sign(&patched(
        &app_claims(&server.uri(), TENANT),
        json!({"aud": "api://someone-else"}),
    ));

    for _ in 0..3 {
        let refused = auth.authenticate(&token).await;
        assert_eq!(
            refused.expect_err("refused").reason,
            "audience not accepted"
        );
    }

    assert_eq!(auth.signature_checks(), 3);
}

#[tokio::test]
async fn a_remembered_token_whose_key_was_withdrawn_is_refused() {
    let (old, new) = (TestKey::primary(), TestKey::secondary());
    let server = entra_serving(&[&old]).await;
    let auth = authenticator(&server, TestClock::at_system_time());
    let claims = app_claims(&server.uri(), TENANT);
    let signed_with_old = old.sign(&claims);
    auth.authenticate(&signed_with_old).await.expect("accepted");
    // Entra ID withdraws the old key; a token with the new key makes the service fetch the
    // set again (an unknown `kid`), and the old key is gone from it.
    server.reset().await;
    mount_metadata(&server, TENANT).await;
    mount_jwks(&server, TENANT, &[&new]).await;
    auth.authenticate(&new.sign(&claims))
        .await
        .expect("the new key is fetched");

    let refused = auth.authenticate(&signed_with_old).await;

    assert_eq!(refused.expect_err("refused").reason, "unknown signing key");
}
