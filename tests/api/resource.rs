//! The whole resource end to end, by topic: listing with OData query options against a few
//! hundred partners, keyset paging while partners come and go, get, update and delete, every
//! change mirrored to the fake Graph in order, and the audit history.
//!
//! Expected answers are computed here, from what each test created, never read back from the
//! service. Background delivery is awaited by bounded polling ([`wait_until`]) only.
//!
//! This module holds what several topics share: the seeded partners with their expected
//! answers, and small request helpers.

mod audit;
mod changes_reach_graph;
mod delete;
mod get;
mod paging;
mod patch;
mod queries;

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

/// Asserts that the Graph error `body` has a message containing `part`.
fn assert_message_contains(body: &Value, part: &str) {
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(part)),
        "{body}"
    );
}

/// The property names of the JSON object `entity`.
pub(crate) fn property_names(entity: &Value) -> BTreeSet<&str> {
    entity
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// A filter and the partners it must match.
type FilterCase<'a> = (String, Box<dyn Fn(&Seeded) -> bool + 'a>);

/// The case of `filter`, which must match the partners `matches` holds for.
fn case<'a>(filter: impl Into<String>, matches: impl Fn(&Seeded) -> bool + 'a) -> FilterCase<'a> {
    (filter.into(), Box::new(matches))
}

/// Creates the seed partner and answers its id and its GET body.
async fn seed_partner(app: &TestApp) -> (String, Value) {
    let id = created_id(app.post_partner(SEED_REQUEST).await, 201).await;
    let current = json_body(app.get_partner(&id).await).await;
    (id, current)
}

async fn start_fake(options: FakeGraphOptions) -> FakeGraph {
    FakeGraph::start(options)
        .await
        .expect("the fake Graph listens on 127.0.0.1")
}

/// Creates a partner from `body` and answers its id, after checking the create's status.
async fn create(app: &TestApp, body: &str, status: u16) -> String {
    created_id(app.post_partner(body).await, status).await
}

/// A fake Graph that answers every call as Graph would, and the service against it.
async fn against_healthy_graph() -> (FakeGraph, TestApp) {
    let fake = start_fake(FakeGraphOptions::default()).await;
    let app = spawn_app_against(&fake, |_| {}).await;
    (fake, app)
}

/// The id of a created partner, after checking the create's status.
async fn created_id(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    json_body(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}
