//! A client that goes away in the middle of a create: the create, once committed, still runs
//! its inline delivery to the end and records it, so its outbox row is not left leased; and a
//! shutdown waits for it before closing the store.

use std::time::Duration;

use cmp_fake_graph::{FakeGraph, FakeGraphOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{COLLECTION, TestApp, outbox_rows_in, spawn_app_against, wait_until};

/// Longest wait for something the service does at once.
const BOUND: Duration = Duration::from_secs(20);

/// A fake Graph that holds every create, the service over it, and a create whose client went
/// away while Graph held it ([`create_then_leave`]). Nothing but the create itself can move its
/// row out of `in_flight`: no deadline or timeout ends the inline delivery first, and the lease
/// (after which the dispatcher would reconcile the row) outlasts the test.
async fn create_held_and_abandoned() -> (FakeGraph, TestApp) {
    let fake = FakeGraph::start(FakeGraphOptions::default())
        .await
        .expect("the fake Graph starts");
    fake.hold_creates();
    let app = spawn_app_against(&fake, |settings| {
        settings.outbox.inline_deadline = Duration::from_secs(600);
        settings.outbox.lease = Duration::from_secs(900);
        settings.http.request_timeout_ms = 700_000;
        settings.graph.client.request_timeout_ms = 600_000;
        settings.http.shutdown_grace_ms = 600_000;
    })
    .await;
    create_then_leave(&app, &fake).await;
    (fake, app)
}

/// POSTs a create named "Client gone", waits until its POST reached Graph (after its
/// transaction committed), then goes away without an answer.
async fn create_then_leave(app: &TestApp, fake: &FakeGraph) {
    let body = r#"{"displayName": "Client gone"}"#;
    let mut client = TcpStream::connect(app.socket_address())
        .await
        .expect("the service accepts");
    let request = format!(
        "POST /beta{COLLECTION} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        app.socket_address(),
        app.token,
        body.len()
    );
    client
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    wait_until(BOUND, "the create's POST to reach Graph", || async {
        match fake.stats().posts {
            1 => Ok(()),
            posts => Err(format!("{posts} POSTs")),
        }
    })
    .await;

    // The client goes away. The service notices the closed connection and drops the request's
    // handler: the connection ends without an answer.
    client.shutdown().await.expect("the client closes its side");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(BOUND, client.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the service kept the connection of a client that went away"
    );
    assert!(
        answer.is_empty(),
        "answered before Graph did: {}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(app.outbox_rows().await[0].state, "in_flight");
}

#[tokio::test]
async fn a_create_whose_client_went_away_before_the_answer_still_ends_delivered() {
    let (fake, app) = create_held_and_abandoned().await;

    fake.release_creates();

    let row = wait_until(BOUND, "the create row to be delivered", || async {
        let rows = app.outbox_rows().await;
        match rows.as_slice() {
            [row] if row.state == "delivered" => Ok(row.clone()),
            _ => Err(format!("{rows:?}")),
        }
    })
    .await;
    assert_eq!(row.display_name, "Client gone");
    assert_eq!(row.attempts, 1);
    let objects = fake.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(row.graph_id.as_deref(), objects[0]["id"].as_str());
    assert_eq!(fake.stats().posts, 1, "no second POST");
    app.stop().await;
}

#[tokio::test]
async fn a_shutdown_waits_for_a_create_whose_client_went_away_before_closing_the_store() {
    let (fake, app) = create_held_and_abandoned().await;
    let database = app.database.clone();
    let detached_creates = app.detached_creates.clone();
    assert_eq!(detached_creates.len(), 1, "the create runs detached");

    let stopped = tokio::spawn(app.stop());
    wait_until(
        BOUND,
        "the shutdown to wait for the creates in flight",
        || async {
            if detached_creates.is_closed() {
                Ok(())
            } else {
                Err("not closed".to_owned())
            }
        },
    )
    .await;
    assert!(
        !stopped.is_finished(),
        "the service stopped with a create in flight"
    );

    // The store is still open: the create records its delivery, then the service stops.
    fake.release_creates();
    let _directory = tokio::time::timeout(BOUND, stopped)
        .await
        .expect("the service stops once the create has ended")
        .expect("the stop task ends");

    let rows = outbox_rows_in(&database).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].state, "delivered", "{rows:?}");
    assert_eq!(fake.objects().len(), 1);
}
