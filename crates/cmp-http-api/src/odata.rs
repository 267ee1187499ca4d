//! OData system query options (`docs/wire-contract.md`, "Queries"): the raw query string in,
//! a typed [`ListQuery`] (plus the `$select` projection) out. Pure functions; the handlers turn
//! a [`QueryError`] into a Graph-shaped 400.
//!
//! Rules shared by every request:
//! - The query string is split on `&`, each name and value on its first `=`, and each part is
//!   percent-decoded exactly once (`+` stays a plus sign: Graph clients encode spaces as
//!   `%20`, and a literal `+` is how a `+05:00` offset arrives unencoded).
//! - Option names are case-sensitive and may be written with or without `$` (beta accepts
//!   both); `$top` and `top` are the same option, so giving both is a duplicate (400).
//! - A `$`-name we do not know, a case variant of a known name, and a parameter alias
//!   (`@p`) are refused; a name without `$` or `@` that is not an option is an OData custom
//!   option and is ignored (but carried into the next link).
//! - Options an operation does not support are refused by name, never ignored.
//!
//! # Layout
//! - this file: option splitting, `$top`, `$skip`, `$count`, `$select`, `$orderby`, and the
//!   per-operation entry points [`parse_list`], [`parse_count`], [`parse_get`], [`refuse_all`].
//! - [`filter`]: the `$filter` parser.
//! - [`skiptoken`]: the opaque `$skiptoken` (a keyset cursor bound to its query).

pub mod filter;
pub mod skiptoken;

use std::fmt;

use cmp_application::query::{
    Cursor, DEFAULT_PAGE_SIZE, Filter, ListQuery, MAX_PAGE_SIZE, SortField, SortKey,
};
use cmp_graph_model::PARTNER_PROPERTIES;

use crate::error::ApiError;

/// Why a query string was refused; the message names the option and the problem and is
/// safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(String);

impl QueryError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message, as sent in `error.message`.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        ApiError::bad_request(error.0)
    }
}

/// The OData system query options a Graph client may send for this resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemOption {
    /// `$count`.
    Count,
    /// `$expand`.
    Expand,
    /// `$filter`.
    Filter,
    /// `$format`.
    Format,
    /// `$orderby`.
    OrderBy,
    /// `$search`.
    Search,
    /// `$select`.
    Select,
    /// `$skip`.
    Skip,
    /// `$skiptoken`.
    SkipToken,
    /// `$top`.
    Top,
}

impl SystemOption {
    /// Every option, for lookups.
    pub const ALL: [SystemOption; 10] = [
        Self::Count,
        Self::Expand,
        Self::Filter,
        Self::Format,
        Self::OrderBy,
        Self::Search,
        Self::Select,
        Self::Skip,
        Self::SkipToken,
        Self::Top,
    ];

    /// The name without `$`, exactly as OData spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Expand => "expand",
            Self::Filter => "filter",
            Self::Format => "format",
            Self::OrderBy => "orderby",
            Self::Search => "search",
            Self::Select => "select",
            Self::Skip => "skip",
            Self::SkipToken => "skiptoken",
            Self::Top => "top",
        }
    }
}

impl fmt::Display for SystemOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.name())
    }
}

/// Longest `$filter` accepted, in characters: far beyond any real filter on this entity, and
/// small enough that no filter costs much to parse or to run.
pub const MAX_FILTER_CHARS: usize = 2048;

/// Deepest nesting of parentheses and `not` a `$filter` may use, so that a hostile filter
/// cannot exhaust the stack of the parser or of the store's translation.
pub const MAX_FILTER_DEPTH: usize = 64;

/// Longest `$skiptoken` accepted, in characters (a real one is a few hundred).
pub const MAX_SKIPTOKEN_CHARS: usize = 4096;

/// One system option of the query string.
#[derive(Debug, Clone)]
struct GivenOption {
    option: SystemOption,
    /// Decoded once.
    value: String,
}

/// A query string split into its system options; custom options are kept only as raw text.
#[derive(Debug, Clone, Default)]
struct GivenOptions<'q> {
    options: Vec<GivenOption>,
    /// Every pair as received, in order (system and custom options alike).
    raw_pairs: Vec<(&'q str, Option<SystemOption>)>,
}

impl<'q> GivenOptions<'q> {
    /// Splits and decodes `query`, refusing what no operation accepts.
    fn parse(query: Option<&'q str>) -> Result<Self, QueryError> {
        let mut given = Self::default();
        for raw in query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
        {
            let (raw_name, raw_value) = raw.split_once('=').unwrap_or((raw, ""));
            let name = percent_decode(raw_name)?;
            let option = classify(&name)?;
            if let Some(option) = option {
                if given.options.iter().any(|o| o.option == option) {
                    return Err(QueryError::new(format!(
                        "{option} is given more than once (with or without '$' counts as the same option)"
                    )));
                }
                given.options.push(GivenOption {
                    option,
                    value: percent_decode(raw_value)?,
                });
            }
            given.raw_pairs.push((raw, option));
        }
        Ok(given)
    }

    /// Refuses any option not in `allowed`, by name.
    fn allow_only(&self, allowed: &[SystemOption]) -> Result<(), QueryError> {
        match self.options.iter().find(|o| !allowed.contains(&o.option)) {
            Some(given) => Err(refusal(given.option)),
            None => Ok(()),
        }
    }

    fn value(&self, option: SystemOption) -> Option<&str> {
        self.options
            .iter()
            .find(|o| o.option == option)
            .map(|o| o.value.as_str())
    }
}

/// What a name in the query string is: a system option, a custom option (`None`), or refused.
fn classify(name: &str) -> Result<Option<SystemOption>, QueryError> {
    let (bare, dollar) = match name.strip_prefix('$') {
        Some(bare) => (bare, true),
        None => (name, false),
    };
    if let Some(option) = SystemOption::ALL.into_iter().find(|o| o.name() == bare) {
        return Ok(Some(option));
    }
    if let Some(option) = SystemOption::ALL
        .into_iter()
        .find(|o| o.name().eq_ignore_ascii_case(bare))
    {
        return Err(QueryError::new(format!(
            "query option names are case-sensitive: write '{option}', not '{name}'"
        )));
    }
    if dollar {
        return Err(QueryError::new(format!(
            "'{name}' is not a supported query option"
        )));
    }
    if name.starts_with('@') {
        return Err(QueryError::new(format!(
            "parameter aliases such as '{name}' are not supported"
        )));
    }
    Ok(None)
}

/// Why `option` is refused where it was given.
fn refusal(option: SystemOption) -> QueryError {
    QueryError::new(match option {
        SystemOption::Expand => {
            "$expand is not supported: complianceManagementPartner has no navigation properties to expand"
                .to_owned()
        }
        SystemOption::Search => "$search is not supported; use $filter".to_owned(),
        SystemOption::Format => {
            "$format is not supported; responses are always JSON".to_owned()
        }
        other => format!("query option '{other}' is not supported on this request"),
    })
}

/// Decodes `%XY` escapes once; anything else is taken literally (`+` included).
fn percent_decode(text: &str) -> Result<String, QueryError> {
    let invalid = || {
        QueryError::new(format!(
            "the query string is not validly percent-encoded near '{text}'"
        ))
    };
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes.get(index + 1..index + 3).ok_or_else(invalid)?;
            let hex = std::str::from_utf8(hex).map_err(|_| invalid())?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| {
        QueryError::new(format!(
            "the query string decodes to text that is not UTF-8 near '{text}'"
        ))
    })
}

/// The `$select` of a request: all properties, or a subset (`id` is always kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// The properties named, deduplicated, in the entity's rendering order; `None` for all.
    named: Option<Vec<&'static str>>,
}

impl Selection {
    /// Every property (no `$select`, or `$select=*`).
    pub fn all() -> Self {
        Self { named: None }
    }

    /// Whether the response keeps `property`.
    pub fn keeps(&self, property: &str) -> bool {
        match &self.named {
            None => true,
            Some(named) => property == "id" || named.contains(&property),
        }
    }

    /// Whether every property is kept.
    pub fn is_all(&self) -> bool {
        self.named.is_none()
    }

    /// The select list of a context URL (OData's `(displayName,id)` after the entity set);
    /// empty for all properties.
    pub fn context_suffix(&self) -> String {
        match &self.named {
            None => String::new(),
            Some(named) => format!("({})", named.join(",")),
        }
    }

    /// The canonical text of the selection for the skip-token fingerprint: `id` included,
    /// so `$select=displayName` and `$select=id,displayName` are the same query.
    fn canonical(&self) -> String {
        match &self.named {
            None => "*".to_owned(),
            Some(_) => PARTNER_PROPERTIES
                .into_iter()
                .filter(|p| self.keeps(p))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// Parses `$select`: a comma list of the entity's property names, or `*`.
///
/// # Errors
/// [`QueryError`] for an empty item or a name the entity does not declare.
pub fn parse_select(text: &str) -> Result<Selection, QueryError> {
    let mut named = Vec::new();
    let mut star = false;
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(QueryError::new(
                "$select: an empty item; list property names separated by commas",
            ));
        }
        if item == "*" {
            star = true;
            continue;
        }
        let Some(property) = PARTNER_PROPERTIES.into_iter().find(|p| *p == item) else {
            return Err(QueryError::new(format!(
                "$select: '{item}' is not a property of complianceManagementPartner"
            )));
        };
        if !named.contains(&property) {
            named.push(property);
        }
    }
    if star {
        return Ok(Selection::all());
    }
    named.sort_by_key(|name| PARTNER_PROPERTIES.iter().position(|p| p == name));
    Ok(Selection { named: Some(named) })
}

/// Parses `$orderby`: a comma list of `displayName`, `lastHeartbeatDateTime`, `partnerState`
/// or `id`, each optionally followed by `asc` or `desc`.
///
/// # Errors
/// [`QueryError`] for an empty item, another property, another direction, or a property
/// named twice.
pub fn parse_orderby(text: &str) -> Result<Vec<SortKey>, QueryError> {
    let mut keys: Vec<SortKey> = Vec::new();
    for item in text.split(',') {
        let mut words = item.split_ascii_whitespace();
        let Some(name) = words.next() else {
            return Err(QueryError::new(
                "$orderby: an empty item; list properties separated by commas",
            ));
        };
        let field = sort_field(name).ok_or_else(|| {
            QueryError::new(format!(
                "$orderby: '{name}' is not a property you can order by; use displayName, lastHeartbeatDateTime, partnerState or id"
            ))
        })?;
        let descending = match words.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(QueryError::new(format!(
                    "$orderby: '{other}' after '{name}' is not a direction; use asc or desc"
                )));
            }
        };
        if let Some(extra) = words.next() {
            let before = item.split_ascii_whitespace().take(2).collect::<Vec<_>>();
            return Err(QueryError::new(format!(
                "$orderby: unexpected '{extra}' after '{}'; separate keys with commas",
                before.join(" ")
            )));
        }
        if keys.iter().any(|key| key.field == field) {
            return Err(QueryError::new(format!(
                "$orderby: '{name}' is named more than once"
            )));
        }
        keys.push(SortKey { field, descending });
    }
    Ok(keys)
}

/// The properties `$orderby` accepts, with the field each sorts by.
pub(crate) const SORT_FIELDS: [(&str, SortField); 4] = [
    ("displayName", SortField::DisplayName),
    ("lastHeartbeatDateTime", SortField::LastHeartbeat),
    ("partnerState", SortField::PartnerState),
    ("id", SortField::Id),
];

fn sort_field(name: &str) -> Option<SortField> {
    SORT_FIELDS
        .into_iter()
        .find(|(known, _)| *known == name)
        .map(|(_, field)| field)
}

fn sort_field_name(field: SortField) -> &'static str {
    match field {
        SortField::DisplayName => "displayName",
        SortField::LastHeartbeat => "lastHeartbeatDateTime",
        SortField::PartnerState => "partnerState",
        SortField::Id => "id",
    }
}

/// Parses `$top`: a page size from 1 to [`MAX_PAGE_SIZE`].
///
/// # Errors
/// [`QueryError`] for anything but such an integer.
pub fn parse_top(text: &str) -> Result<u32, QueryError> {
    digits(text)
        .and_then(|t| t.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
        .ok_or_else(|| {
            QueryError::new(format!(
                "$top: '{text}' is not a page size; use an integer from 1 to {MAX_PAGE_SIZE}"
            ))
        })
}

/// Parses `$skip`: a non-negative integer no larger than `i64::MAX` (what a database offset
/// can hold; no collection comes near it).
///
/// # Errors
/// [`QueryError`] for anything else.
pub fn parse_skip(text: &str) -> Result<u64, QueryError> {
    digits(text)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| QueryError::new(format!("$skip: '{text}' is not a non-negative integer")))
}

/// Parses `$count`: `true` or `false`.
///
/// # Errors
/// [`QueryError`] for anything else.
pub fn parse_count_flag(text: &str) -> Result<bool, QueryError> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(QueryError::new(format!(
            "$count: '{other}' must be true or false"
        ))),
    }
}

fn digits(text: &str) -> Option<&str> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// A list request, fully parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// What to ask the use case for.
    pub query: ListQuery,
    /// The `$select` to apply to each item.
    pub select: Selection,
    /// Binds skip tokens to this query's filter, order, selection and count.
    fingerprint: u64,
    /// The options as received minus `$skip` and `$skiptoken`, joined with `&`.
    carried: String,
}

impl ListRequest {
    /// The absolute link to the page after `cursor`: the collection URL under `collection_url`
    /// with the original options (minus `$skip` and `$skiptoken`) and a fresh `$skiptoken`.
    pub fn next_link(&self, collection_url: &str, cursor: &Cursor) -> String {
        let token = skiptoken::encode(cursor, self.fingerprint);
        if self.carried.is_empty() {
            format!("{collection_url}?$skiptoken={token}")
        } else {
            format!("{collection_url}?{}&$skiptoken={token}", self.carried)
        }
    }
}

/// Parses the query string of `GET /deviceManagement/complianceManagementPartners`.
///
/// # Errors
/// [`QueryError`] for any option that is malformed, unsupported or duplicated, and for a
/// `$skiptoken` that is not ours or belongs to another query.
pub fn parse_list(query: Option<&str>) -> Result<ListRequest, QueryError> {
    let given = GivenOptions::parse(query)?;
    given.allow_only(&[
        SystemOption::Count,
        SystemOption::Filter,
        SystemOption::OrderBy,
        SystemOption::Select,
        SystemOption::Skip,
        SystemOption::SkipToken,
        SystemOption::Top,
    ])?;
    let filter = given
        .value(SystemOption::Filter)
        .map(filter::parse)
        .transpose()?;
    let order = given
        .value(SystemOption::OrderBy)
        .map(parse_orderby)
        .transpose()?
        .unwrap_or_default();
    let select = given
        .value(SystemOption::Select)
        .map(parse_select)
        .transpose()?
        .unwrap_or_default();
    let page_size = given
        .value(SystemOption::Top)
        .map(parse_top)
        .transpose()?
        .unwrap_or(DEFAULT_PAGE_SIZE);
    let skip = given
        .value(SystemOption::Skip)
        .map(parse_skip)
        .transpose()?
        .unwrap_or(0);
    let count = given
        .value(SystemOption::Count)
        .map(parse_count_flag)
        .transpose()?
        .unwrap_or(false);

    let mut query = ListQuery {
        filter,
        order,
        page_size,
        skip,
        after: None,
        count,
    };
    let fingerprint = fingerprint(&query, &select);
    if let Some(token) = given.value(SystemOption::SkipToken) {
        query.after = Some(skiptoken::decode(token, fingerprint, &query.sort_keys())?);
        // The token holds the position; an offset on top of it would skip items twice.
        query.skip = 0;
    }
    let carried = given
        .raw_pairs
        .iter()
        .filter(|(_, option)| !matches!(option, Some(SystemOption::Skip | SystemOption::SkipToken)))
        .map(|(raw, _)| *raw)
        .collect::<Vec<_>>()
        .join("&");
    Ok(ListRequest {
        query,
        select,
        fingerprint,
        carried,
    })
}

/// Parses the query string of `GET …/complianceManagementPartners/$count`: only `$filter`.
///
/// # Errors
/// [`QueryError`] for a bad `$filter` or any other option.
pub fn parse_count(query: Option<&str>) -> Result<Option<Filter>, QueryError> {
    let given = GivenOptions::parse(query)?;
    given.allow_only(&[SystemOption::Filter])?;
    given
        .value(SystemOption::Filter)
        .map(filter::parse)
        .transpose()
}

/// Parses the query string of `GET …/complianceManagementPartners/{id}`: only `$select`.
///
/// # Errors
/// [`QueryError`] for a bad `$select` or any other option.
pub fn parse_get(query: Option<&str>) -> Result<Selection, QueryError> {
    let given = GivenOptions::parse(query)?;
    given.allow_only(&[SystemOption::Select])?;
    Ok(given
        .value(SystemOption::Select)
        .map(parse_select)
        .transpose()?
        .unwrap_or_default())
}

/// Refuses every system option (create, update, delete take none).
///
/// # Errors
/// [`QueryError`] naming the first option given.
pub fn refuse_all(query: Option<&str>) -> Result<(), QueryError> {
    GivenOptions::parse(query)?.allow_only(&[])
}

/// The canonical text of everything a skip token must agree with: the filter, the effective
/// order, the selection and the count flag (not `$top`: a client may change the page size
/// between pages; not `$skip`: the token replaces it).
fn canonical_text(query: &ListQuery, select: &Selection) -> String {
    let order = query
        .sort_keys()
        .iter()
        .map(|key| {
            format!(
                "{} {}",
                sort_field_name(key.field),
                if key.descending { "desc" } else { "asc" }
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "v1\nfilter={}\norderby={order}\nselect={}\ncount={}",
        query
            .filter
            .as_ref()
            .map(filter::canonical)
            .unwrap_or_default(),
        select.canonical(),
        query.count
    )
}

fn fingerprint(query: &ListQuery, select: &Selection) -> u64 {
    fnv1a(canonical_text(query, select).as_bytes())
}

/// FNV-1a, 64 bits. The fingerprint only has to tell queries apart and stay the same across
/// builds and restarts (std's `DefaultHasher` promises neither); it guards no secret, since a
/// cursor only says where a page starts.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
