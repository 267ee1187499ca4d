//! Every change mirrored to Graph through the outbox, in order per partner and per name.

use super::*;

/// Graph answering every call with 429 and a `Retry-After` of `seconds`.
fn throttling(seconds: &str) -> FakeGraphOptions {
    FakeGraphOptions {
        failure_rate: 1.0,
        failure_statuses: vec![429],
        applied_before_failure_rate: 0.0,
        retry_after: seconds.to_owned(),
        ..FakeGraphOptions::default()
    }
}

fn down() -> FakeGraphOptions {
    FakeGraphOptions {
        down: true,
        ..FakeGraphOptions::default()
    }
}

/// Display names of the fake's objects, sorted.
fn graph_names(fake: &FakeGraph) -> Vec<String> {
    let mut names: Vec<String> = fake
        .objects()
        .iter()
        .map(|o| o["displayName"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// Waits until no outbox row of `partners` waits any more (every one delivered, or removed),
/// failing at once if one goes dead.
async fn wait_until_settled(app: &TestApp, partners: &[&str]) -> Vec<Vec<OutboxJob>> {
    wait_until(DRAIN_BOUND, "every outbox row delivered", || async move {
        let mut all = Vec::new();
        for partner in partners {
            let jobs = app.outbox_jobs(partner).await;
            assert!(
                jobs.iter().all(|j| j.state != "dead"),
                "no row may go dead here: {partner}: {jobs:?}"
            );
            all.push(jobs);
        }
        if all.iter().flatten().all(|j| j.state == "delivered") {
            Ok(all)
        } else {
            Err(format!("{all:?}"))
        }
    })
    .await
}

/// A fake Graph with `options`, a recording proxy in front of it, and the service sending its
/// Graph calls through the proxy, with its settings changed by `adjust`.
async fn behind_proxy(
    options: FakeGraphOptions,
    adjust: impl FnOnce(&mut cmp_server::config::Settings),
) -> (FakeGraph, RecordingProxy, TestApp) {
    let fake = start_fake(options).await;
    let proxy = RecordingProxy::start(fake.uri()).await;
    let app = spawn_app_against(&fake, |s| {
        s.graph.client.root = proxy.graph_root();
        adjust(s);
    })
    .await;
    (fake, proxy, app)
}

/// The operations of `jobs`, in order.
fn operations(jobs: &[OutboxJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.operation.as_str()).collect()
}

/// The operation and state of each of `jobs`, in order.
fn operations_and_states(jobs: &[OutboxJob]) -> Vec<(&str, &str)> {
    jobs.iter()
        .map(|j| (j.operation.as_str(), j.state.as_str()))
        .collect()
}

/// The writes among `calls` that reached the proxy from `since` on.
fn writes_since(
    calls: &[crate::helpers::ProxiedCall],
    since: Instant,
) -> Vec<crate::helpers::ProxiedCall> {
    writes(calls)
        .into_iter()
        .filter(|c| c.arrived >= since)
        .collect()
}

/// The writes (POST, PATCH, DELETE) among `calls`.
fn writes(calls: &[crate::helpers::ProxiedCall]) -> Vec<crate::helpers::ProxiedCall> {
    calls
        .iter()
        .filter(|c| matches!(c.method.as_str(), "POST" | "PATCH" | "DELETE"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_patch_of_a_delivered_partner_reaches_graph_as_one_patch() {
    let (fake, app) = against_healthy_graph().await;
    let id = create(&app, r#"{"displayName":"Mirror Before"}"#, 201).await;
    let graph_id = fake.objects()[0]["id"].as_str().expect("id").to_owned();

    let response = app
        .patch_partner(
            &id,
            r#"{"displayName":"Mirror After","partnerState":"enabled","iosOnboarded":true}"#,
            None,
        )
        .await;

    assert_eq!(response.status(), 200);
    let fake = &fake;
    let object = wait_until(DRAIN_BOUND, "Graph holds the new name", || async move {
        match fake.objects().as_slice() {
            [object] if object["displayName"] == "Mirror After" => Ok(object.clone()),
            objects => Err(format!("{objects:?}")),
        }
    })
    .await;
    assert_eq!(object["id"], graph_id.as_str(), "the same object, patched");
    assert_eq!(object["partnerState"], "enabled");
    assert_eq!(object["iosOnboarded"], true);
    let jobs = wait_until_settled(&app, &[&id]).await;
    assert_eq!(operations(&jobs[0]), ["create", "update"]);
    let stats = fake.stats();
    assert_eq!((stats.posts, stats.patches, stats.deletes), (1, 1, 0));
}

#[tokio::test]
async fn an_update_to_a_partner_graph_certainly_does_not_hold_folds_into_its_pending_create() {
    // A 429 means "not done": the create waits `pending`, certainly not in Graph, so the PATCH
    // folds into it. A Retry-After beyond the client's in-call budget ends the inline call at
    // once and keeps the row waiting while the test patches.
    let (fake, proxy, app) = behind_proxy(throttling("3"), |_| {}).await;
    let id = create(
        &app,
        r#"{"displayName":"Fold Pending","macOsOnboarded":false}"#,
        202,
    )
    .await;
    let waiting = app.outbox_jobs(&id).await;

    let patched = app
        .patch_partner(
            &id,
            r#"{"displayName":"Fold Pending Renamed","macOsOnboarded":true}"#,
            None,
        )
        .await;
    let jobs = app.outbox_jobs(&id).await;
    fake.set_options(FakeGraphOptions::default());
    let back = Instant::now();
    wait_until_settled(&app, &[&id]).await;

    assert_eq!(operations_and_states(&waiting), [("create", "pending")]);
    assert_eq!(patched.status(), 200);
    assert_eq!(
        operations(&jobs),
        ["create"],
        "the update folded into the create: {jobs:?}"
    );
    let calls = proxy.calls();
    let after: Vec<_> = writes_since(&calls, back);
    assert_eq!(after.len(), 1, "one write once Graph is back: {after:#?}");
    assert_eq!((after[0].method.as_str(), after[0].status), ("POST", 201));
    assert_eq!(after[0].body["displayName"], "Fold Pending Renamed");
    assert_eq!(after[0].body["macOsOnboarded"], true);
    assert!(
        calls.iter().all(|c| c.method != "PATCH"),
        "no PATCH ever: {calls:#?}"
    );
    assert_eq!(graph_names(&fake), ["Fold Pending Renamed"]);
    let stats = fake.stats();
    assert_eq!((stats.posts_applied, stats.patches), (1, 0));
}

#[tokio::test]
async fn an_update_while_graph_is_down_reaches_graph_as_one_object_carrying_the_patched_values() {
    // Graph down: the create's 503 leaves its outcome unknown, so the update is queued behind it
    // rather than folded (Graph might hold the old version under the old name).
    let (fake, proxy, app) = behind_proxy(down(), |s| {
        s.outbox.settle = Duration::from_millis(SLOW_SETTLE_MS);
    })
    .await;
    let id = create(
        &app,
        r#"{"displayName":"Down Patched","macOsOnboarded":false}"#,
        202,
    )
    .await;

    let patched = app
        .patch_partner(
            &id,
            r#"{"displayName":"Down Patched Renamed","macOsOnboarded":true}"#,
            None,
        )
        .await;
    fake.set_options(FakeGraphOptions::default());
    let back = Instant::now();
    let jobs = wait_until_settled(&app, &[&id]).await;

    assert_eq!(patched.status(), 200);
    let after: Vec<_> = writes_since(&proxy.calls(), back);
    let posts: Vec<_> = after.iter().filter(|c| c.method == "POST").collect();
    assert_eq!(posts.len(), 1, "one POST once Graph is back: {after:#?}");
    assert_eq!(posts[0].body["displayName"], "Down Patched Renamed");
    assert_eq!(posts[0].body["macOsOnboarded"], true);
    assert!(after.iter().all(|c| c.method != "DELETE"), "{after:#?}");
    let objects = fake.objects();
    assert_eq!(graph_names(&fake), ["Down Patched Renamed"], "{objects:?}");
    assert_eq!(objects[0]["macOsOnboarded"], true);
    println!(
        "down then patched: outbox {:?}; writes after Graph came back: {:?}",
        operations(&jobs[0]),
        after.iter().map(|c| c.method.as_str()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn deleting_a_partner_graph_refused_with_429_cancels_its_create_and_touches_nothing_in_graph()
{
    // 429 means "not done": the create is certainly not in Graph, so the delete can drop it.
    // A Retry-After beyond the client's in-call budget ends the call at once and keeps the row
    // from being retried before the delete.
    let (fake, proxy, app) = behind_proxy(throttling("3"), |_| {}).await;
    let id = create(&app, r#"{"displayName":"Cancelled Before Graph"}"#, 202).await;
    let waiting = app.outbox_jobs(&id).await;

    let deleted = app.delete_partner(&id).await;
    let left = app.outbox_jobs(&id).await;
    let tables = app.table_counts().await;
    fake.set_options(FakeGraphOptions::default());
    let back = Instant::now();
    let barrier = app
        .post_partner(r#"{"displayName":"Barrier Partner"}"#)
        .await;
    let barrier_id = json_body(barrier).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_until_settled(&app, &[&barrier_id]).await;

    assert_eq!(operations_and_states(&waiting), [("create", "pending")]);
    assert_eq!(deleted.status(), 204);
    assert!(left.is_empty(), "the create is cancelled: {left:?}");
    assert_eq!(tables, crate::create::ONLY_TWO_AUDIT_ENTRIES);
    assert_eq!(app.get_partner(&id).await.status(), 404);
    let after: Vec<_> = writes_since(&proxy.calls(), back)
        .into_iter()
        .map(|c| (c.method, c.body["displayName"].clone()))
        .collect();
    assert!(
        !after.is_empty()
            && after
                .iter()
                .all(|(method, name)| method == "POST" && name == "Barrier Partner"),
        "only the barrier's create once Graph is back: {after:?}"
    );
    assert_eq!(graph_names(&fake), ["Barrier Partner"]);
    let stats = fake.stats();
    assert_eq!((stats.posts_applied, stats.deletes), (1, 0));
}

#[tokio::test]
async fn deleting_a_partner_created_while_graph_was_down_sends_nothing_to_graph_once_it_is_back() {
    let (fake, proxy, app) = behind_proxy(down(), |s| {
        s.outbox.settle = Duration::from_millis(SLOW_SETTLE_MS);
    })
    .await;
    let id = create(&app, r#"{"displayName":"Deleted While Down"}"#, 202).await;

    let deleted = app.delete_partner(&id).await;
    fake.set_options(FakeGraphOptions::default());
    let back = Instant::now();
    wait_until_settled(&app, &[&id]).await;

    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get_partner(&id).await.status(), 404);
    let after: Vec<_> = writes_since(&proxy.calls(), back)
        .into_iter()
        .map(|c| format!("{} {} -> {}", c.method, c.target, c.status))
        .collect();
    assert!(
        after.is_empty(),
        "a partner deleted before Graph ever confirmed it must not be created in Graph (and \
         then deleted) once Graph is back; writes seen: {after:#?}"
    );
    assert!(fake.objects().is_empty());
}

#[tokio::test]
async fn a_deleted_partners_name_stays_reserved_until_graph_confirms_the_delete() {
    let (fake, app) = against_healthy_graph().await;
    let id = create(&app, r#"{"displayName":"Reserved Name"}"#, 201).await;
    fake.set_options(down());

    let deleted = app.delete_partner(&id).await;
    let gone = app.get_partner(&id).await.status();
    let (recreate_status, recreate_body) = refusal(
        app.post_partner(r#"{"displayName":"  reserved NAME "}"#)
            .await,
    )
    .await;
    let listed = app
        .list(&query_string(&[(
            "$filter",
            "displayName eq 'Reserved Name'",
        )]))
        .await;
    let still_in_graph = graph_names(&fake);
    fake.set_options(FakeGraphOptions::default());
    let fake = &fake;
    wait_until(DRAIN_BOUND, "Graph confirms the delete", || async move {
        if fake.objects().is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", fake.objects()))
        }
    })
    .await;
    let jobs = wait_until_settled(&app, &[&id]).await;
    let recreated = app.post_partner(r#"{"displayName":"Reserved Name"}"#).await;

    assert_eq!(deleted.status(), 204, "answered while Graph is down");
    assert_eq!(gone, 404);
    assert_eq!(recreate_status, 409, "{recreate_body}");
    assert_eq!(recreate_body["error"]["code"], "nameAlreadyExists");
    assert_eq!(ids_of(&listed), Vec::<String>::new());
    assert_eq!(still_in_graph, ["Reserved Name"]);
    assert_eq!(operations(&jobs[0]), ["create", "delete"]);
    assert_eq!(
        recreated.status(),
        201,
        "the name is free once Graph confirmed"
    );
    let new_id = json_body(recreated).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_ne!(new_id, id);
    assert_eq!(graph_names(fake), ["Reserved Name"]);
    let actions: Vec<String> = app
        .audit_entries(&id)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["created", "deleted", "deleted_in_graph"]);
}

#[tokio::test]
async fn create_patch_and_delete_of_one_partner_reach_a_slow_graph_in_order() {
    let slow = FakeGraphOptions {
        latency_ms: (250, 250),
        ..FakeGraphOptions::default()
    };
    let (fake, proxy, app) = behind_proxy(slow, |s| {
        // Long enough that the create is confirmed inline (201), so the PATCH cannot fold.
        s.outbox.inline_deadline = Duration::from_millis(3000);
        s.outbox.lease = Duration::from_millis(6000);
        s.graph.client.request_timeout_ms = 2000;
    })
    .await;

    let id = create(&app, r#"{"displayName":"Ordered Partner"}"#, 201).await;
    let patched = app
        .patch_partner(&id, r#"{"displayName":"Ordered Partner Renamed"}"#, None)
        .await
        .status();
    let deleted = app.delete_partner(&id).await.status();
    let jobs = wait_until_settled(&app, &[&id]).await;

    assert_eq!((patched.as_u16(), deleted.as_u16()), (200, 204));
    assert_eq!(operations(&jobs[0]), ["create", "update", "delete"]);
    let writes = writes(&proxy.calls());
    let methods: Vec<&str> = writes.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH", "DELETE"], "{writes:#?}");
    for pair in writes.windows(2) {
        assert!(
            pair[1].arrived >= pair[0].answered,
            "{} started before {} was answered",
            pair[1].method,
            pair[0].method
        );
    }
    let graph_id = writes[0].response["id"].as_str().expect("Graph's id");
    assert!(writes[1].target.ends_with(graph_id) && writes[2].target.ends_with(graph_id));
    assert_eq!(writes[1].body["displayName"], "Ordered Partner Renamed");
    assert_eq!(
        writes.iter().map(|c| c.status).collect::<Vec<_>>(),
        [201, 200, 204]
    );
    assert!(fake.objects().is_empty(), "{:?}", fake.objects());
    let stats = fake.stats();
    assert_eq!((stats.posts, stats.patches, stats.deletes), (1, 1, 1));
}

#[tokio::test]
async fn a_rename_folded_into_a_create_of_unknown_outcome_leaves_no_object_under_the_old_name() {
    // Graph stores the POST and still answers 504: the create's outcome is unknown, and Graph
    // holds the partner under the name it had then.
    let fake = start_fake(FakeGraphOptions {
        failure_rate: 1.0,
        failure_statuses: vec![504],
        applied_before_failure_rate: 1.0,
        ..FakeGraphOptions::default()
    })
    .await;
    let app = spawn_app_against(&fake, |s| {
        s.outbox.settle = Duration::from_millis(SLOW_SETTLE_MS)
    })
    .await;
    let id = create(&app, r#"{"displayName":"Fold Unknown Before"}"#, 202).await;
    let held = graph_names(&fake);

    let patched = app
        .patch_partner(&id, r#"{"displayName":"Fold Unknown After"}"#, None)
        .await
        .status();
    fake.set_options(FakeGraphOptions::default());
    wait_until_settled(&app, &[&id]).await;

    assert_eq!(held, ["Fold Unknown Before"], "the 504 POST was applied");
    assert_eq!(patched, 200);
    assert_eq!(
        graph_names(&fake),
        ["Fold Unknown After"],
        "Graph must end with the partner once, under its new name (no orphan under the old one)"
    );
}

#[tokio::test]
async fn a_name_freed_by_a_rename_is_not_matched_to_the_renamed_object_before_graph_has_the_rename()
{
    let (fake, proxy, app) = behind_proxy(FakeGraphOptions::default(), |_| {}).await;
    let first = create(&app, r#"{"displayName":"Swap Name"}"#, 201).await;
    let first_graph_id = fake.objects()[0]["id"].as_str().expect("id").to_owned();
    // The rename waits: Graph answers its PATCHes 503.
    proxy.fail("PATCH", 503);
    let renamed = app
        .patch_partner(&first, r#"{"displayName":"Swap Name Moved"}"#, None)
        .await
        .status();
    // The freed name is taken by a second partner whose create ends unknown (a 504 that
    // stored nothing), so it is reconciled by name against Graph's list.
    proxy.fail("POST", 504);
    let second = create(&app, r#"{"displayName":"Swap Name"}"#, 202).await;
    proxy.heal("POST");
    let attempts_then = app.outbox_jobs(&first).await[1].attempts;
    let accepted = Instant::now();

    // The second create settles after 100 ms; give the dispatcher ten times that while the
    // rename keeps failing. A service that orders the two waits here; one that does not has
    // matched the second partner by then.
    let (app_ref, second_ref, first_ref) = (&app, &second, &first);
    wait_until(
        DRAIN_BOUND,
        "the second create delivered, or a second passed with the rename retried meanwhile",
        || async move {
            let second_jobs = app_ref.outbox_jobs(second_ref).await;
            let first_jobs = app_ref.outbox_jobs(first_ref).await;
            let waited = accepted.elapsed() >= Duration::from_secs(1)
                && first_jobs[1].attempts >= attempts_then + 2;
            if second_jobs[0].state == "delivered" || waited {
                Ok(())
            } else {
                Err(format!("{first_jobs:?} {second_jobs:?}"))
            }
        },
    )
    .await;
    proxy.heal("PATCH");
    wait_until_settled(&app, &[&first, &second]).await;

    assert_eq!(renamed, 200);
    assert!(
        proxy
            .calls()
            .iter()
            .any(|c| c.method == "PATCH" && !c.forwarded && c.status == 503),
        "the rename was held back by injected 503s"
    );
    let operator = app.operator_token();
    let sync = |id: &str| format!("/admin/partners/{id}/sync");
    let first_sync = json_body(app.get_outside_root(&operator, &sync(&first)).await).await;
    let second_sync = json_body(app.get_outside_root(&operator, &sync(&second)).await).await;
    assert_eq!(first_sync["graphId"], first_graph_id.as_str());
    assert_ne!(
        second_sync["graphId"], first_sync["graphId"],
        "the second partner was matched to the first one's object: {second_sync}"
    );
    assert_eq!(
        graph_names(&fake),
        ["Swap Name", "Swap Name Moved"],
        "Graph holds both partners"
    );
}
