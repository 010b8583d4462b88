//! The shared store's tables, created and migrated at start under a lock, so that
//! instances starting at once do not race. `amrelay_schema` holds the version; an
//! instance refuses a database whose version is newer than it knows.

use tokio_postgres::Client;

use crate::outbox::StoreError;

/// 1: notifications, dedup keys, deliveries with claim epochs, channel owners, jobs, and
/// the failover caller's epochs, incidents and observations.
/// 2: the heartbeats' sources (heartbeat::state).
/// 3: drills (the caller's, `promotion::caller::state::drills`) and their schedule.
pub(super) const SCHEMA_VERSION: i32 = 3;

/// Any number that no other application takes an advisory lock on: "amrelay" in ASCII.
const MIGRATION_LOCK: i64 = 0x0061_6d72_656c_6179;

/// Each version's statements, in order; `MIGRATIONS[i]` takes the schema to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE notifications (
    id          BIGSERIAL PRIMARY KEY,
    dedup_key   TEXT   NOT NULL,
    received_at BIGINT NOT NULL,            -- ms since the epoch
    format      INT    NOT NULL,
    payload     BYTEA  NOT NULL             -- outbox::stored, by format
);
CREATE INDEX notifications_received ON notifications (received_at);

-- The key of each notification accepted within the window. Its primary key is what
-- makes two instances that receive the same notification at once store it once.
CREATE TABLE dedup (
    key         TEXT   PRIMARY KEY,
    accepted_at BIGINT NOT NULL
);
CREATE INDEX dedup_accepted ON dedup (accepted_at);

-- As in the SQLite store, plus claim_epoch: the channel owner's epoch that stored or
-- claimed the row in flight. An outcome is recorded only under the same epoch, so an
-- instance that lost its channel cannot overwrite what the new owner does.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notifications (id),
    channel         TEXT   NOT NULL,
    group_key       TEXT   NOT NULL,
    state           TEXT   NOT NULL,
    attempts        INT    NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    enqueued_at     BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    fallback_of     BIGINT,
    last_error      TEXT,
    claim_epoch     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_group ON deliveries (channel, group_key, notification_id)
    WHERE state IN ('pending', 'inflight');
CREATE INDEX deliveries_done ON deliveries (updated_at)
    WHERE state IN ('delivered', 'failed_over', 'dead', 'cancelled');
CREATE INDEX deliveries_dead ON deliveries (id) WHERE state = 'dead';
CREATE INDEX deliveries_notification ON deliveries (notification_id);

-- Which instance delivers each channel, until when (the database's clock), and the
-- epoch that fences its claims. See docs/high-availability.md.
CREATE TABLE channel_owners (
    channel     TEXT        PRIMARY KEY,
    instance    TEXT        NOT NULL,
    epoch       BIGINT      NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);

-- Work one instance does for all (retention pruning): when it last ran.
CREATE TABLE jobs (
    name     TEXT   PRIMARY KEY,
    last_run BIGINT NOT NULL
);

-- Rewritten by each instance's readiness probe to prove the database takes writes.
CREATE TABLE probe (
    instance TEXT   PRIMARY KEY,
    at       BIGINT NOT NULL
);

-- The failover caller's memory (promotion::caller::state, which owns their SQL): the
-- SQLite caller's tables, shared by the callers of every instance.
CREATE TABLE caller_epochs (
    target     TEXT   PRIMARY KEY,
    last_epoch BIGINT NOT NULL
);
CREATE TABLE caller_incidents (
    id               BIGSERIAL PRIMARY KEY,
    target           TEXT   NOT NULL,
    key              TEXT   NOT NULL,
    epoch            BIGINT NOT NULL,
    state            TEXT   NOT NULL,
    delivery_id      BIGINT NOT NULL,
    delivery_created BIGINT NOT NULL DEFAULT 0,
    reason           TEXT   NOT NULL,
    firing_since     BIGINT NOT NULL,
    opened_at        BIGINT NOT NULL,
    finished_at      BIGINT,
    detail           TEXT,
    closed_at        BIGINT
);
CREATE UNIQUE INDEX caller_incidents_open ON caller_incidents (target) WHERE closed_at IS NULL;

-- Accepting a webhook, in one round trip (outbox::postgres::store::enqueue says what each
-- step is for). Returns one row per channel (delivery id, handed off), or one row with
-- a null id: 'duplicate', or 'full' with the undelivered count.
CREATE FUNCTION amrelay_enqueue(
    p_key TEXT, p_received BIGINT, p_window_start BIGINT, p_format INT, p_payload BYTEA,
    p_group TEXT, p_now BIGINT, p_open BIGINT, p_max BIGINT,
    p_channels TEXT[], p_not_before BIGINT[], p_cancel BOOLEAN[], p_epochs BIGINT[]
) RETURNS TABLE (outcome TEXT, pending BIGINT, delivery_id BIGINT, handed_off BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    was BIGINT;
    n BIGINT;
    open BIGINT := p_open;
    nid BIGINT;
    hand BOOLEAN;
    i INT;
BEGIN
    SELECT accepted_at INTO was FROM dedup WHERE key = p_key;
    INSERT INTO dedup (key, accepted_at) VALUES (p_key, p_received)
        ON CONFLICT (key) DO UPDATE SET accepted_at = EXCLUDED.accepted_at
        WHERE dedup.accepted_at <= p_window_start;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'duplicate'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BOOLEAN;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1634562663, hashtext(p_group));
    FOR i IN 1 .. coalesce(array_length(p_channels, 1), 0) LOOP
        IF p_cancel[i] THEN
            UPDATE deliveries SET state = 'cancelled',
                   last_error = 'cancelled: resolved before its first attempt', updated_at = p_now
             WHERE channel = p_channels[i] AND group_key = p_group AND state = 'pending'
               AND attempts = 0;
            GET DIAGNOSTICS n = ROW_COUNT;
            open := greatest(open - n, 0);
        END IF;
    END LOOP;
    IF open + coalesce(array_length(p_channels, 1), 0) > p_max THEN
        -- The cancels stay; the key goes (or gets its old time back): not accepted.
        IF was IS NULL THEN
            DELETE FROM dedup WHERE key = p_key;
        ELSE
            UPDATE dedup SET accepted_at = was WHERE key = p_key;
        END IF;
        RETURN QUERY SELECT 'full'::TEXT, open, NULL::BIGINT, NULL::BOOLEAN;
        RETURN;
    END IF;
    INSERT INTO notifications (dedup_key, received_at, format, payload)
        VALUES (p_key, p_received, p_format, p_payload) RETURNING id INTO nid;
    FOR i IN 1 .. coalesce(array_length(p_channels, 1), 0) LOOP
        hand := p_epochs[i] > 0 AND p_not_before[i] <= p_now
            AND EXISTS (SELECT 1 FROM channel_owners WHERE channel = p_channels[i]
                          AND epoch = p_epochs[i] AND lease_until > clock_timestamp() FOR SHARE)
            AND NOT EXISTS (SELECT 1 FROM deliveries WHERE channel = p_channels[i]
                              AND group_key = p_group AND state IN ('pending', 'inflight'));
        INSERT INTO deliveries (notification_id, channel, group_key, state, attempts,
                                next_attempt_at, created_at, enqueued_at, updated_at, claim_epoch)
        VALUES (nid, p_channels[i], p_group, CASE WHEN hand THEN 'inflight' ELSE 'pending' END,
                CASE WHEN hand THEN 1 ELSE 0 END, greatest(p_not_before[i], p_now),
                p_received, p_now, p_now, CASE WHEN hand THEN p_epochs[i] ELSE 0 END)
        RETURNING deliveries.id INTO delivery_id;
        outcome := 'accepted';
        pending := NULL;
        handed_off := hand;
        RETURN NEXT;
    END LOOP;
END $$;
CREATE TABLE caller_observations (
    target    TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    at        BIGINT  NOT NULL,
    group_key TEXT    NOT NULL DEFAULT '',
    firing    BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (target, value, at)
);
",
    // 2: the dead-man's switch (heartbeat::state, which owns the SQL): one row per
    // heartbeat and source; times in ms since the epoch.
    "
CREATE TABLE heartbeat_sources (
    name           TEXT   NOT NULL,
    source         TEXT   NOT NULL,
    last_seen      BIGINT,                  -- NULL: configured, never seen
    since          BIGINT NOT NULL,         -- first configured, or first seen
    missing_since  BIGINT,                  -- set while declared missing
    missing_unsent BIGINT,                  -- a declared silence not told yet
    resolve_unsent BIGINT,                  -- an ended silence whose resolve is not told yet
    PRIMARY KEY (name, source)
);
",
    // 3: drills and their surprise schedule (promotion::caller::state, which owns the SQL).
    "
CREATE TABLE caller_drills (
    id          TEXT    PRIMARY KEY,
    target      TEXT    NOT NULL,
    live        BOOLEAN NOT NULL,
    surprise    BOOLEAN NOT NULL,
    instance    TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT,
    passed      BOOLEAN,
    report      TEXT    NOT NULL,
    notes       TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX caller_drills_target ON caller_drills (target, started_at);
CREATE TABLE caller_drill_schedule (
    target TEXT   PRIMARY KEY,
    due_at BIGINT NOT NULL
);
",
];

/// Creates or migrates the schema; Err for a schema newer than this binary's.
pub(super) async fn migrate(client: &mut Client) -> Result<i32, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS amrelay_schema (
             id      INT PRIMARY KEY CHECK (id = 1),
             version INT NOT NULL
         )",
    )
    .await?;
    let version: i32 = tx
        .query_opt("SELECT version FROM amrelay_schema WHERE id = 1", &[])
        .await?
        .map_or(0, |r| r.get(0));
    if version > SCHEMA_VERSION {
        return Err(StoreError::Refused(format!(
            "the database's schema version {version} is newer than this binary's {SCHEMA_VERSION}: upgrade amrelay"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    tx.execute(
        "INSERT INTO amrelay_schema (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
        &[&SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(SCHEMA_VERSION)
}
