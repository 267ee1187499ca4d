//! Round trips of the OData query options, checked on generated values: a filter through its
//! canonical text (what skip tokens are bound to), and a keyset cursor through the
//! `$skiptoken` the service issues for it.

use cmp_application::query::{
    Comparison, Cursor, Filter, FilterField, FilterValue, SortField, SortKey,
};
use cmp_domain::{PartnerId, PartnerState, Platform, Timestamp};
use cmp_http_api::odata::{filter, skiptoken};
use proptest::prelude::*;

fn timestamps() -> impl Strategy<Value = Timestamp> {
    (Timestamp::MIN.unix_ticks()..=Timestamp::MAX.unix_ticks())
        .prop_map(|ticks| Timestamp::from_unix_ticks(ticks).expect("drawn from the range"))
}

fn partner_ids() -> impl Strategy<Value = PartnerId> {
    any::<u128>().prop_map(|bits| PartnerId::from_uuid(uuid::Uuid::from_u128(bits)))
}

fn states() -> impl Strategy<Value = PartnerState> {
    prop::sample::select(PartnerState::ALL.to_vec())
}

/// Short text of any characters: quotes, whitespace, parentheses, control characters and
/// non-ASCII letters included.
fn texts() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z' (),]{0,12}", "\\PC{0,16}", "[\\x00-\\x7f]{0,12}"]
}

fn comparisons() -> impl Strategy<Value = Comparison> {
    prop::sample::select(vec![
        Comparison::Eq,
        Comparison::Ne,
        Comparison::Gt,
        Comparison::Ge,
        Comparison::Lt,
        Comparison::Le,
    ])
}

/// A property that takes every comparison operator, with a literal of its type.
fn ordered_literals() -> impl Strategy<Value = (FilterField, FilterValue)> {
    prop_oneof![
        texts().prop_map(|text| (FilterField::DisplayName, FilterValue::Text(text))),
        states().prop_map(|state| (FilterField::PartnerState, FilterValue::State(state))),
        timestamps()
            .prop_map(|instant| (FilterField::LastHeartbeat, FilterValue::Instant(instant))),
        partner_ids().prop_map(|id| (FilterField::Id, FilterValue::Id(id))),
    ]
}

/// One condition: each filterable property with a literal of its type (`eq`/`ne` only for
/// the booleans), or `startswith`.
fn conditions() -> impl Strategy<Value = Filter> {
    let booleans = (
        prop::sample::select(Platform::ALL.to_vec()),
        prop::sample::select(vec![Comparison::Eq, Comparison::Ne]),
        any::<bool>(),
    )
        .prop_map(|(platform, op, flag)| Filter::Compare {
            field: FilterField::Onboarded(platform),
            op,
            value: FilterValue::Bool(flag),
        });
    prop_oneof![
        4 => (comparisons(), ordered_literals())
            .prop_map(|(op, (field, value))| Filter::Compare { field, op, value }),
        1 => booleans,
        1 => texts().prop_map(|prefix| Filter::StartsWith { prefix }),
    ]
}

/// Conditions combined with `and`, `or` and `not` as a client writes them, parsed: the
/// parser decides the shape of each chain, and the property is about what it returns.
fn filters() -> impl Strategy<Value = Filter> {
    conditions().prop_recursive(4, 16, 4, |inner| {
        let chains = |operator: &'static str| {
            prop::collection::vec(inner.clone(), 2..5).prop_map(move |operands| {
                let text = operands
                    .iter()
                    .map(|operand| format!("({})", filter::canonical(operand)))
                    .collect::<Vec<_>>()
                    .join(operator);
                filter::parse(&text).unwrap_or_else(|e| panic!("{text:?} must parse: {e}"))
            })
        };
        prop_oneof![
            chains(" and "),
            chains(" or "),
            inner.prop_map(|operand| Filter::Not(Box::new(operand))),
        ]
    })
}

/// Sort keys as a query has them: some of the sortable properties in any order and
/// direction, then `id` unless it is already a key.
fn sort_keys() -> impl Strategy<Value = Vec<SortKey>> {
    let fields = vec![
        SortField::DisplayName,
        SortField::LastHeartbeat,
        SortField::PartnerState,
        SortField::Id,
    ];
    (
        Just(fields).prop_shuffle(),
        0_usize..=4,
        prop::array::uniform4(any::<bool>()),
    )
        .prop_map(|(fields, count, descending)| {
            let mut keys: Vec<SortKey> = fields[..count]
                .iter()
                .zip(descending)
                .map(|(field, descending)| SortKey {
                    field: *field,
                    descending,
                })
                .collect();
            if !keys.iter().any(|key| key.field == SortField::Id) {
                keys.push(SortKey {
                    field: SortField::Id,
                    descending: false,
                });
            }
            keys
        })
}

/// A value of the type each key sorts by.
fn cursor_value(field: SortField) -> BoxedStrategy<FilterValue> {
    match field {
        SortField::DisplayName => texts().prop_map(FilterValue::Text).boxed(),
        SortField::LastHeartbeat => timestamps().prop_map(FilterValue::Instant).boxed(),
        SortField::PartnerState => states().prop_map(FilterValue::State).boxed(),
        SortField::Id => partner_ids().prop_map(FilterValue::Id).boxed(),
    }
}

/// Sort keys with a cursor that fits them.
fn keys_and_cursors() -> impl Strategy<Value = (Vec<SortKey>, Cursor)> {
    sort_keys().prop_flat_map(|keys| {
        let values: Vec<_> = keys.iter().map(|key| cursor_value(key.field)).collect();
        (Just(keys), values).prop_map(|(keys, values)| (keys, Cursor { values }))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_filter_parses_back_from_its_canonical_text(filter in filters()) {
        let text = filter::canonical(&filter);

        prop_assert_eq!(filter::parse(&text), Ok(filter), "{}", text);
    }

    #[test]
    fn every_cursor_decodes_from_the_token_encoded_for_it(
        (keys, cursor) in keys_and_cursors(),
        fingerprint in any::<u64>(),
    ) {
        let token = skiptoken::encode(&cursor, fingerprint);

        prop_assert_eq!(skiptoken::decode(&token, fingerprint, &keys), Ok(cursor));
    }
}
