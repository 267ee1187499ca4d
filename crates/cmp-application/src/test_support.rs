//! Fixtures shared by the use-case tests: a pinned clock, ids handed out in call order, the
//! policy of `config/default.toml`, Graph's answer metadata, and partners.

use std::time::Duration;

use cmp_domain::{
    DisplayName, NewPartner, Partner, PartnerId, PartnerState, Platforms, TenantId, Timestamp,
};
use uuid::Uuid;

use std::sync::Arc;

use crate::pacer::InProcessPacer;
use crate::policy::OutboxPolicy;
use crate::ports::{GraphResponseMeta, MockClock, MockIdSource, Pacer, PacerRates, Sleeper};

/// The instant every pinned clock answers (2023-11-14T22:13:20Z).
pub(crate) fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_700_000_000, 0).expect("a 2023 instant is in range")
}

/// [`now`] moved by `seconds`, either way.
pub(crate) fn seconds_after_now(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(now().unix_seconds() + seconds, 0).expect("in range")
}

/// The tenant of every test.
pub(crate) fn tenant_id() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x7e57_7e57))
}

/// The numbers of `config/default.toml`, with a dispatcher batch of `batch_size`.
pub(crate) fn policy_with_batch(batch_size: u32) -> OutboxPolicy {
    OutboxPolicy {
        inline_deadline: Duration::from_secs(10),
        lease: Duration::from_secs(160),
        settle: Duration::from_secs(130),
        retry_base: Duration::from_secs(10),
        backoff_cap: Duration::from_secs(15 * 60),
        max_attempts: 50,
        max_age: Duration::from_secs(24 * 3600),
        batch_size,
        reconcile_by_name: false,
    }
}

/// A clock that always answers [`now`].
pub(crate) fn fixed_clock() -> MockClock {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    clock
}

/// An id source handing out `Uuid::from_u128(1)`, `2`, `3`, ... in call order.
pub(crate) fn sequential_ids() -> MockIdSource {
    let mut ids = MockIdSource::new();
    let mut last: u128 = 0;
    ids.expect_new_uuid().returning(move || {
        last += 1;
        Uuid::from_u128(last)
    });
    ids
}

/// What Graph said with `status` and `error_code` (and a message and request id to match).
pub(crate) fn graph_meta(status: u16, error_code: Option<&str>) -> GraphResponseMeta {
    GraphResponseMeta {
        status: Some(status),
        error_code: error_code.map(str::to_owned),
        error_message: error_code.map(|code| format!("{code}: the message of Graph")),
        request_id: Some("graph-request-7".to_owned()),
    }
}

/// An enabled partner `id` named `display_name`, heartbeat [`now`], no platform onboarded.
pub(crate) fn partner_named(id: u128, display_name: &str) -> Partner {
    Partner::restore(
        PartnerId::from_uuid(Uuid::from_u128(id)),
        command_named(display_name),
    )
}

/// The create command of an enabled partner named `display_name`, heartbeat [`now`].
pub(crate) fn command_named(display_name: &str) -> NewPartner {
    NewPartner {
        display_name: DisplayName::parse(display_name).expect("a valid display name"),
        state: PartnerState::Enabled,
        last_heartbeat: now(),
        platforms: Platforms::none(),
    }
}

/// A pacer with no spacing: every slot starts at once, until a 429 pauses the tenant.
pub(crate) fn unspaced_pacer() -> Arc<dyn Pacer> {
    Arc::new(InProcessPacer::new(PacerRates::steady(
        Duration::ZERO,
        Duration::ZERO,
    )))
}

/// A sleeper that returns at once: for tests whose clock is pinned, where waiting would
/// change nothing.
pub(crate) struct NoWait;

#[async_trait::async_trait]
impl Sleeper for NoWait {
    async fn sleep(&self, _duration: Duration) {}
}
