//! Round trips that must hold for every value, checked on generated ones: an instant through
//! Graph's rendering and through the other spellings clients send for it, and a partner
//! through the JSON the service answers with.

use cmp_domain::{
    Assignment, AssignmentFilter, AssignmentTarget, DisplayName, EntityGuid, NewPartner, Partner,
    PartnerId, PartnerState, PerPlatform, PlatformEnrollment, ScopeTagTargetType, TargetKind,
    TextId, Timestamp,
};
use cmp_graph_model::{datetime, parse_partner_fields, render_partner};
use proptest::prelude::*;

/// Every instant Graph can render, the two ends included (each about once in ten cases).
fn timestamps() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        1 => Just(Timestamp::MIN),
        1 => Just(Timestamp::MAX),
        18 => (Timestamp::MIN.unix_ticks()..=Timestamp::MAX.unix_ticks())
            .prop_map(|ticks| Timestamp::from_unix_ticks(ticks).expect("drawn from the range")),
    ]
}

/// Trimmed names of 1 to 256 characters without control characters: ASCII, accented Latin,
/// other scripts, and any printable character.
fn display_names() -> impl Strategy<Value = DisplayName> {
    prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9 .,'&()-]{0,40}",
        "[a-zé ÀÖøÿ]{1,30}",
        "[\u{3040}-\u{30ff}\u{4e00}-\u{4e80}\u{0600}-\u{06ff}\u{1f600}-\u{1f64f}]{1,20}",
        "\\PC{1,256}",
    ]
    .prop_filter_map("a trimmed, non-empty name", |text| {
        DisplayName::parse(&text).ok()
    })
}

/// Free-text ids (collection and filter ids): kept as given, spaces around them included.
fn text_ids() -> impl Strategy<Value = TextId> {
    prop_oneof!["SMS[0-9]{5}", "\\PC{1,40}"]
        .prop_filter_map("a non-blank id", |text| TextId::parse(&text).ok())
}

fn guids() -> impl Strategy<Value = EntityGuid> {
    any::<u128>().prop_map(|bits| {
        EntityGuid::parse(&uuid::Uuid::from_u128(bits).hyphenated().to_string())
            .expect("a hyphenated GUID")
    })
}

/// All seven target subtypes, each with its own fields.
fn target_kinds() -> impl Strategy<Value = TargetKind> {
    let scope_tag_types = prop::sample::select(vec![
        ScopeTagTargetType::None,
        ScopeTagTargetType::User,
        ScopeTagTargetType::Device,
        ScopeTagTargetType::UnknownFutureValue,
    ]);
    prop_oneof![
        Just(TargetKind::AllDevices),
        Just(TargetKind::AllLicensedUsers),
        text_ids()
            .prop_map(|collection_id| TargetKind::ConfigurationManagerCollection { collection_id }),
        guids().prop_map(|group_id| TargetKind::Group { group_id }),
        guids().prop_map(|group_id| TargetKind::ExclusionGroup { group_id }),
        (scope_tag_types, guids()).prop_map(|(target_type, entra_object_id)| {
            TargetKind::ScopeTagGroup {
                target_type,
                entra_object_id,
            }
        }),
        guids().prop_map(|group_id| TargetKind::AndroidFotaDeployment { group_id }),
    ]
}

fn assignment_filters() -> impl Strategy<Value = AssignmentFilter> {
    prop_oneof![
        Just(AssignmentFilter::None),
        text_ids().prop_map(AssignmentFilter::Include),
        text_ids().prop_map(AssignmentFilter::Exclude),
    ]
}

/// A platform's enrollment: up to six assignments, a repeated target dropped (the invariant).
fn enrollments() -> impl Strategy<Value = PlatformEnrollment> {
    let assignments = prop::collection::vec((target_kinds(), assignment_filters()), 0..6);
    (any::<bool>(), assignments).prop_map(|(onboarded, drawn)| {
        let mut assignments: Vec<Assignment> = Vec::new();
        for (kind, filter) in drawn {
            let target = AssignmentTarget::new(kind, filter);
            if !assignments
                .iter()
                .any(|kept| kept.target().same_target_as(&target))
            {
                assignments.push(Assignment::new(target));
            }
        }
        PlatformEnrollment::new(onboarded, assignments).expect("no target twice")
    })
}

/// The five platforms, each with its own enrollment.
fn platforms() -> impl Strategy<Value = PerPlatform<PlatformEnrollment>> {
    prop::array::uniform5(enrollments()).prop_map(|drawn| {
        let mut drawn = drawn.into_iter();
        PerPlatform::from_fn(|_| drawn.next().expect("one enrollment per platform"))
    })
}

fn partners() -> impl Strategy<Value = Partner> {
    (
        any::<u128>(),
        display_names(),
        prop::sample::select(PartnerState::ALL.to_vec()),
        timestamps(),
        platforms(),
    )
        .prop_map(|(id, display_name, state, last_heartbeat, platforms)| {
            Partner::restore(
                PartnerId::from_uuid(uuid::Uuid::from_u128(id)),
                NewPartner {
                    display_name,
                    state,
                    last_heartbeat,
                    platforms,
                },
            )
        })
}

/// An offset a client may send, in minutes east of UTC: `-23:59` to `+23:59`.
fn offsets() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), -(23 * 60 + 59)..=(23 * 60 + 59_i64)]
}

/// `minutes` as an RFC 3339 offset; zero as `Z`, `z`, `+00:00` or `-00:00` by `zero_style`.
fn offset_text(minutes: i64, zero_style: u8) -> String {
    match (minutes, zero_style % 4) {
        (0, 0) => "Z".to_owned(),
        (0, 1) => "z".to_owned(),
        (0, 2) => "-00:00".to_owned(),
        _ => {
            let sign = if minutes < 0 { '-' } else { '+' };
            let magnitude = minutes.abs();
            format!("{sign}{:02}:{:02}", magnitude / 60, magnitude % 60)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_instant_parses_back_from_its_rendering(instant in timestamps()) {
        let rendered = datetime::format(instant);

        prop_assert_eq!(datetime::parse(&rendered), Ok(instant), "{}", rendered);
    }

    #[test]
    fn every_valid_offset_and_fraction_length_names_the_same_instant(
        instant in timestamps(),
        offset_minutes in offsets(),
        zero_style in any::<u8>(),
        fraction_digits in 0_usize..=30,
        digits_past_ticks in "[0-9]{23}",
    ) {
        // Fewer than seven digits can only spell an instant whose dropped digits are zero.
        let kept_ticks = 10_u32.pow(7 - u32::try_from(fraction_digits.min(7)).expect("small"));
        let subsecond = instant.subsecond_ticks() - instant.subsecond_ticks() % kept_ticks;
        let instant = Timestamp::from_unix_seconds(instant.unix_seconds(), subsecond)
            .expect("moved earlier within the same second");
        // The local time must itself have a four-digit year, as in .NET.
        let local = Timestamp::from_unix_seconds(
            instant.unix_seconds() + offset_minutes * 60,
            instant.subsecond_ticks(),
        );
        prop_assume!(local.is_ok());
        let local = datetime::format(local.expect("checked above"));
        let fraction = format!("{:07}{digits_past_ticks}", instant.subsecond_ticks());
        let text = format!(
            "{}{}{}",
            &local[.."YYYY-MM-DDTHH:MM:SS".len()],
            if fraction_digits == 0 { String::new() } else { format!(".{}", &fraction[..fraction_digits]) },
            offset_text(offset_minutes, zero_style),
        );

        prop_assert_eq!(datetime::parse(&text), Ok(instant), "{}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_partner_parses_back_from_the_json_the_service_renders(partner in partners()) {
        let rendered = serde_json::to_value(render_partner(&partner, Some("ctx".to_owned())))
            .expect("a partner renders as JSON");

        let reparsed = parse_partner_fields(&rendered)
            .and_then(|fields| fields.into_new_partner())
            .map(|command| Partner::restore(partner.id(), command));

        prop_assert_eq!(reparsed, Ok(partner), "{}", rendered);
    }
}
