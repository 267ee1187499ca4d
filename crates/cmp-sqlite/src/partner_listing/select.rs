//! The `SELECT` of one page of the listing and its pieces (filter, keyset cursor, sort), in
//! the SQL that SQLite and PostgreSQL both read. Written once: the PostgreSQL store compiles
//! this file too, with its own `Db` and `DbConnection` (see `partner_listing.rs` of each store).

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use cmp_application::StoreError;
use cmp_application::query::{
    Comparison, Cursor, Filter, FilterField, FilterValue, ListQuery, PartnerPage, SortField,
    SortKey,
};
use cmp_domain::{NaturalKey, PartnerState, Platform, TenantId};
use sqlx::QueryBuilder;

use super::{Db, DbConnection, IDS_PER_ASSIGNMENT_READ};
use crate::rows::{AssignmentRow, PartnerAssignmentRow, PartnerRow, instant, partner_row_columns};

/// Appends the listing's `SELECT` of one page to `select`, which holds any prefix the caller
/// wants (nothing, or `EXPLAIN QUERY PLAN` in the plan test): the tenant's live partners that
/// `query.filter` matches, strictly after `query.after`, in the order of `keys`, at most
/// `page_size + 1` of them; `skip` applies only without a cursor.
///
/// # Errors
/// [`StoreError::Unexpected`] when the cursor does not fit `keys` or a comparison pairs a
/// property with a literal of another type (the HTTP adapter's parser prevents both).
pub(crate) fn push_page_select(
    select: &mut QueryBuilder<Db>,
    tenant: TenantId,
    query: &ListQuery,
    keys: &[SortKey],
) -> Result<(), StoreError> {
    select.push(concat!(
        "SELECT ",
        partner_row_columns!(),
        " FROM partners WHERE "
    ));
    push_live_partners_of(select, tenant);
    if keys
        .first()
        .is_some_and(|key| key.field == SortField::DisplayName)
    {
        // Implied for a live partner (the schema's CHECK), but the planner does not know it:
        // said here, it starts the name index past the released (NULL) names of tombstones,
        // which accumulate and sort first, instead of walking them.
        select.push(" AND name_key IS NOT NULL");
    }
    if let Some(filter) = &query.filter {
        select.push(" AND ");
        push_filter(select, filter)?;
    }
    if let Some(cursor) = &query.after {
        select.push(" AND ");
        push_after(select, keys, cursor)?;
    }
    select.push(" ORDER BY ");
    for (position, key) in keys.iter().enumerate() {
        if position > 0 {
            select.push(", ");
        }
        select
            .push(sort_column(key.field))
            .push(if key.descending { " DESC" } else { " ASC" });
    }
    select
        .push(" LIMIT ")
        .push_bind(i64::from(query.page_size) + 1);
    if query.after.is_none() && query.skip > 0 {
        // Past i64::MAX nothing is left anyway.
        select
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.skip).unwrap_or(i64::MAX));
    }
    Ok(())
}

/// The condition every listing starts with. `deleted_at IS NULL` is written out exactly so:
/// it is the condition of the partial indexes, which the planner uses only when the query
/// implies it.
pub(crate) fn push_live_partners_of(select: &mut QueryBuilder<Db>, tenant: TenantId) {
    select
        .push("tenant_id = ")
        .push_bind(tenant.to_string())
        .push(" AND deleted_at IS NULL");
}

/// A value bound in a comparison, in the type of its column (a flag is an integer 0 or 1 in
/// SQLite, a `boolean` in PostgreSQL; the driver encodes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bound {
    Text(String),
    Integer(i64),
    Flag(bool),
}

impl Bound {
    fn push_onto(self, select: &mut QueryBuilder<Db>) {
        match self {
            Self::Text(text) => select.push_bind(text),
            Self::Integer(number) => select.push_bind(number),
            Self::Flag(flag) => select.push_bind(flag),
        };
    }
}

/// Appends `filter` as one parenthesised SQL condition.
pub(crate) fn push_filter(
    select: &mut QueryBuilder<Db>,
    filter: &Filter,
) -> Result<(), StoreError> {
    match filter {
        Filter::Compare { field, op, value } => {
            let (column, bound) = compared(*field, value)?;
            select
                .push("(")
                .push(column)
                .push(" ")
                .push(operator(*op))
                .push(" ");
            bound.push_onto(select);
            select.push(")");
        }
        Filter::StartsWith { prefix } => push_starts_with(select, prefix),
        Filter::And(left, right) | Filter::Or(left, right) => {
            let joint = if matches!(filter, Filter::And(..)) {
                " AND "
            } else {
                " OR "
            };
            select.push("(");
            push_filter(select, left)?;
            select.push(joint);
            push_filter(select, right)?;
            select.push(")");
        }
        Filter::Not(inner) => {
            select.push("(NOT ");
            push_filter(select, inner)?;
            select.push(")");
        }
    }
    Ok(())
}

/// `startswith(displayName, prefix)`, case-insensitive, as a range of `name_key`:
/// `[prefix, successor(prefix))`. A range rather than `LIKE`: SQLite's `LIKE` uses no index
/// unless the column is `NOCASE` (its folding is ASCII only, see the migration), and a range
/// has no wildcard characters to escape, so `%` and `_` in the prefix are plain characters;
/// PostgreSQL's `"C"`-collated index on `name_key` serves the same range.
pub(crate) fn push_starts_with(select: &mut QueryBuilder<Db>, prefix: &str) {
    let lower = NaturalKey::fold(prefix).as_str().to_owned();
    if lower.is_empty() {
        // Every name starts with the empty string.
        select.push("(1 = 1)");
        return;
    }
    let upper = successor(&lower);
    select.push("(name_key >= ").push_bind(lower);
    if let Some(upper) = upper {
        select.push(" AND name_key < ").push_bind(upper);
    }
    select.push(")");
}

/// The least string greater than every string that starts with `prefix`: the prefix up to its
/// last character that can be incremented, that character incremented. `None` when every
/// character is U+10FFFF; then every string at or above the prefix starts with it.
///
/// SQLite compares `TEXT` with the `BINARY` collation and PostgreSQL the key columns with the
/// `"C"` collation, both byte by byte over UTF-8, which is the order of code points; Rust's
/// `str` ordering is the same.
pub(crate) fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            // Skip the surrogates, which are not characters.
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The column and bound value of `field op value`.
///
/// # Errors
/// When the literal's type does not match the property.
pub(crate) fn compared(
    field: FilterField,
    value: &FilterValue,
) -> Result<(&'static str, Bound), StoreError> {
    let bound = match (field, value) {
        // The literal's key against the name's key: case-insensitive, as names are unique.
        (FilterField::DisplayName, FilterValue::Text(text)) => {
            Bound::Text(NaturalKey::fold(text).as_str().to_owned())
        }
        (FilterField::PartnerState, FilterValue::State(state)) => {
            Bound::Integer(state_order(*state))
        }
        (FilterField::LastHeartbeat, FilterValue::Instant(at)) => Bound::Integer(at.unix_ticks()),
        (FilterField::Onboarded(_), FilterValue::Bool(flag)) => Bound::Flag(*flag),
        (FilterField::Id, FilterValue::Id(id)) => Bound::Text(id.to_string()),
        (field, value) => {
            return Err(anyhow!(
                "the filter compares {} with {}, a literal of another type",
                field_name(field),
                value_kind(value)
            )
            .into());
        }
    };
    Ok((filter_column(field), bound))
}

/// Appends "strictly after `cursor` in the order of `keys`".
///
/// When every key runs in the same direction this is one row-value comparison,
/// `(k1, k2, ...) > (v1, v2, ...)` (`<` when descending), which the database turns into a range of the
/// index that serves the order. With mixed directions no row value can say it, so it is the
/// expansion `(k1 > v1) OR (k1 = v1 AND k2 < v2) OR ...`, each key with its own direction,
/// preceded by an inclusive bound on the leading keys that share the first key's direction: the
/// bound is implied by the expansion, and it gives the planner a range to start the index scan
/// at instead of the first entry of the tenant.
///
/// # Errors
/// When the cursor's length or value types do not fit `keys`.
pub(crate) fn push_after(
    select: &mut QueryBuilder<Db>,
    keys: &[SortKey],
    cursor: &Cursor,
) -> Result<(), StoreError> {
    if cursor.values.len() != keys.len() {
        return Err(anyhow!(
            "the cursor does not fit the sort keys: it holds {} values for {} keys",
            cursor.values.len(),
            keys.len()
        )
        .into());
    }
    let bounds = keys
        .iter()
        .zip(&cursor.values)
        .enumerate()
        .map(|(position, (key, value))| cursor_bound(position, key.field, value))
        .collect::<Result<Vec<_>, _>>()?;
    let first_direction = keys.first().map(|key| key.descending);
    let leading = keys
        .iter()
        .take_while(|key| Some(key.descending) == first_direction)
        .count();
    let Some(descending) = first_direction else {
        // No keys: ListQuery::sort_keys always ends with id, so this is unreachable; nothing
        // to compare means every row is "after".
        select.push("(1 = 1)");
        return Ok(());
    };

    select.push("(");
    if leading == keys.len() {
        push_row_value_comparison(select, keys, &bounds, if descending { "<" } else { ">" });
    } else {
        push_row_value_comparison(
            select,
            &keys[..leading],
            &bounds[..leading],
            if descending { "<=" } else { ">=" },
        );
        select.push(" AND (");
        for position in 0..keys.len() {
            if position > 0 {
                select.push(" OR ");
            }
            select.push("(");
            for (key, bound) in keys.iter().zip(&bounds).take(position) {
                select.push(sort_column(key.field)).push(" = ");
                bound.clone().push_onto(select);
                select.push(" AND ");
            }
            let key = keys[position];
            select
                .push(sort_column(key.field))
                .push(if key.descending { " < " } else { " > " });
            bounds[position].clone().push_onto(select);
            select.push(")");
        }
        select.push(")");
    }
    select.push(")");
    Ok(())
}

/// `(c1, c2, ...) op (?, ?, ...)`, or `c1 op ?` for a single key.
pub(crate) fn push_row_value_comparison(
    select: &mut QueryBuilder<Db>,
    keys: &[SortKey],
    bounds: &[Bound],
    operator: &str,
) {
    let single = keys.len() == 1;
    if !single {
        select.push("(");
    }
    for (position, key) in keys.iter().enumerate() {
        if position > 0 {
            select.push(", ");
        }
        select.push(sort_column(key.field));
    }
    select.push(if single { " " } else { ") " }).push(operator);
    select.push(if single { " " } else { " (" });
    for (position, bound) in bounds.iter().enumerate() {
        if position > 0 {
            select.push(", ");
        }
        bound.clone().push_onto(select);
    }
    if !single {
        select.push(")");
    }
}

/// The bound value of the cursor's `position`th value for a key on `field`.
///
/// # Errors
/// When the value's type does not fit the key.
pub(crate) fn cursor_bound(
    position: usize,
    field: SortField,
    value: &FilterValue,
) -> Result<Bound, StoreError> {
    Ok(match (field, value) {
        // The cursor holds the name key itself (see `cursor_of`); lower-casing it again could
        // move it, so it is bound as it is.
        (SortField::DisplayName, FilterValue::Text(name_key)) => Bound::Text(name_key.clone()),
        (SortField::LastHeartbeat, FilterValue::Instant(at)) => Bound::Integer(at.unix_ticks()),
        (SortField::PartnerState, FilterValue::State(state)) => Bound::Integer(state_order(*state)),
        (SortField::Id, FilterValue::Id(id)) => Bound::Text(id.to_string()),
        (field, value) => {
            return Err(anyhow!(
                "the cursor does not fit the sort keys: value {} is {} but key {} sorts by {}",
                position + 1,
                value_kind(value),
                position + 1,
                sort_name(field)
            )
            .into());
        }
    })
}

/// The cursor of `row`: its values of `keys`, in order, as the next page's query compares them.
///
/// # Errors
/// When a stored value no longer parses.
pub(crate) fn cursor_of(row: &PartnerRow, keys: &[SortKey]) -> anyhow::Result<Cursor> {
    let context = || format!("the cursor of stored partner {}", row.id);
    let values = keys
        .iter()
        .map(|key| {
            Ok(match key.field {
                SortField::DisplayName => FilterValue::Text(
                    row.name_key
                        .clone()
                        .context("a live partner without a name key")?,
                ),
                SortField::LastHeartbeat => {
                    FilterValue::Instant(instant(row.last_heartbeat, "last_heartbeat")?)
                }
                SortField::PartnerState => FilterValue::State(row.partner_state.parse()?),
                SortField::Id => FilterValue::Id(row.id.parse()?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(context)?;
    Ok(Cursor { values })
}

/// The assignment rows of `partners`, by partner id, read in one statement (per
/// [`IDS_PER_ASSIGNMENT_READ`] partners) rather than one per partner.
pub(crate) async fn read_assignments(
    conn: &mut DbConnection,
    partners: &[PartnerRow],
) -> anyhow::Result<HashMap<String, Vec<AssignmentRow>>> {
    let mut by_partner: HashMap<String, Vec<AssignmentRow>> = HashMap::new();
    for batch in partners.chunks(IDS_PER_ASSIGNMENT_READ) {
        let mut select = QueryBuilder::<Db>::new(
            "SELECT partner_id, platform, position, target_type, filter_type, filter_id, \
             group_id, collection_id, scope_tag_target_type, entra_object_id \
             FROM partner_assignments WHERE partner_id IN (",
        );
        let mut ids = select.separated(", ");
        for partner in batch {
            ids.push_bind(partner.id.clone());
        }
        select.push(")");
        let rows: Vec<PartnerAssignmentRow> = select
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .context("reading the assignment rows of a page")?;
        for row in rows {
            by_partner
                .entry(row.partner_id)
                .or_default()
                .push(row.assignment);
        }
    }
    Ok(by_partner)
}

/// The place of `state` in the enum's declared order; the migration's `partner_state_order`
/// computes the same number in SQL (a test checks they agree).
pub(crate) fn state_order(state: PartnerState) -> i64 {
    PartnerState::ALL
        .iter()
        .zip(0_i64..)
        .find_map(|(member, order)| (*member == state).then_some(order))
        // ALL lists every member, so the search always succeeds.
        .unwrap_or(i64::MAX)
}

pub(crate) fn operator(op: Comparison) -> &'static str {
    match op {
        Comparison::Eq => "=",
        Comparison::Ne => "<>",
        Comparison::Gt => ">",
        Comparison::Ge => ">=",
        Comparison::Lt => "<",
        Comparison::Le => "<=",
    }
}

pub(crate) fn filter_column(field: FilterField) -> &'static str {
    match field {
        FilterField::DisplayName => "name_key",
        FilterField::PartnerState => "partner_state_order",
        FilterField::LastHeartbeat => "last_heartbeat",
        FilterField::Onboarded(platform) => onboarded_column(platform),
        FilterField::Id => "id",
    }
}

pub(crate) fn onboarded_column(platform: Platform) -> &'static str {
    match platform {
        Platform::MacOs => "mac_os_onboarded",
        Platform::Windows => "windows_onboarded",
        Platform::Android => "android_onboarded",
        Platform::Ios => "ios_onboarded",
        Platform::Linux => "linux_onboarded",
    }
}

pub(crate) fn sort_column(field: SortField) -> &'static str {
    match field {
        SortField::DisplayName => "name_key",
        SortField::LastHeartbeat => "last_heartbeat",
        SortField::PartnerState => "partner_state_order",
        SortField::Id => "id",
    }
}

pub(crate) fn field_name(field: FilterField) -> String {
    field.property_name()
}

/// The Graph property name of a sort field, for error messages.
pub(crate) fn sort_name(field: SortField) -> &'static str {
    match field {
        SortField::DisplayName => "displayName",
        SortField::LastHeartbeat => "lastHeartbeatDateTime",
        SortField::PartnerState => "partnerState",
        SortField::Id => "id",
    }
}

/// What kind of literal `value` is, for error messages.
pub(crate) fn value_kind(value: &FilterValue) -> &'static str {
    match value {
        FilterValue::Text(_) => "a string",
        FilterValue::State(_) => "a partner state",
        FilterValue::Instant(_) => "an instant",
        FilterValue::Bool(_) => "a boolean",
        FilterValue::Id(_) => "an id",
    }
}

/// One page of the listing of `query` on `conn`: the partners, their assignments, the cursor of
/// the next page and, when asked, the count. The caller runs it in one read transaction, so all
/// of it comes from one snapshot.
///
/// # Errors
/// [`StoreError::Unexpected`] when the page size is 0, a statement fails or a stored partner no
/// longer parses.
pub(crate) async fn read_page(
    conn: &mut DbConnection,
    tenant: TenantId,
    query: &ListQuery,
) -> Result<PartnerPage, StoreError> {
    if query.page_size == 0 {
        return Err(anyhow!("a page holds at least one partner; the page size is 0").into());
    }
    let keys = query.sort_keys();
    let mut select = QueryBuilder::<Db>::new("");
    push_page_select(&mut select, tenant, query, &keys)?;

    let mut rows: Vec<PartnerRow> = select
        .build_query_as()
        .fetch_all(&mut *conn)
        .await
        .context("reading a page of partners")?;
    let page_size = usize::try_from(query.page_size).unwrap_or(usize::MAX);
    let more = rows.len() > page_size;
    rows.truncate(page_size);
    let mut assignments = read_assignments(conn, &rows).await?;
    let total = if query.count {
        Some(count_on(conn, tenant, query.filter.as_ref()).await?)
    } else {
        None
    };

    let next = match rows.last() {
        Some(last) if more => Some(cursor_of(last, &keys)?),
        _ => None,
    };
    let items = rows
        .into_iter()
        .map(|row| {
            let id = row.id.clone();
            row.into_domain(assignments.remove(&id).unwrap_or_default())
                .with_context(|| format!("stored partner {id} no longer parses"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(PartnerPage { items, next, total })
}

/// How many of the tenant's live partners `filter` matches, on `conn`.
pub(crate) async fn count_on(
    conn: &mut DbConnection,
    tenant: TenantId,
    filter: Option<&Filter>,
) -> Result<u64, StoreError> {
    let mut select = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM partners WHERE ");
    push_live_partners_of(&mut select, tenant);
    if let Some(filter) = filter {
        select.push(" AND ");
        push_filter(&mut select, filter)?;
    }
    let count: i64 = select
        .build_query_scalar()
        .fetch_one(&mut *conn)
        .await
        .context("counting partners")?;
    // COUNT(*) is never negative.
    Ok(u64::try_from(count).context("a negative row count")?)
}
