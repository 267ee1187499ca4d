//! One line for an error and everything under it, for log lines and outcome messages.
//!
//! A leaf: the Graph client and the token provider both describe transport failures with it,
//! and it depends on neither.

/// `error` and its sources, `: `-separated: reqwest's own message is often just "error
/// sending request", with the useful part (refused, reset, TLS alert) in a source.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
