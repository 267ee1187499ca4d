-- One vocabulary for the outbox (see docs/delivery.md): an outbox row is delivered by
-- "deliveries", and a delivered row may rightly leave nothing in Graph.
--
-- 1. `delivery_attempts` becomes `deliveries`: one row per delivery (one attempt to carry an
--    outbox row to Graph).
-- 2. A delivered row no longer needs a Graph id: a deleted partner's create that never reached
--    Graph, and a delete that found nothing to delete, are delivered with nothing in Graph.
--    Until now they carried the placeholder id 'not-in-graph'; it becomes NULL, and the CHECK
--    that demanded an id goes. SQLite cannot drop a CHECK, so the table is rebuilt.
-- 3. Delivery outcomes recorded as 'dead' are named for what happened: two objects of the name
--    ('duplicate_in_graph') or none to update ('not_found').
-- 4. Natural keys fold a final sigma like any other: 'ς' becomes 'σ' (NaturalKey), so a
--    `startswith` prefix agrees with the whole name. A database holding two partners whose names
--    differ only there now holds one name twice, and this migration stops on the UNIQUE
--    constraint: rename one of them with the previous release, then start again.
--
-- The rebuild keeps the foreign keys intact: the new tables are created beside the old ones,
-- filled, and the old ones dropped child first, so no cascade ever runs; renaming `outbox_new`
-- to `outbox` rewrites the reference `deliveries` holds.

CREATE TABLE outbox_new (
    -- Also the idempotency handle of the operation.
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    -- No cascade: a row whose partner is gone could not render its payload, so a partner with
    -- an outbox row cannot be deleted by accident; undoing a create deletes the row explicitly.
    partner_id TEXT NOT NULL REFERENCES partners (id),
    -- `create` (POST), `update` (PATCH) or `delete` (DELETE). A partner has exactly one `create`
    -- row; an update folds into it while it is `pending`, and a delete of a partner that never
    -- reached Graph removes it instead of adding a `delete` row.
    operation TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    -- What reconciliation matches Graph's list on, and what the claim orders rows by: the
    -- partner's name key when the row was written (for a `create` into which a rename folded,
    -- the new one).
    natural_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'delivered', 'unknown', 'dead')),
    -- Deliveries started so far, counted when a delivery starts (before the HTTP call).
    attempts INTEGER NOT NULL CHECK (attempts >= 0),
    -- Ticks; the dispatcher claims rows whose time has come.
    next_attempt_at INTEGER NOT NULL,
    -- Who holds the row (`request:<request-id>` or a dispatcher worker) and until when. A lapsed
    -- lease turns the row `unknown`, never `pending`.
    lease_owner TEXT NULL,
    lease_expires_at INTEGER NULL,
    -- What Graph said last: HTTP status and its `error.code`.
    last_status INTEGER NULL CHECK (last_status BETWEEN 100 AND 599),
    last_error_code TEXT NULL,
    last_client_request_id TEXT NULL,
    -- The id Graph assigned, once delivered; NULL on a delivered row when Graph rightly holds
    -- nothing (a deleted partner's create that never reached it, a delete with nothing to do).
    graph_id TEXT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- When the first delivery started: the give-up clock runs from here.
    first_attempt_at INTEGER NULL,
    -- Why the row was given up, for the operator who decides whether to re-queue it. Set exactly
    -- while the row is dead: re-queueing clears it.
    dead_reason TEXT NULL,
    -- A row is leased exactly while it is in flight, and a lease has both an owner and an end.
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((state = 'in_flight') = (lease_owner IS NOT NULL)),
    -- A dead row says why, and only a dead row has a reason.
    CHECK ((state = 'dead') = (dead_reason IS NOT NULL))
) STRICT;

INSERT INTO outbox_new (id, tenant_id, partner_id, operation, natural_key, state, attempts,
    next_attempt_at, lease_owner, lease_expires_at, last_status, last_error_code,
    last_client_request_id, graph_id, created_at, updated_at, first_attempt_at, dead_reason)
SELECT id, tenant_id, partner_id, operation, replace(natural_key, 'ς', 'σ'), state, attempts,
    next_attempt_at, lease_owner, lease_expires_at, last_status, last_error_code,
    last_client_request_id, NULLIF(graph_id, 'not-in-graph'), created_at, updated_at,
    first_attempt_at, dead_reason
FROM outbox;

-- One row per delivery of an outbox row, written when the delivery starts (so a crash mid-call
-- leaves evidence) and completed when it ends.
CREATE TABLE deliveries (
    -- The delivery log only means something next to its outbox row.
    outbox_id TEXT NOT NULL REFERENCES outbox_new (id) ON DELETE CASCADE,
    -- 1, 2, ...: equals `outbox.attempts` after the delivery started.
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    -- The `client-request-id` sent to Graph, for correlating with Microsoft's logs.
    client_request_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    -- NULL while the delivery runs, or forever when the process died during it.
    finished_at INTEGER NULL,
    http_status INTEGER NULL CHECK (http_status BETWEEN 100 AND 599),
    graph_error_code TEXT NULL,
    -- Graph's `request-id` response header.
    graph_request_id TEXT NULL,
    -- `DeliveryOutcome::as_str()`; unchecked because new outcomes must not need a table rebuild.
    outcome TEXT NULL,
    PRIMARY KEY (outbox_id, attempt)
) STRICT;

INSERT INTO deliveries (outbox_id, attempt, client_request_id, started_at, finished_at,
    http_status, graph_error_code, graph_request_id, outcome)
SELECT attempt.outbox_id, attempt.attempt, attempt.client_request_id, attempt.started_at,
    attempt.finished_at, attempt.http_status, attempt.graph_error_code,
    attempt.graph_request_id,
    CASE
        WHEN attempt.outcome <> 'dead' THEN attempt.outcome
        WHEN row.dead_reason LIKE 'duplicate in Graph%' THEN 'duplicate_in_graph'
        ELSE 'not_found'
    END
FROM delivery_attempts AS attempt JOIN outbox AS row ON row.id = attempt.outbox_id;

DROP TABLE delivery_attempts;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- The indexes of the old table went with it; the same ones again (see 0001 for their reasons).
CREATE INDEX outbox_tenant_state_next_attempt_at ON outbox (tenant_id, state, next_attempt_at);
CREATE INDEX outbox_tenant_natural_key_state_created_at
    ON outbox (tenant_id, natural_key, state, created_at);
CREATE INDEX outbox_state_created_at ON outbox (state, created_at);
CREATE INDEX outbox_partner_id_state_created_at ON outbox (partner_id, state, created_at);

UPDATE partners SET graph_id = NULL WHERE graph_id = 'not-in-graph';
UPDATE partners SET name_key = replace(name_key, 'ς', 'σ') WHERE instr(name_key, 'ς') > 0;
