//! PATCH: Graph's merge semantics, `Prefer: return=minimal`, the SDK's read-modify-write
//! body, and refusals that change nothing.

use super::*;

#[tokio::test]
async fn patching_a_display_name_answers_200_with_the_whole_entity_changed_only_there() {
    let app = spawn_app().await;
    let (id, before) = seed_partner(&app).await;

    let response = app
        .patch_partner(
            &id,
            r#"{"displayName":"Display Name value (patched)"}"#,
            None,
        )
        .await;
    let status = response.status();
    let content_type = header(&response, "content-type");
    let body = json_body(response).await;
    let recased = app
        .patch_partner(
            &id,
            &json!({ "id": id.to_uppercase(), "displayName": "DISPLAY NAME VALUE (PATCHED)" })
                .to_string(),
            None,
        )
        .await;

    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let mut expected = before.clone();
    expected["displayName"] = json!("Display Name value (patched)");
    assert_eq!(body, expected, "only displayName changed");
    assert_eq!(
        recased.status(),
        200,
        "the partner's own name in another case, with its id in upper case"
    );
    let mut expected = before;
    expected["displayName"] = json!("DISPLAY NAME VALUE (PATCHED)");
    assert_eq!(json_body(recased).await, expected);
    assert_eq!(json_body(app.get_partner(&id).await).await, expected);
}

#[tokio::test]
async fn patching_with_prefer_return_minimal_answers_204_with_an_empty_body() {
    let app = spawn_app().await;
    let (id, before) = seed_partner(&app).await;

    let response = app
        .patch_partner(
            &id,
            r#"{"partnerState":"enabled","linuxOnboarded":true}"#,
            Some("return=minimal"),
        )
        .await;
    let status = response.status();
    let applied = header(&response, "preference-applied");
    let body = response.bytes().await.expect("a body, maybe empty");

    assert_eq!(status, 204);
    assert!(body.is_empty(), "{body:?}");
    assert_eq!(applied, "return=minimal");
    let mut expected = before;
    expected["partnerState"] = json!("enabled");
    expected["linuxOnboarded"] = json!(true);
    assert_eq!(json_body(app.get_partner(&id).await).await, expected);
}

#[tokio::test]
async fn the_sdks_read_modify_write_patch_body_is_accepted() {
    let app = spawn_app().await;
    let (id, before) = seed_partner(&app).await;
    // What the SDK sends back after a GET: everything, with `id` and `@odata.context`, the
    // heartbeat re-formatted by Python (6 digits, +00:00).
    let mut sdk_body = before.clone();
    sdk_body["partnerState"] = json!("terminated");
    sdk_body["lastHeartbeatDateTime"] = json!("2017-01-01T07:59:37.917497+00:00");
    assert!(sdk_body["@odata.context"].is_string() && sdk_body["id"].is_string());

    let response = app.patch_partner(&id, &sdk_body.to_string(), None).await;
    let status = response.status();
    let body = json_body(response).await;
    let unchanged = app.patch_partner(&id, &body.to_string(), None).await;
    let no_fraction = app
        .patch_partner(
            &id,
            r#"{"lastHeartbeatDateTime":"2024-01-01T00:00:00+00:00"}"#,
            None,
        )
        .await;

    assert_eq!(status, 200, "{body}");
    let mut expected = before;
    expected["partnerState"] = json!("terminated");
    expected["lastHeartbeatDateTime"] = json!("2017-01-01T07:59:37.9174970Z");
    assert_eq!(body, expected);
    assert_eq!(unchanged.status(), 200);
    assert_eq!(
        json_body(unchanged).await,
        expected,
        "sending it back changes nothing"
    );
    assert_eq!(no_fraction.status(), 200);
    assert_eq!(
        json_body(no_fraction).await["lastHeartbeatDateTime"],
        "2024-01-01T00:00:00.0000000Z"
    );
}

#[tokio::test]
async fn refused_patches_answer_their_status_and_leave_the_partner_and_every_table_unchanged() {
    let app = spawn_app().await;
    let (id, before) = seed_partner(&app).await;
    let other = app.post_partner(r#"{"displayName":"Other Partner"}"#).await;
    assert_eq!(other.status(), 201);
    let tables = app.table_counts().await;
    let assignment = json!([
        { "target": { "@odata.type": "#microsoft.graph.allDevicesAssignmentTarget" } }
    ]);
    let cases: Vec<(&str, String, u16, &str, Option<&str>)> = vec![
        (
            "an id in the body that is not the path's",
            json!({ "id": uuid::Uuid::new_v4().to_string(), "displayName": "x" }).to_string(),
            400,
            "BadRequest",
            Some("id"),
        ),
        (
            "another partner's name in other case and spacing",
            json!({ "displayName": "  OTHER partner  " }).to_string(),
            409,
            "nameAlreadyExists",
            None,
        ),
        (
            "the same target twice on one platform",
            json!({ "linuxEnrollmentAssignments": [assignment[0], assignment[0]] }).to_string(),
            400,
            "BadRequest",
            Some("linuxEnrollmentAssignments"),
        ),
        (
            "a heartbeat in the future",
            json!({ "lastHeartbeatDateTime": "2999-01-01T00:00:00Z" }).to_string(),
            400,
            "BadRequest",
            Some("lastHeartbeatDateTime"),
        ),
        (
            "an unknown partnerState",
            json!({ "partnerState": "sleeping" }).to_string(),
            400,
            "BadRequest",
            None,
        ),
        (
            "an undeclared property",
            json!({ "colour": "red" }).to_string(),
            400,
            "BadRequest",
            None,
        ),
        (
            "an empty display name",
            json!({ "displayName": "  " }).to_string(),
            400,
            "BadRequest",
            None,
        ),
        (
            "not JSON",
            "{\"displayName\":".to_owned(),
            400,
            "BadRequest",
            None,
        ),
    ];

    for (case, body, status, code, target) in &cases {
        let (answered, error) = refusal(app.patch_partner(&id, body, None).await).await;

        assert_eq!(answered, *status, "case: {case}: {error}");
        assert_eq!(error["error"]["code"], *code, "case: {case}: {error}");
        if let Some(target) = target {
            assert_eq!(error["error"]["target"], *target, "case: {case}: {error}");
        }
        assert_eq!(
            json_body(app.get_partner(&id).await).await,
            before,
            "case: {case}: the partner is unchanged"
        );
        assert_eq!(
            app.table_counts().await,
            tables,
            "case: {case}: nothing written"
        );
    }
    let not_json = app
        .request(
            reqwest::Method::PATCH,
            &format!("{}/{id}", app.collection_url()),
        )
        .header("Content-Type", "text/plain")
        .body(r#"{"displayName":"x"}"#)
        .send()
        .await
        .expect("PATCH reaches the service");
    assert_eq!(not_json.status(), 415);
    let unknown = refusal(
        app.patch_partner(
            &uuid::Uuid::new_v4().to_string(),
            r#"{"displayName":"Ghost"}"#,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    assert_eq!(unknown.1["error"]["code"], "ResourceNotFound");
    assert_eq!(json_body(app.get_partner(&id).await).await, before);
    assert_eq!(app.table_counts().await, tables);
}

/// Clients that PATCH one partner at the same moment.
const CONCURRENT_PATCHES: usize = 12;

/// The two names of an audit entry's `displayName: 'before' -> 'after'` change.
fn renamed_in(detail: &str) -> (String, String) {
    let change = detail
        .split_once("displayName: '")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no displayName change in {detail:?}"));
    let (before, rest) = change.split_once("' -> '").expect("a before and an after");
    let (after, _) = rest.split_once('\'').expect("the after name ends");
    (before.to_owned(), after.to_owned())
}

#[tokio::test]
async fn concurrent_patches_of_one_partner_all_succeed_one_after_the_other_and_the_last_is_kept() {
    let app = Arc::new(spawn_app().await);
    let (id, before) = seed_partner(&app).await;

    let patches: Vec<_> = (0..CONCURRENT_PATCHES)
        .map(|client| {
            let (app, id) = (Arc::clone(&app), id.clone());
            tokio::spawn(async move {
                let body = json!({ "displayName": format!("Concurrent {client}") }).to_string();
                app.patch_partner(&id, &body, None).await.status()
            })
        })
        .collect();
    for patch in patches {
        assert_eq!(patch.await.expect("the client ran"), 200);
    }

    let entries = app.audit_entries(&id).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    let mut expected = vec!["created"];
    expected.extend(["updated"; CONCURRENT_PATCHES]);
    assert_eq!(actions, expected, "every change audited");
    // Each update renamed the partner from the name the one before it left: they ran one after
    // the other on the stored partner, none on a stale read.
    let mut name = before["displayName"]
        .as_str()
        .expect("a display name")
        .to_owned();
    let mut applied = BTreeSet::new();
    for entry in &entries[1..] {
        let (from, to) = renamed_in(&entry.detail);
        assert_eq!(from, name, "{entry:?}");
        applied.insert(to.clone());
        name = to;
    }
    assert_eq!(
        applied.len(),
        CONCURRENT_PATCHES,
        "every client's name applied once"
    );
    assert_eq!(
        json_body(app.get_partner(&id).await).await["displayName"],
        json!(name),
        "the last write is kept"
    );
}
