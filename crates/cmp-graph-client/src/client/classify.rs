//! What one exchange with Graph means: its outcome class, and the parts of Graph's answers the
//! class is decided from (error bodies, `WWW-Authenticate`).
//!
//! Decisions are made on the status and on `error.code`, never on `error.message`, which
//! Graph may word differently at any time.

use std::time::Duration;

use cmp_application::{CreateOutcome, GraphReadError, GraphResponseMeta, WriteOutcome};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

/// The `error.code` Intune answers a create with (400) when the tenant's collection holds
/// pre-seeded placeholder records and no POST route exists for it.
const ROUTING_REFUSAL_CODE: &str = "No method match route template";

/// `innerError` chains deeper than this are not walked: a guard against hostile bodies.
const MAX_INNER_ERROR_DEPTH: usize = 32;

/// How one logical call ended, after its in-call retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Graph answered with `status`. `body` is what it sent; empty when the body of an error
    /// answer could not be read (the status alone decides then).
    Answered { status: StatusCode, body: Vec<u8> },
    /// The request never reached Graph: a connect, DNS or TLS failure, a tenant pause longer
    /// than the budget, or a token endpoint that is temporarily unavailable.
    Unsent,
    /// The request was sent and no usable answer came back: a timeout after sending, a reset
    /// mid-exchange, the unreadable body of a success.
    Lost,
    /// Graph answered with a redirect we refuse to follow (https to http, or more than five).
    RedirectRefused,
    /// No token could be had for a reason an operator must fix (configuration, or the token
    /// provider backing off after such a failure).
    NoToken,
}

/// One logical call's end: how it ended and everything Graph said about it.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    /// How it ended.
    pub(crate) ending: Ending,
    /// Status, innermost `error.code`, `error.message` and `request-id`, for the record.
    pub(crate) meta: GraphResponseMeta,
    /// When to come back: Graph's `Retry-After`, the rest of a tenant pause, or the token
    /// endpoint's `retry_at`.
    pub(crate) retry_after: Option<Duration>,
    /// Every `error.code` down the `innerError` chain, outermost first; the routing refusal
    /// check looks at all of them, the record keeps the innermost.
    pub(crate) error_codes: Vec<String>,
    /// The `claims` of a 401's `WWW-Authenticate: Bearer … claims="…"` challenge, as given
    /// (base64): the token provider must ask Entra ID for a token carrying them.
    pub(crate) claims: Option<String>,
}

impl Exchange {
    /// An end without an HTTP answer, with a description for the record.
    pub(crate) fn without_answer(
        ending: Ending,
        retry_after: Option<Duration>,
        description: String,
    ) -> Self {
        Self {
            ending,
            meta: GraphResponseMeta {
                error_message: Some(description),
                ..GraphResponseMeta::default()
            },
            retry_after,
            error_codes: Vec::new(),
            claims: None,
        }
    }

    /// The HTTP status Graph answered with, if it answered.
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match &self.ending {
            Ending::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether Graph refused a create because no POST route exists for the collection: the
    /// sign of a tenant with pre-seeded placeholder records.
    pub(crate) fn is_routing_refusal(&self) -> bool {
        self.status() == Some(StatusCode::BAD_REQUEST)
            && self
                .error_codes
                .iter()
                .any(|code| code.trim().eq_ignore_ascii_case(ROUTING_REFUSAL_CODE))
    }
}

/// What a Graph error body says: `{"error": {"code", "message", "innerError": {…}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GraphErrorBody {
    /// `error.code`, then each nested `innerError.code`, outermost first.
    pub(crate) codes: Vec<String>,
    /// `error.message`.
    pub(crate) message: Option<String>,
}

impl GraphErrorBody {
    /// Reads an error body; anything not in Graph's shape (HTML, text, empty) reads as empty.
    pub(crate) fn parse(body: &[u8]) -> Self {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        let Some(error) = json.get("error") else {
            return Self::default();
        };
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut codes = Vec::new();
        let mut node = Some(error);
        for _ in 0..MAX_INNER_ERROR_DEPTH {
            let Some(current) = node else { break };
            if let Some(code) = current.get("code").and_then(Value::as_str)
                && !code.trim().is_empty()
            {
                codes.push(code.to_owned());
            }
            node = inner_error(current);
        }
        Self { codes, message }
    }

    /// The code to keep: the innermost one, which is the most specific.
    pub(crate) fn innermost_code(&self) -> Option<&str> {
        self.codes.last().map(String::as_str)
    }
}

/// The nested error of `node`: Graph writes `innerError`, OData's JSON format `innererror`.
fn inner_error(node: &Value) -> Option<&Value> {
    node.as_object()?
        .iter()
        .find(|(key, value)| key.eq_ignore_ascii_case("innererror") && value.is_object())
        .map(|(_, value)| value)
}

/// The `claims` parameter of a `WWW-Authenticate` challenge, if any (Continuous Access
/// Evaluation). Parses `auth-param`s properly so that a parameter
/// merely ending in `claims` does not match.
pub(crate) fn challenge_claims(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return None;
        }
        let name_end = rest
            .find(|c: char| c == '=' || c == ',' || c == '"' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        let after_name = rest[name_end..].trim_start();
        let Some(after_equals) = after_name.strip_prefix('=') else {
            // A scheme name (`Bearer`) or a stray token: skip it.
            rest = if name_end == 0 {
                &rest[1..]
            } else {
                &rest[name_end..]
            };
            continue;
        };
        let after_equals = after_equals.trim_start();
        let (value, remainder) = if let Some(quoted) = after_equals.strip_prefix('"') {
            quoted_string(quoted)
        } else {
            let end = after_equals
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(after_equals.len());
            (after_equals[..end].to_owned(), &after_equals[end..])
        };
        if name.eq_ignore_ascii_case("claims") && !value.is_empty() {
            return Some(value);
        }
        rest = remainder;
    }
}

/// Reads an HTTP quoted-string whose opening quote is already consumed; returns its value
/// (escapes undone) and the text after the closing quote.
fn quoted_string(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return (value, &text[index + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            other => value.push(other),
        }
    }
    (value, "")
}

/// The part of a create answer we read: Graph's new `id`.
#[derive(Deserialize)]
struct CreatedEntity {
    id: Option<String>,
}

/// The class of a create (POST) call.
pub(crate) fn create_outcome(exchange: &Exchange) -> CreateOutcome {
    let retry_after = exchange.retry_after;
    match &exchange.ending {
        Ending::Answered { status, body } if status.is_success() => {
            // A 2xx without a readable id: Graph may well hold the object, so the only safe
            // class is "unknown" (reconcile by listing), never a blind second POST.
            match serde_json::from_slice::<CreatedEntity>(body) {
                Ok(CreatedEntity { id: Some(id) }) if !id.trim().is_empty() => {
                    CreateOutcome::Created { graph_id: id }
                }
                _ => CreateOutcome::Unknown,
            }
        }
        Ending::Answered { status, .. } => match status.as_u16() {
            401 | 403 => CreateOutcome::AuthFailure,
            409 => CreateOutcome::Conflict,
            429 => CreateOutcome::NotApplied { retry_after },
            // The listed permanent refusals (400, 404, 405, 411–415, 422) and every other
            // 4xx: Graph looked at the request and said no.
            400..=499 => CreateOutcome::Rejected,
            // 500, 502, 503, 504, 507, 509, any other 5xx, and the odd 1xx/3xx that reached
            // us: Graph may or may not have acted.
            _ => CreateOutcome::Unknown,
        },
        Ending::Unsent => CreateOutcome::NotApplied { retry_after },
        Ending::Lost | Ending::RedirectRefused => CreateOutcome::Unknown,
        Ending::NoToken => CreateOutcome::AuthFailure,
    }
}

/// Which idempotent write an answer belongs to: they differ only on 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// PATCH: a 404 means the object is not in Graph.
    Update,
    /// DELETE: a 404 means the work is done.
    Delete,
}

/// The class of an update (PATCH) or delete (DELETE) call.
pub(crate) fn write_outcome(exchange: &Exchange, kind: WriteKind) -> WriteOutcome {
    let retry_after = exchange.retry_after;
    match &exchange.ending {
        Ending::Answered { status, .. } if status.is_success() => WriteOutcome::Applied,
        Ending::Answered { status, .. } => match (status.as_u16(), kind) {
            (404, WriteKind::Update) => WriteOutcome::NotFound,
            (404, WriteKind::Delete) => WriteOutcome::Applied,
            (401 | 403, _) => WriteOutcome::AuthFailure,
            (429, _) => WriteOutcome::NotApplied { retry_after },
            // WriteOutcome has no conflict class: a 409 on an existing object is a refusal.
            (400..=499, _) => WriteOutcome::Rejected,
            _ => WriteOutcome::Unknown,
        },
        Ending::Unsent => WriteOutcome::NotApplied { retry_after },
        Ending::Lost | Ending::RedirectRefused => WriteOutcome::Unknown,
        Ending::NoToken => WriteOutcome::AuthFailure,
    }
}

/// What a successful read brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    /// 2xx with this body.
    Found(Vec<u8>),
    /// 404; the meta says who said so.
    NotFound(GraphResponseMeta),
}

/// The result of a read (GET) call.
pub(crate) fn read_result(exchange: Exchange) -> Result<Read, GraphReadError> {
    let meta = exchange.meta;
    match exchange.ending {
        Ending::Answered { status, body } if status.is_success() => Ok(Read::Found(body)),
        Ending::Answered { status, .. } => match status.as_u16() {
            404 => Ok(Read::NotFound(meta)),
            401 | 403 => Err(GraphReadError::AuthFailure(meta)),
            429 | 500..=599 => Err(GraphReadError::Transient(meta)),
            _ => Err(GraphReadError::Refused(meta)),
        },
        Ending::Unsent | Ending::Lost => Err(GraphReadError::Transient(meta)),
        Ending::RedirectRefused => Err(GraphReadError::Refused(meta)),
        Ending::NoToken => Err(GraphReadError::AuthFailure(meta)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_every_code_down_the_inner_error_chain() {
        let cases = [
            (
                "flat",
                r#"{"error":{"code":"BadRequest","message":"bad enum","innerError":{"request-id":"r","date":"2024-04-05T13:15:36"}}}"#,
                vec!["BadRequest"],
                Some("bad enum"),
            ),
            (
                "nested",
                r#"{"error":{"code":"BadRequest","message":"m","innerError":{"code":"invalidPartner","innerError":{"code":"displayNameTaken"}}}}"#,
                vec!["BadRequest", "invalidPartner", "displayNameTaken"],
                Some("m"),
            ),
            (
                "odata spelling",
                r#"{"error":{"code":"a","innererror":{"code":"b"}}}"#,
                vec!["a", "b"],
                None,
            ),
            ("html", "<html>Service Unavailable</html>", vec![], None),
            ("empty", "", vec![], None),
            ("not graph's shape", r#"{"message":"nope"}"#, vec![], None),
        ];
        for (case, body, codes, message) in cases {
            let parsed = GraphErrorBody::parse(body.as_bytes());
            assert_eq!(parsed.codes, codes, "{case}");
            assert_eq!(parsed.message.as_deref(), message, "{case}");
            assert_eq!(parsed.innermost_code(), codes.last().copied(), "{case}");
        }
    }

    #[test]
    fn claims_are_read_from_a_bearer_challenge_and_nowhere_else() {
        let cases = [
            (
                r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ==""#,
                Some("eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ=="),
            ),
            (r#"Bearer CLAIMS = "abc""#, Some("abc")),
            (r#"Bearer claims=abc, error="x""#, Some("abc")),
            (r#"Bearer claims="a\"b""#, Some("a\"b")),
            (r#"Bearer xclaims="abc", error="invalid_token""#, None),
            (
                r#"Bearer error="invalid_token", error_description="claims=\"abc\"""#,
                None,
            ),
            (r#"Bearer claims="""#, None),
            ("Bearer", None),
            ("", None),
        ];
        for (header, expected) in cases {
            assert_eq!(challenge_claims(header).as_deref(), expected, "{header}");
        }
    }
}
