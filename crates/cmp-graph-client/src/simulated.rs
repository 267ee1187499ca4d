//! [`SimulatedGraph`]: an in-process stand-in for Microsoft Graph's partner collection.
//!
//! It behaves like Graph for a create: the payload goes through the same JSON rendering as a
//! real call, Graph's rules are applied to it, a fresh GUID is assigned and the object is
//! kept. Operators can make its writes slow or failing from configuration to watch the
//! service's `202 Accepted` path in development; reads always answer, so reconciliation can
//! always see what was created. Its objects live in memory and are gone on restart.
//!
//! It keeps at most `max_objects` objects (`graph.simulated.max_objects`): beyond that the
//! oldest, by creation, are evicted and read as absent from then on, as if someone had deleted
//! them in Graph: an update of one ends its outbox row dead ("no object to update"), a delete
//! succeeds. The simulation serves development and benchmarks, where a long run must measure
//! the service and not a simulator that grows with every partner; the cap is what a
//! development box needs, not a copy of a tenant.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use cmp_application::{
    CreateOutcome, GraphCallResult, GraphGateway, GraphReadError, GraphResponseMeta,
    GraphWriteResult, NamedPartners, RemotePartner, WriteOutcome,
};
use cmp_domain::{DisplayName, NaturalKey, Partner};
use cmp_graph_model::partner::render_partner_for_graph;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// What the simulated Graph does with the creates chosen to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimulatedFailure {
    /// Nothing fails.
    None,
    /// 429 `TooManyRequests` with `Retry-After: 5`.
    Throttle,
    /// 503 `serviceNotAvailable`: the outcome is unknown to the caller.
    Unavailable,
    /// Never answers within any sensible deadline (an hour).
    Hang,
    /// 400 `BadRequest`: Graph refuses the payload for good.
    Reject,
}

/// Configuration of the simulated Graph (`[graph.simulated]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedGraphSettings {
    /// Added to every call, in milliseconds.
    pub latency_ms: u64,
    /// How the failing calls fail.
    pub failure: SimulatedFailure,
    /// Share of creates that fail, from 0.0 (none) to 1.0 (all).
    pub failure_rate: f64,
    /// Objects kept at most; the oldest are evicted beyond it. At least 1.
    pub max_objects: usize,
}

impl SimulatedGraphSettings {
    /// Checks values the type system cannot.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(format!(
                "graph.simulated.failure_rate must be between 0.0 and 1.0, got {}",
                self.failure_rate
            ));
        }
        if self.max_objects == 0 {
            return Err("graph.simulated.max_objects must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// One kept object: the JSON body a real POST would have carried (without `id`, which is the
/// key it is kept under), as compact text, and the display name that reads by name need. As a
/// `serde_json::Value` one partner took about 2.3 KiB in some twenty small allocations; as text
/// it takes about 450 bytes in two.
#[derive(Debug)]
struct StoredObject {
    display_name: Box<str>,
    body: Box<str>,
}

impl StoredObject {
    /// `partner` as Graph would keep it after a create or an update.
    fn of(partner: &Partner) -> Result<Self, serde_json::Error> {
        Ok(Self {
            display_name: partner.display_name().as_str().into(),
            body: serde_json::to_string(&render_partner_for_graph(partner))?.into(),
        })
    }

    /// The object as Graph would answer it, `id` included.
    fn to_json(&self, graph_id: &str) -> Value {
        // The body was written by `serde_json` from an object, so it reads back as one.
        let mut object = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        object["id"] = Value::String(graph_id.to_owned());
        object
    }

    fn remote(&self, graph_id: &str) -> RemotePartner {
        RemotePartner {
            graph_id: graph_id.to_owned(),
            display_name: Some(self.display_name.to_string()),
        }
    }
}

/// The simulated collection: objects by Graph id, and their creation order for eviction.
#[derive(Debug, Default)]
struct Objects {
    /// Each object with its place in `order`.
    by_id: HashMap<String, (u64, StoredObject)>,
    /// Graph ids, oldest first.
    order: BTreeMap<u64, String>,
    next_place: u64,
}

impl Objects {
    /// Keeps `object` under `graph_id` as the newest, then evicts the oldest objects beyond
    /// `max_objects`.
    fn insert(&mut self, graph_id: String, object: StoredObject, max_objects: usize) {
        let place = self.next_place;
        self.next_place += 1;
        self.order.insert(place, graph_id.clone());
        self.by_id.insert(graph_id, (place, object));
        while self.by_id.len() > max_objects {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
    }

    fn get(&self, graph_id: &str) -> Option<&StoredObject> {
        self.by_id.get(graph_id).map(|(_, object)| object)
    }

    fn get_mut(&mut self, graph_id: &str) -> Option<&mut StoredObject> {
        self.by_id.get_mut(graph_id).map(|(_, object)| object)
    }

    /// Removes the object; answers whether there was one.
    fn remove(&mut self, graph_id: &str) -> bool {
        match self.by_id.remove(graph_id) {
            Some((place, _)) => {
                self.order.remove(&place);
                true
            }
            None => false,
        }
    }

    /// The objects with their Graph ids, oldest first.
    fn iter(&self) -> impl Iterator<Item = (&str, &StoredObject)> {
        self.order
            .values()
            .filter_map(|graph_id| self.get(graph_id).map(|object| (graph_id.as_str(), object)))
    }
}

/// An in-memory Graph partner collection.
pub struct SimulatedGraph {
    settings: SimulatedGraphSettings,
    /// Created objects, as Graph would return them.
    objects: Mutex<Objects>,
}

impl SimulatedGraph {
    /// A simulated Graph with no objects.
    pub fn new(settings: SimulatedGraphSettings) -> Self {
        Self {
            settings,
            objects: Mutex::new(Objects::default()),
        }
    }

    /// The objects kept (created and neither deleted nor evicted), oldest first, as Graph
    /// would list them.
    pub fn objects(&self) -> Vec<Value> {
        self.lock()
            .iter()
            .map(|(graph_id, object)| object.to_json(graph_id))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        // Nothing under the lock panics between the two maps' updates (map operations and
        // moves only), so a poisoned lock is still consistent.
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn failure_now(&self) -> SimulatedFailure {
        let failing = self.settings.failure != SimulatedFailure::None
            && self.settings.failure_rate > 0.0
            && fastrand::f64() < self.settings.failure_rate;
        if failing {
            self.settings.failure
        } else {
            SimulatedFailure::None
        }
    }
}

fn meta(status: u16, code: Option<&str>, message: Option<&str>) -> GraphResponseMeta {
    GraphResponseMeta {
        status: Some(status),
        error_code: code.map(str::to_owned),
        error_message: message.map(str::to_owned),
        request_id: Some(Uuid::new_v4().to_string()),
    }
}

/// How a write chosen to fail fails, in the outcome classes of the port.
enum InjectedFailure {
    Throttled,
    Unavailable,
    Rejected,
}

impl SimulatedGraph {
    /// Waits the configured latency, then decides whether this write fails. A hang waits an
    /// hour and then reports an unknown outcome.
    async fn before_write(&self) -> Option<(InjectedFailure, GraphResponseMeta)> {
        if self.settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.latency_ms)).await;
        }
        match self.failure_now() {
            SimulatedFailure::None => None,
            SimulatedFailure::Throttle => Some((
                InjectedFailure::Throttled,
                meta(429, Some("TooManyRequests"), Some("simulated throttling")),
            )),
            SimulatedFailure::Unavailable => Some((
                InjectedFailure::Unavailable,
                meta(503, Some("serviceNotAvailable"), Some("simulated outage")),
            )),
            SimulatedFailure::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Some((InjectedFailure::Unavailable, GraphResponseMeta::default()))
            }
            SimulatedFailure::Reject => Some((
                InjectedFailure::Rejected,
                meta(
                    400,
                    Some("BadRequest"),
                    Some("simulated rejection of the payload"),
                ),
            )),
        }
    }

    fn write_failure(failure: InjectedFailure, meta: GraphResponseMeta) -> GraphWriteResult {
        let outcome = match failure {
            InjectedFailure::Throttled => WriteOutcome::NotApplied {
                retry_after: Some(THROTTLE_RETRY_AFTER),
            },
            InjectedFailure::Unavailable => WriteOutcome::Unknown,
            InjectedFailure::Rejected => WriteOutcome::Rejected,
        };
        GraphWriteResult { outcome, meta }
    }
}

/// The `Retry-After` of a simulated 429.
const THROTTLE_RETRY_AFTER: Duration = Duration::from_secs(5);

#[async_trait]
impl GraphGateway for SimulatedGraph {
    async fn create_partner(&self, partner: &Partner, client_request_id: Uuid) -> GraphCallResult {
        tracing::debug!(client_request_id = %client_request_id, "simulated Graph: create");
        if let Some((failure, meta)) = self.before_write().await {
            let outcome = match failure {
                InjectedFailure::Throttled => CreateOutcome::NotApplied {
                    retry_after: Some(THROTTLE_RETRY_AFTER),
                },
                InjectedFailure::Unavailable => CreateOutcome::Unknown,
                InjectedFailure::Rejected => CreateOutcome::Rejected,
            };
            return GraphCallResult { outcome, meta };
        }
        // The object goes through the same JSON a real POST would carry.
        let object = match StoredObject::of(partner) {
            Ok(object) => object,
            Err(e) => {
                return GraphCallResult {
                    outcome: CreateOutcome::Rejected,
                    meta: meta(400, Some("BadRequest"), Some(&e.to_string())),
                };
            }
        };
        let graph_id = Uuid::new_v4().to_string();
        self.lock()
            .insert(graph_id.clone(), object, self.settings.max_objects);
        GraphCallResult {
            outcome: CreateOutcome::Created { graph_id },
            meta: meta(201, None, None),
        }
    }

    async fn get_partner(&self, graph_id: &str) -> Result<Option<RemotePartner>, GraphReadError> {
        Ok(self
            .lock()
            .get(graph_id)
            .map(|object| object.remote(graph_id)))
    }

    async fn list_partners(&self) -> Result<Vec<RemotePartner>, GraphReadError> {
        Ok(self
            .lock()
            .iter()
            .map(|(graph_id, object)| object.remote(graph_id))
            .collect())
    }

    async fn find_partners_named(
        &self,
        display_name: &str,
    ) -> Result<NamedPartners, GraphReadError> {
        // Graph's `eq` on a string ignores case; the trimmed natural key is at least as wide.
        let Ok(name) = DisplayName::parse(display_name) else {
            return Ok(NamedPartners::default());
        };
        let wanted = NaturalKey::of(&name);
        // Matched on the kept name first: only the matches are copied out.
        let partners = self
            .lock()
            .iter()
            .filter(|(_, object)| wanted.matches_reported(Some(&object.display_name)))
            .map(|(graph_id, object)| object.remote(graph_id))
            .collect();
        Ok(NamedPartners {
            partners,
            more: false,
        })
    }

    async fn update_partner(
        &self,
        graph_id: &str,
        partner: &Partner,
        client_request_id: Uuid,
    ) -> GraphWriteResult {
        tracing::debug!(client_request_id = %client_request_id, graph.id = graph_id, "simulated Graph: update");
        if let Some((failure, meta)) = self.before_write().await {
            return Self::write_failure(failure, meta);
        }
        let mut objects = self.lock();
        let Some(stored) = objects.get_mut(graph_id) else {
            return GraphWriteResult {
                outcome: WriteOutcome::NotFound,
                meta: meta(404, Some("ResourceNotFound"), Some("no such object")),
            };
        };
        match StoredObject::of(partner) {
            Ok(object) => {
                *stored = object;
                GraphWriteResult {
                    outcome: WriteOutcome::Applied,
                    meta: meta(204, None, None),
                }
            }
            Err(e) => GraphWriteResult {
                outcome: WriteOutcome::Rejected,
                meta: meta(400, Some("BadRequest"), Some(&e.to_string())),
            },
        }
    }

    async fn delete_partner(&self, graph_id: &str, client_request_id: Uuid) -> GraphWriteResult {
        tracing::debug!(client_request_id = %client_request_id, graph.id = graph_id, "simulated Graph: delete");
        if let Some((failure, meta)) = self.before_write().await {
            return Self::write_failure(failure, meta);
        }
        // Gone either way: Graph's 404 on a delete means the work is done.
        let status = if self.lock().remove(graph_id) {
            204
        } else {
            404
        };
        GraphWriteResult {
            outcome: WriteOutcome::Applied,
            meta: meta(status, None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use cmp_domain::{DisplayName, NewPartner, PartnerId, PartnerState, Platforms, Timestamp};

    use super::*;

    fn partner() -> Partner {
        Partner::restore(
            PartnerId::from_uuid(Uuid::from_u128(1)),
            NewPartner {
                display_name: DisplayName::parse("Simulated").expect("valid"),
                state: PartnerState::Enabled,
                last_heartbeat: Timestamp::MIN,
                platforms: Platforms::none(),
            },
        )
    }

    fn graph(failure: SimulatedFailure, failure_rate: f64) -> SimulatedGraph {
        SimulatedGraph::new(SimulatedGraphSettings {
            latency_ms: 0,
            failure,
            failure_rate,
            max_objects: 10,
        })
    }

    fn bounded_graph(max_objects: usize) -> SimulatedGraph {
        SimulatedGraph::new(SimulatedGraphSettings {
            max_objects,
            ..graph(SimulatedFailure::None, 0.0).settings
        })
    }

    async fn create(graph: &SimulatedGraph) -> String {
        match graph
            .create_partner(&partner(), Uuid::new_v4())
            .await
            .outcome
        {
            CreateOutcome::Created { graph_id } => graph_id,
            other => panic!("a healthy simulated Graph creates, got {other:?}"),
        }
    }

    fn ids(objects: &[Value]) -> Vec<&str> {
        objects
            .iter()
            .filter_map(|object| object["id"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_healthy_simulated_graph_assigns_a_guid_and_keeps_the_object() {
        let graph = graph(SimulatedFailure::None, 0.0);

        let result = graph.create_partner(&partner(), Uuid::new_v4()).await;

        let CreateOutcome::Created { graph_id } = result.outcome else {
            panic!("expected Created, got {result:?}")
        };
        assert!(Uuid::try_parse(&graph_id).is_ok());
        assert_eq!(result.meta.status, Some(201));
        let objects = graph.objects();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["id"], Value::String(graph_id));
        assert_eq!(objects[0]["displayName"], "Simulated");
        assert_eq!(objects[0]["partnerState"], "enabled");
    }

    #[tokio::test]
    async fn each_failure_mode_answers_with_its_outcome_class_and_keeps_nothing() {
        let cases = [
            (
                SimulatedFailure::Throttle,
                CreateOutcome::NotApplied {
                    retry_after: Some(Duration::from_secs(5)),
                },
                429,
            ),
            (SimulatedFailure::Unavailable, CreateOutcome::Unknown, 503),
            (SimulatedFailure::Reject, CreateOutcome::Rejected, 400),
        ];
        for (failure, expected, status) in cases {
            let graph = graph(failure, 1.0);

            let result = graph.create_partner(&partner(), Uuid::new_v4()).await;

            assert_eq!(result.outcome, expected, "{failure:?}");
            assert_eq!(result.meta.status, Some(status), "{failure:?}");
            assert!(graph.objects().is_empty(), "{failure:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_simulated_graph_does_not_answer_before_an_hour() {
        let graph = graph(SimulatedFailure::Hang, 1.0);
        let partner = partner();
        let call = graph.create_partner(&partner, Uuid::new_v4());

        let answered = tokio::time::timeout(Duration::from_secs(3599), call).await;

        assert!(
            answered.is_err(),
            "must still be pending after 3599 s of paused time"
        );
    }

    #[tokio::test]
    async fn reads_updates_and_deletes_act_on_the_kept_objects() {
        let graph = graph(SimulatedFailure::None, 0.0);
        let CreateOutcome::Created { graph_id } = graph
            .create_partner(&partner(), Uuid::new_v4())
            .await
            .outcome
        else {
            panic!("a healthy simulated Graph creates")
        };

        let listed = graph.list_partners().await.expect("list");
        let fetched = graph.get_partner(&graph_id).await.expect("get");
        let updated = graph
            .update_partner(&graph_id, &partner(), Uuid::new_v4())
            .await;
        let deleted = graph.delete_partner(&graph_id, Uuid::new_v4()).await;
        let deleted_again = graph.delete_partner(&graph_id, Uuid::new_v4()).await;
        let update_of_missing = graph
            .update_partner(&graph_id, &partner(), Uuid::new_v4())
            .await;

        let expected = RemotePartner {
            graph_id: graph_id.clone(),
            display_name: Some("Simulated".into()),
        };
        assert_eq!(listed, vec![expected.clone()]);
        assert_eq!(fetched, Some(expected));
        assert_eq!(updated.outcome, WriteOutcome::Applied);
        assert_eq!(deleted.outcome, WriteOutcome::Applied);
        assert_eq!(deleted.meta.status, Some(204));
        assert_eq!(deleted_again.outcome, WriteOutcome::Applied);
        assert_eq!(deleted_again.meta.status, Some(404));
        assert_eq!(update_of_missing.outcome, WriteOutcome::NotFound);
        assert_eq!(graph.get_partner(&graph_id).await.expect("get"), None);
    }

    #[test]
    fn failure_rate_outside_zero_to_one_is_refused() {
        let settings = |failure_rate| SimulatedGraphSettings {
            latency_ms: 0,
            failure: SimulatedFailure::Throttle,
            failure_rate,
            max_objects: 10,
        };
        assert!(settings(1.5).validate().is_err());
        assert!(settings(-0.1).validate().is_err());
        assert!(settings(0.5).validate().is_ok());
    }

    #[test]
    fn a_cap_of_no_objects_is_refused() {
        let settings = |max_objects| SimulatedGraphSettings {
            max_objects,
            ..graph(SimulatedFailure::None, 0.0).settings
        };

        let refused = settings(0).validate().expect_err("refused");

        assert!(refused.contains("graph.simulated.max_objects"), "{refused}");
        assert!(settings(1).validate().is_ok());
    }

    #[tokio::test]
    async fn beyond_the_cap_the_oldest_objects_are_evicted_and_read_as_absent() {
        let graph = bounded_graph(3);
        let mut created = Vec::new();
        for _ in 0..5 {
            created.push(create(&graph).await);
        }

        let kept = graph.objects();
        assert_eq!(ids(&kept), vec![&created[2], &created[3], &created[4]]);
        let listed: Vec<String> = graph
            .list_partners()
            .await
            .expect("list")
            .into_iter()
            .map(|remote| remote.graph_id)
            .collect();
        assert_eq!(listed, created[2..].to_vec());
        for evicted in &created[..2] {
            assert_eq!(graph.get_partner(evicted).await.expect("get"), None);
            let update = graph
                .update_partner(evicted, &partner(), Uuid::new_v4())
                .await;
            assert_eq!(update.outcome, WriteOutcome::NotFound);
        }
    }

    #[tokio::test]
    async fn eviction_follows_creation_order_through_updates_and_deletes() {
        let graph = bounded_graph(3);
        let (first, second, third) = (
            create(&graph).await,
            create(&graph).await,
            create(&graph).await,
        );
        // An update does not make an object younger; a delete frees its place.
        graph
            .update_partner(&first, &partner(), Uuid::new_v4())
            .await;
        graph.delete_partner(&second, Uuid::new_v4()).await;

        let fourth = create(&graph).await;
        assert_eq!(ids(&graph.objects()), vec![&first, &third, &fourth]);

        let fifth = create(&graph).await;
        assert_eq!(ids(&graph.objects()), vec![&third, &fourth, &fifth]);
    }
}
