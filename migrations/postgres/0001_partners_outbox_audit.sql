-- Partners, their enrollment assignments, the delivery outbox, its deliveries and the audit log,
-- for PostgreSQL: the schema of migrations/sqlite/ as it stands after its last migration, in
-- PostgreSQL's types. The reasons for each column are given there; only what differs is said here.
--
-- * Identifiers and keys are TEXT with the "C" collation: comparisons, ORDER BY and the indexes
--   then run in code-point order, as SQLite's BINARY collation and Rust's `str` do, so that the
--   listing's keyset cursor, `startswith` ranges and the id tie-breaker agree in both stores.
-- * Instants are BIGINT ticks (100 ns since the Unix epoch), as in SQLite; flags are BOOLEAN.
-- * `seq` (an identity) stands for SQLite's rowid where insertion order breaks a tie.

CREATE TABLE partners (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tenant_id TEXT COLLATE "C" NOT NULL,
    display_name TEXT NOT NULL,
    -- NULL only on a tombstone whose delete Graph confirmed; UNIQUE lets any number of NULLs in.
    name_key TEXT COLLATE "C" NULL,
    partner_state TEXT NOT NULL CHECK (
        partner_state IN ('unknown', 'unavailable', 'enabled', 'terminated', 'rejected', 'unresponsive')
    ),
    partner_state_order BIGINT NOT NULL GENERATED ALWAYS AS (
        CASE partner_state
            WHEN 'unknown' THEN 0
            WHEN 'unavailable' THEN 1
            WHEN 'enabled' THEN 2
            WHEN 'terminated' THEN 3
            WHEN 'rejected' THEN 4
            WHEN 'unresponsive' THEN 5
        END
    ) STORED,
    last_heartbeat BIGINT NOT NULL CHECK (
        last_heartbeat BETWEEN -621355968000000000 AND 2534023007999999999
    ),
    mac_os_onboarded BOOLEAN NOT NULL,
    windows_onboarded BOOLEAN NOT NULL,
    android_onboarded BOOLEAN NOT NULL,
    ios_onboarded BOOLEAN NOT NULL,
    linux_onboarded BOOLEAN NOT NULL,
    graph_id TEXT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT NULL,
    -- The natural key; the adapter maps a violation of this constraint (by its name) to
    -- `StoreError::DuplicateDisplayName`.
    CONSTRAINT partners_natural_key UNIQUE (tenant_id, name_key),
    CHECK (name_key IS NOT NULL OR deleted_at IS NOT NULL)
);

CREATE INDEX partners_live_by_id ON partners (tenant_id, id) WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_name ON partners (tenant_id, name_key, id) WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_heartbeat ON partners (tenant_id, last_heartbeat, id)
    WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_state ON partners (tenant_id, partner_state_order, id)
    WHERE deleted_at IS NULL;
CREATE INDEX partners_graph_id ON partners (graph_id) WHERE graph_id IS NOT NULL;

CREATE TABLE partner_assignments (
    partner_id TEXT COLLATE "C" NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    platform TEXT NOT NULL CHECK (platform IN ('macOs', 'windows', 'android', 'ios', 'linux')),
    position BIGINT NOT NULL CHECK (position >= 0),
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
    group_id TEXT NULL,
    collection_id TEXT NULL,
    scope_tag_target_type TEXT NULL CHECK (
        scope_tag_target_type IN ('none', 'user', 'device', 'unknownFutureValue')
    ),
    entra_object_id TEXT NULL,
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
);

-- No payload column: the payload is rendered from the partner at delivery (see the SQLite
-- schema), so a change folds into a create that is still pending.
CREATE TABLE outbox (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    -- Insertion order, the tie-breaker of rows written at the same instant (SQLite's rowid).
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    tenant_id TEXT COLLATE "C" NOT NULL,
    partner_id TEXT COLLATE "C" NOT NULL REFERENCES partners (id),
    operation TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    natural_key TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'delivered', 'unknown', 'dead')),
    attempts BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    -- `<replica>/request:<request-id>` or `<replica>/dispatcher:<worker>`, and until when.
    lease_owner TEXT NULL,
    lease_expires_at BIGINT NULL,
    last_status BIGINT NULL CHECK (last_status BETWEEN 100 AND 599),
    last_error_code TEXT NULL,
    last_client_request_id TEXT NULL,
    graph_id TEXT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    first_attempt_at BIGINT NULL,
    dead_reason TEXT NULL,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((state = 'in_flight') = (lease_owner IS NOT NULL)),
    CHECK ((state = 'dead') = (dead_reason IS NOT NULL))
);

CREATE INDEX outbox_tenant_state_next_attempt_at ON outbox (tenant_id, state, next_attempt_at);
CREATE INDEX outbox_tenant_natural_key_state_created_at
    ON outbox (tenant_id, natural_key, state, created_at);
CREATE INDEX outbox_state_created_at ON outbox (state, created_at);
CREATE INDEX outbox_partner_id_state_created_at ON outbox (partner_id, state, created_at);

-- One delivery in flight per partner, across every replica: the claim never leases a row of a
-- partner that has one, and this index makes a second one impossible even if a claim were
-- wrong. A partner's create is its first row, so its inline delivery never meets another.
CREATE UNIQUE INDEX outbox_one_in_flight_per_partner ON outbox (partner_id)
    WHERE state = 'in_flight';

CREATE TABLE deliveries (
    outbox_id TEXT COLLATE "C" NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL CHECK (attempt >= 1),
    client_request_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NULL,
    http_status BIGINT NULL CHECK (http_status BETWEEN 100 AND 599),
    graph_error_code TEXT NULL,
    graph_request_id TEXT NULL,
    outcome TEXT NULL,
    PRIMARY KEY (outbox_id, attempt)
);

CREATE TABLE audit_log (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    -- Insertion order, the tie-breaker of entries written at the same instant.
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    partner_id TEXT COLLATE "C" NOT NULL,
    action TEXT NOT NULL,
    request_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    at BIGINT NOT NULL,
    detail TEXT NOT NULL
);

CREATE INDEX audit_log_partner_id_at ON audit_log (partner_id, at);
