use std::collections::HashMap;

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
            "[graph.simulated]\nmax_objects = 0\n",
            "graph.simulated.max_objects",
        ),
        (
            "[outbox]\ninline_deadline = \"0s\"\n",
            "outbox.inline_deadline",
        ),
        (
            "[outbox]\ninline_deadline = \"40s\"\nlease = \"50s\"\n",
            "http.request_timeout",
        ),
        ("[outbox]\nlease = \"forever\"\n", "outbox.lease"),
        ("[outbox]\nlease = 5000\n", "outbox.lease_ms"),
        ("[outbox]\ncolour = \"red\"\n", "colour"),
        ("[delivery]\ncolour = \"red\"\n", "delivery.colour"),
        (
            "[http]\nrequest_timeout_ms = \"soon\"\n",
            "http.request_timeout_ms",
        ),
        ("[auth.entra]\nleeway = \"1500ms\"\n", "auth.entra.leeway"),
        ("[service]\ndata_dir = \"\"\n", "service.data_dir"),
        (
            "[service]\nworker_nice_increment = 20\n",
            "service.worker_nice_increment",
        ),
        (
            "[service]\nworker_nice_increment = -1\n",
            "worker_nice_increment",
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
fn an_empty_or_missing_config_folder_runs_on_the_built_in_defaults() {
    let empty = tempfile::tempdir().expect("temp dir");
    let missing = empty.path().join("nowhere");

    for directory in [empty.path(), missing.as_path()] {
        let loaded =
            load_layers(directory, Environment::Development, Some(HashMap::new())).expect("loads");

        assert_eq!(loaded.settings.http.port, 8080);
        assert_eq!(loaded.layers, ["built-in defaults", "CMP__* variables"]);
        assert!(loaded.notices.is_empty());
    }
}

#[test]
fn relative_paths_are_resolved_against_the_data_folder_and_absolute_ones_kept() {
    let absolute_db = std::env::temp_dir().join("elsewhere").join("cmp.db");
    let absolute_db = absolute_db.to_str().expect("utf-8");
    let cases = [
        ("", "data/partners.db", "data"),
        (
            "[service]\ndata_dir = \"/srv/cmp\"\n",
            "/srv/cmp/partners.db",
            "/srv/cmp",
        ),
        (
            "[service]\ndata_dir = \"/srv/cmp\"\n[sqlite]\npath = \"db/main.db\"\n[auth]\ndevelopment_key_dir = \"keys\"\n",
            "/srv/cmp/db/main.db",
            "/srv/cmp/keys",
        ),
    ];
    let working_folder = std::env::current_dir().expect("cwd");
    for (overlay, database, key_dir) in cases {
        let dir = config_with_overlay(overlay);

        let settings = load_from(dir.path(), Environment::Test).expect("loads");

        assert_eq!(
            settings.sqlite.path,
            working_folder.join(database),
            "{overlay}"
        );
        assert_eq!(
            settings.auth.development_key_dir,
            working_folder.join(key_dir),
            "{overlay}"
        );
        assert!(settings.service.data_dir.is_absolute());
    }
    let dir = config_with_overlay(&format!("[sqlite]\npath = \"{absolute_db}\"\n"));
    let settings = load_from(dir.path(), Environment::Test).expect("loads");
    assert_eq!(settings.sqlite.path, PathBuf::from(absolute_db));
}

/// The policy the shipped defaults stood for when they were written in milliseconds.
fn shipped_policy() -> OutboxPolicy {
    OutboxPolicy {
        inline_deadline: Duration::from_millis(10_000),
        lease: Duration::from_millis(160_000),
        settle: Duration::from_millis(130_000),
        retry_base: Duration::from_millis(10_000),
        backoff_cap: Duration::from_millis(900_000),
        max_attempts: 50,
        max_age: Duration::from_secs(86_400),
        batch_size: 1,
        reconcile_by_name: true,
    }
}

#[test]
fn the_shipped_defaults_give_the_same_policies_and_timeouts_as_before() {
    let settings = load_from(&config_dir(), Environment::Test).expect("loads");

    assert_eq!(settings.outbox.policy(), shipped_policy());
    assert_eq!(settings.outbox.dispatcher_workers, 4);
    assert_eq!(
        settings.outbox.dispatcher_poll_interval,
        Duration::from_millis(500)
    );
    let http = &settings.http;
    assert_eq!(
        (
            http.request_timeout_ms,
            http.header_read_timeout_ms,
            http.body_read_timeout_ms,
            http.shutdown_grace_ms
        ),
        (30_000, 10_000, 10_000, 15_000)
    );
    let client = &settings.graph.client;
    assert_eq!(
        (
            client.connect_timeout_ms,
            client.request_timeout_ms,
            client.token_timeout_ms,
            client.retry_budget_ms
        ),
        (30_000, 100_000, 30_000, 180_000)
    );
    assert_eq!(settings.sqlite.busy_timeout_ms, 5_000);
    let entra = &settings.auth.entra;
    assert_eq!(
        (
            entra.leeway_seconds,
            entra.jwks_refresh_seconds,
            entra.unknown_kid_refetch_seconds,
            entra.fetch_timeout_ms
        ),
        (60, 86_400, 300, 10_000)
    );
    let development = load_from(&config_dir(), Environment::Development).expect("loads");
    assert_eq!(development.graph.simulated.latency_ms, 20);
}

#[test]
fn the_old_delivery_section_is_read_as_the_outbox_with_one_notice_per_key() {
    let old_overlay = "[delivery]\ninline_deadline_ms = 10000\nlease_ms = 160000\nsettle_ms = 130000\nretry_base_ms = 10000\nbackoff_cap_ms = 900000\nmax_attempts = 50\nmax_age_seconds = 86400\ndispatcher_workers = 3\ndispatcher_batch_size = 1\ndispatcher_poll_interval_ms = 250\n";
    let dir = config_with_overlay(old_overlay);
    let variables = HashMap::from([
        (
            "CMP__DELIVERY__DISPATCHER_WORKERS".to_owned(),
            "2".to_owned(),
        ),
        ("CMP__DELIVERY__MAX_ATTEMPTS".to_owned(), "50".to_owned()),
    ]);

    let loaded = load_layers(dir.path(), Environment::Test, Some(variables)).expect("loads");

    let outbox = &loaded.settings.outbox;
    assert_eq!(outbox.policy(), shipped_policy());
    assert_eq!(
        outbox.dispatcher_workers, 2,
        "the variable overrides the file"
    );
    assert_eq!(outbox.dispatcher_poll_interval, Duration::from_millis(250));
    let deprecated: Vec<(String, String)> = loaded
        .notices
        .iter()
        .map(|notice| match notice {
            Notice::Deprecated { old, new } => (old.clone(), new.clone()),
            Notice::FolderMissing(_) => panic!("the folder exists"),
        })
        .collect();
    assert_eq!(deprecated.len(), 10, "one per old key: {deprecated:?}");
    assert!(deprecated.contains(&("delivery.lease_ms".into(), "outbox.lease".into())));
    assert!(deprecated.contains(&("delivery.max_age_seconds".into(), "outbox.max_age".into())));
    assert!(deprecated.contains(&(
        "delivery.dispatcher_workers".into(),
        "outbox.dispatcher_workers".into()
    )));
    let message = loaded.notices[0].to_string();
    assert!(message.contains("CMP__OUTBOX__"), "{message}");
    assert_eq!(
        loaded
            .effective
            .get("outbox.lease")
            .and_then(|v| v.as_str()),
        Some("2m 40s"),
        "config check shows the new spelling"
    );
    assert!(loaded.effective.get("delivery").is_none());
}

#[test]
fn durations_take_either_spelling_but_not_both_in_one_layer() {
    let suffixed =
        config_with_overlay("[http]\nrequest_timeout_ms = 45000\n[outbox]\nmax_age_seconds = 60\n");
    let settings = load_from(suffixed.path(), Environment::Test).expect("the old spelling loads");
    assert_eq!(settings.http.request_timeout_ms, 45_000);
    assert_eq!(settings.outbox.max_age, Duration::from_secs(60));

    let variables = HashMap::from([
        ("CMP__HTTP__REQUEST_TIMEOUT".to_owned(), "1m".to_owned()),
        ("CMP__OUTBOX__LEASE_MS".to_owned(), "20000".to_owned()),
    ]);
    let loaded = load_layers(suffixed.path(), Environment::Test, Some(variables)).expect("loads");
    assert_eq!(
        loaded.settings.http.request_timeout_ms, 60_000,
        "a later layer overrides"
    );
    assert_eq!(loaded.settings.outbox.lease, Duration::from_secs(20));

    for (overlay, named) in [
        (
            "[http]\nrequest_timeout = \"30s\"\nrequest_timeout_ms = 30000\n",
            ["http.request_timeout", "http.request_timeout_ms"],
        ),
        (
            "[outbox]\nlease = \"30s\"\n[delivery]\nlease_ms = 30000\n",
            ["delivery.lease_ms", "outbox.lease"],
        ),
    ] {
        let dir = config_with_overlay(overlay);

        let error = format!(
            "{:#}",
            load_from(dir.path(), Environment::Test).expect_err(overlay)
        );

        for key in named {
            assert!(error.contains(key), "{overlay}: {error}");
        }
        assert!(error.contains("test.toml"), "the layer is named: {error}");
    }
}

#[test]
fn a_secret_from_the_environment_is_redacted_in_the_effective_configuration() {
    let variables = HashMap::from([(
        "CMP__GRAPH__CLIENT__CLIENT_SECRET".to_owned(),
        "very-secret-value".to_owned(),
    )]);

    let loaded = load_layers(&config_dir(), Environment::Test, Some(variables)).expect("loads");

    let toml = loaded.effective.to_toml().expect("toml");
    let json = loaded.effective.to_json().expect("json");
    for text in [&toml, &json] {
        assert!(!text.contains("very-secret-value"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
    let reparsed: toml::Table = toml::from_str(&toml).expect("the TOML output parses");
    assert_eq!(reparsed["outbox"]["inline_deadline"].as_str(), Some("10s"));
    assert!(
        reparsed["sqlite"]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("partners.db"))
    );
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
