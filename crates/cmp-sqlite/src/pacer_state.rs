//! [`SqlitePacer`]: the tenant's [`Pacer`] for a store that one process serves: the in-process
//! pacer, with every `Retry-After` pause it records also kept in the SQLite file.
//!
//! A process killed during a pause forgets what it held in memory; its successor would then
//! send to the tenant before the pause ends. So each pause that changes the state (a later end,
//! a new epoch) is written, with the rest of the state, to the tenant's row of `tenant_pacers`
//! through the store's writer, before [`Pacer::pause`] or [`Pacer::pause_at`] answers; and a
//! process starts its pacer from that row ([`PacerState::restarted_at`]): inside the kept
//! pause, with the kept epoch, and with its budget counted as just spent.
//!
//! Bookings, releases and validity checks stay in memory, as fast as before: only a 429 costs a
//! write. What a restart can still miss is a 429 whose process died between receiving it and
//! committing its row, a few milliseconds.

use crate::rows::PacerRow;
use anyhow::Context;
use cmp_application::{
    Booking, Budget, InProcessPacer, Pacer, PacerError, PacerRates, PacerState, Slot,
};
use cmp_domain::{TenantId, Timestamp};

use crate::connections::Connections;
use crate::writer::boxed;

/// One tenant's pacer: in memory, its pauses kept in the file. Made by
/// [`SqliteStore::pacer`](crate::SqliteStore::pacer).
#[derive(Debug)]
pub struct SqlitePacer {
    in_memory: InProcessPacer,
    tenant: String,
    connections: Connections,
}

impl SqlitePacer {
    /// The tenant's pacer at `now`, started from what the file kept of its last pause.
    pub(crate) async fn open(
        connections: Connections,
        tenant: TenantId,
        rates: PacerRates,
        now: Timestamp,
    ) -> anyhow::Result<Self> {
        let tenant = tenant.to_string();
        let kept = read_kept(&connections, &tenant).await?;
        if let Some(kept) = kept.filter(|kept| kept.paused_at(now)) {
            tracing::info!(
                pause_left_ms = u64::try_from(kept.pause_left(now).as_millis()).unwrap_or(u64::MAX),
                "resuming inside a Retry-After pause met before the restart"
            );
        }
        Ok(Self::starting_from(
            connections,
            tenant,
            rates,
            PacerState::restarted_at(rates, now, kept),
        ))
    }

    /// A pacer starting from `state`, without reading the file.
    pub(crate) fn starting_from(
        connections: Connections,
        tenant: String,
        rates: PacerRates,
        state: PacerState,
    ) -> Self {
        Self {
            in_memory: InProcessPacer::with_state(rates, state),
            tenant,
            connections,
        }
    }

    /// Writes the state to the file when the pause just recorded changed it (`before` is the
    /// epoch before it). A row of a later epoch, written by a pause recorded at the same time,
    /// is kept.
    async fn keep(&self, epoch_before: u64) -> Result<(), PacerError> {
        let state = self.in_memory.state().await?;
        if state.epoch == epoch_before {
            // The same 429 recorded twice (by the Graph client and by the delivery): the first
            // write holds it already.
            return Ok(());
        }
        let tenant = self.tenant.clone();
        self.connections
            .writer
            .write(move |conn| {
                boxed(async move {
                    sqlx::query(
                        "INSERT INTO tenant_pacers (tenant_id, next_write_at, next_read_at, \
                         paused_until, epoch) VALUES (?, ?, ?, ?, ?) \
                         ON CONFLICT (tenant_id) DO UPDATE SET \
                         next_write_at = excluded.next_write_at, \
                         next_read_at = excluded.next_read_at, \
                         paused_until = excluded.paused_until, epoch = excluded.epoch \
                         WHERE excluded.epoch >= tenant_pacers.epoch",
                    )
                    .bind(&tenant)
                    .bind(state.next_write_at.unix_ticks())
                    .bind(state.next_read_at.unix_ticks())
                    .bind(state.paused_until.map(|until| until.unix_ticks()))
                    .bind(i64::try_from(state.epoch).unwrap_or(i64::MAX))
                    .execute(&mut *conn)
                    .await
                    .context("keeping the tenant's pacing state")?;
                    Ok(())
                })
            })
            .await
            .map_err(|error| PacerError(error.into()))
    }
}

/// The tenant's kept state, if a pause was ever recorded.
async fn read_kept(connections: &Connections, tenant: &str) -> anyhow::Result<Option<PacerState>> {
    let row: Option<PacerRow> = sqlx::query_as(
        "SELECT next_write_at, next_read_at, paused_until, epoch FROM tenant_pacers \
         WHERE tenant_id = ?",
    )
    .bind(tenant)
    .fetch_optional(&connections.reader)
    .await
    .context("reading the tenant's kept pacing state")?;
    row.map(PacerRow::into_state).transpose()
}

#[async_trait::async_trait]
impl Pacer for SqlitePacer {
    async fn book(
        &self,
        budget: Budget,
        now: Timestamp,
        latest: Timestamp,
    ) -> Result<Booking, PacerError> {
        self.in_memory.book(budget, now, latest).await
    }

    async fn release(&self, slot: &Slot) -> Result<(), PacerError> {
        self.in_memory.release(slot).await
    }

    /// Records the pause in memory at once (the slots it cancels are void from now on), then
    /// keeps it in the file.
    async fn pause(&self, until: Timestamp) -> Result<(), PacerError> {
        let epoch_before = self.in_memory.state().await?.epoch;
        self.in_memory.pause(until).await?;
        self.keep(epoch_before).await
    }

    /// As [`SqlitePacer::pause`], giving back what the cancelled slots had booked.
    async fn pause_at(&self, now: Timestamp, until: Timestamp) -> Result<(), PacerError> {
        let epoch_before = self.in_memory.state().await?.epoch;
        self.in_memory.pause_at(now, until).await?;
        self.keep(epoch_before).await
    }

    async fn is_valid(&self, slot: &Slot) -> Result<bool, PacerError> {
        self.in_memory.is_valid(slot).await
    }

    async fn state(&self) -> Result<PacerState, PacerError> {
        self.in_memory.state().await
    }
}

#[cfg(test)]
mod tests;
