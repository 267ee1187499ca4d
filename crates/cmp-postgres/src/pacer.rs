//! [`PostgresPacer`]: the tenant's [`Pacer`] kept in the database, so that every replica books
//! its Graph requests from one schedule and honours one `Retry-After` pause.
//!
//! The state is one row of `tenant_pacers` per tenant. Every operation that changes it runs in
//! one transaction that reads the row `FOR UPDATE`, applies the port's own transition
//! ([`PacerState::book`], [`PacerState::release`], [`PacerState::pause`],
//! [`PacerState::pause_at`]) and writes the row
//! back: replicas booking at once queue on the row lock and each sees what the one before it
//! booked, so N replicas together send no more than one replica's
//! `graph.client.write_rate_per_second`. Running the port's arithmetic rather than a copy of it
//! in SQL keeps the two implementations from drifting apart.
//!
//! A tenant's row is created on its first use with the fresh state. Unlike the in-process
//! pacer, which starts as if the budget had just been spent because a restarted process cannot
//! know what it sent, the row outlives every restart: it holds what the replicas booked.
//!
//! Instants are the callers' clocks (the port never reads one of its own): the replicas'
//! clocks must agree, as NTP keeps them, or a replica whose clock runs behind books slots the
//! others already consider past.

use anyhow::Context;
use cmp_application::{Booking, Budget, Pacer, PacerError, PacerRates, PacerState, Slot};
use cmp_domain::{TenantId, Timestamp};
use sqlx::{PgConnection, PgPool};

use crate::rows::PacerRow;

/// One tenant's pacer over the shared database. Made by
/// [`PostgresStore::pacer`](crate::PostgresStore::pacer); cheap to clone.
#[derive(Debug, Clone)]
pub struct PostgresPacer {
    pool: PgPool,
    tenant: String,
    rates: PacerRates,
}

impl PostgresPacer {
    pub(crate) fn new(pool: PgPool, tenant: TenantId, rates: PacerRates) -> Self {
        Self {
            pool,
            tenant: tenant.to_string(),
            rates,
        }
    }

    /// Reads the tenant's row, creating it first when the tenant has never sent anything.
    async fn read(&self, conn: &mut PgConnection, lock: bool) -> anyhow::Result<PacerState> {
        let statement = if lock {
            "SELECT next_write_at, next_read_at, paused_until, epoch FROM tenant_pacers \
             WHERE tenant_id = $1 FOR UPDATE"
        } else {
            "SELECT next_write_at, next_read_at, paused_until, epoch FROM tenant_pacers \
             WHERE tenant_id = $1"
        };
        if let Some(row) = sqlx::query_as::<_, PacerRow>(statement)
            .bind(&self.tenant)
            .fetch_optional(&mut *conn)
            .await
            .context("reading the tenant's pacing row")?
        {
            return row.into_state();
        }
        let fresh = PacerState::fresh();
        // Two replicas may create it at once: the loser's insert does nothing, and the read
        // after it (locking, when asked to) sees the winner's row.
        sqlx::query(
            "INSERT INTO tenant_pacers (tenant_id, next_write_at, next_read_at, paused_until, \
             epoch) VALUES ($1, $2, $3, NULL, 0) ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(&self.tenant)
        .bind(fresh.next_write_at.unix_ticks())
        .bind(fresh.next_read_at.unix_ticks())
        .execute(&mut *conn)
        .await
        .context("creating the tenant's pacing row")?;
        sqlx::query_as::<_, PacerRow>(statement)
            .bind(&self.tenant)
            .fetch_one(&mut *conn)
            .await
            .context("reading the tenant's pacing row")?
            .into_state()
    }

    async fn write(&self, conn: &mut PgConnection, state: &PacerState) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE tenant_pacers SET next_write_at = $2, next_read_at = $3, paused_until = $4, \
             epoch = $5 WHERE tenant_id = $1",
        )
        .bind(&self.tenant)
        .bind(state.next_write_at.unix_ticks())
        .bind(state.next_read_at.unix_ticks())
        .bind(state.paused_until.map(|until| until.unix_ticks()))
        .bind(i64::try_from(state.epoch).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await
        .context("writing the tenant's pacing row")?;
        Ok(())
    }

    /// Applies `transition` to the locked row in one transaction, writing the row back only
    /// when it changed; returns what the transition answered.
    async fn transact<T: Send>(
        &self,
        transition: impl FnOnce(PacerState) -> (T, PacerState) + Send,
    ) -> Result<T, PacerError> {
        let run = async {
            let mut tx = self.pool.begin().await.context("beginning a transaction")?;
            let before = self.read(&mut tx, true).await?;
            let (answer, after) = transition(before);
            if after != before {
                self.write(&mut tx, &after).await?;
            }
            tx.commit()
                .await
                .context("committing the tenant's pacing row")?;
            anyhow::Ok(answer)
        };
        run.await.map_err(PacerError)
    }
}

#[async_trait::async_trait]
impl Pacer for PostgresPacer {
    async fn book(
        &self,
        budget: Budget,
        now: Timestamp,
        latest: Timestamp,
    ) -> Result<Booking, PacerError> {
        let rates = self.rates;
        self.transact(|state| state.book(rates, budget, now, latest))
            .await
    }

    async fn release(&self, slot: &Slot) -> Result<(), PacerError> {
        let rates = self.rates;
        let slot = *slot;
        self.transact(|state| ((), state.release(rates, &slot)))
            .await
    }

    async fn pause(&self, until: Timestamp) -> Result<(), PacerError> {
        self.transact(|state| ((), state.pause(until))).await
    }

    async fn pause_at(&self, now: Timestamp, until: Timestamp) -> Result<(), PacerError> {
        let rates = self.rates;
        self.transact(|state| ((), state.pause_at(rates, now, until)))
            .await
    }

    async fn is_valid(&self, slot: &Slot) -> Result<bool, PacerError> {
        Ok(self.state().await?.is_valid(slot))
    }

    async fn state(&self) -> Result<PacerState, PacerError> {
        let run = async {
            let mut conn = self
                .pool
                .acquire()
                .await
                .context("acquiring a connection")?;
            self.read(&mut conn, false).await
        };
        run.await.map_err(PacerError)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use cmp_application::ports::pacer::contract;

    use super::*;
    use crate::PostgresStore;
    use crate::test_support::{TestDatabase, postgres_available};

    #[tokio::test]
    async fn the_postgres_pacer_keeps_the_contract() {
        if !postgres_available("the PostgreSQL pacer's contract") {
            return;
        }
        let database = TestDatabase::create().await;
        let store = PostgresStore::open(&database.settings("replica-a"))
            .await
            .expect("open the store");
        // One tenant per check: each starts from a fresh row.
        contract::all(|rates| store.pacer(TenantId::from_uuid(uuid::Uuid::new_v4()), rates)).await;
        store.close().await;
    }

    /// Two replicas (two pools) booking writes for one tenant at once get slots one interval
    /// apart, never two in one interval; a pause recorded by one cancels the other's slots.
    #[tokio::test]
    async fn replicas_share_one_schedule_and_one_pause() {
        if !postgres_available("the PostgreSQL pacer across replicas") {
            return;
        }
        let database = TestDatabase::create().await;
        let tenant = TenantId::from_uuid(uuid::Uuid::new_v4());
        let rates = contract::RATES;
        let mut replicas = Vec::new();
        for name in ["replica-a", "replica-b", "replica-c"] {
            let store = PostgresStore::open(&database.settings(name))
                .await
                .expect("open the store");
            replicas.push(Arc::new(store.pacer(tenant, rates)));
        }
        let now = Timestamp::from_unix_seconds(1_767_225_600, 0).expect("in range");
        let latest = now.saturating_add(Duration::from_secs(3600));
        let mut bookings = tokio::task::JoinSet::new();
        for (n, pacer) in replicas.iter().cycle().take(30).enumerate() {
            let pacer = Arc::clone(pacer);
            bookings.spawn(async move {
                (
                    n % 3,
                    pacer
                        .book(Budget::Write, now, latest)
                        .await
                        .expect("booked"),
                )
            });
        }
        let mut starts = Vec::new();
        while let Some(joined) = bookings.join_next().await {
            let (_, booking) = joined.expect("a booking task");
            match booking {
                Booking::Booked(slot) => starts.push(slot),
                Booking::NoneBefore { .. } => panic!("a slot within the hour"),
            }
        }
        starts.sort_by_key(|slot| slot.at);
        let expected: Vec<Timestamp> = (0..30_u32)
            .map(|n| now.saturating_add(rates.write_interval * n))
            .collect();
        assert_eq!(
            starts.iter().map(|slot| slot.at).collect::<Vec<_>>(),
            expected,
            "thirty writes from three replicas, one interval apart"
        );

        replicas[1]
            .pause(now.saturating_add(Duration::from_secs(60)))
            .await
            .expect("paused");
        for pacer in &replicas {
            assert!(
                !pacer.is_valid(&starts[29]).await.expect("answers"),
                "every replica sees the pause cancel the slots booked before it"
            );
            let state = pacer.state().await.expect("answers");
            assert!(state.paused_at(now.saturating_add(Duration::from_secs(59))));
        }
        let after = replicas[2]
            .book(Budget::Read, now, latest)
            .await
            .expect("booked");
        assert!(
            matches!(after, Booking::Booked(slot) if slot.at == now.saturating_add(Duration::from_secs(60))),
            "{after:?}: nothing before the pause ends"
        );
    }
}
