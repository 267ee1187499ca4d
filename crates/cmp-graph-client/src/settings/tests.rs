//! Resolving [`GraphClientSettings`]: clouds, URLs, and each credential's checks.

use secrecy::ExposeSecret;

use super::*;

fn settings() -> GraphClientSettings {
    GraphClientSettings {
        cloud: Cloud::Global,
        root: String::new(),
        authority: String::new(),
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        credential: None,
        client_secret: Some(SecretString::from("s3cret-value".to_owned())),
        client_secret_file: None,
        certificate_file: None,
        private_key_file: None,
        federated_token_file: None,
        managed_identity_endpoint: String::new(),
        connect_timeout_ms: 30_000,
        request_timeout_ms: 100_000,
        token_timeout_ms: 30_000,
        max_retries: 3,
        retry_budget_ms: 180_000,
        write_rate_per_second: 4.0,
        read_rate_per_second: 10.0,
        burst: 8,
        max_pages: 100,
        adopt_preseeded: false,
        azure: AzureEnvironment::default(),
    }
}

const TENANT: Uuid = Uuid::from_u128(0x72f988bf_86f1_41af_91ab_2d7cd011db47);

#[test]
fn each_cloud_sets_root_authority_and_scope_together() {
    let cases = [
        (
            Cloud::Global,
            "https://graph.microsoft.com/beta",
            "https://login.microsoftonline.com/",
            "https://graph.microsoft.com/.default",
        ),
        (
            Cloud::UsGovL4,
            "https://graph.microsoft.us/beta",
            "https://login.microsoftonline.us/",
            "https://graph.microsoft.us/.default",
        ),
        (
            Cloud::UsGovL5,
            "https://dod-graph.microsoft.us/beta",
            "https://login.microsoftonline.us/",
            "https://dod-graph.microsoft.us/.default",
        ),
        (
            Cloud::China,
            "https://microsoftgraph.chinacloudapi.cn/beta",
            "https://login.chinacloudapi.cn/",
            "https://microsoftgraph.chinacloudapi.cn/.default",
        ),
    ];
    for (cloud, root, authority, scope) in cases {
        let resolved = GraphClientSettings {
            cloud,
            ..settings()
        }
        .resolve(TENANT)
        .expect("valid");
        assert_eq!(resolved.graph_root.as_str(), root, "{cloud:?}");
        assert!(
            resolved.token_url.as_str().starts_with(authority),
            "{cloud:?}"
        );
        assert!(
            resolved
                .token_url
                .as_str()
                .ends_with(&format!("{TENANT}/oauth2/v2.0/token")),
            "{cloud:?}"
        );
        assert_eq!(resolved.scope, scope, "{cloud:?}");
    }
}

#[test]
fn plain_http_is_allowed_only_to_loopback() {
    for root in [
        "http://127.0.0.1:8081/beta",
        "http://localhost:9/beta",
        "http://[::1]:9/beta",
        "http://127.9.9.9/beta",
    ] {
        assert!(
            GraphClientSettings {
                root: root.into(),
                ..settings()
            }
            .resolve(TENANT)
            .is_ok(),
            "{root}"
        );
    }
    for root in [
        "http://graph.microsoft.com/beta",
        "http://10.0.0.5/beta",
        "ftp://127.0.0.1/beta",
    ] {
        let error = GraphClientSettings {
            root: root.into(),
            ..settings()
        }
        .resolve(TENANT)
        .expect_err(root);
        assert!(error.contains("graph.client.root"), "{error}");
    }
    let error = GraphClientSettings {
        authority: "http://login.example.com".into(),
        ..settings()
    }
    .resolve(TENANT)
    .expect_err("clear-text authority");
    assert!(error.contains("graph.client.authority"), "{error}");
}

#[test]
fn graph_mode_refuses_to_start_without_what_it_needs() {
    let cases = [
        (settings(), Uuid::nil(), "graph.tenant_id"),
        (
            GraphClientSettings {
                client_id: " ".into(),
                ..settings()
            },
            TENANT,
            "client_id",
        ),
        (
            GraphClientSettings {
                client_secret: None,
                ..settings()
            },
            TENANT,
            "exactly one credential",
        ),
        (
            GraphClientSettings {
                client_secret_file: Some("/nonexistent/secret".into()),
                ..settings()
            },
            TENANT,
            "exactly one credential",
        ),
        (
            GraphClientSettings {
                client_secret: None,
                client_secret_file: Some("/nonexistent/secret".into()),
                ..settings()
            },
            TENANT,
            "client_secret_file",
        ),
        (
            GraphClientSettings {
                client_secret: None,
                certificate_file: Some("/x.pem".into()),
                ..settings()
            },
            TENANT,
            "go together",
        ),
        (
            GraphClientSettings {
                write_rate_per_second: 0.0,
                ..settings()
            },
            TENANT,
            "write_rate_per_second",
        ),
        (
            GraphClientSettings {
                read_rate_per_second: f64::NAN,
                ..settings()
            },
            TENANT,
            "read_rate_per_second",
        ),
        (
            GraphClientSettings {
                burst: 0,
                ..settings()
            },
            TENANT,
            "graph.client.burst",
        ),
        (
            GraphClientSettings {
                max_pages: 0,
                ..settings()
            },
            TENANT,
            "max_pages",
        ),
    ];
    for (settings, tenant, needle) in cases {
        let error = settings.resolve(tenant).expect_err(needle);
        assert!(error.contains(needle), "expected '{needle}' in: {error}");
    }
}

#[test]
fn a_secret_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("secret");
    std::fs::write(&path, "from-file\n").expect("write");

    let resolved = GraphClientSettings {
        client_secret: None,
        client_secret_file: Some(path),
        ..settings()
    }
    .resolve(TENANT)
    .expect("valid");

    let Credential::Secret(secret) = resolved.credential else {
        panic!("a secret")
    };
    assert_eq!(secret.expose_secret(), "from-file");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let app_service = with(|s| {
        s.client_secret = None;
        s.credential = Some(CredentialKind::ManagedIdentity);
        s.azure = app_service("http://127.0.0.1:41741/MSI/token/");
    });
    let text = format!(
        "{:?} {:?} {:?} {:?}",
        settings(),
        settings().resolve(TENANT).expect("valid"),
        app_service,
        app_service.resolve(TENANT).expect("valid"),
    );
    assert!(!text.contains("s3cret-value"), "{text}");
    assert!(!text.contains("identity-header-value"), "{text}");
}

// Credentials

const USER_ASSIGNED: &str = "99999999-8888-7777-6666-555555555555";

/// The test settings changed by `tweak`.
fn with(tweak: impl FnOnce(&mut GraphClientSettings)) -> GraphClientSettings {
    let mut settings = settings();
    tweak(&mut settings);
    settings
}

/// The test settings with no credential configured.
fn without_credential(tweak: impl FnOnce(&mut GraphClientSettings)) -> GraphClientSettings {
    with(|s| {
        s.client_secret = None;
        tweak(s);
    })
}

/// A fixture file of this crate's tests.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

/// A temporary folder holding a federated token file.
fn federated_token_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("azure-identity-token");
    std::fs::write(&path, "federated-jwt\n").expect("write");
    (dir, path)
}

/// The App Service variables, with `endpoint`.
fn app_service(endpoint: &str) -> AzureEnvironment {
    AzureEnvironment {
        identity_endpoint: Some(endpoint.into()),
        identity_header: Some(SecretString::from("identity-header-value")),
        ..AzureEnvironment::default()
    }
}

#[test]
fn each_credential_resolves_from_its_settings_or_the_azure_environment() {
    let (_dir, token_file) = federated_token_file();
    let secret_dir = tempfile::tempdir().expect("temp dir");
    let secret_file = secret_dir.path().join("secret");
    std::fs::write(&secret_file, "from-file\n").expect("write");
    let entra_token_url = format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token");
    let client_id = settings().client_id;
    let token_file_text = token_file.display().to_string();
    let cases = [
        (
            "a client secret, inferred",
            settings(),
            "client secret".to_owned(),
            entra_token_url.as_str(),
            client_id.as_str(),
        ),
        (
            "a client secret file, named",
            without_credential(|s| {
                s.credential = Some(CredentialKind::Secret);
                s.client_secret_file = Some(secret_file.clone());
            }),
            "client secret".to_owned(),
            &entra_token_url,
            &client_id,
        ),
        (
            "a certificate, inferred",
            without_credential(|s| {
                s.certificate_file = Some(fixture("cert.pem"));
                s.private_key_file = Some(fixture("key.pem"));
            }),
            "certificate".to_owned(),
            &entra_token_url,
            &client_id,
        ),
        (
            "workload identity from the configured file, inferred",
            without_credential(|s| s.federated_token_file = Some(token_file.clone())),
            format!("workload identity (federated token file {token_file_text})"),
            &entra_token_url,
            &client_id,
        ),
        (
            "workload identity from AZURE_FEDERATED_TOKEN_FILE and AZURE_CLIENT_ID, named",
            without_credential(|s| {
                s.credential = Some(CredentialKind::WorkloadIdentity);
                s.client_id = String::new();
                s.azure.client_id = Some(USER_ASSIGNED.into());
                s.azure.federated_token_file = Some(token_file.clone());
            }),
            format!("workload identity (federated token file {token_file_text})"),
            &entra_token_url,
            USER_ASSIGNED,
        ),
        (
            "system-assigned managed identity on the metadata service",
            without_credential(|s| {
                s.credential = Some(CredentialKind::ManagedIdentity);
                s.client_id = String::new();
            }),
            "managed identity (instance metadata)".to_owned(),
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "",
        ),
        (
            "user-assigned managed identity from AZURE_CLIENT_ID",
            without_credential(|s| {
                s.credential = Some(CredentialKind::ManagedIdentity);
                s.client_id = String::new();
                s.azure.client_id = Some(USER_ASSIGNED.into());
            }),
            "managed identity (instance metadata)".to_owned(),
            "http://169.254.169.254/metadata/identity/oauth2/token",
            USER_ASSIGNED,
        ),
        (
            "managed identity on App Service",
            without_credential(|s| {
                s.credential = Some(CredentialKind::ManagedIdentity);
                s.azure = app_service("http://127.0.0.1:41741/MSI/token/");
            }),
            "managed identity (App Service)".to_owned(),
            "http://127.0.0.1:41741/MSI/token/",
            &client_id,
        ),
        (
            "managed identity on App Service, endpoint configured over IDENTITY_ENDPOINT",
            without_credential(|s| {
                s.credential = Some(CredentialKind::ManagedIdentity);
                s.managed_identity_endpoint = "http://127.0.0.1:9000/msi/token".into();
                s.azure = app_service("http://169.254.255.2:8081/msi/token");
            }),
            "managed identity (App Service)".to_owned(),
            "http://127.0.0.1:9000/msi/token",
            &client_id,
        ),
        (
            "managed identity, endpoint configured, inferred",
            without_credential(|s| {
                s.managed_identity_endpoint = "http://127.0.0.1:9000/metadata/token".into();
            }),
            "managed identity (instance metadata)".to_owned(),
            "http://127.0.0.1:9000/metadata/token",
            &client_id,
        ),
    ];
    for (case, settings, description, endpoint, client_id) in cases {
        let resolved = settings.resolve(TENANT).expect(case);

        assert_eq!(resolved.credential.to_string(), description, "{case}");
        assert_eq!(resolved.token_endpoint().as_str(), endpoint, "{case}");
        assert_eq!(resolved.client_id, client_id, "{case}");
    }
}

#[test]
fn the_configuration_wins_over_azure_client_id_and_tenant_id() {
    let azure_tenant = Uuid::from_u128(0x1234);
    let azure = AzureEnvironment {
        client_id: Some(USER_ASSIGNED.into()),
        tenant_id: Some(azure_tenant.to_string()),
        ..AzureEnvironment::default()
    };
    let cases = [
        (
            "both configured",
            settings().client_id,
            TENANT,
            settings().client_id,
            TENANT,
        ),
        (
            "both left empty",
            String::new(),
            Uuid::nil(),
            USER_ASSIGNED.to_owned(),
            azure_tenant,
        ),
    ];
    for (case, client_id, tenant, expected_client_id, expected_tenant) in cases {
        let settings = with(|s| {
            s.client_id = client_id;
            s.azure = azure.clone();
        });

        let resolved = settings.resolve(tenant).expect(case);

        assert_eq!(resolved.client_id, expected_client_id, "{case}");
        assert_eq!(resolved.tenant_id, expected_tenant, "{case}");
        assert!(
            resolved
                .token_url
                .as_str()
                .contains(&expected_tenant.to_string()),
            "{case}: {}",
            resolved.token_url
        );
    }
}

#[test]
fn credential_mistakes_stop_the_start_naming_the_key_or_variable() {
    let (_dir, token_file) = federated_token_file();
    let named = |kind| {
        move |s: &mut GraphClientSettings| {
            s.credential = Some(kind);
        }
    };
    let cases = [
        (
            "workload identity without a token file",
            without_credential(named(CredentialKind::WorkloadIdentity)),
            "graph.client.federated_token_file or AZURE_FEDERATED_TOKEN_FILE",
        ),
        (
            "a configured token file that is not there",
            without_credential(|s| s.federated_token_file = Some("/nonexistent/token".into())),
            "graph.client.federated_token_file: cannot read /nonexistent/token",
        ),
        (
            "an AZURE_FEDERATED_TOKEN_FILE that is not there",
            without_credential(|s| {
                s.credential = Some(CredentialKind::WorkloadIdentity);
                s.azure.federated_token_file = Some("/nonexistent/token".into());
            }),
            "AZURE_FEDERATED_TOKEN_FILE: cannot read",
        ),
        (
            "workload identity without any client id",
            without_credential(|s| {
                s.federated_token_file = Some(token_file.clone());
                s.client_id = String::new();
            }),
            "graph.client.client_id (or AZURE_CLIENT_ID)",
        ),
        (
            "managed identity named, a secret still set",
            with(named(CredentialKind::ManagedIdentity)),
            "graph.client.client_secret (for secret)",
        ),
        (
            "a secret named, a token file still set",
            with(|s| {
                s.credential = Some(CredentialKind::Secret);
                s.federated_token_file = Some(token_file.clone());
            }),
            "graph.client.federated_token_file (for workload_identity)",
        ),
        (
            "a secret named, none given",
            without_credential(named(CredentialKind::Secret)),
            "CMP__GRAPH__CLIENT__CLIENT_SECRET",
        ),
        (
            "a secret named, two given",
            with(|s| {
                s.credential = Some(CredentialKind::Secret);
                s.client_secret_file = Some("/nonexistent/secret".into());
            }),
            "exactly one credential",
        ),
        (
            "a secret and a token file, none named",
            with(|s| s.federated_token_file = Some(token_file.clone())),
            "exactly one credential",
        ),
        (
            "a clear-text managed identity endpoint off the machine",
            without_credential(|s| {
                s.credential = Some(CredentialKind::ManagedIdentity);
                s.managed_identity_endpoint =
                    "http://10.0.0.5/metadata/identity/oauth2/token".into();
            }),
            "graph.client.managed_identity_endpoint must use https",
        ),
        (
            "a clear-text IDENTITY_ENDPOINT off the machine",
            without_credential(|s| {
                s.credential = Some(CredentialKind::ManagedIdentity);
                s.azure = app_service("http://identity.example.com/msi/token");
            }),
            "IDENTITY_ENDPOINT must use https",
        ),
        (
            "IDENTITY_ENDPOINT without IDENTITY_HEADER",
            without_credential(|s| {
                s.credential = Some(CredentialKind::ManagedIdentity);
                s.azure.identity_endpoint = Some("http://127.0.0.1:41741/MSI/token/".into());
            }),
            "IDENTITY_ENDPOINT and IDENTITY_HEADER go together",
        ),
    ];
    for (case, settings, needle) in cases {
        let error = settings.resolve(TENANT).expect_err(case);
        assert!(
            error.contains(needle),
            "{case}: expected '{needle}' in: {error}"
        );
    }
    let error = with(|s| s.azure.tenant_id = Some("not-a-guid".into()))
        .resolve(Uuid::nil())
        .expect_err("a bad AZURE_TENANT_ID");
    assert!(error.contains("AZURE_TENANT_ID is not a GUID"), "{error}");
}

#[test]
fn identity_endpoints_may_use_plain_http_only_where_it_cannot_leave_the_machine() {
    let managed_identity = |endpoint: &str| {
        without_credential(|s| {
            s.credential = Some(CredentialKind::ManagedIdentity);
            s.managed_identity_endpoint = endpoint.into();
        })
        .resolve(TENANT)
    };
    for endpoint in [
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "http://169.254.255.2:8081/msi/token",
        "http://127.0.0.1:41741/MSI/token/",
        "http://localhost:42356/msi/token",
        "http://[fe80::1]:8081/msi/token",
        "https://identity.example.com/msi/token",
    ] {
        assert!(managed_identity(endpoint).is_ok(), "{endpoint}");
    }
    for endpoint in [
        "http://10.0.0.5/msi/token",
        "http://identity.example.com/msi/token",
        "ftp://127.0.0.1/msi/token",
    ] {
        let error = managed_identity(endpoint).expect_err(endpoint);
        assert!(
            error.contains("graph.client.managed_identity_endpoint"),
            "{endpoint}: {error}"
        );
    }
}
