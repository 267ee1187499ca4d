//! The JSON plumbing shared by the entity and its assignments: the error a request body gets,
//! and the helpers that read members and name what they found.

use serde_json::{Map, Value};

use crate::odata;

/// A request body that does not fit the wire contract (`docs/wire-contract.md`). `target`
/// names the offending member as a path (`macOsEnrollmentAssignments[0].target.groupId`); the
/// message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{target}: {message}")]
pub struct WireError {
    /// Path of the offending member; empty for the body as a whole.
    pub target: String,
    /// What is wrong with it.
    pub message: String,
}

impl WireError {
    pub(crate) fn new(target: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            message: message.into(),
        }
    }
}

/// Reads an optional string member of `object` (found at `path`); absent and `null` are `None`.
pub(crate) fn optional_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, WireError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(type_mismatch(&format!("{path}.{key}"), "a string", other)),
    }
}

/// The JSON kind of a value, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads `value` as a JSON object found at `path`.
pub(crate) fn expect_object<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, WireError> {
    value
        .as_object()
        .ok_or_else(|| type_mismatch(path, "an object", value))
}

/// Checks an entity or assignment `@odata.type`: absent or null means the declared type.
pub(crate) fn expect_type(value: &Value, path: &str, expected: &str) -> Result<(), WireError> {
    match value {
        Value::Null => Ok(()),
        Value::String(text)
            if odata::short_type_name(text)
                .is_some_and(|name| name.eq_ignore_ascii_case(expected)) =>
        {
            Ok(())
        }
        Value::String(text) => Err(WireError::new(
            path.to_owned(),
            format!("'{text}' does not name {}", odata::qualified(expected)),
        )),
        other => Err(type_mismatch(path, "a string", other)),
    }
}

/// The error of a member of the wrong JSON type.
pub(crate) fn type_mismatch(path: &str, expected: &str, got: &Value) -> WireError {
    WireError::new(
        path.to_owned(),
        format!("expected {expected}, got {}", json_kind(got)),
    )
}

/// The error of a member the type does not declare.
pub(crate) fn unknown_property(path: &str, key: &str, type_name: &str) -> WireError {
    let member = if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    };
    WireError::new(
        member,
        format!("property '{key}' does not exist on type 'microsoft.graph.{type_name}'"),
    )
}
