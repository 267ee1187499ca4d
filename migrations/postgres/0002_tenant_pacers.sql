-- The tenant's Graph request budget and Retry-After pause, shared by every replica: one row per
-- tenant, the four values of the pacer port's state (`docs/delivery.md`, "Pacing"). Every
-- booking, release and pause reads the row FOR UPDATE, applies the port's transition and writes
-- it back in one transaction, so the replicas' requests together keep one schedule.
--
-- Instants are BIGINT ticks (100 ns since the Unix epoch), as everywhere in this schema; the
-- row of a tenant that has sent nothing yet is created on first use with the earliest instant.

CREATE TABLE tenant_pacers (
    tenant_id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    -- The earliest start of the next write slot, and of the next read slot.
    next_write_at BIGINT NOT NULL,
    next_read_at BIGINT NOT NULL,
    -- No request before this instant (set by a 429's Retry-After); NULL when none was recorded.
    paused_until BIGINT NULL,
    -- Bumped by every pause that ends later than the one in force: slots carry the epoch they
    -- were booked in, and a later epoch cancels them.
    epoch BIGINT NOT NULL CHECK (epoch >= 0)
);
