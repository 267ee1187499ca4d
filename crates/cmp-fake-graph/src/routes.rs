//! The HTTP side: Graph's partner collection under `/beta`, Entra ID's token endpoint, and the
//! `/_fake/*` inspection endpoints.
//!
//! It answers as Graph does, because the service's Graph client is tested against it: 201 and
//! the entity on create, list pages with an absolute `@odata.nextLink`, Graph's error shape,
//! `request-id` and `client-request-id` on every Graph response (what the service itself
//! answers in the same shape is in `docs/wire-contract.md`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::options::FakeGraphOptions;
use crate::store::{Call, Fault, Store};

/// The only access token the fake issues and accepts.
pub(crate) const TOKEN: &str = "fake-token";
const COLLECTION: &str = "/deviceManagement/complianceManagementPartners";
/// What Graph sends; clients only look at the media type before `;`.
const GRAPH_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
/// Prefix that keeps the `$skiptoken` opaque-looking, so clients do not build it themselves.
const SKIPTOKEN_PREFIX: &str = "fake";

/// State shared by the handlers and the [`crate::FakeGraph`] handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// `http://127.0.0.1:PORT/beta`, for `@odata.context` and the absolute `@odata.nextLink`.
    graph_root: String,
    /// True while POSTs are held: they are counted, then wait until it turns false.
    holding_creates: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(options: FakeGraphOptions, graph_root: String) -> Self {
        Self {
            store: Mutex::new(Store::new(options)),
            graph_root,
            holding_creates: watch::Sender::new(false),
        }
    }

    /// Holds (`true`) or releases (`false`) the POSTs.
    pub(crate) fn hold_creates(&self, hold: bool) {
        self.holding_creates.send_replace(hold);
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // A panicking handler must not turn every later call into a panic: the store is
        // changed in single steps, so it is consistent even after a poisoning panic.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type App = std::sync::Arc<Shared>;

pub(crate) fn router(app: App) -> Router {
    let collection = format!("/beta{COLLECTION}");
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(&collection, get(list).post(create))
        .route(
            &format!("{collection}/{{id}}"),
            get(read).patch(update).delete(remove),
        )
        .route("/_fake/objects", get(fake_objects))
        .route("/_fake/stats", get(fake_stats))
        .route("/_fake/options", post(fake_options))
        .with_state(app)
}

/// Client-credentials token endpoint: any form body gets the one fake token.
async fn token(State(app): State<App>) -> Response {
    app.store().stats.token_requests += 1;
    let body = json!({"token_type": "Bearer", "expires_in": 3599, "access_token": TOKEN});
    plain_json(StatusCode::OK, &body)
}

async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let ctx = Ctx::new(&headers);
    admit(&app, &ctx, &headers, Call::Create).await?;
    // The sender lives in `app`, so the wait can only end by a release.
    let _ = app
        .holding_creates
        .subscribe()
        .wait_for(|holding| !holding)
        .await;
    let object = json_object(&body)
        .filter(|object| object.get("displayName").is_some_and(Value::is_string))
        .ok_or_else(|| {
            ctx.error(
                400,
                "BadRequest",
                "body must be a JSON object with a string displayName",
            )
        })?;

    let mut store = app.store();
    if let Some(fault) = store.throttle() {
        return Err(ctx.fault(&fault));
    }
    if let Some(fault) = store.fault(Call::Create) {
        if fault.applied {
            store.insert(object);
        }
        return Err(ctx.fault(&fault));
    }
    let created = store.insert(object);
    Ok(ctx.json(StatusCode::CREATED, entity(&app, created)))
}

async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Response> {
    let ctx = Ctx::new(&headers);
    admit(&app, &ctx, &headers, Call::Read).await?;
    // The service sends no query option but `$filter=displayName eq '…'` (reconciliation by
    // name) and follows `@odata.nextLink` as returned (`docs/graph-client.md`, "Paging"):
    // refuse any other option instead of ignoring it, so a test sees the client add one.
    let filter = query.as_deref().and_then(display_name_filter);
    if let Some(name) = &filter {
        let mut store = app.store();
        store.stats.filtered_gets += 1;
        if let Some(fault) = store.fault(Call::Read) {
            return Err(ctx.fault(&fault));
        }
        if !store.options.filter_ignored {
            let value = store.named(name);
            drop(store);
            let body = json!({
                "@odata.context": format!("{}/$metadata#deviceManagement/complianceManagementPartners", app.graph_root),
                "value": value,
            });
            return Ok(ctx.json(StatusCode::OK, body));
        }
    }
    let after = match query.as_deref() {
        None | Some("") => None,
        Some(_) if filter.is_some() => None,
        Some(query) => Some(
            query
                .strip_prefix("$skiptoken=")
                .and_then(|token| token.strip_prefix(SKIPTOKEN_PREFIX))
                .and_then(|seq| u64::from_str_radix(seq, 16).ok())
                .ok_or_else(|| {
                    ctx.error(
                        400,
                        "BadRequest",
                        "unsupported query option or bad $skiptoken",
                    )
                })?,
        ),
    };

    let mut store = app.store();
    // A filtered query already drew its failure.
    if filter.is_none()
        && let Some(fault) = store.fault(Call::Read)
    {
        return Err(ctx.fault(&fault));
    }
    let (value, next) = store.page(after);
    drop(store);
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#deviceManagement/complianceManagementPartners", app.graph_root),
        "value": value,
    });
    if let Some(seq) = next {
        body["@odata.nextLink"] = format!(
            "{}{COLLECTION}?$skiptoken={SKIPTOKEN_PREFIX}{seq:x}",
            app.graph_root
        )
        .into();
    }
    Ok(ctx.json(StatusCode::OK, body))
}

async fn read(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let ctx = Ctx::new(&headers);
    admit(&app, &ctx, &headers, Call::Read).await?;
    let mut store = app.store();
    if let Some(fault) = store.fault(Call::Read) {
        return Err(ctx.fault(&fault));
    }
    let object = store.get(&id).cloned().ok_or_else(|| ctx.not_found(&id))?;
    drop(store);
    Ok(ctx.json(StatusCode::OK, entity(&app, object)))
}

async fn update(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let ctx = Ctx::new(&headers);
    admit(&app, &ctx, &headers, Call::Update).await?;
    let changes = json_object(&body)
        .filter(|changes| {
            changes
                .get("id")
                .is_none_or(|sent| sent.as_str() == Some(id.as_str()))
        })
        .ok_or_else(|| {
            ctx.error(
                400,
                "BadRequest",
                "body must be a JSON object whose id, if any, matches the key",
            )
        })?;

    let mut store = app.store();
    if let Some(fault) = store.throttle() {
        return Err(ctx.fault(&fault));
    }
    if let Some(fault) = store.fault(Call::Update) {
        return Err(ctx.fault(&fault));
    }
    let updated = store
        .patch(&id, changes)
        .ok_or_else(|| ctx.not_found(&id))?;
    drop(store);
    Ok(ctx.json(StatusCode::OK, entity(&app, updated)))
}

async fn remove(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let ctx = Ctx::new(&headers);
    admit(&app, &ctx, &headers, Call::Delete).await?;
    let mut store = app.store();
    if let Some(fault) = store.throttle() {
        return Err(ctx.fault(&fault));
    }
    if let Some(fault) = store.fault(Call::Delete) {
        return Err(ctx.fault(&fault));
    }
    if !store.remove(&id) {
        return Err(ctx.not_found(&id));
    }
    Ok(ctx.finish(StatusCode::NO_CONTENT.into_response()))
}

async fn fake_objects(State(app): State<App>) -> Response {
    let objects = app.store().objects();
    plain_json(StatusCode::OK, &Value::Array(objects))
}

async fn fake_stats(State(app): State<App>) -> Response {
    let stats = app.store().stats;
    plain_json(StatusCode::OK, &json!(stats))
}

/// Replaces the options; answers the options now in force.
async fn fake_options(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<FakeGraphOptions>(&body) {
        Ok(options) => {
            app.store().set_options(options.clone());
            plain_json(StatusCode::OK, &json!(options))
        }
        Err(error) => plain_json(
            StatusCode::BAD_REQUEST,
            &json!({"error": error.to_string()}),
        ),
    }
}

/// The front of every Graph call: count it, check the token, then wait the drawn latency.
async fn admit(app: &App, ctx: &Ctx, headers: &HeaderMap, call: Call) -> Result<(), Response> {
    let delay = {
        let mut store = app.store();
        store.count(call);
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        if store.options.require_token && bearer != Some(&format!("Bearer {TOKEN}")) {
            let mut response = ctx.error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            );
            // No `claims=` here: that would ask the client for a CAE re-authentication.
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"\""),
            );
            return Err(response);
        }
        store.latency()
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

/// The display name of a `$filter=displayName eq '…'` query (the only filter the fake
/// understands; `''` inside the literal is one quote, as in OData).
fn display_name_filter(query: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://fake/?{query}")).ok()?;
    let filter = url
        .query_pairs()
        .find(|(key, _)| key == "$filter")
        .map(|(_, value)| value.into_owned())?;
    let literal = filter
        .trim()
        .strip_prefix("displayName eq '")?
        .strip_suffix('\'')?;
    Some(literal.replace("''", "'"))
}

fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// A single entity as Graph answers it: at the JSON root, with its `@odata.context`.
fn entity(app: &Shared, mut object: Value) -> Value {
    object["@odata.context"] = format!(
        "{}/$metadata#deviceManagement/complianceManagementPartners/$entity",
        app.graph_root
    )
    .into();
    object
}

fn plain_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Per-request identity: Graph's `request-id`, and the `client-request-id` it echoes.
struct Ctx {
    request_id: String,
    client_request_id: String,
}

impl Ctx {
    fn new(headers: &HeaderMap) -> Self {
        let request_id = Uuid::new_v4().to_string();
        let client_request_id = headers
            .get("client-request-id")
            .and_then(|value| value.to_str().ok())
            .map_or_else(|| request_id.clone(), str::to_owned);
        Self {
            request_id,
            client_request_id,
        }
    }

    fn finish(&self, mut response: Response) -> Response {
        for (name, value) in [
            ("request-id", &self.request_id),
            ("client-request-id", &self.client_request_id),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        response
    }

    fn json(&self, status: StatusCode, body: Value) -> Response {
        self.finish((status, [(CONTENT_TYPE, GRAPH_JSON)], body.to_string()).into_response())
    }

    fn error(&self, status: u16, code: &str, message: &str) -> Response {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": graph_date(SystemTime::now()),
                "request-id": self.request_id,
                "client-request-id": self.client_request_id,
            },
        }});
        self.json(status, body)
    }

    fn not_found(&self, id: &str) -> Response {
        self.error(
            404,
            "ResourceNotFound",
            &format!("complianceManagementPartner {id} not found"),
        )
    }

    fn fault(&self, fault: &Fault) -> Response {
        let code = match fault.status {
            400 => "BadRequest",
            401 => "InvalidAuthenticationToken",
            403 => "Forbidden",
            404 => "ResourceNotFound",
            409 => "Conflict",
            429 => "TooManyRequests",
            503 => "serviceNotAvailable",
            504 => "gatewayTimeout",
            507 => "quotaLimitReached",
            509 => "activityLimitReached",
            _ => "generalException",
        };
        let mut response = self.error(fault.status, code, "injected failure");
        if matches!(fault.status, 429 | 503)
            && let Ok(value) = HeaderValue::from_str(&fault.retry_after)
        {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        response
    }
}

/// `innerError.date` in Graph's style: UTC without fraction or offset (`2020-09-11T11:21:34`).
fn graph_date(now: SystemTime) -> String {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, time) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's `civil_from_days`, restricted to dates after 1970 (all unsigned).
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        time / 3_600,
        time % 3_600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn graph_date_renders_utc_without_fraction_or_offset() {
        let cases = [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_599_823_294, "2020-09-11T11:21:34"),
            (4_107_542_399, "2100-02-28T23:59:59"),
        ];
        for (secs, expected) in cases {
            let at = UNIX_EPOCH + Duration::from_secs(secs);

            assert_eq!(graph_date(at), expected, "{secs}");
        }
    }
}
