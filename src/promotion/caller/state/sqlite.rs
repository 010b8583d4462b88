//! The caller's memory in its own SQLite file beside the outbox (`promotion-caller.db`),
//! synchronous=FULL: an incident is on disk before the first request for it leaves.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{DrillNotes, DrillRecord, Incident, NewIncident, OBSERVATION_TTL_MS};
use crate::outbox::LocalDb;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS epochs (
    target     TEXT PRIMARY KEY,
    last_epoch INTEGER NOT NULL
) WITHOUT ROWID;
-- An incident is open until a resolve for its target closes it.
CREATE TABLE IF NOT EXISTS incidents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    target        TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    epoch         INTEGER NOT NULL,
    -- requesting | promoted | failed | refused | verified
    state         TEXT    NOT NULL,
    -- The outbox delivery that sends its requests: (id, created_at), so that a
    -- re-created outbox whose ids start again cannot claim an old incident.
    delivery_id   INTEGER NOT NULL,
    delivery_created INTEGER NOT NULL DEFAULT 0,
    reason        TEXT    NOT NULL,
    firing_since  INTEGER NOT NULL,
    opened_at     INTEGER NOT NULL,
    finished_at   INTEGER,
    detail        TEXT,
    closed_at     INTEGER
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (target) WHERE closed_at IS NULL;
-- A monitor's report for the quorum; `firing` until its group resolves.
CREATE TABLE IF NOT EXISTS observations (
    target    TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    group_key TEXT    NOT NULL DEFAULT '',
    firing    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (target, value, at)
) WITHOUT ROWID;
-- Drills (state::drills): the runner's report and the caller's notes, JSON.
CREATE TABLE IF NOT EXISTS drills (
    id          TEXT    PRIMARY KEY,
    target      TEXT    NOT NULL,
    live        INTEGER NOT NULL,
    surprise    INTEGER NOT NULL,
    instance    TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    passed      INTEGER,
    report      TEXT    NOT NULL,
    notes       TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS drills_target ON drills (target, started_at);
-- When each target's next surprise drill is due.
CREATE TABLE IF NOT EXISTS drill_schedule (
    target TEXT    PRIMARY KEY,
    due_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The file beside the outbox, created when first needed.
pub(super) fn at(dir: &Path) -> LocalDb {
    LocalDb::at(dir.join("promotion-caller.db"), SCHEMA, "promotion state")
}

pub(super) fn last_epoch(c: &Connection, target: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT last_epoch FROM epochs WHERE target = ?1",
        [target],
        |r| r.get(0),
    )
    .optional()
}

/// Remembers an epoch the endpoint showed (never the one the caller asked for: a refused
/// request must not move the next incident's epoch); never goes back.
pub(super) fn saw_epoch(c: &Connection, target: &str, epoch: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO epochs (target, last_epoch) VALUES (?1, ?2)
         ON CONFLICT (target) DO UPDATE SET last_epoch = MAX(last_epoch, excluded.last_epoch)",
        params![target, epoch],
    )?;
    Ok(())
}

pub(super) fn open_incident(c: &Connection, target: &str) -> rusqlite::Result<Option<Incident>> {
    c.query_row(
        &format!("{SELECT} WHERE target = ?1 AND closed_at IS NULL ORDER BY id DESC LIMIT 1"),
        [target],
        incident,
    )
    .optional()
}

pub(super) fn last_incident(c: &Connection, target: &str) -> rusqlite::Result<Option<Incident>> {
    c.query_row(
        &format!("{SELECT} WHERE target = ?1 ORDER BY id DESC LIMIT 1"),
        [target],
        incident,
    )
    .optional()
}

/// When the last successful promotion of `target` finished, for the cooldown.
pub(super) fn last_promoted_at(c: &Connection, target: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT MAX(finished_at) FROM incidents WHERE target = ?1 AND state = 'promoted'",
        [target],
        |r| r.get(0),
    )
}

/// Opens an incident unless one is open for the target: then that one is returned
/// (two monitors' deliveries racing: one opens, the other joins). The bool says whether
/// this call opened it.
pub(super) fn open_or_join(
    c: &mut Connection,
    new: &NewIncident,
) -> rusqlite::Result<(Incident, bool)> {
    let tx = c.transaction()?;
    if let Some(open) = open_incident(&tx, &new.target)? {
        return Ok((open, false));
    }
    // The key the request carries (`PromoteRequest::new` takes the epoch the same way).
    let key = crate::domain::promotion::incident_key(&new.target, new.epoch.max(0) as u64);
    tx.execute(
        "INSERT INTO incidents (target, key, epoch, state, delivery_id, delivery_created, reason, firing_since, opened_at)
         VALUES (?1, ?2, ?3, 'requesting', ?4, ?8, ?5, ?6, ?7)",
        params![new.target, key, new.epoch, new.delivery_id, new.reason, new.firing_since, new.now, new.delivery_created],
    )?;
    let opened = open_incident(&tx, &new.target)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    tx.commit()?;
    Ok((opened, true))
}

/// The incident this delivery sends the requests of, open or closed.
pub(super) fn owned_by(
    c: &Connection,
    target: &str,
    delivery_id: i64,
    delivery_created: i64,
) -> rusqlite::Result<Option<Incident>> {
    c.query_row(
        &format!("{SELECT} WHERE target = ?1 AND delivery_id = ?2 AND delivery_created = ?3 ORDER BY id DESC LIMIT 1"),
        params![target, delivery_id, delivery_created],
        incident,
    )
    .optional()
}

/// Another delivery sends the incident's requests from now on (same key).
pub(super) fn take_over(
    c: &Connection,
    id: i64,
    delivery_id: i64,
    delivery_created: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE incidents SET delivery_id = ?2, delivery_created = ?3 WHERE id = ?1",
        params![id, delivery_id, delivery_created],
    )?;
    Ok(())
}

pub(super) fn finish(
    c: &Connection,
    id: i64,
    state: &str,
    detail: &str,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE incidents SET state = ?2, detail = ?3, finished_at = ?4 WHERE id = ?1 AND finished_at IS NULL",
        params![id, state, detail, now],
    )?;
    Ok(())
}

/// Closes this incident, if it is still open.
pub(super) fn close_incident(c: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE incidents SET closed_at = ?2 WHERE id = ?1 AND closed_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Records that `values` (monitors) reported the target firing at `at` in `group_key`,
/// and returns the distinct values that count for the quorum: those reported since
/// `since`, and those whose group is still firing (a monitor that reported a minute
/// before the window and has not resolved still sees the primary down).
pub(super) fn observe(
    c: &Connection,
    target: &str,
    values: &[String],
    group_key: &str,
    at: i64,
    since: i64,
) -> rusqlite::Result<Vec<String>> {
    for v in values {
        c.execute(
            "INSERT INTO observations (target, value, at, group_key, firing) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (target, value, at) DO UPDATE SET firing = 1, group_key = excluded.group_key",
            params![target, v, at, group_key],
        )?;
    }
    // Every target's (and every drill's scope's) old reports, not only this one's.
    c.execute(
        "DELETE FROM observations WHERE at < ?1",
        params![at - OBSERVATION_TTL_MS],
    )?;
    let mut stmt = c.prepare(
        "SELECT DISTINCT value FROM observations WHERE target = ?1 AND (at >= ?2 OR firing = 1) ORDER BY value",
    )?;
    let rows = stmt.query_map(params![target, since], |r| r.get(0))?;
    rows.collect()
}

/// A group resolved: its reports stop counting as still firing.
pub(super) fn resolved_group(
    c: &Connection,
    target: &str,
    group_key: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE observations SET firing = 0 WHERE target = ?1 AND group_key = ?2",
        params![target, group_key],
    )?;
    Ok(())
}

const SELECT: &str = "SELECT id, target, key, epoch, state, delivery_id, reason, firing_since, opened_at, finished_at, detail FROM incidents";

fn incident(r: &rusqlite::Row) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        target: r.get(1)?,
        key: r.get(2)?,
        epoch: r.get(3)?,
        state: r.get(4)?,
        delivery_id: r.get(5)?,
        reason: r.get(6)?,
        firing_since: r.get(7)?,
        opened_at: r.get(8)?,
        finished_at: r.get(9)?,
        detail: r.get(10)?,
    })
}

const DRILL: &str = "SELECT id, target, live, surprise, instance, started_at, finished_at, passed, report, notes FROM drills";

fn drill_row(r: &rusqlite::Row) -> rusqlite::Result<DrillRecord> {
    Ok(DrillRecord {
        id: r.get(0)?,
        target: r.get(1)?,
        live: r.get(2)?,
        surprise: r.get(3)?,
        instance: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        passed: r.get(7)?,
        report: r.get(8)?,
        notes: DrillNotes::from_json(&r.get::<_, String>(9)?),
    })
}

pub(super) fn drill_create(c: &Connection, d: &DrillRecord) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO drills (id, target, live, surprise, instance, started_at, report, notes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            d.id,
            d.target,
            d.live,
            d.surprise,
            d.instance,
            d.started_at,
            d.report,
            d.notes.to_json()
        ],
    )?;
    Ok(())
}

pub(super) fn drill(c: &Connection, id: &str) -> rusqlite::Result<Option<DrillRecord>> {
    c.query_row(&format!("{DRILL} WHERE id = ?1"), [id], drill_row)
        .optional()
}

pub(super) fn drills(
    c: &Connection,
    target: Option<&str>,
    limit: i64,
) -> rusqlite::Result<Vec<DrillRecord>> {
    let mut stmt = c.prepare(&format!(
        "{DRILL} WHERE ?1 IS NULL OR target = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![target, limit], drill_row)?;
    rows.collect()
}

pub(super) fn drill_note<T>(
    c: &mut Connection,
    id: &str,
    f: impl FnOnce(&mut DrillNotes) -> T,
) -> rusqlite::Result<Option<T>> {
    let tx = c.transaction()?;
    let Some(text) = tx
        .query_row("SELECT notes FROM drills WHERE id = ?1", [id], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
    else {
        return Ok(None);
    };
    let mut notes = DrillNotes::from_json(&text);
    let out = f(&mut notes);
    tx.execute(
        "UPDATE drills SET notes = ?2 WHERE id = ?1",
        params![id, notes.to_json()],
    )?;
    tx.commit()?;
    Ok(Some(out))
}

pub(super) fn drill_report(
    c: &Connection,
    id: &str,
    report: &str,
    passed: Option<bool>,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE drills SET report = ?2, passed = ?3,
             finished_at = CASE WHEN ?3 IS NULL THEN NULL ELSE ?4 END
         WHERE id = ?1",
        params![id, report, passed, now],
    )?;
    Ok(())
}

pub(super) fn drills_interrupted(
    c: &Connection,
    instance: &str,
    now: i64,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare(
        "UPDATE drills SET passed = 0, finished_at = ?2
         WHERE instance = ?1 AND finished_at IS NULL RETURNING id",
    )?;
    let rows = stmt.query_map(params![instance, now], |r| r.get(0))?;
    rows.collect()
}

pub(super) fn drill_due_at(c: &Connection, target: &str, first: i64) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO drill_schedule (target, due_at) VALUES (?1, ?2) ON CONFLICT (target) DO NOTHING",
        params![target, first],
    )?;
    c.query_row(
        "SELECT due_at FROM drill_schedule WHERE target = ?1",
        [target],
        |r| r.get(0),
    )
}

pub(super) fn drill_take(
    c: &Connection,
    target: &str,
    due: i64,
    next: i64,
) -> rusqlite::Result<bool> {
    let n = c.execute(
        "UPDATE drill_schedule SET due_at = ?3 WHERE target = ?1 AND due_at = ?2",
        params![target, due, next],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
