//! The fuzzed edges of the service: one function per fuzz target, each taking the bytes a
//! caller controls, running them through the parsing the service does, and checking what must
//! hold of whatever was accepted.
//!
//! The cargo-fuzz project in `fuzz/` calls these functions from its targets, and
//! `tests/replay.rs` runs every corpus input and every saved crash through them, so that
//! `cargo test` keeps what fuzzing found fixed. How to run the fuzzers, and what they found:
//! `docs/fuzzing.md`.
//!
//! Each function returns for any input the service refuses cleanly or accepts correctly, and
//! panics when a parser panics or a property fails: a panic is how libFuzzer learns of a finding.
//!
//! # Layout
//! - [`partner_body`]: a create or update request body.
//! - [`filter`]: a decoded `$filter` value.
//! - [`skip_token`]: a `$skiptoken` value, against the queries of [`SKIP_TOKEN_QUERIES`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cmp_domain::{DisplayName, NewPartner, Partner, PartnerId, PartnerState, Platforms, Timestamp};
use cmp_graph_model::{PartnerFields, parse_partner_fields, render_partner};
use cmp_http_api::odata::{self, ListRequest, MAX_FILTER_CHARS};
use serde_json::Value;

/// Runs a request body through what `POST` and `PATCH` do with it: JSON, then
/// [`parse_partner_fields`], then [`PartnerFields::into_new_partner`] and
/// [`PartnerFields::into_patch`] merged over a stored partner.
///
/// # Panics
/// When parsing panics, or when a partner it accepts does not come back unchanged from its
/// own rendering, or when a create body applied as a patch to the partner it created
/// changes that partner.
pub fn partner_body(data: &[u8]) {
    // A body that is not JSON is refused before the model sees it.
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(fields) = parse_partner_fields(&body) else {
        return;
    };

    let patch = fields.clone().into_patch();
    // `now` at the end of time: the heartbeat rule then refuses nothing, so every other
    // invariant is reached.
    if let Ok(updated) = stored_partner().patched(&patch, Timestamp::MAX) {
        assert_round_trips(&updated);
    }

    let Ok(command) = fields.into_new_partner() else {
        return;
    };
    let created = Partner::restore(partner_id(), command);
    assert_round_trips(&created);
    assert_eq!(
        created.patched(&patch, Timestamp::MAX).as_ref(),
        Ok(&created),
        "a create body applied as a patch to the partner it created must change nothing"
    );
}

/// The partner a fuzzed `PATCH` is merged over.
fn stored_partner() -> Partner {
    // A constant name that is trimmed, short and free of control characters.
    let display_name = DisplayName::parse("Stored partner").expect("a valid display name");
    Partner::restore(
        partner_id(),
        NewPartner {
            display_name,
            state: PartnerState::Enabled,
            last_heartbeat: Timestamp::MIN,
            platforms: Platforms::none(),
        },
    )
}

fn partner_id() -> PartnerId {
    PartnerId::from_uuid(uuid::Uuid::from_u128(
        0x0b9d_3c2e_4f1a_4c6e_9a77_2f6c_1d0e_8b11,
    ))
}

/// Asserts that `partner`, rendered as the service answers it and parsed back as a create
/// body, is the same partner.
fn assert_round_trips(partner: &Partner) {
    let rendered = serde_json::to_value(render_partner(partner, None));
    let Ok(rendered) = rendered else {
        panic!("a partner must always render as JSON: {rendered:?}");
    };
    let reparsed = parse_partner_fields(&rendered)
        .and_then(PartnerFields::into_new_partner)
        .map(|command| Partner::restore(partner.id(), command));
    assert_eq!(
        reparsed.as_ref(),
        Ok(partner),
        "a partner must parse back from its rendering {rendered}"
    );
}

/// Runs a decoded `$filter` value through the filter parser and checks that the canonical
/// text of an accepted filter (what skip tokens are bound to) parses back to the same filter.
///
/// # Panics
/// When the parser panics, or the canonical text of an accepted filter does not parse back to
/// it although it is within the length limit.
pub fn filter(data: &[u8]) {
    // The query string is percent-decoded into UTF-8 text before the parser sees a filter.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = odata::filter::parse(text) else {
        return;
    };
    let canonical = odata::filter::canonical(&parsed);
    // `in` lists and normalised literals can make the canonical text longer than the filter
    // given, so only canonical texts within the limit have to parse.
    if canonical.chars().count() > MAX_FILTER_CHARS {
        return;
    }
    assert_eq!(
        odata::filter::parse(&canonical).as_ref(),
        Ok(&parsed),
        "the canonical text {canonical:?} of {text:?} must parse back to the same filter"
    );
}

/// The list queries a fuzzed skip token is decoded against: every sort field, both
/// directions, and a query with every other option a token is bound to.
pub const SKIP_TOKEN_QUERIES: [&str; 4] = [
    "",
    "$orderby=displayName desc",
    "$orderby=lastHeartbeatDateTime,partnerState desc,id desc",
    "$filter=startswith(displayName,'Partner')&$select=id,displayName&$count=true&$orderby=partnerState",
];

/// The collection URL next links are built on; only its shape matters.
const COLLECTION_URL: &str = "http://127.0.0.1/beta/deviceManagement/complianceManagementPartners";

/// Runs `data` through the `$skiptoken` decoder of each of [`SKIP_TOKEN_QUERIES`], twice: as
/// the token text itself, and as the JSON a token carries (base64url-encoded first, as the
/// service encodes it), so that the fuzzer also mutates the payload behind the encoding.
///
/// # Panics
/// When decoding panics, or a cursor decoded from a token does not come back unchanged from
/// the next link the service would build with it.
pub fn skip_token(data: &[u8]) {
    let payload = URL_SAFE_NO_PAD.encode(data);
    let tokens = std::str::from_utf8(data)
        .ok()
        .into_iter()
        .chain([payload.as_str()]);
    for token in tokens {
        for query in SKIP_TOKEN_QUERIES {
            let Ok(request) = list_with_token(query, token) else {
                continue;
            };
            let Some(cursor) = &request.query.after else {
                panic!("a list request with a $skiptoken must carry a cursor: {request:?}");
            };
            let link = request.next_link(COLLECTION_URL, cursor);
            let reissued = skip_token_of(&link);
            let again = list_with_token(query, reissued).map(|again| again.query.after);
            assert_eq!(
                again.as_ref(),
                Ok(&Some(cursor.clone())),
                "the cursor of {token:?} must come back from the token {reissued:?} issued for it"
            );
        }
    }
}

/// Parses the list query `query` with `$skiptoken` set to `token`, exactly as received.
///
/// # Errors
/// [`odata::QueryError`] when the list request is refused.
pub fn list_with_token(query: &str, token: &str) -> Result<ListRequest, odata::QueryError> {
    let separator = if query.is_empty() { "" } else { "&" };
    odata::parse_list(Some(&format!(
        "{query}{separator}$skiptoken={}",
        percent_encode(token)
    )))
}

/// The `$skiptoken` value of a next link the service built.
pub fn skip_token_of(link: &str) -> &str {
    link.rsplit_once("$skiptoken=")
        .map_or("", |(_, token)| token)
}

/// Percent-encodes every byte but the unreserved characters, so that the query-string parser
/// decodes exactly `text` back. Into one string: an allocation per byte made this the most
/// expensive step of a fuzz run under the address sanitizer.
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    encoded
}
