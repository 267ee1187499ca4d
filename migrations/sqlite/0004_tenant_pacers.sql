-- The tenant's Graph pacing state, kept so that a process started after a crash honours a
-- Retry-After its predecessor met (`docs/delivery.md`, "Pacing"). One row per tenant, the four
-- values of the pacer port's state. The process paces from memory; it writes this row only when
-- it records a pause (a 429), and reads it once, when it starts.
--
-- Instants are INTEGER ticks (100 ns since the Unix epoch), as everywhere in this schema.

CREATE TABLE tenant_pacers (
    tenant_id TEXT PRIMARY KEY NOT NULL,
    -- The earliest start of the next write slot, and of the next read slot, when the row was
    -- written.
    next_write_at INTEGER NOT NULL,
    next_read_at INTEGER NOT NULL,
    -- No request before this instant (set by a 429's Retry-After); NULL when none was recorded.
    paused_until INTEGER NULL,
    -- Bumped by every pause that ends later than the one in force. A write never replaces a row
    -- of a later epoch, so two pauses recorded at once keep the later one.
    epoch INTEGER NOT NULL CHECK (epoch >= 0)
) WITHOUT ROWID;
