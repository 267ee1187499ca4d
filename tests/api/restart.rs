//! Durability: what was accepted is still there after the service restarts on the same file.

use serde_json::Value;

use crate::create::expected_seed_body;
use crate::helpers::{SEED_REQUEST, json_body, spawn_app, spawn_app_in};

#[tokio::test]
async fn a_created_partner_is_served_unchanged_after_a_restart() {
    let app = spawn_app().await;
    let created = json_body(app.post_partner(SEED_REQUEST).await).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let directory = app.stop().await;

    let restarted = spawn_app_in(directory, |_| {}).await;
    let response = restarted.get_partner(&id).await;

    assert_eq!(response.status(), 200);
    let mut fetched = json_body(response).await;
    // Only the context URL may differ: the restarted service listens on another port.
    assert_eq!(fetched, expected_seed_body(&id, &restarted.root));
    let mut created = created;
    for body in [&mut fetched, &mut created] {
        body.as_object_mut()
            .expect("object")
            .remove("@odata.context");
    }
    assert_eq!(fetched, created);
    assert_eq!(restarted.outbox_state(&id).await, "delivered");
    // The name stays taken across the restart.
    let again = restarted.post_partner(SEED_REQUEST).await;
    assert_eq!(again.status(), 409);
    assert_eq!(
        json_body(again).await["error"]["code"],
        Value::from("nameAlreadyExists")
    );
}
