//! The probes a load balancer or Kubernetes asks: `GET /healthz` (the process is up) and
//! `GET /readyz` (it can serve). They sit outside the Graph root and outside every layer of
//! [`crate::router`]: no bearer token, no write rate, no load shedding (a busy instance must
//! still say it is alive), no Graph envelope. What each check means is told in
//! `docs/operations.md`.
//!
//! The checks themselves are behind the [`ReadinessCheck`] port, which the binary implements
//! over the store, the dispatcher and the token provider: this adapter knows no SQL.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// Liveness: answers while the process serves HTTP at all.
pub const HEALTHZ_PATH: &str = "/healthz";

/// Readiness: answers 200 while the instance can serve, 503 while it cannot.
pub const READYZ_PATH: &str = "/readyz";

/// How one readiness check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// The check passed.
    Ok,
    /// The check failed; the cause is in the service's log.
    Failing,
    /// The check does not apply to this configuration (no Graph token in simulated mode).
    NotUsed,
    /// Nothing is known yet (no Graph token has been requested since the start).
    Unknown,
}

impl CheckStatus {
    /// The name in the probe's answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::NotUsed => "not_used",
            Self::Unknown => "unknown",
        }
    }
}

/// The named checks of the readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The store takes a write.
    pub store: CheckStatus,
    /// The store's applied migrations are this build's.
    pub migrations: CheckStatus,
    /// The dispatcher's workers finished a pass recently.
    pub dispatcher: CheckStatus,
    /// The latest Graph token request succeeded: reported, never required.
    pub graph_token: CheckStatus,
}

impl Readiness {
    /// Ready when the store, its migrations and the dispatcher are ok. The Graph token is not
    /// required: every replica shares the one Entra tenant, so an Entra outage would take them
    /// all out of the load balancer at once, while reads and queued writes still work.
    pub fn is_ready(&self) -> bool {
        [self.store, self.migrations, self.dispatcher]
            .iter()
            .all(|check| *check == CheckStatus::Ok)
    }
}

/// What the readiness probe asks; the binary implements it.
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Runs every check now. A check that fails says `Failing` and logs its cause; the probe's
    /// answer carries only the names.
    async fn readiness(&self) -> Readiness;
}

/// The probe routes, with no layer of their own; merge them beside [`crate::router`].
pub fn probes_router(check: Arc<dyn ReadinessCheck>) -> Router {
    Router::new()
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .with_state(check)
}

async fn healthz() -> Response {
    probe_answer(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(State(check): State<Arc<dyn ReadinessCheck>>) -> Response {
    let readiness = check.readiness().await;
    let (status, word) = if readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let body = json!({
        "status": word,
        "checks": {
            "store": readiness.store.as_str(),
            "migrations": readiness.migrations.as_str(),
            "dispatcher": readiness.dispatcher.as_str(),
            "graph_token": readiness.graph_token.as_str(),
        },
    });
    probe_answer(status, &body)
}

/// A small JSON answer that no cache between the prober and us may keep.
fn probe_answer(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    /// A check that answers what it was built with.
    struct Fixed(Readiness);

    #[async_trait::async_trait]
    impl ReadinessCheck for Fixed {
        async fn readiness(&self) -> Readiness {
            self.0
        }
    }

    const ALL_OK: Readiness = Readiness {
        store: CheckStatus::Ok,
        migrations: CheckStatus::Ok,
        dispatcher: CheckStatus::Ok,
        graph_token: CheckStatus::Ok,
    };

    async fn probe(readiness: Readiness, path: &str) -> (StatusCode, Value) {
        let response = probes_router(Arc::new(Fixed(readiness)))
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[tokio::test]
    async fn healthz_says_ok_whatever_the_checks_say() {
        let failing = Readiness {
            store: CheckStatus::Failing,
            ..ALL_OK
        };

        let (status, body) = probe(failing, HEALTHZ_PATH).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn readyz_is_503_when_a_required_check_fails_and_names_every_check() {
        let cases = [
            (
                "store",
                Readiness {
                    store: CheckStatus::Failing,
                    ..ALL_OK
                },
            ),
            (
                "migrations",
                Readiness {
                    migrations: CheckStatus::Failing,
                    ..ALL_OK
                },
            ),
            (
                "dispatcher",
                Readiness {
                    dispatcher: CheckStatus::Failing,
                    ..ALL_OK
                },
            ),
        ];
        for (failing, readiness) in cases {
            let (status, body) = probe(readiness, READYZ_PATH).await;

            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{failing}");
            assert_eq!(body["status"], "not_ready", "{failing}");
            assert_eq!(body["checks"][failing], "failing", "{failing}");
            assert_eq!(
                body["checks"].as_object().map(|c| c.len()),
                Some(4),
                "{failing}"
            );
        }
    }

    #[tokio::test]
    async fn readyz_reports_a_failing_graph_token_without_requiring_it() {
        for graph_token in [
            CheckStatus::Ok,
            CheckStatus::Failing,
            CheckStatus::NotUsed,
            CheckStatus::Unknown,
        ] {
            let readiness = Readiness {
                graph_token,
                ..ALL_OK
            };

            let (status, body) = probe(readiness, READYZ_PATH).await;

            assert_eq!(status, StatusCode::OK, "{graph_token:?}");
            assert_eq!(
                body,
                json!({"status": "ready", "checks": {"store": "ok", "migrations": "ok", "dispatcher": "ok", "graph_token": graph_token.as_str()}})
            );
        }
    }
}
