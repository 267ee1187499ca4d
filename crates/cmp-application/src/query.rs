//! Listing partners: a typed query (filter, order, page) parsed at the edge from OData and
//! translated by the store with bound values, never pasted into SQL.

use cmp_domain::{PartnerId, PartnerState, Platform, Timestamp};

/// Page size when the caller names none (Graph's default for this collection).
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 999;

/// A property a filter can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    /// `displayName`: compared case-insensitively, as names are unique case-insensitively.
    DisplayName,
    /// `partnerState`: compared by the enum's declared order.
    PartnerState,
    /// `lastHeartbeatDateTime`: compared as instants.
    LastHeartbeat,
    /// `<platform>Onboarded`.
    Onboarded(Platform),
    /// `id`.
    Id,
}

impl FilterField {
    /// The Graph property name, e.g. `macOsOnboarded`.
    pub fn property_name(&self) -> String {
        match self {
            Self::DisplayName => "displayName".to_owned(),
            Self::PartnerState => "partnerState".to_owned(),
            Self::LastHeartbeat => "lastHeartbeatDateTime".to_owned(),
            Self::Onboarded(platform) => format!("{}Onboarded", platform.property_prefix()),
            Self::Id => "id".to_owned(),
        }
    }
}

/// A literal in a filter, typed by the property it is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterValue {
    /// A string (display names).
    Text(String),
    /// A partner state.
    State(PartnerState),
    /// An instant.
    Instant(Timestamp),
    /// A boolean.
    Bool(bool),
    /// A partner id.
    Id(PartnerId),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `eq`.
    Eq,
    /// `ne`.
    Ne,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
}

/// A `$filter` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `field op value`; the value's type matches the field (the parser guarantees it).
    Compare {
        /// The property.
        field: FilterField,
        /// The operator.
        op: Comparison,
        /// The literal.
        value: FilterValue,
    },
    /// `startswith(displayName, 'prefix')`, case-insensitive.
    StartsWith {
        /// The prefix.
        prefix: String,
    },
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not a`.
    Not(Box<Filter>),
}

/// A property a listing can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    /// `displayName`, case-insensitively.
    DisplayName,
    /// `lastHeartbeatDateTime`.
    LastHeartbeat,
    /// `partnerState`, by declared order.
    PartnerState,
    /// `id`.
    Id,
}

/// One `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// The property.
    pub field: SortField,
    /// `desc`.
    pub descending: bool,
}

/// A keyset position: the sort-key values of the last item of a page, in the order of the
/// query's sort keys, ending with the item's id (always the last key, as a tie-breaker). A
/// page read from a cursor costs the same at any depth, and partners added or removed
/// between pages neither repeat nor skip the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// One value per sort key of the query, id last.
    pub values: Vec<FilterValue>,
}

/// A listing: filter, order, page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// `$filter`.
    pub filter: Option<Filter>,
    /// `$orderby`, as given; the store appends `id` ascending when it is not already a key.
    pub order: Vec<SortKey>,
    /// `$top`: page size, 1..=[`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// `$skip`: items to pass over before the page (first page only; a cursor replaces it).
    pub skip: u64,
    /// Where the previous page ended (`$skiptoken`).
    pub after: Option<Cursor>,
    /// `$count=true`: also count every item the filter matches.
    pub count: bool,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filter: None,
            order: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            skip: 0,
            after: None,
            count: false,
        }
    }
}

impl ListQuery {
    /// The effective sort keys: the requested ones, then `id` ascending unless already present.
    pub fn sort_keys(&self) -> Vec<SortKey> {
        let mut keys = self.order.clone();
        if !keys.iter().any(|key| key.field == SortField::Id) {
            keys.push(SortKey {
                field: SortField::Id,
                descending: false,
            });
        }
        keys
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerPage {
    /// The partners of the page, in order.
    pub items: Vec<cmp_domain::Partner>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
    /// Every partner the filter matches, when the query asked for a count.
    pub total: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_appended_as_the_last_sort_key_unless_present() {
        let by_name = ListQuery {
            order: vec![SortKey {
                field: SortField::DisplayName,
                descending: true,
            }],
            ..ListQuery::default()
        };
        let by_id_desc = ListQuery {
            order: vec![SortKey {
                field: SortField::Id,
                descending: true,
            }],
            ..ListQuery::default()
        };

        assert_eq!(
            by_name.sort_keys(),
            vec![
                SortKey {
                    field: SortField::DisplayName,
                    descending: true
                },
                SortKey {
                    field: SortField::Id,
                    descending: false
                }
            ]
        );
        assert_eq!(
            by_id_desc.sort_keys(),
            vec![SortKey {
                field: SortField::Id,
                descending: true
            }]
        );
    }
}
