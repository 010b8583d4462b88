//! The caller's durable memory, per target: the last epoch it saw, its incidents, and the
//! monitors it heard from (for the quorum). With the SQLite store it is a file of its own
//! beside the outbox; with a shared store it lives in the same database, so that callers
//! on several instances open one incident and send one key (the endpoint's epoch fencing
//! stays the last line of defence).

mod drills;
mod postgres;
mod sqlite;

pub(crate) use drills::{DrillNotes, DrillRecord, Note};

use std::path::Path;

use crate::outbox::Outbox;

pub(crate) type Result<T> = std::result::Result<T, String>;

/// A report older than this is forgotten, even if its group never resolved.
const OBSERVATION_TTL_MS: i64 = 3_600_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incident {
    pub id: i64,
    pub target: String,
    pub key: String,
    pub epoch: i64,
    pub state: String,
    pub delivery_id: i64,
    pub reason: String,
    pub firing_since: i64,
    pub opened_at: i64,
    pub finished_at: Option<i64>,
    pub detail: Option<String>,
}

pub(crate) struct NewIncident {
    pub target: String,
    pub epoch: i64,
    pub delivery_id: i64,
    pub delivery_created: i64,
    pub reason: String,
    pub firing_since: i64,
    pub now: i64,
}

/// What `amrelay status` shows of a target.
pub(crate) struct TargetStatus {
    pub last_epoch: Option<i64>,
    pub open: Option<Incident>,
    pub last: Option<Incident>,
}

/// Shared by every promotion channel of one process (and by the admin API).
#[derive(Clone)]
pub(crate) struct CallerState(Backend);

#[derive(Clone)]
enum Backend {
    Sqlite(crate::outbox::LocalDb),
    Postgres(postgres::PgState),
}

impl CallerState {
    /// Beside the outbox: in its database when it is shared, else in a SQLite file under
    /// `dir`, opened when first needed.
    pub(crate) fn beside(outbox: &Outbox, dir: &Path) -> Self {
        match outbox.database() {
            Some(pool) => CallerState(Backend::Postgres(postgres::PgState::new(pool))),
            None => CallerState(Backend::Sqlite(sqlite::at(dir))),
        }
    }

    /// Opens the state now, so that start-up fails on one it cannot use.
    pub(crate) fn open_now(&self) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => s.open_now(),
            // The database's schema was checked when the outbox opened.
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// The incident this delivery sends the requests of, open or closed.
    pub(crate) async fn owned_by(
        &self,
        target: &str,
        delivery_id: i64,
        delivery_created: i64,
    ) -> Result<Option<Incident>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| sqlite::owned_by(c, &t, delivery_id, delivery_created))
                    .await
            }
            Backend::Postgres(p) => p.owned_by(target, delivery_id, delivery_created).await,
        }
    }

    pub(crate) async fn open_incident(&self, target: &str) -> Result<Option<Incident>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| sqlite::open_incident(c, &t)).await
            }
            Backend::Postgres(p) => p.open_incident(target).await,
        }
    }

    /// Another delivery sends the incident's requests from now on (same key).
    pub(crate) async fn take_over(
        &self,
        id: i64,
        delivery_id: i64,
        delivery_created: i64,
    ) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => {
                s.with(move |c| sqlite::take_over(c, id, delivery_id, delivery_created))
                    .await
            }
            Backend::Postgres(p) => p.take_over(id, delivery_id, delivery_created).await,
        }
    }

    /// When the last successful promotion of `target` finished, for the cooldown.
    pub(crate) async fn last_promoted_at(&self, target: &str) -> Result<Option<i64>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| sqlite::last_promoted_at(c, &t)).await
            }
            Backend::Postgres(p) => p.last_promoted_at(target).await,
        }
    }

    /// Records that `values` (monitors) reported the target firing at `at` in `group_key`,
    /// and returns the distinct values that count for the quorum: those reported since
    /// `since`, and those whose group is still firing.
    pub(crate) async fn observe(
        &self,
        target: &str,
        values: Vec<String>,
        group_key: &str,
        at: i64,
        since: i64,
    ) -> Result<Vec<String>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let (t, g) = (target.to_owned(), group_key.to_owned());
                s.with(move |c| sqlite::observe(c, &t, &values, &g, at, since))
                    .await
            }
            Backend::Postgres(p) => p.observe(target, &values, group_key, at, since).await,
        }
    }

    /// A group resolved: its reports stop counting as still firing. Returns the target's
    /// open incident, if any.
    pub(crate) async fn resolved_group(
        &self,
        target: &str,
        group_key: &str,
    ) -> Result<Option<Incident>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let (t, g) = (target.to_owned(), group_key.to_owned());
                s.with(move |c| {
                    sqlite::resolved_group(c, &t, &g)?;
                    sqlite::open_incident(c, &t)
                })
                .await
            }
            Backend::Postgres(p) => p.resolved_group(target, group_key).await,
        }
    }

    /// Closes this incident, if it is still open.
    pub(crate) async fn close_incident(&self, id: i64, now: i64) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => s.with(move |c| sqlite::close_incident(c, id, now)).await,
            Backend::Postgres(p) => p.close_incident(id, now).await,
        }
    }

    pub(crate) async fn last_epoch(&self, target: &str) -> Result<Option<i64>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| sqlite::last_epoch(c, &t)).await
            }
            Backend::Postgres(p) => p.last_epoch(target).await,
        }
    }

    /// Remembers an epoch the endpoint showed (never the one the caller asked for: a
    /// refused request must not move the next incident's epoch); never goes back.
    pub(crate) async fn saw_epoch(&self, target: &str, epoch: i64) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| sqlite::saw_epoch(c, &t, epoch)).await
            }
            Backend::Postgres(p) => p.saw_epoch(target, epoch).await,
        }
    }

    /// Opens an incident unless one is open for the target: then that one is returned
    /// (two monitors' deliveries racing, on one instance or two: one opens, the other
    /// joins). The bool says whether this call opened it.
    pub(crate) async fn open_or_join(&self, new: NewIncident) -> Result<(Incident, bool)> {
        match &self.0 {
            Backend::Sqlite(s) => s.with(move |c| sqlite::open_or_join(c, &new)).await,
            Backend::Postgres(p) => p.open_or_join(&new).await,
        }
    }

    pub(crate) async fn finish(&self, id: i64, state: &str, detail: &str, now: i64) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let (st, det) = (state.to_owned(), detail.to_owned());
                s.with(move |c| sqlite::finish(c, id, &st, &det, now)).await
            }
            Backend::Postgres(p) => p.finish(id, state, detail, now).await,
        }
    }

    pub(crate) async fn status(&self, target: &str) -> Result<TargetStatus> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| {
                    Ok(TargetStatus {
                        last_epoch: sqlite::last_epoch(c, &t)?,
                        open: sqlite::open_incident(c, &t)?,
                        last: sqlite::last_incident(c, &t)?,
                    })
                })
                .await
            }
            Backend::Postgres(p) => p.status(target).await,
        }
    }
}
