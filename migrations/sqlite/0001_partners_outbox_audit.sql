-- Partners, their enrollment assignments, the delivery outbox, its attempt log and the audit log.
--
-- Conventions for every table below:
-- * Tables are STRICT: SQLite then refuses a value of the wrong storage class (a TEXT in an
--   INTEGER column, say) instead of silently keeping it, so a bug in a bind cannot leave a row
--   the adapter can no longer read.
-- * Identifiers (partner, tenant, outbox, audit, client-request ids) are TEXT in the lowercase
--   hyphenated GUID form, the form Graph and our logs use, so an operator can grep for them.
-- * Instants are INTEGER 100 ns ticks since the Unix epoch (`Timestamp::unix_ticks`), negative
--   before 1970. Graph's `Edm.DateTimeOffset` carries seven fractional digits, and an integer keeps
--   them exactly, where an ISO text column would invite lossy re-formatting and a REAL would
--   round. Ticks also compare and index as plain numbers (the dispatcher's `next_attempt_at <= ?`).
-- * Booleans are INTEGER 0/1 with a CHECK, SQLite having no boolean type.
-- * CHECK constraints mirror the domain's closed sets and pairings where that is cheap. They are
--   a second line of defence behind the Rust types, not the validation itself. Open-ended sets
--   that will grow (audit actions, attempt outcome labels) are left unchecked, because SQLite
--   cannot alter a CHECK: adding a value would mean rebuilding an ever-growing table.

-- One row per partner: the `complianceManagementPartner` aggregate minus its assignments.
CREATE TABLE partners (
    id TEXT PRIMARY KEY NOT NULL,
    -- The Entra ID tenant the partner is provisioned into; names are unique per tenant.
    tenant_id TEXT NOT NULL,
    -- The display name exactly as accepted (already trimmed by the domain).
    display_name TEXT NOT NULL,
    -- `DisplayName::natural_key()`: trimmed and lower-cased by Rust, not by SQL, because SQLite's
    -- `lower()` and `NOCASE` fold ASCII only and would let `ÉCOLE` and `école` both in.
    -- NULL only on a tombstone: a deleted partner keeps its name reserved until Graph confirms
    -- the delete, then releases it here (UNIQUE lets any number of NULLs in), while the row stays
    -- for the history of its outbox rows and audit entries. Listings filter and sort
    -- displayName through this column, so they are case-insensitive like the uniqueness rule.
    name_key TEXT NULL,
    -- Graph's `deviceManagementPartnerTenantState`, a closed set of six.
    partner_state TEXT NOT NULL CHECK (
        partner_state IN ('unknown', 'unavailable', 'enabled', 'terminated', 'rejected', 'unresponsive')
    ),
    -- The state's place in the enum's declared order, which is how `$filter` compares and
    -- `$orderby` sorts `partnerState` (Graph's enum members are numbered 0 to 5 in this order).
    -- Derived, so it can never disagree with `partner_state`; VIRTUAL, so it costs no space in the
    -- table, only in the index below that sorts by it.
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
    -- One flag per platform. Five columns rather than a child table: the set of platforms is
    -- fixed by the resource, and every read needs all five.
    mac_os_onboarded INTEGER NOT NULL CHECK (mac_os_onboarded IN (0, 1)),
    windows_onboarded INTEGER NOT NULL CHECK (windows_onboarded IN (0, 1)),
    android_onboarded INTEGER NOT NULL CHECK (android_onboarded IN (0, 1)),
    ios_onboarded INTEGER NOT NULL CHECK (ios_onboarded IN (0, 1)),
    linux_onboarded INTEGER NOT NULL CHECK (linux_onboarded IN (0, 1)),
    -- The id Graph assigned, once a delivery succeeded; NULL until then.
    graph_id TEXT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- Ticks; set when a caller deletes the partner. From then on it is gone for readers (get,
    -- list, count, update, delete answer as if it did not exist), but the row stays: its
    -- `delete` outbox row still has to reach Graph and renders from it.
    deleted_at INTEGER NULL,
    -- The natural key. The adapter maps a violation of this constraint to
    -- `StoreError::DuplicateDisplayName`; the index it creates also serves lookups by name.
    UNIQUE (tenant_id, name_key),
    -- Only a deleted partner may have released its name.
    CHECK (name_key IS NOT NULL OR deleted_at IS NOT NULL)
) STRICT;

-- The listing's indexes, one per sort order `$orderby` offers, each ending in `id`, the final
-- tie-breaker of every order. With them a page is an index range scan that starts at the keyset
-- cursor and stops after `$top + 1` entries, so it costs the same at any depth, and no order
-- needs a sort of the whole tenant.
--
-- They are partial (`WHERE deleted_at IS NULL`): every listing asks for exactly that, so the
-- planner can use them, and tombstones, which accumulate forever, never enter them. A first page
-- ordered by name would otherwise walk past every released (NULL) name before the first live one.
CREATE INDEX partners_live_by_id ON partners (tenant_id, id) WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_name ON partners (tenant_id, name_key, id) WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_heartbeat ON partners (tenant_id, last_heartbeat, id)
    WHERE deleted_at IS NULL;
CREATE INDEX partners_live_by_state ON partners (tenant_id, partner_state_order, id)
    WHERE deleted_at IS NULL;

-- Enrollment assignments: one row per assignment, in the order the caller gave them.
CREATE TABLE partner_assignments (
    -- The assignments belong to the partner and die with it.
    partner_id TEXT NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    -- `Platform::property_prefix()`.
    platform TEXT NOT NULL CHECK (platform IN ('macOs', 'windows', 'android', 'ios', 'linux')),
    -- Zero-based place within the platform's list: the order is part of the resource.
    position INTEGER NOT NULL CHECK (position >= 0),
    -- Graph's target subtype name (`TargetKind::type_name()`), a closed set of seven.
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
    -- The subtype-specific fields, one nullable column each (single-table inheritance): seven
    -- subtypes share four fields, which is simpler to read back than seven child tables.
    group_id TEXT NULL,
    collection_id TEXT NULL,
    scope_tag_target_type TEXT NULL CHECK (
        scope_tag_target_type IN ('none', 'user', 'device', 'unknownFutureValue')
    ),
    entra_object_id TEXT NULL,
    -- Also the index for "the assignments of a partner" and for the cascading delete.
    PRIMARY KEY (partner_id, platform, position),
    -- `none` carries no filter id; `include` and `exclude` need one (`AssignmentFilter`).
    CHECK ((filter_type = 'none') = (filter_id IS NULL)),
    -- Each subtype has exactly its own fields set (`TargetKind`).
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
) STRICT;

-- The transactional outbox (graph-client-behaviour §3.1): one row per Graph operation owed.
--
-- There is deliberately NO payload column. The payload is rendered from the partner row at
-- delivery time, so a later update of the partner folds into a create that is still pending:
-- Graph then receives the current partner in one POST, instead of a stale snapshot followed by
-- a PATCH. It also keeps one copy of the truth, the partner row.
CREATE TABLE outbox (
    -- Also the idempotency handle of the operation.
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    -- No cascade: a row whose partner is gone could not render its payload, so a partner with
    -- an outbox row cannot be deleted by accident; undoing a create deletes the row explicitly.
    partner_id TEXT NOT NULL REFERENCES partners (id),
    -- `create` (POST), `update` (PATCH) or `delete` (DELETE). A partner has exactly one `create`
    -- row; an update folds into it while it is `pending` or `unknown`, and a delete of a partner
    -- that never reached Graph removes it instead of adding a `delete` row.
    operation TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    -- What reconciliation matches Graph's list on, and what the claim orders rows by: the
    -- partner's name key when the row was written (for a `create` into which a rename folded, the
    -- new one).
    natural_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'delivered', 'unknown', 'dead')),
    -- Attempts started so far, counted when an attempt starts (before the HTTP call).
    attempts INTEGER NOT NULL CHECK (attempts >= 0),
    -- Ticks; the dispatcher claims rows whose time has come.
    next_attempt_at INTEGER NOT NULL,
    -- Who holds the row (`request:<request-id>` or a dispatcher) and until when. A lapsed lease
    -- turns the row `unknown`, never `pending`.
    lease_owner TEXT NULL,
    lease_expires_at INTEGER NULL,
    -- What Graph said last: HTTP status and its `error.code`.
    last_status INTEGER NULL CHECK (last_status BETWEEN 100 AND 599),
    last_error_code TEXT NULL,
    last_client_request_id TEXT NULL,
    -- The id Graph assigned, once delivered.
    graph_id TEXT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- When the first attempt started: the 24 h give-up clock runs from here.
    first_attempt_at INTEGER NULL,
    -- Why the row was given up (Graph's refusal, "duplicate in Graph", attempts exhausted), for
    -- the operator who decides whether to re-queue it. Set exactly while the row is dead:
    -- re-queueing clears it.
    dead_reason TEXT NULL,
    -- A row is leased exactly while it is in flight, and a lease has both an owner and an end.
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((state = 'in_flight') = (lease_owner IS NOT NULL)),
    -- A delivered row knows Graph's id.
    CHECK (state <> 'delivered' OR graph_id IS NOT NULL),
    -- A dead row says why, and only a dead row has a reason.
    CHECK ((state = 'dead') = (dead_reason IS NOT NULL))
) STRICT;

-- The dispatcher's claim, which runs per tenant: `WHERE tenant_id = ? AND state IN ('pending',
-- 'unknown') AND next_attempt_at <= ? ORDER BY next_attempt_at`. The outbox keeps delivered
-- rows forever, so without the state in the index every claim would walk all of them.
CREATE INDEX outbox_tenant_state_next_attempt_at ON outbox (tenant_id, state, next_attempt_at);

-- The claim's "one natural key's rows run in order": does this key have a row in flight, or a
-- live (`pending`, `unknown`, `in_flight`) row older than the candidate? Natural keys are unique
-- per tenant only, so the tenant leads; `created_at` (and the rowid every index carries) lets the
-- probe answer from the index alone.
CREATE INDEX outbox_tenant_natural_key_state_created_at
    ON outbox (tenant_id, natural_key, state, created_at);

-- Operators' views and lease recovery, across tenants: the rows in one state, oldest first
-- (`list_rows`), the count per state (answered from the index alone), and the `in_flight` rows
-- whose lease lapsed (few: at most one batch per dispatcher plus the inline requests).
CREATE INDEX outbox_state_created_at ON outbox (state, created_at);

-- The same question per partner (its rows run in order too, whatever names they carry), answered
-- from the index alone; also the rows of one partner for an update or delete, and its latest row
-- (its sync state: few rows per partner, sorted in memory). Deleting a partner checks the foreign
-- key above through this index too; without it that check would scan the whole outbox.
CREATE INDEX outbox_partner_id_state_created_at ON outbox (partner_id, state, created_at);

-- One row per attempt of an outbox row, written when the attempt starts (so a crash mid-call
-- leaves evidence) and completed when it ends.
CREATE TABLE delivery_attempts (
    -- The attempt log only means something next to its outbox row.
    outbox_id TEXT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    -- 1, 2, ...: equals `outbox.attempts` after the attempt started.
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    -- The `client-request-id` sent to Graph, for correlating with Microsoft's logs.
    client_request_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    -- NULL while the attempt runs, or forever when the process died during it.
    finished_at INTEGER NULL,
    http_status INTEGER NULL CHECK (http_status BETWEEN 100 AND 599),
    graph_error_code TEXT NULL,
    -- Graph's `request-id` response header.
    graph_request_id TEXT NULL,
    -- A short label for operators (`created`, `unknown`, `deadline_passed`, ...); unchecked
    -- because new labels must not need a table rebuild.
    outcome TEXT NULL,
    PRIMARY KEY (outbox_id, attempt)
) STRICT;

-- Who did what to which partner, and when.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    -- NO foreign key: entries outlive the partners they name (an undone create keeps both its
    -- `created` and its `create_rejected_by_graph` entry).
    partner_id TEXT NOT NULL,
    -- `AuditAction::as_str()`; unchecked because the set grows with every new use case.
    action TEXT NOT NULL,
    -- Our `request-id` of the HTTP request that caused the entry.
    request_id TEXT NOT NULL,
    -- Who caused it: `app:<tenant>/<object id>` or `user:<tenant>/<object id>`, from the
    -- verified bearer token; never a name or an e-mail address.
    caller TEXT NOT NULL,
    at INTEGER NOT NULL,
    detail TEXT NOT NULL
) STRICT;

-- "The history of a partner", in order.
CREATE INDEX audit_log_partner_id_at ON audit_log (partner_id, at);
