//! The audit history of creates, updates and deletes.

use super::*;

#[tokio::test]
async fn create_patch_and_delete_each_leave_an_audit_entry_with_request_id_caller_and_changes() {
    let (_fake, app) = against_healthy_graph().await;
    let caller = format!(
        "app:{}/{}",
        app.settings.auth.entra.allowed_tenants[0],
        cmp_server::cli::DEVELOPER_OBJECT_ID
    );

    let created = app.post_partner(r#"{"displayName":"Audit Before"}"#).await;
    let create_request = header(&created, "request-id");
    let id = created_id(created, 201).await;
    let patched = app
        .patch_partner(
            &id,
            r#"{"displayName":"Audit After","partnerState":"enabled","androidOnboarded":true}"#,
            None,
        )
        .await;
    let patch_request = header(&patched, "request-id");
    assert_eq!(patched.status(), 200);
    let deleted = app.delete_partner(&id).await;
    let delete_request = header(&deleted, "request-id");
    assert_eq!(deleted.status(), 204);
    let (app_ref, id_ref) = (&app, &id);
    let entries = wait_until(
        DRAIN_BOUND,
        "Graph's confirmation in the audit log",
        || async move {
            let entries = app_ref.audit_entries(id_ref).await;
            if entries.len() >= 4 {
                Ok(entries)
            } else {
                Err(format!("{entries:#?}"))
            }
        },
    )
    .await;

    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["created", "updated", "deleted", "deleted_in_graph"]
    );
    let requests: Vec<&str> = entries.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(
        requests,
        [
            create_request.as_str(),
            patch_request.as_str(),
            delete_request.as_str(),
            ""
        ]
    );
    let callers: Vec<&str> = entries.iter().map(|e| e.caller.as_str()).collect();
    assert_eq!(callers, [caller.as_str(), &caller, &caller, "dispatcher"]);
    assert!(
        entries[0].detail.contains("Audit Before"),
        "{:?}",
        entries[0]
    );
    for change in [
        "displayName: 'Audit Before' -> 'Audit After'",
        "partnerState: unknown -> enabled",
        "androidOnboarded: false -> true",
    ] {
        assert!(
            entries[1].detail.contains(change),
            "{change} in {:?}",
            entries[1]
        );
    }
    assert!(
        !entries[3].detail.contains("graph request-id none"),
        "Graph's request id is kept: {:?}",
        entries[3]
    );
    let sync = json_body(
        app.get_outside_root(&app.operator_token(), &format!("/admin/partners/{id}/sync"))
            .await,
    )
    .await;
    assert_eq!(
        (sync["operation"].clone(), sync["state"].clone()),
        (json!("delete"), json!("delivered")),
        "{sync}"
    );
    assert!(
        sync["deliveries"][0]["graphRequestId"].is_string(),
        "{sync}"
    );
}
