//! [`SimulatedGraph`]: an in-process stand-in for Microsoft Graph's partner collection.
//!
//! It behaves like Graph for a create: the payload goes through the same JSON rendering as a
//! real call, Graph's rules are applied to it, a fresh GUID is assigned and the object is
//! kept. Operators can make it slow or failing from configuration to watch the service's
//! `202 Accepted` path in development. Its objects live in memory and are gone on restart.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use cmp_application::{CreateOutcome, GraphCallResult, GraphGateway, GraphResponseMeta};
use cmp_domain::Partner;
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
        Ok(())
    }
}

/// An in-memory Graph partner collection.
pub struct SimulatedGraph {
    settings: SimulatedGraphSettings,
    /// Created objects by Graph id, as Graph would return them.
    objects: Mutex<BTreeMap<String, Value>>,
}

impl SimulatedGraph {
    /// A simulated Graph with no objects.
    pub fn new(settings: SimulatedGraphSettings) -> Self {
        Self {
            settings,
            objects: Mutex::new(BTreeMap::new()),
        }
    }

    /// The objects created so far, as Graph would list them.
    pub fn objects(&self) -> Vec<Value> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        // A panic while holding the lock cannot leave the map half-updated (one insert), so a
        // poisoned lock is still consistent.
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

#[async_trait]
impl GraphGateway for SimulatedGraph {
    async fn create_partner(&self, partner: &Partner, client_request_id: Uuid) -> GraphCallResult {
        if self.settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.latency_ms)).await;
        }
        tracing::debug!(client_request_id = %client_request_id, "simulated Graph: create");
        match self.failure_now() {
            SimulatedFailure::Throttle => {
                return GraphCallResult {
                    outcome: CreateOutcome::NotApplied {
                        retry_after: Some(Duration::from_secs(5)),
                    },
                    meta: meta(429, Some("TooManyRequests"), Some("simulated throttling")),
                };
            }
            SimulatedFailure::Unavailable => {
                return GraphCallResult {
                    outcome: CreateOutcome::Unknown,
                    meta: meta(503, Some("serviceNotAvailable"), Some("simulated outage")),
                };
            }
            SimulatedFailure::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return GraphCallResult {
                    outcome: CreateOutcome::Unknown,
                    meta: GraphResponseMeta::default(),
                };
            }
            SimulatedFailure::Reject => {
                return GraphCallResult {
                    outcome: CreateOutcome::Rejected,
                    meta: meta(
                        400,
                        Some("BadRequest"),
                        Some("simulated rejection of the payload"),
                    ),
                };
            }
            SimulatedFailure::None => {}
        }
        // The object goes through the same JSON a real POST would carry.
        let mut object = match serde_json::to_value(render_partner_for_graph(partner)) {
            Ok(object) => object,
            Err(e) => {
                return GraphCallResult {
                    outcome: CreateOutcome::Rejected,
                    meta: meta(400, Some("BadRequest"), Some(&e.to_string())),
                };
            }
        };
        let graph_id = Uuid::new_v4().to_string();
        object["id"] = Value::String(graph_id.clone());
        self.lock().insert(graph_id.clone(), object);
        GraphCallResult {
            outcome: CreateOutcome::Created { graph_id },
            meta: meta(201, None, None),
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
        })
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

    #[test]
    fn failure_rate_outside_zero_to_one_is_refused() {
        let settings = |failure_rate| SimulatedGraphSettings {
            latency_ms: 0,
            failure: SimulatedFailure::Throttle,
            failure_rate,
        };
        assert!(settings(1.5).validate().is_err());
        assert!(settings(-0.1).validate().is_err());
        assert!(settings(0.5).validate().is_ok());
    }
}
