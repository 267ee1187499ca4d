//! `$skiptoken`: a keyset [`Cursor`] bound to the query that produced it.
//!
//! The token is base64url (no padding) of a small JSON object: `h`, the fingerprint of the
//! query's canonical filter, order, selection and count, and `k`, the cursor's values, each
//! typed (`{"t":"s","v":"Contoso"}` for a string, `e` for a partnerState member, `d` for an
//! instant in 100-ns ticks since 1970, `b` for a boolean, `i` for an id). Clients treat it as
//! opaque; we only promise that a token works with the query it came from.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cmp_application::query::{Cursor, FilterValue, SortField, SortKey};
use cmp_domain::{PartnerId, PartnerState, Timestamp};
use serde::{Deserialize, Serialize};

use super::{MAX_SKIPTOKEN_CHARS, QueryError};

/// What a token holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Token {
    /// The query fingerprint, as 16 lower-case hex digits.
    h: String,
    /// One value per sort key.
    k: Vec<Value>,
}

/// A cursor value, tagged with its type.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
enum Value {
    #[serde(rename = "s")]
    Text(String),
    #[serde(rename = "e")]
    State(String),
    #[serde(rename = "d")]
    Instant(i64),
    #[serde(rename = "b")]
    Bool(bool),
    #[serde(rename = "i")]
    Id(String),
}

/// Encodes `cursor` for the query with `fingerprint`.
pub fn encode(cursor: &Cursor, fingerprint: u64) -> String {
    let token = Token {
        h: format!("{fingerprint:016x}"),
        k: cursor
            .values
            .iter()
            .map(|value| match value {
                FilterValue::Text(text) => Value::Text(text.clone()),
                FilterValue::State(state) => Value::State(state.as_str().to_owned()),
                FilterValue::Instant(instant) => Value::Instant(instant.unix_ticks()),
                FilterValue::Bool(flag) => Value::Bool(*flag),
                FilterValue::Id(id) => Value::Id(id.to_string()),
            })
            .collect(),
    };
    // A struct of strings, integers and booleans always serialises.
    let json = serde_json::to_vec(&token).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a token for the query with `fingerprint` and effective sort `keys`.
///
/// # Errors
/// [`QueryError`] when the text is not a token we issued, or when it belongs to a query with
/// other options (another fingerprint, or values that do not fit the sort keys).
pub fn decode(text: &str, fingerprint: u64, keys: &[SortKey]) -> Result<Cursor, QueryError> {
    let not_ours = || QueryError::new("$skiptoken: not a skip token this service issued");
    if text.len() > MAX_SKIPTOKEN_CHARS {
        return Err(not_ours());
    }
    let json = URL_SAFE_NO_PAD.decode(text).map_err(|_| not_ours())?;
    let token: Token = serde_json::from_slice(&json).map_err(|_| not_ours())?;
    let foreign = || QueryError::new("the $skiptoken does not belong to this query");
    if token.h != format!("{fingerprint:016x}") || token.k.len() != keys.len() {
        return Err(foreign());
    }
    let values = token
        .k
        .into_iter()
        .zip(keys)
        .map(|(value, key)| match (key.field, value) {
            (SortField::DisplayName, Value::Text(text)) => Some(FilterValue::Text(text)),
            (SortField::PartnerState, Value::State(name)) => {
                name.parse::<PartnerState>().ok().map(FilterValue::State)
            }
            (SortField::LastHeartbeat, Value::Instant(ticks)) => Timestamp::from_unix_ticks(ticks)
                .ok()
                .map(FilterValue::Instant),
            (SortField::Id, Value::Id(id)) => id.parse::<PartnerId>().ok().map(FilterValue::Id),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(foreign)?;
    Ok(Cursor { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<SortKey> {
        vec![
            SortKey {
                field: SortField::DisplayName,
                descending: true,
            },
            SortKey {
                field: SortField::LastHeartbeat,
                descending: false,
            },
            SortKey {
                field: SortField::PartnerState,
                descending: false,
            },
            SortKey {
                field: SortField::Id,
                descending: false,
            },
        ]
    }

    fn cursor() -> Cursor {
        Cursor {
            values: vec![
                FilterValue::Text("O'Brien & Co, \u{e9}quipe".into()),
                FilterValue::Instant(Timestamp::MIN),
                FilterValue::State(PartnerState::Unresponsive),
                FilterValue::Id(PartnerId::from_uuid(uuid::Uuid::from_u128(42))),
            ],
        }
    }

    #[test]
    fn a_cursor_round_trips_through_a_url_safe_token() {
        let token = encode(&cursor(), 0x0123_4567_89ab_cdef);

        let decoded = decode(&token, 0x0123_4567_89ab_cdef, &keys());

        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert_eq!(decoded, Ok(cursor()));
    }

    #[test]
    fn a_token_of_another_query_is_refused() {
        let token = encode(&cursor(), 1);

        let other_fingerprint = decode(&token, 2, &keys());
        let other_keys = decode(&token, 1, &keys()[1..]);
        let mut swapped = keys();
        swapped.swap(0, 2);
        let other_types = decode(&token, 1, &swapped);

        for (case, result) in [
            ("fingerprint", other_fingerprint),
            ("key count", other_keys),
            ("key types", other_types),
        ] {
            assert_eq!(
                result.map_err(|e| e.message().to_owned()),
                Err("the $skiptoken does not belong to this query".to_owned()),
                "case: {case}"
            );
        }
    }

    #[test]
    fn text_that_is_not_our_token_is_refused() {
        let cases = [
            ("empty", String::new()),
            ("not base64", "!!!".to_owned()),
            ("padded", format!("{}=", encode(&cursor(), 1))),
            ("not JSON", URL_SAFE_NO_PAD.encode("hello")),
            (
                "unknown member",
                URL_SAFE_NO_PAD.encode(r#"{"h":"0000000000000001","k":[],"x":1}"#),
            ),
            ("huge", "A".repeat(MAX_SKIPTOKEN_CHARS + 4)),
        ];
        for (case, text) in cases {
            assert_eq!(
                decode(&text, 1, &keys()).map_err(|e| e.message().to_owned()),
                Err("$skiptoken: not a skip token this service issued".to_owned()),
                "case: {case}"
            );
        }
    }

    #[test]
    fn values_that_cannot_exist_are_refused() {
        let token = URL_SAFE_NO_PAD.encode(
            r#"{"h":"0000000000000001","k":[{"t":"s","v":"a"},{"t":"d","v":9223372036854775807},{"t":"e","v":"enabled"},{"t":"i","v":"x"}]}"#,
        );

        let result = decode(&token, 1, &keys());

        assert!(result.is_err());
    }
}
