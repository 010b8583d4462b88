//! The heartbeats' durable memory, one row per (heartbeat, source): when it was last
//! seen, and where it stands in a silence. With the SQLite store it is a file of its own
//! beside the outbox (`heartbeats.db`); with a shared store, table `heartbeat_sources` in
//! the same database, so that instances sharing it declare each silence once.
//!
//! A silence goes through two durable steps, so that a crash loses nothing and repeats
//! nothing within `dedup.window`:
//! 1. declared: one conditional update sets `missing_since` (and `missing_unsent`) only
//!    where it is unset and the source has been quiet past the deadline; of several
//!    instances checking at once, one update matches.
//! 2. told: the notification is stored in the outbox, then `missing_unsent` is cleared.
//!    A crash between the two tells again on the next check, with the same dedup key
//!    (made from `missing_since`), which the outbox drops as a duplicate.
//!
//! A sighting ends a declared silence: `resolve_unsent` takes its `missing_since`, and
//! the resolve goes out the same way.

mod postgres;
mod sqlite;

use std::path::Path;

use crate::outbox::Outbox;

pub(crate) type Result<T> = std::result::Result<T, String>;

/// The source of a heartbeat that has not been seen from any source yet, when it has a
/// `per_label` (without one, its only source `all` stands for it).
pub(crate) const NO_SOURCE: &str = "(none)";

/// One (heartbeat, source), as stored; times in ms since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceRow {
    pub source: String,
    /// None: never seen (the row stands for a heartbeat configured and not seen yet).
    pub last_seen: Option<i64>,
    /// When the row was made: when the heartbeat was first configured, or first seen.
    pub since: i64,
    /// Set while declared missing: when it was declared.
    pub missing_since: Option<i64>,
    /// A declared silence (its `missing_since`) whose notification is not stored yet.
    pub missing_unsent: Option<i64>,
    /// An ended silence (its `missing_since`) whose resolve is not stored yet.
    pub resolve_unsent: Option<i64>,
}

#[derive(Clone)]
pub(crate) struct HeartbeatState(Backend);

#[derive(Clone)]
enum Backend {
    Sqlite(crate::outbox::LocalDb),
    Postgres(postgres::PgState),
}

impl HeartbeatState {
    /// In the outbox's database when it is shared, else in `dir/heartbeats.db`, opened
    /// when first needed.
    pub(crate) fn beside(outbox: &Outbox, dir: &Path) -> Self {
        match outbox.database() {
            Some(pool) => HeartbeatState(Backend::Postgres(postgres::PgState::new(pool))),
            None => HeartbeatState(Backend::Sqlite(sqlite::at(dir))),
        }
    }

    /// The SQLite file alone, for tests.
    #[cfg(test)]
    pub(crate) fn sqlite_at(dir: &Path) -> Self {
        HeartbeatState(Backend::Sqlite(sqlite::at(dir)))
    }

    /// Opens the state now, so that start-up fails on one it cannot use.
    pub(crate) fn open_now(&self) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => s.open_now(),
            // The database's schema was checked when the outbox opened.
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Records a heartbeat's first configuration: a row for `placeholder`, never seen,
    /// unless the heartbeat has rows already.
    pub(crate) async fn ensure(&self, name: &str, placeholder: &str, now: i64) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let (n, p) = (name.to_owned(), placeholder.to_owned());
                s.with(move |c| sqlite::ensure(c, &n, &p, now)).await
            }
            Backend::Postgres(p) => p.ensure(name, placeholder, now).await,
        }
    }

    /// `sources` of heartbeat `name` were seen at `now`; a silence of theirs (or of the
    /// heartbeat's [`NO_SOURCE`]) ends.
    pub(crate) async fn seen(&self, name: &str, sources: &[String], now: i64) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let (n, src) = (name.to_owned(), sources.to_vec());
                s.with(move |c| sqlite::seen(c, &n, &src, now)).await
            }
            Backend::Postgres(p) => p.seen(name, sources, now).await,
        }
    }

    /// Declares missing the sources of `name` quiet since before `deadline`, and not
    /// declared yet; returns them (each declared by exactly one caller).
    pub(crate) async fn declare(&self, name: &str, deadline: i64, now: i64) -> Result<Vec<String>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let n = name.to_owned();
                s.with(move |c| sqlite::declare(c, &n, deadline, now)).await
            }
            Backend::Postgres(p) => p.declare(name, deadline, now).await,
        }
    }

    pub(crate) async fn rows(&self, name: &str) -> Result<Vec<SourceRow>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let n = name.to_owned();
                s.with(move |c| sqlite::rows(c, &n)).await
            }
            Backend::Postgres(p) => p.rows(name).await,
        }
    }

    /// The missing notification of the silence that began at `silence` is stored.
    pub(crate) async fn told_missing(&self, name: &str, source: &str, silence: i64) -> Result<()> {
        self.told(name, source, silence, Told::Missing).await
    }

    /// The resolve of the silence that began at `silence` is stored.
    pub(crate) async fn told_resolved(&self, name: &str, source: &str, silence: i64) -> Result<()> {
        self.told(name, source, silence, Told::Resolved).await
    }

    async fn told(&self, name: &str, source: &str, silence: i64, what: Told) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let (n, src) = (name.to_owned(), source.to_owned());
                s.with(move |c| sqlite::told(c, &n, &src, silence, what))
                    .await
            }
            Backend::Postgres(p) => p.told(name, source, silence, what).await,
        }
    }

    /// Deletes the sources of `name` seen last before `before` whose silence was told
    /// (a source gone for good: no resolve will come), and a [`NO_SOURCE`] row once a
    /// source was seen and all is told. Returns how many rows went.
    pub(crate) async fn forget(&self, name: &str, before: i64) -> Result<u64> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let n = name.to_owned();
                s.with(move |c| sqlite::forget(c, &n, before)).await
            }
            Backend::Postgres(p) => p.forget(name, before).await,
        }
    }
}

#[derive(Clone, Copy)]
enum Told {
    Missing,
    Resolved,
}

impl Told {
    fn column(self) -> &'static str {
        match self {
            Told::Missing => "missing_unsent",
            Told::Resolved => "resolve_unsent",
        }
    }
}

#[cfg(test)]
mod sqlite_tests;
