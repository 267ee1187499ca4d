//! Reading one partner: `$select`, unknown and undecodable ids.

use super::*;

#[tokio::test]
async fn get_by_id_honours_select_and_answers_404_for_unknown_and_undecodable_ids() {
    let app = spawn_app().await;
    let created = json_body(app.post_partner(SEED_REQUEST).await).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let item = |segment: &str| format!("{}/{segment}", app.collection_url());
    let first_char_encoded = format!("%{:02X}{}", id.as_bytes()[0], &id[1..]);
    let double_encoded = format!("%25{:02X}{}", id.as_bytes()[0], &id[1..]);

    let whole = json_body(app.get_partner(&id).await).await;
    let selected = json_body(
        app.get_url(&format!("{}?$select=macOsOnboarded,displayName", item(&id)))
            .await,
    )
    .await;
    let without_dollar = json_body(
        app.get_url(&format!("{}?select=partnerState", item(&id)))
            .await,
    )
    .await;
    let upper = app.get_url(&item(&id.to_uppercase())).await;
    let encoded = app.get_url(&item(&first_char_encoded)).await;
    let twice = refusal(app.get_url(&item(&double_encoded)).await).await;
    let unknown = refusal(app.get_url(&item(&uuid::Uuid::new_v4().to_string())).await).await;
    let slash_and_space = refusal(app.get_url(&item("a%2Fb%20c")).await).await;

    assert_eq!(whole, created, "GET answers what the create answered");
    assert_eq!(
        selected,
        json!({
            "@odata.context": format!(
                "{}/$metadata#deviceManagement/complianceManagementPartners(displayName,macOsOnboarded)/$entity",
                app.root
            ),
            "@odata.type": ENTITY_TYPE,
            "id": id,
            "displayName": "Display Name value",
            "macOsOnboarded": true,
        })
    );
    let keys = property_names(&without_dollar);
    assert_eq!(
        keys,
        BTreeSet::from(["@odata.context", "@odata.type", "id", "partnerState"])
    );
    assert_eq!(
        upper.status(),
        200,
        "a GUID in upper case names the same partner"
    );
    assert_eq!(json_body(upper).await["id"], id.as_str());
    assert_eq!(encoded.status(), 200, "the segment is percent-decoded");
    assert_eq!(json_body(encoded).await["id"], id.as_str());
    assert_eq!(twice.0, 404, "decoded once only: {}", twice.1);
    assert_message_contains(&twice.1, &format!("'%{:02X}", id.as_bytes()[0]));
    assert_eq!(unknown.0, 404);
    assert_eq!(unknown.1["error"]["code"], "ResourceNotFound");
    assert_eq!(slash_and_space.0, 404, "not 400: {}", slash_and_space.1);
    assert_eq!(slash_and_space.1["error"]["code"], "ResourceNotFound");
    assert_message_contains(&slash_and_space.1, "'a/b c'");
}
