//! How long one page of the partner listing takes at 1,000 and at 100,000 partners: keyset
//! paging (`docs/wire-contract.md`, "Queries") promises the same cost at any depth, and this
//! measures it. Not a test: it asserts nothing about time, it prints figures.
//!
//! Run it with `cargo bench -p cmp-sqlite --bench list_page` (release build). For each size it
//! seeds a fresh database file in a temporary directory, then times, through the store
//! port exactly as the HTTP adapter calls it:
//!
//! - the first page of 100 in the default order (by id);
//! - a page of 100 deep in the keyset: after a cursor 150 partners from the end;
//! - the same depth by `$skip` (an `OFFSET`), for contrast: SQLite walks every skipped entry;
//! - a filtered page: `startswith(displayName,'Partner 9')` ordered by `displayName`;
//! - a deep keyset page ordered by `lastHeartbeatDateTime desc` (mixed directions: the heartbeat
//!   descending, the `id` tie-breaker ascending).
//!
//! Each is repeated [`RUNS`] times after [`WARM_UP`] untimed runs; the figures are the minimum,
//! median and 95th percentile in microseconds. Seeding writes the partner rows directly, in one
//! transaction of multi-row inserts with `synchronous=OFF` (the listing reads no outbox row), so
//! that 100,000 partners take seconds rather than 100,000 durable commits.

use std::time::{Duration, Instant};

use anyhow::Context;
use cmp_application::PartnerStore;
use cmp_application::query::{
    Cursor, Filter, FilterValue, ListQuery, PartnerPage, SortField, SortKey,
};
use cmp_domain::{NaturalKey, PartnerId, PartnerState, TenantId, Timestamp};
use cmp_sqlite::{SqlitePartnerStore, SqliteSettings, SqliteStore};
use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};
use uuid::Uuid;

/// Timed repetitions of each page.
const RUNS: usize = 50;

/// Untimed repetitions first, to warm SQLite's page cache and prepared statements.
const WARM_UP: usize = 20;

/// Page size of every timed page (Graph's default).
const PAGE: u32 = 100;

/// Partner rows per multi-row `INSERT` while seeding (13 values each, well below SQLite's limit
/// of 32,766 variables per statement).
const ROWS_PER_INSERT: usize = 1_000;

/// One generated partner: what the listing filters and sorts by.
struct Seeded {
    id: Uuid,
    name: String,
    state: PartnerState,
    heartbeat: Timestamp,
}

fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x7e4a_0001))
}

/// Partner `n` of a run: named `Partner <n>` (so `Partner 9` prefixes 1 + 10 + 100 + ... names),
/// with an id scattered over the id space (so the id order is not the insertion order), every
/// state in turn, and a heartbeat among a few thousand distinct instants (ties included).
fn partner(n: u64) -> Seeded {
    let scattered = u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    let now = Timestamp::from_unix_seconds(1_700_000_000, 0).unwrap_or(Timestamp::MIN);
    let states = PartnerState::ALL;
    Seeded {
        id: Uuid::from_u128(scattered),
        name: format!("Partner {n}"),
        state: states[usize::try_from(n % 6).unwrap_or(0)],
        heartbeat: now.saturating_sub(Duration::from_secs((n % 4_096) * 60)),
    }
}

/// Seeds `count` partners into the store at `settings.path`.
async fn seed(settings: &SqliteSettings, count: u64) -> anyhow::Result<Vec<Seeded>> {
    let partners: Vec<Seeded> = (1..=count).map(partner).collect();
    let mut conn = SqliteConnectOptions::new()
        .filename(&settings.path)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await
        .context("opening the seeding connection")?;
    let mut tx = conn
        .begin()
        .await
        .context("beginning the seeding transaction")?;
    let tenant = tenant().to_string();
    for batch in partners.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO partners (id, tenant_id, display_name, name_key, partner_state, \
             last_heartbeat, mac_os_onboarded, windows_onboarded, android_onboarded, \
             ios_onboarded, linux_onboarded, created_at, updated_at) ",
        );
        insert.push_values(batch, |mut row, partner| {
            let flag = |bit: u32| i64::from((partner.id.as_u128() >> bit) & 1 == 1);
            row.push_bind(partner.id.hyphenated().to_string())
                .push_bind(tenant.clone())
                .push_bind(partner.name.clone())
                .push_bind(NaturalKey::fold(&partner.name).as_str().to_owned())
                .push_bind(partner.state.as_str())
                .push_bind(partner.heartbeat.unix_ticks())
                .push_bind(flag(0))
                .push_bind(flag(1))
                .push_bind(flag(2))
                .push_bind(flag(3))
                .push_bind(flag(4))
                .push_bind(0_i64)
                .push_bind(0_i64);
        });
        insert
            .build()
            .execute(&mut *tx)
            .await
            .context("inserting a batch of partners")?;
    }
    tx.commit().await.context("committing the seed")?;
    conn.close()
        .await
        .context("closing the seeding connection")?;
    Ok(partners)
}

/// Minimum, median and 95th percentile of `samples`, in microseconds.
fn summary(mut samples: Vec<Duration>) -> (u128, u128, u128) {
    samples.sort();
    // The nearest-rank index of a percentile in the sorted samples, rounded half up.
    let at = |percent: usize| samples[((samples.len() - 1) * percent + 50) / 100].as_micros();
    (at(0), at(50), at(95))
}

/// Times `RUNS` listings of `query` and prints one line; checks the page is what it should be.
async fn time_page(
    repo: &SqlitePartnerStore,
    size: u64,
    label: &str,
    query: &ListQuery,
    expected_items: usize,
) -> anyhow::Result<()> {
    let mut samples = Vec::with_capacity(RUNS);
    for run in 0..WARM_UP + RUNS {
        let started = Instant::now();
        let page: PartnerPage = repo
            .list_partners(tenant(), query)
            .await
            .with_context(|| format!("listing: {label}"))?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            page.items.len() == expected_items,
            "{label}: {} items, expected {expected_items}",
            page.items.len()
        );
        if run >= WARM_UP {
            samples.push(elapsed);
        }
    }
    let (min, median, p95) = summary(samples);
    println!(
        "{size:>7} partners | {label:<52} | min {min:>6} µs | median {median:>6} µs | p95 {p95:>6} µs"
    );
    Ok(())
}

async fn bench(size: u64) -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new().context("temporary directory")?;
    let settings = SqliteSettings {
        path: dir.path().join("bench.db"),
        busy_timeout_ms: 5_000,
        max_read_connections: 4,
    };
    // Opening creates the schema; the seed then writes behind the store's back, and the store
    // reads it through fresh snapshots.
    let store = SqliteStore::open(&settings).await?;
    let seeding = Instant::now();
    let partners = seed(&settings, size).await?;
    println!(
        "{size:>7} partners | seeded in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let repo = store.partner_store();

    let mut by_id: Vec<&Seeded> = partners.iter().collect();
    by_id.sort_by_key(|p| p.id.hyphenated().to_string());
    let deep = by_id[by_id.len() - 150];
    let mut by_heartbeat: Vec<&Seeded> = partners.iter().collect();
    by_heartbeat.sort_by(|a, b| {
        b.heartbeat.cmp(&a.heartbeat).then_with(|| {
            a.id.hyphenated()
                .to_string()
                .cmp(&b.id.hyphenated().to_string())
        })
    });
    let deep_by_heartbeat = by_heartbeat[by_heartbeat.len() - 150];
    let page = |order: Vec<SortKey>| ListQuery {
        order,
        page_size: PAGE,
        ..ListQuery::default()
    };
    let full = usize::try_from(PAGE)?;

    time_page(&repo, size, "first page, by id", &page(Vec::new()), full).await?;
    time_page(
        &repo,
        size,
        "keyset page 150 from the end, by id",
        &ListQuery {
            after: Some(Cursor {
                values: vec![FilterValue::Id(PartnerId::from_uuid(deep.id))],
            }),
            ..page(Vec::new())
        },
        full,
    )
    .await?;
    time_page(
        &repo,
        size,
        "$skip page 150 from the end, by id (contrast)",
        &ListQuery {
            skip: size - 150,
            ..page(Vec::new())
        },
        full,
    )
    .await?;
    let name_order = vec![SortKey {
        field: SortField::DisplayName,
        descending: false,
    }];
    time_page(
        &repo,
        size,
        "startswith(displayName,'Partner 9') by displayName",
        &ListQuery {
            filter: Some(Filter::StartsWith {
                prefix: "Partner 9".into(),
            }),
            ..page(name_order)
        },
        full,
    )
    .await?;
    let heartbeat_desc = vec![SortKey {
        field: SortField::LastHeartbeat,
        descending: true,
    }];
    time_page(
        &repo,
        size,
        "keyset page 150 from the end, by heartbeat desc",
        &ListQuery {
            after: Some(Cursor {
                values: vec![
                    FilterValue::Instant(deep_by_heartbeat.heartbeat),
                    FilterValue::Id(PartnerId::from_uuid(deep_by_heartbeat.id)),
                ],
            }),
            ..page(heartbeat_desc)
        },
        full,
    )
    .await?;

    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    for size in [1_000, 100_000] {
        bench(size).await?;
    }
    Ok(())
}
