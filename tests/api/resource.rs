//! The whole resource end to end (issue 5): listing with OData query options against a few
//! hundred partners, keyset paging while partners come and go, get, update and delete, every
//! change mirrored to the fake Graph in order, and the audit history.
//!
//! Expected answers are computed here, from what each test created, never read back from the
//! service. Background delivery is awaited by bounded polling ([`wait_until`]) only.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmp_fake_graph::{FakeGraph, FakeGraphOptions};
use cmp_graph_model::datetime;
use serde_json::{Value, json};

use crate::helpers::{
    COLLECTION, OutboxJob, RecordingProxy, SEED_REQUEST, TestApp, create_all, header, json_body,
    query_string, spawn_app, spawn_app_against, wait_until,
};

/// `deviceManagementPartnerTenantState` in declared order, which is how it compares and sorts.
const STATES: [&str; 6] = [
    "unknown",
    "unavailable",
    "enabled",
    "terminated",
    "rejected",
    "unresponsive",
];

/// The five platforms, as their properties are prefixed.
const PLATFORMS: [&str; 5] = ["macOs", "windows", "android", "ios", "linux"];

/// The instant several `lastHeartbeatDateTime` filters compare with.
const BOUNDARY: &str = "2024-06-15T00:00:00Z";

/// How many partners the query tests seed.
const SEEDED: usize = 307;

/// Longest wait for a small delivery queue to drain.
const DRAIN_BOUND: Duration = Duration::from_secs(20);

/// A settle long enough that a row whose create outcome is unknown stays untouched while the
/// test changes the partner.
const SLOW_SETTLE_MS: u64 = 2000;

/// The entity's type annotation, as every response carries it.
const ENTITY_TYPE: &str = "#microsoft.graph.complianceManagementPartner";

// ---------------------------------------------------------------------------------------------
// The seeded partners and their expected answers
// ---------------------------------------------------------------------------------------------

/// A partner to create for the query tests.
struct Blueprint {
    name: String,
    state: &'static str,
    /// As sent; `None` leaves the heartbeat unset (0001-01-01).
    heartbeat: Option<String>,
    /// Per [`PLATFORMS`].
    onboarded: [bool; 5],
    /// Assignments on macOS (which must then be onboarded).
    mac_assignments: usize,
}

impl Blueprint {
    fn body(&self) -> Value {
        let mut body = json!({ "displayName": self.name, "partnerState": self.state });
        if let Some(heartbeat) = &self.heartbeat {
            body["lastHeartbeatDateTime"] = json!(heartbeat);
        }
        for (platform, onboarded) in PLATFORMS.iter().zip(self.onboarded) {
            body[format!("{platform}Onboarded")] = json!(onboarded);
        }
        if self.mac_assignments > 0 {
            body["macOsEnrollmentAssignments"] = json!([
                { "target": { "@odata.type": "#microsoft.graph.allDevicesAssignmentTarget" } }
            ]);
        }
        body
    }
}

/// A partner as created, with what its properties compare as.
#[derive(Debug, Clone)]
struct Seeded {
    id: String,
    name: String,
    state: &'static str,
    /// 100 ns ticks since 1970.
    heartbeat: i64,
    /// Per [`PLATFORMS`].
    onboarded: [bool; 5],
    mac_assignments: usize,
}

impl Seeded {
    /// What `displayName` compares and sorts as: trimmed and lower-cased.
    fn key(&self) -> String {
        self.name.trim().to_lowercase()
    }

    fn state_order(&self) -> usize {
        state_order(self.state)
    }

    fn onboarded(&self, platform: &str) -> bool {
        let index = PLATFORMS
            .iter()
            .position(|p| *p == platform)
            .expect("a platform");
        self.onboarded[index]
    }
}

fn state_order(state: &str) -> usize {
    STATES
        .iter()
        .position(|s| *s == state)
        .expect("a partnerState member")
}

/// The instant of a DateTimeOffset literal, in ticks.
fn ticks(text: &str) -> i64 {
    datetime::parse(text)
        .unwrap_or_else(|e| panic!("{text} parses: {e:?}"))
        .unix_ticks()
}

/// A deterministic scramble of `n`, so that states, flags and heartbeats vary independently.
fn mix(n: u64, salt: u64) -> u64 {
    let mut x = n.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// "Partner 001" to "Partner 300" with varied states, flags and heartbeats (some unset, some
/// sent with an offset or a fraction, many shared so that ties need the id), then seven
/// partners with other prefixes, cases, a quote, Unicode, LIKE wildcards and boundary instants.
fn blueprints() -> Vec<Blueprint> {
    let mut all: Vec<Blueprint> = (1..=300_u64)
        .map(|n| {
            let onboarded = [
                mix(n, 2).is_multiple_of(2),
                mix(n, 3).is_multiple_of(4),
                mix(n, 4).is_multiple_of(3),
                !mix(n, 5).is_multiple_of(2),
                mix(n, 6).is_multiple_of(5),
            ];
            let heartbeat = (!mix(n, 7).is_multiple_of(10)).then(|| {
                let month = mix(n, 8) % 6 + 1;
                let day = mix(n, 9) % 28 + 1;
                let hour = if mix(n, 10).is_multiple_of(2) { 0 } else { 12 };
                match mix(n, 11) % 4 {
                    // The same instant, written with an offset.
                    0 => format!("2024-{month:02}-{day:02}T{:02}:00:00+01:00", hour + 1),
                    1 => format!("2024-{month:02}-{day:02}T{hour:02}:00:00.0000000Z"),
                    _ => format!("2024-{month:02}-{day:02}T{hour:02}:00:00Z"),
                }
            });
            Blueprint {
                name: format!("Partner {n:03}"),
                state: STATES[usize::try_from(mix(n, 1) % 6).expect("small")],
                heartbeat,
                onboarded,
                mac_assignments: usize::from(onboarded[0] && n.is_multiple_of(20)),
            }
        })
        .collect();
    let extra = |name: &str, state, heartbeat: Option<&str>, onboarded| Blueprint {
        name: name.to_owned(),
        state,
        heartbeat: heartbeat.map(str::to_owned),
        onboarded,
        mac_assignments: 0,
    };
    all.extend([
        extra(
            "partner alpha",
            "enabled",
            Some("2023-12-31T23:59:59Z"),
            [true, false, false, false, false],
        ),
        extra(
            "PARTNER Zulu",
            "rejected",
            None,
            [false, false, false, false, true],
        ),
        extra(
            "Partner_% literal",
            "unknown",
            Some("2024-02-29T12:00:00Z"),
            [false; 5],
        ),
        extra(
            "A B",
            "enabled",
            Some("2024-03-01T00:00:00Z"),
            [false, false, true, false, false],
        ),
        extra(
            "O'Brien Partners",
            "terminated",
            Some(BOUNDARY),
            [false, false, false, true, false],
        ),
        extra(
            "Échelle Sécurité",
            "unresponsive",
            Some("2024-06-15T02:00:00+02:00"),
            [false, true, false, false, false],
        ),
        extra(
            "Contoso Compliance",
            "unavailable",
            Some("2024-06-15T00:00:00.0000001Z"),
            [true; 5],
        ),
    ]);
    assert_eq!(all.len(), SEEDED);
    all
}

/// Creates the [`blueprints`] over HTTP and checks each answer against its blueprint.
async fn seed(app: &Arc<TestApp>) -> Vec<Seeded> {
    let blueprints = blueprints();
    let created = create_all(app, blueprints.iter().map(Blueprint::body).collect(), 16).await;
    let seeded: Vec<Seeded> = blueprints
        .iter()
        .zip(&created)
        .map(|(blueprint, entity)| {
            let heartbeat = ticks(
                entity["lastHeartbeatDateTime"]
                    .as_str()
                    .expect("a heartbeat"),
            );
            let sent = blueprint
                .heartbeat
                .as_deref()
                .map_or_else(|| ticks("0001-01-01T00:00:00Z"), ticks);
            assert_eq!(heartbeat, sent, "heartbeat of {}", blueprint.name);
            assert_eq!(entity["displayName"], blueprint.name.as_str());
            assert_eq!(entity["partnerState"], blueprint.state);
            for (platform, onboarded) in PLATFORMS.iter().zip(blueprint.onboarded) {
                assert_eq!(entity[format!("{platform}Onboarded")], onboarded);
            }
            Seeded {
                id: entity["id"].as_str().expect("id").to_owned(),
                name: blueprint.name.clone(),
                state: blueprint.state,
                heartbeat,
                onboarded: blueprint.onboarded,
                mac_assignments: blueprint.mac_assignments,
            }
        })
        .collect();
    // The filters below only mean something if every value occurs often, but not always.
    for state in STATES {
        let with = seeded.iter().filter(|s| s.state == state).count();
        assert!(with >= 20, "{with} partners are {state}");
    }
    for platform in PLATFORMS {
        let with = seeded.iter().filter(|s| s.onboarded(platform)).count();
        assert!(
            (30..=270).contains(&with),
            "{with} partners onboarded on {platform}"
        );
    }
    seeded
}

/// The ids of a page, in order.
fn ids_of(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .unwrap_or_else(|| panic!("a collection answer: {page}"))
        .iter()
        .map(|item| {
            item["id"]
                .as_str()
                .expect("every item has an id")
                .to_owned()
        })
        .collect()
}

/// The ids of the seeded partners `matches` selects.
fn ids_where(seeded: &[Seeded], matches: impl Fn(&Seeded) -> bool) -> BTreeSet<String> {
    seeded
        .iter()
        .filter(|s| matches(s))
        .map(|s| s.id.clone())
        .collect()
}

/// All ids in ascending order (the default order).
fn ids_ascending(seeded: &[Seeded]) -> Vec<String> {
    let mut ids: Vec<String> = seeded.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

/// An `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Name,
    Heartbeat,
    State,
    Id,
}

fn compare(a: &Seeded, b: &Seeded, by: SortBy) -> Ordering {
    match by {
        SortBy::Name => a.key().cmp(&b.key()),
        SortBy::Heartbeat => a.heartbeat.cmp(&b.heartbeat),
        SortBy::State => a.state_order().cmp(&b.state_order()),
        SortBy::Id => a.id.cmp(&b.id),
    }
}

/// The ids of `seeded` in the order `keys` (each with "descending") give, `id` ascending
/// breaking ties unless it is a key.
fn expected_order<'a>(
    seeded: impl IntoIterator<Item = &'a Seeded>,
    keys: &[(SortBy, bool)],
) -> Vec<String> {
    let mut sorted: Vec<&Seeded> = seeded.into_iter().collect();
    let id_is_a_key = keys.iter().any(|(by, _)| *by == SortBy::Id);
    sorted.sort_by(|a, b| {
        for (by, descending) in keys {
            let order = compare(a, b, *by);
            let order = if *descending { order.reverse() } else { order };
            if order != Ordering::Equal {
                return order;
            }
        }
        if id_is_a_key {
            Ordering::Equal
        } else {
            a.id.cmp(&b.id)
        }
    });
    sorted.into_iter().map(|s| s.id.clone()).collect()
}

/// The status and Graph error body of a refused request.
async fn refusal(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

/// The text of `GET …/$count?query`, checked to be a `text/plain` integer.
async fn count_text(app: &TestApp, query: &str) -> u64 {
    let response = app.count_response(query).await;
    assert_eq!(response.status(), 200, "$count?{query}");
    let content_type = header(&response, "content-type");
    assert!(
        content_type.starts_with("text/plain"),
        "$count?{query} answered {content_type}"
    );
    let text = response.text().await.expect("a body");
    text.parse()
        .unwrap_or_else(|_| panic!("$count?{query} answered {text:?}, not an integer"))
}

/// Asserts `$filter=filter` lists exactly `expected` (all on one page, `@odata.count` equal
/// to its size) and that `/$count` with the same filter agrees.
async fn assert_filter(app: &TestApp, filter: &str, expected: &BTreeSet<String>) {
    let query = query_string(&[("$filter", filter), ("$top", "999"), ("$count", "true")]);
    let page = app.list(&query).await;

    let ids = ids_of(&page);
    let returned: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(returned.len(), ids.len(), "$filter={filter}: an id twice");
    let missing: Vec<_> = expected.difference(&returned).collect();
    let extra: Vec<_> = returned.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "$filter={filter}: {} missing {missing:?}, {} extra {extra:?}",
        missing.len(),
        extra.len()
    );
    assert_eq!(
        page["@odata.count"],
        json!(expected.len()),
        "$filter={filter}: @odata.count"
    );
    assert!(page.get("@odata.nextLink").is_none(), "$filter={filter}");
    let counted = count_text(app, &query_string(&[("$filter", filter)])).await;
    assert_eq!(
        counted,
        expected.len() as u64,
        "$count with $filter={filter}"
    );
}

/// A filter and the partners it must match.
type FilterCase<'a> = (String, Box<dyn Fn(&Seeded) -> bool + 'a>);

// ---------------------------------------------------------------------------------------------
// 1. Query options
// ---------------------------------------------------------------------------------------------

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
        let keys: BTreeSet<&str> = item
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
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
    assert!(
        duplicated.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("more than once")),
        "{}",
        duplicated.1
    );
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
        (
            "displayName eq 'Partner 042'".into(),
            Box::new(|s| s.key() == "partner 042"),
        ),
        (
            "displayName eq 'pARTNER 042'".into(),
            Box::new(|s| s.key() == "partner 042"),
        ),
        (
            "displayName eq 'ÉCHELLE SÉCURITÉ'".into(),
            Box::new(|s| s.key() == "échelle sécurité"),
        ),
        (
            "displayName eq 'O''Brien Partners'".into(),
            Box::new(|s| s.key() == "o'brien partners"),
        ),
        (
            "displayName eq 'Partner_% literal'".into(),
            Box::new(|s| s.key() == "partner_% literal"),
        ),
        ("displayName eq 'Nobody At All'".into(), Box::new(|_| false)),
        (
            "displayName ne 'Partner 042'".into(),
            Box::new(|s| s.key() != "partner 042"),
        ),
        (
            "displayName gt 'Partner 250'".into(),
            Box::new(|s| s.key().as_str() > "partner 250"),
        ),
        (
            "displayName ge 'Partner 250'".into(),
            Box::new(|s| s.key().as_str() >= "partner 250"),
        ),
        (
            "displayName lt 'Partner 010'".into(),
            Box::new(|s| s.key().as_str() < "partner 010"),
        ),
        (
            "displayName le 'PARTNER 010'".into(),
            Box::new(|s| s.key().as_str() <= "partner 010"),
        ),
        (
            "displayName in ('Partner 001', 'partner 002', 'Nobody')".into(),
            Box::new(|s| ["partner 001", "partner 002"].contains(&s.key().as_str())),
        ),
        // startswith: case-insensitive, and % and _ are plain characters.
        (
            "startswith(displayName,'Partner 1')".into(),
            Box::new(|s| s.key().starts_with("partner 1")),
        ),
        (
            "startswith(displayName, 'PARTNER 29')".into(),
            Box::new(|s| s.key().starts_with("partner 29")),
        ),
        (
            "startswith(displayName,'partner')".into(),
            Box::new(|s| s.key().starts_with("partner")),
        ),
        (
            "startswith(displayName,'Partner_')".into(),
            Box::new(|s| s.key().starts_with("partner_")),
        ),
        (
            "startswith(displayName,'Partner_%')".into(),
            Box::new(|s| s.key().starts_with("partner_%")),
        ),
        (
            "startswith(displayName,'O''B')".into(),
            Box::new(|s| s.key().starts_with("o'b")),
        ),
        (
            "startswith(displayName,'é')".into(),
            Box::new(|s| s.key().starts_with('é')),
        ),
        ("startswith(displayName,'')".into(), Box::new(|_| true)),
        // partnerState: by the enum's declared order.
        (
            "partnerState eq 'enabled'".into(),
            Box::new(|s| s.state == "enabled"),
        ),
        (
            "partnerState ne 'enabled'".into(),
            Box::new(|s| s.state != "enabled"),
        ),
        (
            "partnerState gt 'enabled'".into(),
            Box::new(|s| s.state_order() > 2),
        ),
        (
            "partnerState ge 'enabled'".into(),
            Box::new(|s| s.state_order() >= 2),
        ),
        (
            "partnerState lt 'enabled'".into(),
            Box::new(|s| s.state_order() < 2),
        ),
        (
            "partnerState le 'enabled'".into(),
            Box::new(|s| s.state_order() <= 2),
        ),
        ("partnerState lt 'unknown'".into(), Box::new(|_| false)),
        (
            "partnerState ge 'unresponsive'".into(),
            Box::new(|s| s.state == "unresponsive"),
        ),
        (
            "partnerState eq microsoft.graph.deviceManagementPartnerTenantState'rejected'".into(),
            Box::new(|s| s.state == "rejected"),
        ),
        (
            "partnerState in ('enabled','rejected')".into(),
            Box::new(|s| ["enabled", "rejected"].contains(&s.state)),
        ),
        // lastHeartbeatDateTime: instants, whatever the offset or fraction.
        (
            format!("lastHeartbeatDateTime gt {BOUNDARY}"),
            Box::new(move |s| s.heartbeat > boundary),
        ),
        (
            format!("lastHeartbeatDateTime ge {BOUNDARY}"),
            Box::new(move |s| s.heartbeat >= boundary),
        ),
        (
            format!("lastHeartbeatDateTime lt {BOUNDARY}"),
            Box::new(move |s| s.heartbeat < boundary),
        ),
        (
            format!("lastHeartbeatDateTime le {BOUNDARY}"),
            Box::new(move |s| s.heartbeat <= boundary),
        ),
        (
            format!("lastHeartbeatDateTime eq {BOUNDARY}"),
            Box::new(move |s| s.heartbeat == boundary),
        ),
        (
            format!("lastHeartbeatDateTime ne {BOUNDARY}"),
            Box::new(move |s| s.heartbeat != boundary),
        ),
        (
            "lastHeartbeatDateTime ge 2024-06-15T02:00:00+02:00".into(),
            Box::new(move |s| s.heartbeat >= boundary),
        ),
        (
            "lastHeartbeatDateTime lt 2024-06-14T19:00:00-05:00".into(),
            Box::new(move |s| s.heartbeat < boundary),
        ),
        (
            "lastHeartbeatDateTime gt 2024-06-15T00:00:00.0000000Z".into(),
            Box::new(move |s| s.heartbeat > boundary),
        ),
        (
            "lastHeartbeatDateTime eq 0001-01-01T00:00:00Z".into(),
            Box::new(move |s| s.heartbeat == never),
        ),
        (
            "lastHeartbeatDateTime gt 0001-01-01T00:00:00Z".into(),
            Box::new(move |s| s.heartbeat > never),
        ),
        // id.
        (
            format!("id eq '{}'", some.id),
            Box::new(|s| s.id == some.id),
        ),
        (
            format!("id eq '{}'", some.id.to_uppercase()),
            Box::new(|s| s.id == some.id),
        ),
        (
            format!("id ne '{}'", some.id),
            Box::new(|s| s.id != some.id),
        ),
        (
            format!("id in ('{}', '{}')", some.id, other.id),
            Box::new(|s| s.id == some.id || s.id == other.id),
        ),
    ];
    for platform in PLATFORMS {
        let flag = format!("{platform}Onboarded");
        cases.push((
            format!("{flag} eq true"),
            Box::new(move |s| s.onboarded(platform)),
        ));
        cases.push((
            format!("{flag} eq false"),
            Box::new(move |s| !s.onboarded(platform)),
        ));
        cases.push((
            format!("{flag} ne true"),
            Box::new(move |s| !s.onboarded(platform)),
        ));
        cases.push((flag.clone(), Box::new(move |s| s.onboarded(platform))));
        cases.push((
            format!("not {flag}"),
            Box::new(move |s| !s.onboarded(platform)),
        ));
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
        (
            "partnerState eq 'enabled' and macOsOnboarded eq true".into(),
            Box::new(|s| s.state == "enabled" && s.onboarded("macOs")),
        ),
        (
            // `and` binds tighter than `or`.
            "partnerState eq 'enabled' or partnerState eq 'rejected' and androidOnboarded eq true"
                .into(),
            Box::new(|s| s.state == "enabled" || (s.state == "rejected" && s.onboarded("android"))),
        ),
        (
            "(partnerState eq 'enabled' or partnerState eq 'rejected') and androidOnboarded eq true"
                .into(),
            Box::new(|s| (s.state == "enabled" || s.state == "rejected") && s.onboarded("android")),
        ),
        (
            "not (partnerState eq 'enabled' or iosOnboarded)".into(),
            Box::new(|s| !(s.state == "enabled" || s.onboarded("ios"))),
        ),
        (
            // `not` applies to the condition that follows it.
            "not partnerState eq 'enabled' and linuxOnboarded".into(),
            Box::new(|s| s.state != "enabled" && s.onboarded("linux")),
        ),
        (
            "not(macOsOnboarded) or not (windowsOnboarded)".into(),
            Box::new(|s| !s.onboarded("macOs") || !s.onboarded("windows")),
        ),
        ("not not macOsOnboarded".into(), Box::new(|s| s.onboarded("macOs"))),
        (
            "startswith(displayName,'Partner 2') and not (lastHeartbeatDateTime lt 2024-03-01T00:00:00Z or windowsOnboarded eq true)"
                .into(),
            Box::new(move |s| {
                s.key().starts_with("partner 2") && !(s.heartbeat < march || s.onboarded("windows"))
            }),
        ),
        (
            "((macOsOnboarded and iosOnboarded) or (androidOnboarded and linuxOnboarded)) and partnerState ne 'unknown'"
                .into(),
            Box::new(|s| {
                ((s.onboarded("macOs") && s.onboarded("ios"))
                    || (s.onboarded("android") && s.onboarded("linux")))
                    && s.state != "unknown"
            }),
        ),
        (
            format!("displayName eq 'a b' or startswith(displayName,'O''B') or id eq '{ab}'"),
            Box::new(|s| s.key() == "a b" || s.key().starts_with("o'b")),
        ),
        (
            format!("partnerState in ('terminated','rejected') and lastHeartbeatDateTime ge {BOUNDARY}"),
            Box::new(move |s| ["terminated", "rejected"].contains(&s.state) && s.heartbeat >= boundary),
        ),
        (
            "not startswith(displayName,'Partner') and not startswith(displayName,'partner')".into(),
            Box::new(|s| !s.key().starts_with("partner")),
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

// ---------------------------------------------------------------------------------------------
// 2. Paging
// ---------------------------------------------------------------------------------------------

/// Asserts `link` is an absolute URL on the collection carrying `options` and a skip token.
fn assert_next_link(app: &TestApp, link: &str, options: &[&str]) {
    assert!(
        link.starts_with(&format!("{}{COLLECTION}?", app.root)),
        "absolute, on our root: {link}"
    );
    assert!(reqwest::Url::parse(link).is_ok(), "{link}");
    assert!(link.contains("$skiptoken="), "{link}");
    for option in options {
        assert!(link.contains(option), "{option} carried in {link}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_1000_partners_by_37_returns_every_survivor_once_in_id_order_while_partners_come_and_go()
 {
    let app = Arc::new(spawn_app().await);
    let bodies = (1..=1000)
        .map(|n| json!({ "displayName": format!("Walk Partner {n:04}") }))
        .collect();
    let created = create_all(&app, bodies, 16).await;
    let initial: BTreeSet<String> = created
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(initial.len(), 1000);
    let mut live = initial.clone();
    let mut survivors = initial.clone();
    let mut added = BTreeSet::new();
    let mut deleted_unseen = BTreeSet::new();
    let mut seen: Vec<String> = Vec::new();
    let mut seen_once = HashSet::new();
    let mut url = format!("{}?$top=37&$count=true", app.collection_url());
    let mut pages = 0;

    loop {
        let response = app.get_url(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        let page = json_body(response).await;
        pages += 1;
        let ids = ids_of(&page);
        assert_eq!(
            page["@odata.count"],
            json!(live.len()),
            "page {pages}: the count of the partners alive now"
        );
        for id in &ids {
            assert!(
                seen_once.insert(id.clone()),
                "page {pages}: {id} returned twice"
            );
            assert!(live.contains(id), "page {pages}: {id} is not alive");
            if let Some(last) = seen.last() {
                assert!(
                    id > last,
                    "page {pages}: {id} after {last} breaks the id order"
                );
            }
            seen.push(id.clone());
        }
        let Some(link) = page.get("@odata.nextLink") else {
            break;
        };
        let link = link.as_str().expect("a link is a string").to_owned();
        assert_eq!(ids.len(), 37, "page {pages} is full when more remain");
        assert_next_link(&app, &link, &["$top=37", "$count=true"]);
        assert!(pages < 60, "the walk ends");

        // Between pages: two new partners, one unseen and one seen partner deleted.
        let fresh = create_all(
            &app,
            (0..2)
                .map(|k| json!({ "displayName": format!("Walk New {pages:02}-{k}") }))
                .collect(),
            2,
        )
        .await;
        for entity in fresh {
            let id = entity["id"].as_str().expect("id").to_owned();
            live.insert(id.clone());
            added.insert(id);
        }
        let last = seen.last().expect("a page was seen").clone();
        let unseen: Vec<&String> = survivors.range(last.clone()..).skip(1).collect();
        if let Some(victim) = unseen.get(unseen.len() / 2).map(|id| (*id).clone()) {
            assert_eq!(app.delete_partner(&victim).await.status(), 204);
            live.remove(&victim);
            survivors.remove(&victim);
            deleted_unseen.insert(victim);
        }
        let victim = seen
            .iter()
            .rev()
            .skip(pages * 3 % seen.len())
            .find(|id| live.contains(*id))
            .or_else(|| seen.iter().find(|id| live.contains(*id)))
            .cloned()
            .expect("a seen partner is still alive");
        assert_eq!(app.delete_partner(&victim).await.status(), 204);
        live.remove(&victim);
        survivors.remove(&victim);
        url = link;
    }

    let never_returned: Vec<_> = survivors
        .iter()
        .filter(|id| !seen_once.contains(*id))
        .collect();
    assert!(
        never_returned.is_empty(),
        "partners alive for the whole walk but skipped: {never_returned:?}"
    );
    let resurrected: Vec<_> = deleted_unseen
        .iter()
        .filter(|id| seen_once.contains(*id))
        .collect();
    assert!(
        resurrected.is_empty(),
        "deleted before their page: {resurrected:?}"
    );
    let strangers: Vec<_> = seen_once
        .iter()
        .filter(|id| !initial.contains(*id) && !added.contains(*id))
        .collect();
    assert!(strangers.is_empty(), "{strangers:?}");
    assert!(
        pages >= 27,
        "1000 partners by 37 take at least 27 pages, took {pages}"
    );
    println!(
        "paging: {pages} pages, {} returned, {} survivors, {} added during the walk ({} of them returned), {} deleted",
        seen.len(),
        survivors.len(),
        added.len(),
        added.iter().filter(|id| seen_once.contains(*id)).count(),
        initial.len() - survivors.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_filtered_walk_by_display_name_descending_returns_every_surviving_match_once_in_name_order()
 {
    let app = Arc::new(spawn_app().await);
    let seeded = seed(&app).await;
    let matches = |name: &str| name.trim().to_lowercase().starts_with("partner 1");
    // Name keys by id, for every partner that ever matched.
    let mut key_of: std::collections::HashMap<String, String> = seeded
        .iter()
        .filter(|s| matches(&s.name))
        .map(|s| (s.id.clone(), s.key()))
        .collect();
    let mut live: BTreeSet<String> = key_of.keys().cloned().collect();
    let mut survivors = live.clone();
    let mut ahead_added = BTreeSet::new();
    let mut seen: Vec<String> = Vec::new();
    let mut seen_once = HashSet::new();
    let query = "$orderby=displayName%20desc&$filter=startswith(displayName,%27Partner%201%27)&$top=37&$count=true";
    let mut url = format!("{}?{query}", app.collection_url());
    let mut pages = 0;

    loop {
        let page = json_body(app.get_url(&url).await).await;
        pages += 1;
        let ids = ids_of(&page);
        assert_eq!(page["@odata.count"], json!(live.len()), "page {pages}");
        for id in &ids {
            assert!(
                seen_once.insert(id.clone()),
                "page {pages}: {id} returned twice"
            );
            let key = key_of
                .get(id)
                .unwrap_or_else(|| panic!("page {pages}: {id} does not match the filter"));
            if let Some(last) = seen.last() {
                assert!(
                    key < &key_of[last],
                    "page {pages}: {key} after {}",
                    key_of[last]
                );
            }
            seen.push(id.clone());
        }
        let Some(link) = page.get("@odata.nextLink") else {
            break;
        };
        let link = link.as_str().expect("a string").to_owned();
        assert_eq!(ids.len(), 37);
        assert_next_link(
            &app,
            &link,
            &[
                "$orderby=displayName%20desc",
                "$filter=startswith(displayName,%27Partner%201%27)",
                "$top=37",
                "$count=true",
            ],
        );
        assert!(pages < 20, "the walk ends");

        // Between pages: a match ahead of the cursor, one behind it, a non-match; an unseen
        // and a seen match deleted.
        let cursor = key_of[seen.last().expect("seen")].clone();
        let names = [
            format!("Partner 100 ahead {pages}"),
            format!("Partner 1zz behind {pages}"),
            format!("Elsewhere {pages}"),
        ];
        let fresh = create_all(
            &app,
            names.iter().map(|n| json!({ "displayName": n })).collect(),
            3,
        )
        .await;
        for (name, entity) in names.iter().zip(fresh) {
            let id = entity["id"].as_str().expect("id").to_owned();
            if matches(name) {
                key_of.insert(id.clone(), name.to_lowercase());
                live.insert(id.clone());
                if name.to_lowercase() < cursor {
                    ahead_added.insert(id);
                }
            }
        }
        let victim = survivors
            .iter()
            .filter(|id| key_of[*id] < cursor)
            .max_by_key(|id| key_of[*id].clone())
            .cloned();
        if let Some(victim) = victim {
            assert_eq!(app.delete_partner(&victim).await.status(), 204);
            live.remove(&victim);
            survivors.remove(&victim);
        }
        let victim = seen
            .iter()
            .find(|id| live.contains(*id))
            .cloned()
            .expect("a seen match is alive");
        assert_eq!(app.delete_partner(&victim).await.status(), 204);
        live.remove(&victim);
        survivors.remove(&victim);
        url = link;
    }

    let skipped: Vec<_> = survivors
        .iter()
        .filter(|id| !seen_once.contains(*id))
        .map(|id| &key_of[id])
        .collect();
    assert!(
        skipped.is_empty(),
        "surviving matches never returned: {skipped:?}"
    );
    let ahead_missed: Vec<_> = ahead_added
        .iter()
        .filter(|id| !seen_once.contains(*id))
        .map(|id| &key_of[id])
        .collect();
    assert!(
        ahead_missed.is_empty(),
        "matches created ahead of the cursor were skipped: {ahead_missed:?}"
    );
    assert!(pages >= 3, "{pages} pages");
}

// ---------------------------------------------------------------------------------------------
// 3. Get by id
// ---------------------------------------------------------------------------------------------

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
    let keys: BTreeSet<&str> = without_dollar
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
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
    assert!(
        twice.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("'%{:02X}", id.as_bytes()[0]))),
        "{}",
        twice.1
    );
    assert_eq!(unknown.0, 404);
    assert_eq!(unknown.1["error"]["code"], "ResourceNotFound");
    assert_eq!(slash_and_space.0, 404, "not 400: {}", slash_and_space.1);
    assert_eq!(slash_and_space.1["error"]["code"], "ResourceNotFound");
    assert!(
        slash_and_space.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'a/b c'")),
        "{}",
        slash_and_space.1
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Update
// ---------------------------------------------------------------------------------------------

/// Creates the seed partner and answers its id and its GET body.
async fn seed_partner(app: &TestApp) -> (String, Value) {
    let response = app.post_partner(SEED_REQUEST).await;
    assert_eq!(response.status(), 201);
    let id = json_body(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let current = json_body(app.get_partner(&id).await).await;
    (id, current)
}

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

// ---------------------------------------------------------------------------------------------
// 5. Delete
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 6. Mirroring to Graph
// ---------------------------------------------------------------------------------------------

async fn start_fake(options: FakeGraphOptions) -> FakeGraph {
    FakeGraph::start(options)
        .await
        .expect("the fake Graph listens on 127.0.0.1")
}

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

/// The id of a created partner, after checking the create's status.
async fn created_id(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    json_body(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
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
    let fake = start_fake(FakeGraphOptions::default()).await;
    let app = spawn_app_against(&fake, |_| {}).await;
    let id = created_id(
        app.post_partner(r#"{"displayName":"Mirror Before"}"#).await,
        201,
    )
    .await;
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
    let operations: Vec<&str> = jobs[0].iter().map(|j| j.operation.as_str()).collect();
    assert_eq!(operations, ["create", "update"]);
    let stats = fake.stats();
    assert_eq!((stats.posts, stats.patches, stats.deletes), (1, 1, 0));
}

#[tokio::test]
async fn an_update_to_a_partner_graph_certainly_does_not_hold_folds_into_its_pending_create() {
    // A 429 means "not done": the create waits `pending`, certainly not in Graph, so the PATCH
    // folds into it. A Retry-After beyond the client's in-call budget ends the inline call at
    // once and keeps the row waiting while the test patches.
    let fake = start_fake(throttling("3")).await;
    let proxy = RecordingProxy::start(fake.uri()).await;
    let app = spawn_app_against(&fake, |s| s.graph.client.root = proxy.graph_root()).await;
    let id = created_id(
        app.post_partner(r#"{"displayName":"Fold Pending","macOsOnboarded":false}"#)
            .await,
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

    assert_eq!(
        waiting
            .iter()
            .map(|j| (j.operation.as_str(), j.state.as_str()))
            .collect::<Vec<_>>(),
        [("create", "pending")]
    );
    assert_eq!(patched.status(), 200);
    assert_eq!(
        jobs.iter()
            .map(|j| j.operation.as_str())
            .collect::<Vec<_>>(),
        ["create"],
        "the update folded into the create: {jobs:?}"
    );
    let calls = proxy.calls();
    let after: Vec<_> = writes(&calls)
        .into_iter()
        .filter(|c| c.arrived >= back)
        .collect();
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
    let fake = start_fake(down()).await;
    let proxy = RecordingProxy::start(fake.uri()).await;
    let app = spawn_app_against(&fake, |s| {
        s.graph.client.root = proxy.graph_root();
        s.outbox.settle = Duration::from_millis(SLOW_SETTLE_MS);
    })
    .await;
    let id = created_id(
        app.post_partner(r#"{"displayName":"Down Patched","macOsOnboarded":false}"#)
            .await,
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
    let after: Vec<_> = writes(&proxy.calls())
        .into_iter()
        .filter(|c| c.arrived >= back)
        .collect();
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
        jobs[0]
            .iter()
            .map(|j| j.operation.as_str())
            .collect::<Vec<_>>(),
        after.iter().map(|c| c.method.as_str()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn deleting_a_partner_graph_refused_with_429_cancels_its_create_and_touches_nothing_in_graph()
{
    // 429 means "not done": the create is certainly not in Graph, so the delete can drop it.
    // A Retry-After beyond the client's in-call budget ends the call at once and keeps the row
    // from being retried before the delete.
    let fake = start_fake(throttling("3")).await;
    let proxy = RecordingProxy::start(fake.uri()).await;
    let app = spawn_app_against(&fake, |s| s.graph.client.root = proxy.graph_root()).await;
    let id = created_id(
        app.post_partner(r#"{"displayName":"Cancelled Before Graph"}"#)
            .await,
        202,
    )
    .await;
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

    assert_eq!(
        waiting
            .iter()
            .map(|j| (j.operation.as_str(), j.state.as_str()))
            .collect::<Vec<_>>(),
        [("create", "pending")]
    );
    assert_eq!(deleted.status(), 204);
    assert!(left.is_empty(), "the create is cancelled: {left:?}");
    assert_eq!(
        tables,
        vec![
            ("partners", 0),
            ("partner_assignments", 0),
            ("outbox", 0),
            ("delivery_attempts", 0),
            ("audit_log", 2)
        ]
    );
    assert_eq!(app.get_partner(&id).await.status(), 404);
    let after: Vec<_> = writes(&proxy.calls())
        .into_iter()
        .filter(|c| c.arrived >= back)
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
    let fake = start_fake(down()).await;
    let proxy = RecordingProxy::start(fake.uri()).await;
    let app = spawn_app_against(&fake, |s| {
        s.graph.client.root = proxy.graph_root();
        s.outbox.settle = Duration::from_millis(SLOW_SETTLE_MS);
    })
    .await;
    let id = created_id(
        app.post_partner(r#"{"displayName":"Deleted While Down"}"#)
            .await,
        202,
    )
    .await;

    let deleted = app.delete_partner(&id).await;
    fake.set_options(FakeGraphOptions::default());
    let back = Instant::now();
    wait_until_settled(&app, &[&id]).await;

    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get_partner(&id).await.status(), 404);
    let after: Vec<_> = writes(&proxy.calls())
        .into_iter()
        .filter(|c| c.arrived >= back)
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
    let fake = start_fake(FakeGraphOptions::default()).await;
    let app = spawn_app_against(&fake, |_| {}).await;
    let id = created_id(
        app.post_partner(r#"{"displayName":"Reserved Name"}"#).await,
        201,
    )
    .await;
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
    assert_eq!(
        jobs[0]
            .iter()
            .map(|j| j.operation.as_str())
            .collect::<Vec<_>>(),
        ["create", "delete"]
    );
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
    let fake = start_fake(FakeGraphOptions {
        latency_ms: (250, 250),
        ..FakeGraphOptions::default()
    })
    .await;
    let proxy = RecordingProxy::start(fake.uri()).await;
    let app = spawn_app_against(&fake, |s| {
        s.graph.client.root = proxy.graph_root();
        // Long enough that the create is confirmed inline (201), so the PATCH cannot fold.
        s.outbox.inline_deadline = Duration::from_millis(3000);
        s.outbox.lease = Duration::from_millis(6000);
        s.graph.client.request_timeout_ms = 2000;
    })
    .await;

    let id = created_id(
        app.post_partner(r#"{"displayName":"Ordered Partner"}"#)
            .await,
        201,
    )
    .await;
    let patched = app
        .patch_partner(&id, r#"{"displayName":"Ordered Partner Renamed"}"#, None)
        .await
        .status();
    let deleted = app.delete_partner(&id).await.status();
    let jobs = wait_until_settled(&app, &[&id]).await;

    assert_eq!((patched.as_u16(), deleted.as_u16()), (200, 204));
    assert_eq!(
        jobs[0]
            .iter()
            .map(|j| j.operation.as_str())
            .collect::<Vec<_>>(),
        ["create", "update", "delete"]
    );
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
    let id = created_id(
        app.post_partner(r#"{"displayName":"Fold Unknown Before"}"#)
            .await,
        202,
    )
    .await;
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
    let fake = start_fake(FakeGraphOptions::default()).await;
    let proxy = RecordingProxy::start(fake.uri()).await;
    let app = spawn_app_against(&fake, |s| s.graph.client.root = proxy.graph_root()).await;
    let first = created_id(
        app.post_partner(r#"{"displayName":"Swap Name"}"#).await,
        201,
    )
    .await;
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
    let second = created_id(
        app.post_partner(r#"{"displayName":"Swap Name"}"#).await,
        202,
    )
    .await;
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

// ---------------------------------------------------------------------------------------------
// 7. Audit history
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_patch_and_delete_each_leave_an_audit_entry_with_request_id_caller_and_changes() {
    let fake = start_fake(FakeGraphOptions::default()).await;
    let app = spawn_app_against(&fake, |_| {}).await;
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
        sync["attemptHistory"][0]["graphRequestId"].is_string(),
        "{sync}"
    );
}
