//! Listing with the OData query options: `$top`, `$skip`, `$count`, `$select`, `$filter`,
//! `$orderby`, the SDK's encoding, refusals, and `/$count`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn top_skip_count_and_select_page_count_and_project_the_seeded_partners_with_or_without_dollar()
 {
    let app = Arc::new(spawn_app().await);
    let seeded = seed(&app).await;
    let all = ids_ascending(&seeded);

    let default_page = app.list("").await;
    let first = app.list("$top=1").await;
    let largest = app.list("$top=999").await;
    let skipped = app.list("$skip=20&$top=10").await;
    let tail = app.list("$skip=300&$top=10").await;
    let beyond = app.list("$skip=5000").await;
    let counted = app.list("$count=true&$top=5").await;
    let not_counted = app.list("$count=false&$top=5").await;
    let selected = app.list("$select=partnerState,displayName&$top=999").await;
    let collections = app
        .list("$select=macOsEnrollmentAssignments&$top=999")
        .await;
    let star = app.list("$select=*&$top=3").await;
    let without_dollar = app
        .list("top=10&skip=20&count=true&select=displayName")
        .await;
    let with_dollar = app
        .list("$top=10&$skip=20&$count=true&$select=displayName")
        .await;
    let mixed = app.list("$top=10&skip=20").await;
    let duplicated = refusal(app.list_response("$top=5&top=6").await).await;

    assert_eq!(
        default_page["@odata.context"],
        format!(
            "{}/$metadata#deviceManagement/complianceManagementPartners",
            app.root
        )
    );
    assert_eq!(ids_of(&default_page), all[..100], "default page: 100 by id");
    assert!(default_page.get("@odata.count").is_none());
    assert!(default_page["@odata.nextLink"].is_string());
    for item in default_page["value"].as_array().expect("value") {
        assert_eq!(item["@odata.type"], ENTITY_TYPE);
        assert!(
            item.get("@odata.context").is_none(),
            "items carry no context"
        );
        assert_eq!(item.as_object().expect("object").len(), 15, "{item}");
    }
    assert_eq!(ids_of(&first), all[..1]);
    assert_eq!(ids_of(&largest), all, "$top=999 holds every partner");
    assert!(
        largest.get("@odata.nextLink").is_none(),
        "one page, no link"
    );
    assert_eq!(ids_of(&skipped), all[20..30]);
    let skipped_link = skipped["@odata.nextLink"].as_str().expect("more remain");
    assert!(
        !skipped_link.contains("skip="),
        "the link replaces $skip with the token: {skipped_link}"
    );
    assert_eq!(ids_of(&tail), all[300..], "the last 7");
    assert!(tail.get("@odata.nextLink").is_none());
    assert_eq!(ids_of(&beyond), Vec::<String>::new());
    assert!(beyond.get("@odata.nextLink").is_none());
    assert_eq!(counted["@odata.count"], json!(SEEDED), "a JSON number");
    assert_eq!(ids_of(&counted), all[..5]);
    assert!(not_counted.get("@odata.count").is_none());
    assert_eq!(
        selected["@odata.context"],
        format!(
            "{}/$metadata#deviceManagement/complianceManagementPartners(displayName,partnerState)",
            app.root
        )
    );
    assert_eq!(ids_of(&selected), all);
    for item in selected["value"].as_array().expect("value") {
        let keys = property_names(item);
        assert_eq!(
            keys,
            BTreeSet::from(["@odata.type", "id", "displayName", "partnerState"]),
            "{item}"
        );
        let partner = seeded
            .iter()
            .find(|s| item["id"] == s.id.as_str())
            .expect("a seeded id");
        assert_eq!(item["displayName"], partner.name.as_str());
        assert_eq!(item["partnerState"], partner.state);
    }
    for item in collections["value"].as_array().expect("value") {
        let partner = seeded
            .iter()
            .find(|s| item["id"] == s.id.as_str())
            .expect("a seeded id");
        let assignments = item["macOsEnrollmentAssignments"]
            .as_array()
            .unwrap_or_else(|| panic!("{item}"));
        assert_eq!(assignments.len(), partner.mac_assignments, "{item}");
        assert_eq!(item.as_object().expect("object").len(), 3, "{item}");
    }
    assert!(
        seeded.iter().any(|s| s.mac_assignments > 0),
        "some partners have assignments"
    );
    assert_eq!(star["value"][0].as_object().expect("object").len(), 15);
    assert_eq!(without_dollar["value"], with_dollar["value"]);
    assert_eq!(without_dollar["@odata.count"], json!(SEEDED));
    assert_eq!(ids_of(&with_dollar), all[20..30]);
    assert_eq!(ids_of(&mixed), all[20..30]);
    assert_eq!(duplicated.0, 400);
    assert_message_contains(&duplicated.1, "more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_filter_operator_on_each_supported_property_lists_exactly_the_partners_it_matches() {
    let app = Arc::new(spawn_app().await);
    let seeded = seed(&app).await;
    let boundary = ticks(BOUNDARY);
    let never = ticks("0001-01-01T00:00:00Z");
    let some = &seeded[41];
    let other = &seeded[200];
    let mut cases: Vec<FilterCase> = vec![
        // displayName: case-insensitive comparisons of the trimmed name.
        case("displayName eq 'Partner 042'", |s| s.key() == "partner 042"),
        case("displayName eq 'pARTNER 042'", |s| s.key() == "partner 042"),
        case("displayName eq 'ÉCHELLE SÉCURITÉ'", |s| {
            s.key() == "échelle sécurité"
        }),
        case("displayName eq 'O''Brien Partners'", |s| {
            s.key() == "o'brien partners"
        }),
        case("displayName eq 'Partner_% literal'", |s| {
            s.key() == "partner_% literal"
        }),
        case("displayName eq 'Nobody At All'", |_| false),
        case("displayName ne 'Partner 042'", |s| s.key() != "partner 042"),
        case("displayName gt 'Partner 250'", |s| {
            s.key().as_str() > "partner 250"
        }),
        case("displayName ge 'Partner 250'", |s| {
            s.key().as_str() >= "partner 250"
        }),
        case("displayName lt 'Partner 010'", |s| {
            s.key().as_str() < "partner 010"
        }),
        case("displayName le 'PARTNER 010'", |s| {
            s.key().as_str() <= "partner 010"
        }),
        case(
            "displayName in ('Partner 001', 'partner 002', 'Nobody')",
            |s| ["partner 001", "partner 002"].contains(&s.key().as_str()),
        ),
        // startswith: case-insensitive, and % and _ are plain characters.
        case("startswith(displayName,'Partner 1')", |s| {
            s.key().starts_with("partner 1")
        }),
        case("startswith(displayName, 'PARTNER 29')", |s| {
            s.key().starts_with("partner 29")
        }),
        case("startswith(displayName,'partner')", |s| {
            s.key().starts_with("partner")
        }),
        case("startswith(displayName,'Partner_')", |s| {
            s.key().starts_with("partner_")
        }),
        case("startswith(displayName,'Partner_%')", |s| {
            s.key().starts_with("partner_%")
        }),
        case("startswith(displayName,'O''B')", |s| {
            s.key().starts_with("o'b")
        }),
        case("startswith(displayName,'é')", |s| s.key().starts_with('é')),
        case("startswith(displayName,'')", |_| true),
        // partnerState: by the enum's declared order.
        case("partnerState eq 'enabled'", |s| s.state == "enabled"),
        case("partnerState ne 'enabled'", |s| s.state != "enabled"),
        case("partnerState gt 'enabled'", |s| s.state_order() > 2),
        case("partnerState ge 'enabled'", |s| s.state_order() >= 2),
        case("partnerState lt 'enabled'", |s| s.state_order() < 2),
        case("partnerState le 'enabled'", |s| s.state_order() <= 2),
        case("partnerState lt 'unknown'", |_| false),
        case("partnerState ge 'unresponsive'", |s| {
            s.state == "unresponsive"
        }),
        case(
            "partnerState eq microsoft.graph.deviceManagementPartnerTenantState'rejected'",
            |s| s.state == "rejected",
        ),
        case("partnerState in ('enabled','rejected')", |s| {
            ["enabled", "rejected"].contains(&s.state)
        }),
        // lastHeartbeatDateTime: instants, whatever the offset or fraction.
        case(format!("lastHeartbeatDateTime gt {BOUNDARY}"), move |s| {
            s.heartbeat > boundary
        }),
        case(format!("lastHeartbeatDateTime ge {BOUNDARY}"), move |s| {
            s.heartbeat >= boundary
        }),
        case(format!("lastHeartbeatDateTime lt {BOUNDARY}"), move |s| {
            s.heartbeat < boundary
        }),
        case(format!("lastHeartbeatDateTime le {BOUNDARY}"), move |s| {
            s.heartbeat <= boundary
        }),
        case(format!("lastHeartbeatDateTime eq {BOUNDARY}"), move |s| {
            s.heartbeat == boundary
        }),
        case(format!("lastHeartbeatDateTime ne {BOUNDARY}"), move |s| {
            s.heartbeat != boundary
        }),
        case(
            "lastHeartbeatDateTime ge 2024-06-15T02:00:00+02:00",
            move |s| s.heartbeat >= boundary,
        ),
        case(
            "lastHeartbeatDateTime lt 2024-06-14T19:00:00-05:00",
            move |s| s.heartbeat < boundary,
        ),
        case(
            "lastHeartbeatDateTime gt 2024-06-15T00:00:00.0000000Z",
            move |s| s.heartbeat > boundary,
        ),
        case("lastHeartbeatDateTime eq 0001-01-01T00:00:00Z", move |s| {
            s.heartbeat == never
        }),
        case("lastHeartbeatDateTime gt 0001-01-01T00:00:00Z", move |s| {
            s.heartbeat > never
        }),
        // id.
        case(format!("id eq '{}'", some.id), |s| s.id == some.id),
        case(format!("id eq '{}'", some.id.to_uppercase()), |s| {
            s.id == some.id
        }),
        case(format!("id ne '{}'", some.id), |s| s.id != some.id),
        case(format!("id in ('{}', '{}')", some.id, other.id), |s| {
            s.id == some.id || s.id == other.id
        }),
    ];
    for platform in PLATFORMS {
        let flag = format!("{platform}Onboarded");
        cases.push(case(format!("{flag} eq true"), move |s| {
            s.onboarded(platform)
        }));
        cases.push(case(format!("{flag} eq false"), move |s| {
            !s.onboarded(platform)
        }));
        cases.push(case(format!("{flag} ne true"), move |s| {
            !s.onboarded(platform)
        }));
        cases.push(case(flag.clone(), move |s| s.onboarded(platform)));
        cases.push(case(format!("not {flag}"), move |s| !s.onboarded(platform)));
    }

    for (filter, matches) in &cases {
        assert_filter(&app, filter, &ids_where(&seeded, matches)).await;
    }
    // A '+' offset sent unencoded stays a plus sign.
    let raw_plus = app
        .list("$filter=lastHeartbeatDateTime%20ge%202024-06-15T02:00:00+02:00&$top=999")
        .await;
    let returned: BTreeSet<String> = ids_of(&raw_plus).into_iter().collect();
    assert_eq!(returned, ids_where(&seeded, |s| s.heartbeat >= boundary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn and_or_not_parentheses_and_startswith_combine_with_odata_precedence() {
    let app = Arc::new(spawn_app().await);
    let seeded = seed(&app).await;
    let march = ticks("2024-03-01T00:00:00Z");
    let boundary = ticks(BOUNDARY);
    let ab = seeded
        .iter()
        .find(|s| s.name == "A B")
        .expect("seeded")
        .id
        .clone();
    let cases: Vec<FilterCase> = vec![
        case(
            "partnerState eq 'enabled' and macOsOnboarded eq true",
            |s| s.state == "enabled" && s.onboarded("macOs"),
        ),
        case(
            // `and` binds tighter than `or`.
            "partnerState eq 'enabled' or partnerState eq 'rejected' and androidOnboarded eq true",
            |s| s.state == "enabled" || (s.state == "rejected" && s.onboarded("android")),
        ),
        case(
            "(partnerState eq 'enabled' or partnerState eq 'rejected') and androidOnboarded eq true",
            |s| (s.state == "enabled" || s.state == "rejected") && s.onboarded("android"),
        ),
        case("not (partnerState eq 'enabled' or iosOnboarded)", |s| {
            !(s.state == "enabled" || s.onboarded("ios"))
        }),
        case(
            // `not` applies to the condition that follows it.
            "not partnerState eq 'enabled' and linuxOnboarded",
            |s| s.state != "enabled" && s.onboarded("linux"),
        ),
        case("not(macOsOnboarded) or not (windowsOnboarded)", |s| {
            !s.onboarded("macOs") || !s.onboarded("windows")
        }),
        case("not not macOsOnboarded", |s| s.onboarded("macOs")),
        case(
            "startswith(displayName,'Partner 2') and not (lastHeartbeatDateTime lt 2024-03-01T00:00:00Z or windowsOnboarded eq true)",
            move |s| {
                s.key().starts_with("partner 2") && !(s.heartbeat < march || s.onboarded("windows"))
            },
        ),
        case(
            "((macOsOnboarded and iosOnboarded) or (androidOnboarded and linuxOnboarded)) and partnerState ne 'unknown'",
            |s| {
                ((s.onboarded("macOs") && s.onboarded("ios"))
                    || (s.onboarded("android") && s.onboarded("linux")))
                    && s.state != "unknown"
            },
        ),
        case(
            format!("displayName eq 'a b' or startswith(displayName,'O''B') or id eq '{ab}'"),
            |s| s.key() == "a b" || s.key().starts_with("o'b"),
        ),
        case(
            format!(
                "partnerState in ('terminated','rejected') and lastHeartbeatDateTime ge {BOUNDARY}"
            ),
            move |s| ["terminated", "rejected"].contains(&s.state) && s.heartbeat >= boundary,
        ),
        case(
            "not startswith(displayName,'Partner') and not startswith(displayName,'partner')",
            |s| !s.key().starts_with("partner"),
        ),
    ];

    for (filter, matches) in &cases {
        let expected = ids_where(&seeded, matches);
        assert!(
            !expected.is_empty() && expected.len() < SEEDED,
            "the case {filter} separates the partners"
        );
        assert_filter(&app, filter, &expected).await;
    }
    // A filter with order, offset, page size and count: a slice of the filtered order.
    let filter = "startswith(displayName,'Partner 2')";
    let page = app
        .list(&query_string(&[
            ("$filter", filter),
            ("$orderby", "lastHeartbeatDateTime desc"),
            ("$skip", "5"),
            ("$top", "10"),
            ("$count", "true"),
        ]))
        .await;
    let matching: Vec<&Seeded> = seeded
        .iter()
        .filter(|s| s.key().starts_with("partner 2"))
        .collect();
    let ordered = expected_order(matching.iter().copied(), &[(SortBy::Heartbeat, true)]);
    assert_eq!(ids_of(&page), ordered[5..15]);
    assert_eq!(page["@odata.count"], json!(matching.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orderby_each_key_ascending_and_descending_and_two_keys_orders_every_partner_with_id_breaking_ties()
 {
    let app = Arc::new(spawn_app().await);
    let seeded = seed(&app).await;
    let cases: Vec<(&str, Vec<(SortBy, bool)>)> = vec![
        ("displayName", vec![(SortBy::Name, false)]),
        ("displayName asc", vec![(SortBy::Name, false)]),
        ("displayName desc", vec![(SortBy::Name, true)]),
        ("lastHeartbeatDateTime", vec![(SortBy::Heartbeat, false)]),
        (
            "lastHeartbeatDateTime desc",
            vec![(SortBy::Heartbeat, true)],
        ),
        ("partnerState asc", vec![(SortBy::State, false)]),
        ("partnerState desc", vec![(SortBy::State, true)]),
        ("id", vec![(SortBy::Id, false)]),
        ("id desc", vec![(SortBy::Id, true)]),
        (
            "partnerState desc,lastHeartbeatDateTime",
            vec![(SortBy::State, true), (SortBy::Heartbeat, false)],
        ),
        (
            "lastHeartbeatDateTime desc, displayName asc",
            vec![(SortBy::Heartbeat, true), (SortBy::Name, false)],
        ),
        (
            "partnerState,id desc",
            vec![(SortBy::State, false), (SortBy::Id, true)],
        ),
    ];
    // Ties must occur for the tie-breaker to be tested.
    let heartbeats: HashSet<i64> = seeded.iter().map(|s| s.heartbeat).collect();
    assert!(heartbeats.len() < SEEDED - 20, "many shared heartbeats");

    for (orderby, keys) in &cases {
        let everything = app
            .list(&query_string(&[("$orderby", orderby), ("$top", "999")]))
            .await;
        let first_page = app
            .list(&query_string(&[("$orderby", orderby), ("$top", "25")]))
            .await;

        let expected = expected_order(&seeded, keys);
        assert_eq!(ids_of(&everything), expected, "$orderby={orderby}");
        assert_eq!(
            ids_of(&first_page),
            expected[..25],
            "$orderby={orderby} first page"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sdks_encoded_query_string_is_answered_with_the_selected_slice_count_and_next_link() {
    let app = Arc::new(spawn_app().await);
    let seeded = seed(&app).await;
    let ab = seeded.iter().find(|s| s.name == "A B").expect("seeded");
    let sdk = "$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id,displayName&$skip=20&$top=10";
    let sdk_first = "$count=true&$filter=displayName%20eq%20%27A%20B%27&$orderby=displayName%20desc,id&$select=id,displayName&$top=10";
    let deep = "$count=true&$filter=startswith(displayName,%27Partner%202%27)&$orderby=displayName%20desc,id&$select=id,displayName&$skip=20&$top=10";

    let skipped_past = app.list(sdk).await;
    let first = app.list(sdk_first).await;
    let deep_page = app.list(deep).await;
    let link = deep_page["@odata.nextLink"]
        .as_str()
        .expect("70 more remain")
        .to_owned();
    let next = json_body(app.get_url(&link).await).await;

    assert_eq!(
        skipped_past["@odata.context"],
        format!(
            "{}/$metadata#deviceManagement/complianceManagementPartners(id,displayName)",
            app.root
        )
    );
    assert_eq!(skipped_past["@odata.count"], json!(1));
    assert_eq!(
        skipped_past["value"],
        json!([]),
        "$skip=20 passes the only match"
    );
    assert!(skipped_past.get("@odata.nextLink").is_none());
    assert_eq!(
        first["value"],
        json!([{ "@odata.type": ENTITY_TYPE, "id": ab.id, "displayName": "A B" }])
    );
    let by_name_desc = expected_order(
        seeded.iter().filter(|s| s.key().starts_with("partner 2")),
        &[(SortBy::Name, true), (SortBy::Id, false)],
    );
    assert_eq!(by_name_desc.len(), 100);
    assert_eq!(deep_page["@odata.count"], json!(100));
    assert_eq!(ids_of(&deep_page), by_name_desc[20..30]);
    assert_eq!(
        deep_page["value"][0],
        json!({ "@odata.type": ENTITY_TYPE, "id": by_name_desc[20], "displayName": "Partner 279" })
    );
    assert!(
        link.starts_with(&format!("{}{COLLECTION}?", app.root)),
        "absolute, on our root: {link}"
    );
    for carried in [
        "$count=true",
        "$filter=startswith(displayName,%27Partner%202%27)",
        "$orderby=displayName%20desc,id",
        "$select=id,displayName",
        "$top=10",
        "$skiptoken=",
    ] {
        assert!(link.contains(carried), "{carried} in {link}");
    }
    assert!(!link.contains("$skip="), "{link}");
    assert_eq!(ids_of(&next), by_name_desc[30..40]);
    assert_eq!(next["@odata.count"], json!(100));
}

#[tokio::test]
async fn expand_search_and_malformed_options_answer_400_naming_the_problem() {
    let app = Arc::new(spawn_app().await);
    let created = create_all(
        &app,
        (1..=3)
            .map(|n| json!({ "displayName": format!("Refusal Partner {n}") }))
            .collect(),
        3,
    )
    .await;
    let id = created[0]["id"].as_str().expect("id").to_owned();
    let page = app
        .list("$top=1&$filter=startswith(displayName,%27Refusal%27)")
        .await;
    let link = page["@odata.nextLink"].as_str().expect("more remain");
    let token = link
        .split("$skiptoken=")
        .nth(1)
        .expect("a skip token")
        .to_owned();
    let list = |query: &str| format!("{}?{query}", app.collection_url());
    let count = |query: &str| format!("{}/$count?{query}", app.collection_url());
    let item = |query: &str| format!("{}/{id}?{query}", app.collection_url());
    let cases: Vec<(String, &str)> = vec![
        (list("$expand=x"), "$expand"),
        (list("$expand=*"), "no navigation properties"),
        (list("$search=%22foo%22"), "$search"),
        (list("$format=json"), "$format"),
        (
            list("$apply=groupby((displayName))"),
            "not a supported query option",
        ),
        (list("$Top=5"), "case-sensitive"),
        (list("@p=1"), "parameter aliases"),
        (list("$top=0"), "$top"),
        (list("$top=1000"), "$top"),
        (list("$top=ten"), "$top"),
        (list("$skip=-1"), "$skip"),
        (list("$count=yes"), "$count"),
        (list("$select=colour"), "'colour' is not a property"),
        (list("$select=displayName,"), "empty item"),
        (
            list("$orderby=macOsOnboarded"),
            "not a property you can order by",
        ),
        (list("$orderby=displayName%20sideways"), "not a direction"),
        (
            list("$orderby=displayName,displayName%20desc"),
            "more than once",
        ),
        (list("$filter="), "the expression is empty"),
        (list("$filter=displayName%20eq"), "the expression ends"),
        (
            list("$filter=displayName%20eq%20%27open"),
            "unterminated string literal",
        ),
        (
            list("$filter=colour%20eq%20%27red%27"),
            "'colour' is not a property",
        ),
        (
            list("$filter=windowsEnrollmentAssignments%20eq%20%27x%27"),
            "cannot be used in a filter",
        ),
        (
            list("$filter=contains(displayName,%27a%27)"),
            "function 'contains' is not supported",
        ),
        (
            list("$filter=startswith(partnerState,%27e%27)"),
            "startswith takes displayName",
        ),
        (
            list("$filter=macOsOnboarded%20gt%20true"),
            "cannot compare the boolean",
        ),
        (
            list("$filter=macOsOnboarded%20eq%20%27true%27"),
            "true or false",
        ),
        (
            list("$filter=partnerState%20eq%20%27sleeping%27"),
            "'sleeping' is not a partnerState member",
        ),
        (
            list("$filter=lastHeartbeatDateTime%20gt%20%272024-01-01T00:00:00Z%27"),
            "unquoted date-time",
        ),
        (
            list("$filter=lastHeartbeatDateTime%20gt%202024-13-01T00:00:00Z"),
            "$filter",
        ),
        (
            list("$filter=id%20eq%20%27not-a-guid%27"),
            "is not a partner id",
        ),
        (list("$filter=(displayName%20eq%20%27a%27"), "')' to close"),
        (
            list("$filter=displayName%20eq%20%27a%27%20xor%20true"),
            "unexpected 'xor'",
        ),
        (list("$filter=%ZZ"), "percent-encoded"),
        (list("$top=5&top=6"), "more than once"),
        (
            list("$skiptoken=garbage"),
            "not a skip token this service issued",
        ),
        (
            list(&format!(
                "$top=1&$filter=startswith(displayName,%27Other%27)&$skiptoken={token}"
            )),
            "does not belong to this query",
        ),
        (count("$top=1"), "'$top' is not supported"),
        (count("$filter=displayName%20eq"), "the expression ends"),
        (count("$expand=x"), "$expand"),
        (
            item("$filter=displayName%20eq%20%27a%27"),
            "'$filter' is not supported",
        ),
        (item("$expand=x"), "$expand"),
        (item("$select=colour"), "'colour' is not a property"),
    ];

    for (url, fragment) in &cases {
        let (status, body) = refusal(app.get_url(url).await).await;

        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["code"], "BadRequest", "{url}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(fragment),
            "{url}: {message:?} lacks {fragment:?}"
        );
    }
    let patched = app
        .request(reqwest::Method::PATCH, &item("$select=id"))
        .header("Content-Type", "application/json")
        .body(r#"{"displayName":"Never"}"#)
        .send()
        .await
        .expect("PATCH reaches the service");
    assert_eq!(patched.status(), 400, "PATCH takes no query options");
    assert_eq!(
        app.get_partner(&id).await.status(),
        200,
        "the refused PATCH changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_count_endpoint_answers_a_text_plain_integer_with_and_without_a_filter() {
    let app = Arc::new(spawn_app().await);
    let empty = count_text(&app, "").await;
    let seeded = seed(&app).await;

    let everything = count_text(&app, "").await;
    let enabled = count_text(&app, "$filter=partnerState%20eq%20%27enabled%27").await;
    let enabled_without_dollar = count_text(&app, "filter=partnerState%20eq%20%27enabled%27").await;
    let none = count_text(&app, "$filter=displayName%20eq%20%27Nobody%27").await;
    let response = app.count_response("").await;
    let odata_version = header(&response, "odata-version");
    let refused = refusal(app.count_response("$filter=displayName%20eq").await).await;

    assert_eq!(empty, 0);
    assert_eq!(everything, SEEDED as u64);
    let expected_enabled = seeded.iter().filter(|s| s.state == "enabled").count() as u64;
    assert_eq!(enabled, expected_enabled);
    assert_eq!(enabled_without_dollar, expected_enabled);
    assert_eq!(none, 0);
    assert_eq!(odata_version, "4.0");
    assert_eq!(refused.0, 400);
    assert_eq!(refused.1["error"]["code"], "BadRequest", "errors stay JSON");
}
