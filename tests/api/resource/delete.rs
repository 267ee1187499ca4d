//! DELETE: a deleted partner is gone for callers at once.

use super::*;

#[tokio::test]
async fn a_deleted_partner_answers_404_and_is_gone_from_lists_and_counts() {
    let app = Arc::new(spawn_app().await);
    let created = create_all(
        &app,
        ["Keep One", "Delete Me", "Keep Two"]
            .iter()
            .map(|n| json!({ "displayName": n }))
            .collect(),
        3,
    )
    .await;
    let ids: Vec<String> = created
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    let victim = ids[1].clone();
    assert_eq!(count_text(&app, "").await, 3);

    let deleted = app.delete_partner(&victim).await;
    let status = deleted.status();
    let body = deleted.bytes().await.expect("a body, maybe empty");
    let get = app.get_partner(&victim).await.status();
    let again = refusal(app.delete_partner(&victim).await).await;
    let patch = app
        .patch_partner(&victim, r#"{"displayName":"Back"}"#, None)
        .await
        .status();
    let listed = app.list("").await;
    let by_id = app
        .list(&query_string(&[
            ("$filter", &format!("id eq '{victim}'")),
            ("$count", "true"),
        ]))
        .await;
    let by_name = app
        .list(&query_string(&[("$filter", "displayName eq 'Delete Me'")]))
        .await;
    let counted = count_text(&app, "").await;

    assert_eq!(status, 204);
    assert!(body.is_empty());
    assert_eq!(get, 404);
    assert_eq!(again.0, 404);
    assert_eq!(again.1["error"]["code"], "ResourceNotFound");
    assert_eq!(patch, 404);
    let mut kept = vec![ids[0].clone(), ids[2].clone()];
    kept.sort();
    assert_eq!(ids_of(&listed), kept);
    assert_eq!(ids_of(&by_id), Vec::<String>::new());
    assert_eq!(by_id["@odata.count"], json!(0));
    assert_eq!(ids_of(&by_name), Vec::<String>::new());
    assert_eq!(counted, 2);
}
