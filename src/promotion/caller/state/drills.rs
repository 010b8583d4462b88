//! Drills in the caller's store: each drill's report (the runner's, `drill::Report` as
//! JSON) and what the caller saw of it ([`DrillNotes`]), and when each target's next
//! surprise drill is due. Beside the incidents, so that with a shared store every
//! instance's runner and caller see one drill, and one instance fires each surprise.

use serde::{Deserialize, Serialize};

use super::{Backend, CallerState, Result};

/// One drill, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DrillRecord {
    pub id: String,
    pub target: String,
    pub live: bool,
    pub surprise: bool,
    /// The instance whose runner drives it.
    pub instance: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// None while it runs.
    pub passed: Option<bool>,
    /// The runner's report, JSON.
    pub report: String,
    pub notes: DrillNotes,
}

/// What the caller saw of a drill's alert: each field set once, by the delivery that
/// saw it first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DrillNotes {
    /// When a firing delivery of the drill first reached the promotion channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<i64>,
    /// The guards' verdict: passed, or why not (a real incident open, the cooldown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guards: Option<Note>,
    /// The quorum's monitors seen so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitors: Vec<String>,
    /// The endpoint's answer to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Note>,
    /// The outcome messages stored for the outcome channels (delivery ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub told: Vec<i64>,
    /// The resolve: when it reached the channel, and what it told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Note>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_told: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Note {
    pub at: i64,
    pub ok: bool,
    pub detail: String,
}

impl Note {
    pub(crate) fn new(at: i64, ok: bool, detail: impl Into<String>) -> Self {
        Note {
            at,
            ok,
            detail: detail.into(),
        }
    }
}

impl DrillNotes {
    pub(crate) fn from_json(s: &str) -> DrillNotes {
        serde_json::from_str(s).unwrap_or_default()
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

impl CallerState {
    pub(crate) async fn drill_create(&self, d: DrillRecord) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => s.with(move |c| super::sqlite::drill_create(c, &d)).await,
            Backend::Postgres(p) => p.drill_create(&d).await,
        }
    }

    pub(crate) async fn drill(&self, id: &str) -> Result<Option<DrillRecord>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let id = id.to_owned();
                s.with(move |c| super::sqlite::drill(c, &id)).await
            }
            Backend::Postgres(p) => p.drill(id).await,
        }
    }

    /// The latest drills, newest first, of one target or all.
    pub(crate) async fn drills(
        &self,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DrillRecord>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.map(str::to_owned);
                s.with(move |c| super::sqlite::drills(c, t.as_deref(), limit))
                    .await
            }
            Backend::Postgres(p) => p.drills(target, limit).await,
        }
    }

    /// Changes a drill's notes in one transaction (deliveries of several monitors may
    /// note at once); None when there is no such drill.
    pub(crate) async fn drill_note<T: Send + 'static>(
        &self,
        id: &str,
        f: impl FnOnce(&mut DrillNotes) -> T + Send + 'static,
    ) -> Result<Option<T>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let id = id.to_owned();
                s.with(move |c| super::sqlite::drill_note(c, &id, f)).await
            }
            Backend::Postgres(p) => p.drill_note(id, f).await,
        }
    }

    /// The runner's report so far; with `passed`, the drill is over.
    pub(crate) async fn drill_report(
        &self,
        id: &str,
        report: String,
        passed: Option<bool>,
        now: i64,
    ) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let id = id.to_owned();
                s.with(move |c| super::sqlite::drill_report(c, &id, &report, passed, now))
                    .await
            }
            Backend::Postgres(p) => p.drill_report(id, &report, passed, now).await,
        }
    }

    /// Drills this instance was driving when it stopped: over, failed. Their ids.
    pub(crate) async fn drills_interrupted(&self, instance: &str, now: i64) -> Result<Vec<String>> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let i = instance.to_owned();
                s.with(move |c| super::sqlite::drills_interrupted(c, &i, now))
                    .await
            }
            Backend::Postgres(p) => p.drills_interrupted(instance, now).await,
        }
    }

    /// When the target's next surprise drill is due; `first` is stored and returned
    /// when none is set yet.
    pub(crate) async fn drill_due_at(&self, target: &str, first: i64) -> Result<i64> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| super::sqlite::drill_due_at(c, &t, first))
                    .await
            }
            Backend::Postgres(p) => p.drill_due_at(target, first).await,
        }
    }

    /// Moves the target's due time from `due` to `next`: true for the one caller (of
    /// any instance) that moved it, which fires the drill due at `due`.
    pub(crate) async fn drill_take(&self, target: &str, due: i64, next: i64) -> Result<bool> {
        match &self.0 {
            Backend::Sqlite(s) => {
                let t = target.to_owned();
                s.with(move |c| super::sqlite::drill_take(c, &t, due, next))
                    .await
            }
            Backend::Postgres(p) => p.drill_take(target, due, next).await,
        }
    }
}
