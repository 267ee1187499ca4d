//! Workload identity federation: the federated token file is the client assertion of Entra's
//! client-credentials grant, read again for every token request.

use std::path::Path;

use super::*;

/// A federated token file in a fresh temporary folder, holding `token`.
struct TokenFile {
    /// Keeps the folder alive as long as the file is needed.
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl TokenFile {
    fn holding(token: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("azure-identity-token");
        std::fs::write(&path, token).expect("write the token file");
        Self { _dir: dir, path }
    }

    /// Replaces the token, as the platform does when it rotates it.
    fn rotate(&self, token: &str) {
        std::fs::write(&self.path, token).expect("rewrite the token file");
    }
}

async fn harness_reading(path: &Path) -> Harness {
    let token_file = path.to_path_buf();
    Harness::with(|_| Credential::WorkloadIdentity { token_file }).await
}

#[tokio::test]
async fn the_federated_token_is_sent_as_the_client_assertion_of_the_client_credentials_form() {
    let file = TokenFile::holding("federated-jwt-1\n");
    let h = harness_reading(&file.path).await;
    h.answer(token_response("token-a", 3600), 1).await;

    let token = h.provider.token(None).await.expect("a token");

    assert_eq!(token.bearer(), "token-a");
    assert_eq!(token.expires_at(), h.after(3600));
    assert_eq!(
        form_of(&h.the_one_token_post().await),
        client_credentials_form(&[
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            ),
            ("client_assertion", "federated-jwt-1"),
        ]),
        "the file's token, trailing newline trimmed, and no secret"
    );
    h.server.verify().await;
}

#[tokio::test]
async fn a_rotated_token_file_is_read_again_when_the_token_is_refreshed_after_expiry() {
    let file = TokenFile::holding("federated-jwt-1");
    let h = harness_reading(&file.path).await;
    h.answer(token_response("token-a", 3600), 1).await;
    h.answer(token_response("token-b", 3600), 1).await;
    assert_eq!(h.token().await.expect("first"), "token-a");

    file.rotate("federated-jwt-2");
    let still_cached = h.token().await.expect("cached");
    h.clock.advance(3301);
    let refreshed = h.token().await.expect("refreshed");

    assert_eq!(still_cached, "token-a", "rotation alone asks for nothing");
    assert_eq!(refreshed, "token-b");
    assert_eq!(h.request_count().await, 2);
    assert_eq!(h.form(0).await["client_assertion"], "federated-jwt-1");
    assert_eq!(
        h.form(1).await["client_assertion"],
        "federated-jwt-2",
        "the rotated token, read for the new request"
    );
    h.server.verify().await;
}

#[tokio::test]
async fn an_unreadable_token_file_is_a_configuration_error_that_backs_off_without_a_request() {
    let cases = [("file removed", None), ("file emptied", Some("  \n"))];
    for (case, content) in cases {
        let file = TokenFile::holding("federated-jwt-1");
        let h = harness_reading(&file.path).await;
        h.answer(token_response("token-a", 3600), 1).await;
        match content {
            Some(text) => file.rotate(text),
            None => std::fs::remove_file(&file.path).expect("remove"),
        }

        let first = h.token().await;
        h.clock.advance(59);
        let within_backoff = h.token().await;
        file.rotate("federated-jwt-2");
        h.clock.advance(2);
        let after_backoff = h.token().await;

        let (error, codes) = configuration_error(first.clone());
        assert_eq!(error, "federated_token_unreadable", "{case}");
        assert!(codes.is_empty(), "{case}");
        assert_eq!(within_backoff, first, "{case}: the remembered error");
        assert_eq!(after_backoff.expect("a token"), "token-a", "{case}");
        assert_eq!(
            h.request_count().await,
            1,
            "{case}: only the good file is sent"
        );
        assert_eq!(
            h.form(0).await["client_assertion"],
            "federated-jwt-2",
            "{case}"
        );
    }
}

#[tokio::test]
async fn entra_refusing_the_federated_token_is_a_configuration_error() {
    let file = TokenFile::holding("federated-jwt-1");
    let h = harness_reading(&file.path).await;
    // No federated identity credential on the app matches the token's issuer and subject.
    h.answer(error_response(400, "invalid_request", 70021), 1)
        .await;

    let (error, codes) = configuration_error(h.token().await);

    assert_eq!(error, "invalid_request");
    assert_eq!(codes, vec![70021]);
}

#[tokio::test]
async fn debug_output_and_errors_never_show_the_federated_token() {
    let file = TokenFile::holding("federated-jwt-secret-part");
    let h = harness_reading(&file.path).await;
    h.answer(error_response(401, "invalid_client", 700024), 1)
        .await;

    let error = h.token().await.expect_err("refused");
    let text = format!("{:?} {error} {error:?}", h.provider);

    assert!(!text.contains("federated-jwt-secret-part"), "{text}");
    assert!(text.contains("workload identity"), "{text}");
}
