//! Writes the seed inputs of the three fuzz targets into `<dir>/<target>/`: the documented
//! seed request and the bodies the official SDKs send, filters of the kinds the tests use, and
//! skip tokens exactly as the service emits them in `@odata.nextLink`.
//!
//! ```sh
//! cargo run -p cmp-fuzz --example write_seeds -- crates/cmp-fuzz/fuzz/corpus
//! ```
//!
//! The corpus is minimised after seeding (`docs/fuzzing.md`), so seeds that add no coverage
//! are dropped again; running this again brings them back.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cmp_application::query::{Cursor, FilterValue, SortField};
use cmp_domain::{PartnerId, PartnerState, Timestamp};
use cmp_fuzz::{SKIP_TOKEN_QUERIES, list_with_token, skip_token_of};
use cmp_http_api::odata;

const SEED_REQUEST: &str = include_str!("../../../tests/fixtures/seed-request.json");

const GROUP: &str = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";

/// Request bodies: the documented seed, what the SDKs send (six fractional digits and
/// `+00:00`, `#`-qualified types, a read-modify-write echo with context and id), every target
/// subtype, and a few refusals.
fn partner_bodies() -> Vec<String> {
    let mut bodies = vec![
        SEED_REQUEST.to_owned(),
        r##"{"displayName":"Minimal"}"##.to_owned(),
        r##"{"@odata.type":"#microsoft.graph.complianceManagementPartner","displayName":"SDK partner 00","lastHeartbeatDateTime":"2024-05-06T07:08:09.123456+00:00","partnerState":"enabled","macOsOnboarded":true,"macOsEnrollmentAssignments":[{"@odata.type":"#microsoft.graph.complianceManagementPartnerAssignment","target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11"}}],"linuxOnboarded":true}"##.to_owned(),
        r##"{"@odata.context":"http://127.0.0.1:8080/beta/$metadata#deviceManagement/complianceManagementPartners/$entity","@odata.type":"#microsoft.graph.complianceManagementPartner","id":"0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11","displayName":"SDK partner read-modify-write","lastHeartbeatDateTime":"0001-01-01T00:00:00+00:00","partnerState":"unknown","macOsOnboarded":false,"windowsOnboarded":false,"androidOnboarded":false,"iosOnboarded":false,"linuxOnboarded":false,"macOsEnrollmentAssignments":[],"windowsEnrollmentAssignments":[],"androidEnrollmentAssignments":[],"iosEnrollmentAssignments":[],"linuxEnrollmentAssignments":[]}"##.to_owned(),
        r##"{"displayName":"SDK partner renamed"}"##.to_owned(),
        r##"{"@odata.type":"microsoft.graph.complianceManagementPartner","@odata.etag":"W/\"1\"","displayName":"Annotated \u00e9quipe","iosOnboarded":true,"iosEnrollmentAssignments":[{"@odata.type":"#Microsoft.Graph.ComplianceManagementPartnerAssignment","id":"x","target":{"@odata.type":"MICROSOFT.GRAPH.ALLDEVICESASSIGNMENTTARGET","@odata.id":"ignored"}}]}"##.to_owned(),
        r##"{"displayName":"x","partnerState":"Enabled"}"##.to_owned(),
        r##"{"displayName":"x","lastHeartbeatDateTime":"2016-13-01T00:00:00Z"}"##.to_owned(),
        r##"{"displayName":"x","iosEnrollmentAssignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}},{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##.to_owned(),
        r##"{"displayName":null,"colour":"red","windowsOnboarded":null}"##.to_owned(),
    ];
    let targets = [
        r##"{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}"##.to_owned(),
        r##"{"@odata.type":"#microsoft.graph.allLicensedUsersAssignmentTarget","deviceAndAppManagementAssignmentFilterType":"none","deviceAndAppManagementAssignmentFilterId":null}"##.to_owned(),
        r##"{"@odata.type":"#microsoft.graph.configurationManagerCollectionAssignmentTarget","collectionId":"SMS00001"}"##.to_owned(),
        format!(r##"{{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"{GROUP}","deviceAndAppManagementAssignmentFilterType":"include","deviceAndAppManagementAssignmentFilterId":"f-1"}}"##),
        format!(r##"{{"@odata.type":"#microsoft.graph.exclusionGroupAssignmentTarget","groupId":"{GROUP}","deviceAndAppManagementAssignmentFilterType":"exclude","deviceAndAppManagementAssignmentFilterId":"f-2"}}"##),
        format!(r##"{{"@odata.type":"#microsoft.graph.scopeTagGroupAssignmentTarget","targetType":"device","entraObjectId":"{GROUP}"}}"##),
        format!(r##"{{"@odata.type":"#microsoft.graph.androidFotaDeploymentAssignmentTarget","groupId":"{}"}}"##, GROUP.to_uppercase()),
    ];
    let assignments: Vec<String> = targets
        .iter()
        .map(|target| format!(r##"{{"target":{target}}}"##))
        .collect();
    bodies.push(format!(
        r##"{{"displayName":"All targets","linuxOnboarded":true,"linuxEnrollmentAssignments":[{}]}}"##,
        assignments.join(",")
    ));
    bodies
}

/// Filters as clients write them: every operator, literal type and combinator, the
/// SDK's encoding of the `partnerState` enum, and a few refusals.
const FILTERS: [&str; 24] = [
    "displayName eq 'Contoso'",
    "displayName eq 'O''Brien'",
    "displayName ne ' a, (b) '",
    "partnerState eq 'enabled'",
    "partnerState ne microsoft.graph.deviceManagementPartnerTenantState'rejected'",
    "lastHeartbeatDateTime gt 2024-01-01T00:00:00Z",
    "lastHeartbeatDateTime le 2016-12-31T23:59:37.9174975-08:00",
    "lastHeartbeatDateTime ge 2024-01-01T05:30:00+05:30",
    "macOsOnboarded eq true",
    "linuxOnboarded ne false",
    "id eq '0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11'",
    "id lt '0B9D3C2E-4F1A-4C6E-9A77-2F6C1D0E8B11'",
    "displayName eq 'a' or displayName eq 'b' and displayName eq 'c'",
    "(displayName eq 'a' or displayName eq 'b') and displayName eq 'c'",
    "not (displayName eq 'a' or displayName eq 'b')",
    "not not displayName eq 'a'",
    "startswith(displayName,'Con')",
    "startswith( displayName , 'It''s' )",
    "not startswith(displayName,'x') or startswith(displayName,'y') and iosOnboarded",
    "partnerState in ('enabled', 'rejected','terminated')",
    "displayName in ('été')",
    "((((displayName eq 'a'))))",
    "displayName eq 'x' foo",
    "contains(displayName,'a')",
];

/// Cursors of every value type, one per sort key of each query in [`SKIP_TOKEN_QUERIES`].
fn cursor_for(query: &str) -> Cursor {
    let id = PartnerId::from_uuid(uuid::Uuid::from_u128(42));
    let keys = odata::parse_list(Some(query))
        .map(|request| request.query.sort_keys())
        .unwrap_or_default();
    let values = keys
        .iter()
        .map(|key| match key.field {
            SortField::DisplayName => FilterValue::Text("Partner 07 \u{e9}quipe".to_owned()),
            SortField::LastHeartbeat => FilterValue::Instant(Timestamp::MIN),
            SortField::PartnerState => FilterValue::State(PartnerState::Unresponsive),
            SortField::Id => FilterValue::Id(id),
        })
        .collect();
    Cursor { values }
}

/// Skip tokens as `@odata.nextLink` carries them, and the JSON each one holds.
fn skip_tokens() -> Vec<String> {
    let mut seeds = Vec::new();
    for query in SKIP_TOKEN_QUERIES {
        let Ok(request) = odata::parse_list(Some(query)) else {
            panic!("{query:?} must parse");
        };
        let link = request.next_link("http://127.0.0.1/beta/x", &cursor_for(query));
        let token = skip_token_of(&link).to_owned();
        assert!(
            list_with_token(query, &token).is_ok(),
            "the token {token} must decode"
        );
        let Ok(json) = URL_SAFE_NO_PAD.decode(&token) else {
            panic!("{token} must be base64url");
        };
        seeds.push(String::from_utf8_lossy(&json).into_owned());
        seeds.push(token);
    }
    seeds
}

fn write_all(dir: &Path, target: &str, seeds: impl IntoIterator<Item = String>) {
    let target_dir = dir.join(target);
    if let Err(e) = std::fs::create_dir_all(&target_dir) {
        panic!("{} must be writable: {e}", target_dir.display());
    }
    for (index, seed) in seeds.into_iter().enumerate() {
        let path = target_dir.join(format!("seed-{index:02}"));
        if let Err(e) = std::fs::write(&path, seed) {
            panic!("{} must be writable: {e}", path.display());
        }
    }
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: write_seeds <corpus dir>");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    write_all(dir, "partner_body", partner_bodies());
    write_all(dir, "filter", FILTERS.map(str::to_owned));
    write_all(dir, "skip_token", skip_tokens());
}
