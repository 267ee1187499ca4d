//! Local development mode: the signer's key file, and minted tokens verified by the very same
//! checks through `EntraAuthenticator::with_static_keys`.

use std::time::Duration;

use cmp_application::{CallerAuthenticator, CallerKind};
use cmp_entra_auth::{DevelopmentSigner, EntraAuthenticator, MintRequest};

use crate::support::*;

/// The authority of development tokens: the service's own address, say.
const DEV_AUTHORITY: &str = "http://127.0.0.1:8080/dev-entra";

fn request(roles: &[&str], scopes: &[&str]) -> MintRequest {
    MintRequest {
        tenant_id: TENANT.into(),
        object_id: CALLER_OBJECT_ID.into(),
        app_id: CALLER_APP_ID.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        lifetime: Duration::from_secs(3600),
        audience: API_CLIENT_ID.into(),
    }
}

/// A development signer for [`DEV_AUTHORITY`] with its key in a new temporary directory, which
/// lives as long as the returned guard.
fn dev_signer() -> (tempfile::TempDir, DevelopmentSigner) {
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = DevelopmentSigner::load_or_create(dir.path())
        .expect("signer")
        .with_authority(DEV_AUTHORITY);
    (dir, signer)
}

fn dev_authenticator(signer: &DevelopmentSigner) -> EntraAuthenticator {
    EntraAuthenticator::with_static_keys(
        &settings(DEV_AUTHORITY),
        &signer.jwks(),
        TestClock::at_system_time(),
    )
    .expect("valid settings and key set")
}

#[tokio::test]
async fn the_key_file_is_created_once_owner_only_and_reused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys_dir = dir.path().join("keys");

    let first = DevelopmentSigner::load_or_create(&keys_dir).expect("created");
    let written = std::fs::read(first.key_path()).expect("key file");
    let second = DevelopmentSigner::load_or_create(&keys_dir).expect("loaded");

    assert_eq!(first.key_path(), keys_dir.join("dev-signing-key.pem"));
    assert_eq!(first.kid(), second.kid());
    assert_eq!(std::fs::read(second.key_path()).expect("key file"), written);
    assert!(String::from_utf8_lossy(&written).starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(first.key_path())
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let published = first.jwks();
    assert_eq!(published["keys"][0]["kid"], first.kid());
    assert_eq!(published["keys"][0]["kty"], "RSA");
    assert!(published["keys"][0].get("d").is_none(), "no private part");
}

#[tokio::test]
async fn a_minted_app_token_is_accepted_by_the_static_key_authenticator() {
    let (_dir, signer) = dev_signer();
    let auth = dev_authenticator(&signer);

    let token = signer.mint(&request(&[ROLE], &[])).expect("minted");
    let caller = auth.authenticate(&token).await.expect("accepted");

    assert_the_calling_application(&caller);
}

#[tokio::test]
async fn a_minted_token_with_a_wrong_role_still_authenticates_with_its_roles_listed() {
    let (_dir, signer) = dev_signer();
    let auth = dev_authenticator(&signer);

    let token = signer
        .mint(&request(&["Directory.Read.All", "User.Read.All"], &[]))
        .expect("minted");
    let caller = auth.authenticate(&token).await.expect("authenticated");

    assert_eq!(
        caller.permissions,
        vec!["Directory.Read.All".to_owned(), "User.Read.All".to_owned()]
    );
    assert!(!caller.has_any(&[ROLE]));
}

#[tokio::test]
async fn a_minted_token_with_scopes_only_is_delegated() {
    let (_dir, signer) = dev_signer();
    let auth = dev_authenticator(&signer);

    let token = signer
        .mint(&request(
            &[],
            &[ROLE, "DeviceManagementConfiguration.ReadWrite.All"],
        ))
        .expect("minted");
    let caller = auth.authenticate(&token).await.expect("accepted");

    assert_eq!(caller.kind, CallerKind::Delegated);
    assert_eq!(
        caller.permissions,
        vec![
            ROLE.to_owned(),
            "DeviceManagementConfiguration.ReadWrite.All".to_owned()
        ]
    );
}

#[tokio::test]
async fn development_mode_runs_the_same_checks_as_production() {
    let (dir, signer) = dev_signer();
    let (_other_dir, stranger) = dev_signer();
    let auth = dev_authenticator(&signer);
    let cases = [
        (
            "foreign tenant",
            signer.mint(&MintRequest {
                tenant_id: FOREIGN_TENANT.into(),
                ..request(&[ROLE], &[])
            }),
            "tenant not allowed",
        ),
        (
            "graph's audience",
            signer.mint(&MintRequest {
                audience: "https://graph.microsoft.com".into(),
                ..request(&[ROLE], &[])
            }),
            "token is for microsoft graph",
        ),
        (
            "another authority",
            DevelopmentSigner::load_or_create(dir.path())
                .expect("same key")
                .with_authority("https://login.microsoftonline.com")
                .mint(&request(&[ROLE], &[])),
            "issuer not accepted",
        ),
        (
            "another development key",
            stranger.mint(&request(&[ROLE], &[])),
            "unknown signing key",
        ),
    ];

    for (name, token, reason) in cases {
        let token = token.expect("minted");

        let refused = auth.authenticate(&token).await;

        assert_eq!(refused.expect_err(name).reason, reason, "case '{name}'");
    }
}

#[test]
fn minting_refuses_a_tenant_that_is_not_a_guid_and_a_zero_lifetime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = DevelopmentSigner::load_or_create(dir.path()).expect("signer");

    let bad_tenant = signer.mint(&MintRequest {
        tenant_id: "contoso".into(),
        ..request(&[ROLE], &[])
    });
    let no_lifetime = signer.mint(&MintRequest {
        lifetime: Duration::ZERO,
        ..request(&[ROLE], &[])
    });

    assert!(bad_tenant.is_err());
    assert!(no_lifetime.is_err());
}
