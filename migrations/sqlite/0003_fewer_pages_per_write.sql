-- Fewer b-trees per write (see docs/benchmarks.md for the pages and fsyncs per create before and
-- after). Every index and every table with a separate primary-key index is one more b-tree a
-- write descends and dirties, and each dirtied page is written to the WAL at the commit and again
-- to the database file at the checkpoint. A create used to touch 18 b-trees in its first
-- transaction and 7 in its second; after this migration it touches 14 and 5, and none of the
-- indexes it changes grows with the history that delivered rows accumulate.
--
-- 1. `partners`, `partner_assignments` and `deliveries` become WITHOUT ROWID tables: each was a
--    rowid table plus a separate index for its primary key, and is now one b-tree ordered by that
--    key. None of them is ever addressed by rowid. The secondary indexes of `partners` then carry
--    the partner id instead of a rowid, which they held as their last column already.
-- 2. The natural-key uniqueness of `partners` becomes the named index `partners_by_name`. In a
--    WITHOUT ROWID table it holds `(tenant_id, name_key, id)`: exactly the columns of the partial
--    listing index `partners_live_by_name`, which goes. Listings by name read it from the first
--    non-NULL key, so released names (NULL) are never walked, and skip the few deleted partners
--    whose name is still reserved.
-- 3. The outbox's claim indexes hold only what the claim asks about:
--    * `outbox_tenant_state_next_attempt_at` has only the `pending` and `unknown` rows, the ones
--      a claim selects. A create's row is born `in_flight` and usually ends `delivered`, so it
--      never enters this index at all.
--    * `outbox_tenant_natural_key_state_created_at` has only the live rows (`pending`,
--      `unknown`, `in_flight`), the ones the "oldest live row of its name" probe looks at;
--      delivered and dead rows leave it, so it stays as small as the queue.
--    * `outbox_partner_id_state_created_at` becomes `outbox_partner_id_created_at`, columns that
--      never change, so a state change no longer moves an entry in it. The claim's per-partner
--      probe reads the state of the partner's few rows from the table.
--    `outbox_state_created_at` stays as it was: operators list and count by state, and lease
--    recovery finds the rows in flight, across every state.
--
-- The tables are rebuilt as in 0002: the new ones are created beside the old ones (referring to
-- each other's new names), filled, the old ones dropped child first so no cascade ever runs, and
-- the new ones renamed, which rewrites the references they hold. `outbox` is rebuilt only because
-- it refers to `partners`; its rows keep their rowids, which order rows written at the same
-- instant.

CREATE TABLE partners_new (
    id TEXT PRIMARY KEY NOT NULL,
    -- The Entra ID tenant the partner is provisioned into; names are unique per tenant.
    tenant_id TEXT NOT NULL,
    -- The display name exactly as accepted (already trimmed by the domain).
    display_name TEXT NOT NULL,
    -- `DisplayName::natural_key()`, folded by Rust (see 0001); unique per tenant through
    -- `partners_by_name`. NULL only on a tombstone whose delete Graph confirmed: the name is
    -- released, and the unique index lets any number of NULLs in.
    name_key TEXT NULL,
    -- Graph's `deviceManagementPartnerTenantState`, a closed set of six.
    partner_state TEXT NOT NULL CHECK (
        partner_state IN ('unknown', 'unavailable', 'enabled', 'terminated', 'rejected', 'unresponsive')
    ),
    -- The state's place in the enum's declared order (see 0001); costs space only in the index
    -- that sorts by it.
    partner_state_order INTEGER NOT NULL GENERATED ALWAYS AS (
        CASE partner_state
            WHEN 'unknown' THEN 0
            WHEN 'unavailable' THEN 1
            WHEN 'enabled' THEN 2
            WHEN 'terminated' THEN 3
            WHEN 'rejected' THEN 4
            WHEN 'unresponsive' THEN 5
        END
    ) VIRTUAL,
    -- Ticks; Timestamp::MIN (0001-01-01) means "never". Bounds are Timestamp::MIN and MAX.
    last_heartbeat INTEGER NOT NULL CHECK (
        last_heartbeat BETWEEN -621355968000000000 AND 2534023007999999999
    ),
    mac_os_onboarded INTEGER NOT NULL CHECK (mac_os_onboarded IN (0, 1)),
    windows_onboarded INTEGER NOT NULL CHECK (windows_onboarded IN (0, 1)),
    android_onboarded INTEGER NOT NULL CHECK (android_onboarded IN (0, 1)),
    ios_onboarded INTEGER NOT NULL CHECK (ios_onboarded IN (0, 1)),
    linux_onboarded INTEGER NOT NULL CHECK (linux_onboarded IN (0, 1)),
    -- The id Graph assigned, once a delivery succeeded; NULL until then, and when Graph rightly
    -- holds nothing.
    graph_id TEXT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- Ticks; set when a caller deletes the partner (see 0001).
    deleted_at INTEGER NULL,
    -- Only a deleted partner may have released its name.
    CHECK (name_key IS NOT NULL OR deleted_at IS NOT NULL)
) STRICT, WITHOUT ROWID;

INSERT INTO partners_new (id, tenant_id, display_name, name_key, partner_state, last_heartbeat,
    mac_os_onboarded, windows_onboarded, android_onboarded, ios_onboarded, linux_onboarded,
    graph_id, created_at, updated_at, deleted_at)
SELECT id, tenant_id, display_name, name_key, partner_state, last_heartbeat,
    mac_os_onboarded, windows_onboarded, android_onboarded, ios_onboarded, linux_onboarded,
    graph_id, created_at, updated_at, deleted_at
FROM partners;

CREATE TABLE partner_assignments_new (
    -- The assignments belong to the partner and die with it.
    partner_id TEXT NOT NULL REFERENCES partners_new (id) ON DELETE CASCADE,
    platform TEXT NOT NULL CHECK (platform IN ('macOs', 'windows', 'android', 'ios', 'linux')),
    -- Zero-based place within the platform's list: the order is part of the resource.
    position INTEGER NOT NULL CHECK (position >= 0),
    target_type TEXT NOT NULL CHECK (
        target_type IN (
            'allDevicesAssignmentTarget',
            'allLicensedUsersAssignmentTarget',
            'configurationManagerCollectionAssignmentTarget',
            'groupAssignmentTarget',
            'exclusionGroupAssignmentTarget',
            'scopeTagGroupAssignmentTarget',
            'androidFotaDeploymentAssignmentTarget'
        )
    ),
    filter_type TEXT NOT NULL CHECK (filter_type IN ('none', 'include', 'exclude')),
    filter_id TEXT NULL,
    -- The subtype-specific fields (single-table inheritance, see 0001).
    group_id TEXT NULL,
    collection_id TEXT NULL,
    scope_tag_target_type TEXT NULL CHECK (
        scope_tag_target_type IN ('none', 'user', 'device', 'unknownFutureValue')
    ),
    entra_object_id TEXT NULL,
    -- The table's order: a partner's assignments are one range of it, for reads and for the
    -- cascading delete.
    PRIMARY KEY (partner_id, platform, position),
    CHECK ((filter_type = 'none') = (filter_id IS NULL)),
    CHECK (
        (
            target_type IN ('allDevicesAssignmentTarget', 'allLicensedUsersAssignmentTarget')
            AND group_id IS NULL AND collection_id IS NULL
            AND scope_tag_target_type IS NULL AND entra_object_id IS NULL
        )
        OR (
            target_type = 'configurationManagerCollectionAssignmentTarget'
            AND collection_id IS NOT NULL AND group_id IS NULL
            AND scope_tag_target_type IS NULL AND entra_object_id IS NULL
        )
        OR (
            target_type IN (
                'groupAssignmentTarget',
                'exclusionGroupAssignmentTarget',
                'androidFotaDeploymentAssignmentTarget'
            )
            AND group_id IS NOT NULL AND collection_id IS NULL
            AND scope_tag_target_type IS NULL AND entra_object_id IS NULL
        )
        OR (
            target_type = 'scopeTagGroupAssignmentTarget'
            AND scope_tag_target_type IS NOT NULL AND entra_object_id IS NOT NULL
            AND group_id IS NULL AND collection_id IS NULL
        )
    )
) STRICT, WITHOUT ROWID;

INSERT INTO partner_assignments_new (partner_id, platform, position, target_type, filter_type,
    filter_id, group_id, collection_id, scope_tag_target_type, entra_object_id)
SELECT partner_id, platform, position, target_type, filter_type, filter_id, group_id,
    collection_id, scope_tag_target_type, entra_object_id
FROM partner_assignments;

CREATE TABLE outbox_new (
    -- Also the idempotency handle of the operation.
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    -- No cascade (see 0001): a partner with an outbox row cannot be deleted by accident.
    partner_id TEXT NOT NULL REFERENCES partners_new (id),
    operation TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    -- What reconciliation matches Graph's list on, and what the claim orders rows by.
    natural_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'delivered', 'unknown', 'dead')),
    -- Deliveries started so far, counted when a delivery starts (before the HTTP call).
    attempts INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    -- Who holds the row and until when. A lapsed lease turns the row `unknown`, never `pending`.
    lease_owner TEXT NULL,
    lease_expires_at INTEGER NULL,
    last_status INTEGER NULL CHECK (last_status BETWEEN 100 AND 599),
    last_error_code TEXT NULL,
    last_client_request_id TEXT NULL,
    -- The id Graph assigned, once delivered; NULL when Graph rightly holds nothing (see 0002).
    graph_id TEXT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    first_attempt_at INTEGER NULL,
    dead_reason TEXT NULL,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((state = 'in_flight') = (lease_owner IS NOT NULL)),
    CHECK ((state = 'dead') = (dead_reason IS NOT NULL))
) STRICT;

-- The rowid is copied: it is the insertion order that breaks ties between rows written at the
-- same instant.
INSERT INTO outbox_new (rowid, id, tenant_id, partner_id, operation, natural_key, state,
    attempts, next_attempt_at, lease_owner, lease_expires_at, last_status, last_error_code,
    last_client_request_id, graph_id, created_at, updated_at, first_attempt_at, dead_reason)
SELECT rowid, id, tenant_id, partner_id, operation, natural_key, state, attempts,
    next_attempt_at, lease_owner, lease_expires_at, last_status, last_error_code,
    last_client_request_id, graph_id, created_at, updated_at, first_attempt_at, dead_reason
FROM outbox;

CREATE TABLE deliveries_new (
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
    -- The table's order: a row's deliveries are one range of it, the latest at its end.
    PRIMARY KEY (outbox_id, attempt)
) STRICT, WITHOUT ROWID;

INSERT INTO deliveries_new (outbox_id, attempt, client_request_id, started_at, finished_at,
    http_status, graph_error_code, graph_request_id, outcome)
SELECT outbox_id, attempt, client_request_id, started_at, finished_at, http_status,
    graph_error_code, graph_request_id, outcome
FROM deliveries;

DROP TABLE deliveries;
DROP TABLE partner_assignments;
DROP TABLE outbox;
DROP TABLE partners;
ALTER TABLE partners_new RENAME TO partners;
ALTER TABLE partner_assignments_new RENAME TO partner_assignments;
ALTER TABLE outbox_new RENAME TO outbox;
ALTER TABLE deliveries_new RENAME TO deliveries;

-- The natural key (see 2. above). The adapter maps a violation to
-- `StoreError::DuplicateDisplayName`.
CREATE UNIQUE INDEX partners_by_name ON partners (tenant_id, name_key);

-- The listing's other orders, as in 0001: partial (`WHERE deleted_at IS NULL`), each ending in
-- `id`, the final tie-breaker, so a keyset page is a range scan of one of them.
CREATE INDEX partners_live_by_id ON partners (tenant_id, id) WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_heartbeat ON partners (tenant_id, last_heartbeat, id)
    WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_state ON partners (tenant_id, partner_state_order, id)
    WHERE deleted_at IS NULL;

-- The claim's scan: `WHERE tenant_id = ? AND state IN ('pending', 'unknown') AND
-- next_attempt_at <= ? ORDER BY next_attempt_at`. The condition is written exactly as the claim
-- writes it, which is how SQLite knows the partial index serves the query.
CREATE INDEX outbox_tenant_state_next_attempt_at ON outbox (tenant_id, state, next_attempt_at)
    WHERE state IN ('pending', 'unknown');

-- The claim's "is an older live row of this natural key ahead?", answered from the index alone.
CREATE INDEX outbox_tenant_natural_key_state_created_at
    ON outbox (tenant_id, natural_key, state, created_at)
    WHERE state IN ('pending', 'unknown', 'in_flight');

-- Operators' views and lease recovery, across tenants (see 0001).
CREATE INDEX outbox_state_created_at ON outbox (state, created_at);

-- A partner's rows in the order they were written: its latest row (sync state), its history,
-- whether all of them are pending (a delete), the claim's per-partner probe, and the foreign key
-- check when a partner is deleted.
CREATE INDEX outbox_partner_id_created_at ON outbox (partner_id, created_at);
