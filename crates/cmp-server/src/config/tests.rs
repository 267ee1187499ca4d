use super::*;

fn config_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config"))
}

#[test]
fn every_shipped_environment_but_production_loads() {
    for environment in [Environment::Development, Environment::Test] {
        let settings = load_from(&config_dir(), environment).expect("shipped config loads");
        assert_eq!(settings.environment, environment);
        assert_eq!(settings.http.root_path, "/beta");
    }
    let test = load_from(&config_dir(), Environment::Test).expect("loads");
    assert_eq!(test.http.port, 0);
    assert_eq!(test.metrics.port, 0, "each test instance binds its own");
    let development = load_from(&config_dir(), Environment::Development).expect("loads");
    assert_eq!(
        (development.http.host.as_str(), development.http.port),
        ("127.0.0.1", 8080)
    );
    assert!(development.metrics.enabled);
    assert_eq!(
        (development.metrics.host.as_str(), development.metrics.port),
        ("127.0.0.1", 9464),
        "metrics on loopback unless an operator exposes them"
    );
}

#[test]
fn production_refuses_to_start_until_everything_it_needs_is_set() {
    let shipped = load_from(&config_dir(), Environment::Production).expect_err("must refuse");
    assert!(
        format!("{shipped:#}").contains("auth.entra.audiences"),
        "{shipped:#}"
    );

    let entra = "[auth.entra]\naudiences = [\"3f1b9a4e-5c2d-4e8f-9a7b-6d5c4b3a2f10\"]\nallowed_tenants = [\"72f988bf-86f1-41af-91ab-2d7cd011db47\"]\n";
    let cases = [
        (
            format!("[auth]\nmode = \"entra\"\n{entra}"),
            "http.public_base_url",
        ),
        (
            format!(
                "[http]\npublic_base_url = \"https://onboarding.example.com/beta\"\n[auth]\nmode = \"entra\"\n{entra}"
            ),
            "graph.mode",
        ),
        (
            format!("[http]\npublic_base_url = \"https://onboarding.example.com/beta\"\n{entra}"),
            "auth.mode",
        ),
    ];
    for (overlay, key) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(
            config_dir().join("default.toml"),
            dir.path().join("default.toml"),
        )
        .expect("copy");
        std::fs::write(dir.path().join("production.toml"), overlay).expect("write");

        let error = load_from(dir.path(), Environment::Production).expect_err(key);

        assert!(format!("{error:#}").contains(key), "case {key}: {error:#}");
    }
}

#[test]
fn an_unknown_environment_is_refused_by_name() {
    let error = "staging".parse::<Environment>().expect_err("unknown");
    assert!(error.to_string().contains("CMP_ENV"), "{error}");
}

/// A config folder holding the shipped `default.toml` and `overlay` as `test.toml`.
fn config_with_overlay(overlay: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        config_dir().join("default.toml"),
        dir.path().join("default.toml"),
    )
    .expect("copy");
    std::fs::write(dir.path().join("test.toml"), overlay).expect("write");
    dir
}

#[test]
fn a_bad_value_is_refused_with_its_key_named() {
    let cases = [
        ("[http]\nroot_path = \"beta/\"\n", "http.root_path"),
        (
            "[http]\npublic_base_url = \"ftp://x\"\n",
            "http.public_base_url",
        ),
        (
            "[graph.simulated]\nfailure_rate = 2.0\n",
            "graph.simulated.failure_rate",
        ),
        (
            "[delivery]\ninline_deadline_ms = 0\n",
            "delivery.inline_deadline_ms",
        ),
        (
            "[delivery]\ninline_deadline_ms = 40000\nlease_ms = 50000\n",
            "http.request_timeout_ms",
        ),
        ("[http]\nport = \"eighty\"\n", "port"),
        ("[graph]\ntenant_id = \"not-a-guid\"\n", "tenant_id"),
        ("[graph]\nmode = \"magic\"\n", "mode"),
        ("[http]\ncolour = \"red\"\n", "colour"),
        (
            "[readiness]\ndispatcher_stale_after_ms = 1500\n",
            "readiness.dispatcher_stale_after_ms",
        ),
        (
            "[readiness]\nstore_timeout_ms = 0\n",
            "readiness.store_timeout_ms",
        ),
        ("[metrics]\nhost = \"\"\n", "metrics.host"),
        (
            "[metrics]\nrefresh_interval_ms = 0\n",
            "metrics.refresh_interval_ms",
        ),
    ];
    for (overlay, key) in cases {
        let dir = config_with_overlay(overlay);

        let error = load_from(dir.path(), Environment::Test).expect_err(key);

        assert!(format!("{error:#}").contains(key), "case {key}: {error:#}");
    }
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = load_from(dir.path(), Environment::Test).expect_err("no files");
    assert!(format!("{error:#}").contains("default.toml"), "{error:#}");
}

#[test]
fn a_client_secret_in_a_config_file_is_refused() {
    let dir = config_with_overlay("[graph.client]\nclient_secret = \"committed-secret\"\n");

    let error = load_from(dir.path(), Environment::Test).expect_err("secret in a file");

    let text = format!("{error:#}");
    assert!(text.contains("CMP__GRAPH__CLIENT__CLIENT_SECRET"), "{text}");
    assert!(
        !text.contains("committed-secret"),
        "the secret must not be echoed: {text}"
    );
}

#[test]
fn graph_mode_without_credentials_refuses_to_start_with_a_clear_message() {
    let dir = config_with_overlay(
        "[graph]\nmode = \"graph\"\ntenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\n[graph.client]\nclient_id = \"11111111-2222-3333-4444-555555555555\"\n",
    );

    let error = load_from(dir.path(), Environment::Test).expect_err("no credential");

    assert!(
        format!("{error:#}").contains("exactly one credential"),
        "{error:#}"
    );
}
