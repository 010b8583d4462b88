//! The endpoint's durable state: the epoch, the state, one row per incident key with its
//! run and its final answer, the (webhook-id, webhook-timestamp) pairs seen, and the
//! operator's resets. SQLite in WAL mode with `synchronous = FULL`: a run is on disk as
//! `promoting` before its command starts. Every decision is one IMMEDIATE transaction, so
//! `amrelay promotion reset` from another process cannot slip between a read and a write.

use std::path::Path;
use std::time::Duration;

use super::run::Group;
use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::domain::promotion::{
    Answer, PromoteRequest, PromotionState, PromotionStatus, Run, Verdict, SCHEMA,
};
use crate::domain::time::rfc3339;

/// The file under `storage.path`.
pub(crate) const FILE: &str = "promotion-endpoint.db";
/// 2: `runs.pgid` and `runs.pg_started`, the command's process group (a run cut off by a
/// crash may leave it running: no new run starts until it has ended).
const SCHEMA_VERSION: i64 = 2;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS endpoint (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    epoch      INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    last_key   TEXT,
    updated_at INTEGER NOT NULL          -- ms since the Unix epoch
);
INSERT OR IGNORE INTO endpoint (id, epoch, state, updated_at) VALUES (1, 0, 'standby', 0);

-- One row per incident key. `state` is the run's: promoting, promoted, failed,
-- interrupted, or standby when the command asked to be retried (exit 75).
-- `answer_*` is the final answer, answered again to every later request for the key.
CREATE TABLE IF NOT EXISTS runs (
    key           TEXT    PRIMARY KEY,
    epoch         INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    manual        INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    exit_code     INTEGER,
    error         TEXT,
    stdout_tail   TEXT    NOT NULL DEFAULT '',
    stderr_tail   TEXT    NOT NULL DEFAULT '',
    answer_status INTEGER,
    answer_body   TEXT,
    -- The command's process group and its leader's start time (run::Group), kept until
    -- the group is seen gone or an operator resets: none may outlive a crash unseen.
    pgid          INTEGER,
    pg_started    INTEGER
) WITHOUT ROWID;

-- Signed requests seen within max_clock_skew, to refuse replays across restarts too.
CREATE TABLE IF NOT EXISTS seen (
    webhook_id TEXT    NOT NULL,
    timestamp  INTEGER NOT NULL,         -- the request's webhook-timestamp, seconds
    PRIMARY KEY (webhook_id, timestamp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_age ON seen (timestamp);

-- `amrelay promotion reset`: who, when, why.
CREATE TABLE IF NOT EXISTS resets (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    from_state TEXT    NOT NULL,
    epoch      INTEGER NOT NULL
);
";

pub(crate) struct Store {
    conn: Connection,
    target: String,
}

/// What a `POST /v1/promote` gets, decided in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Nothing to run or store: refused, running, or a dry run that would have run.
    Answer(Verdict, Box<Answer>),
    /// The key's run finished: its final answer, as first answered.
    Stored {
        verdict: Verdict,
        status: u16,
        body: String,
    },
    /// Stored as `promoting`, on disk: the caller starts the command now.
    Start { attempt: u32 },
}

/// How a run ended, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finish {
    pub exit_code: Option<i32>,
    /// Set when the exit code does not tell the story (timeout, signal, cannot start).
    pub error: Option<String>,
    pub stdout_tail: String,
    pub stderr_tail: String,
}

impl Finish {
    /// Exit 0 promotes, 75 asks to be retried, anything else fails.
    pub(crate) fn verdict(&self) -> Verdict {
        match (self.exit_code, &self.error) {
            (Some(0), None) => Verdict::Promoted,
            (Some(75), None) => Verdict::Retry,
            _ => Verdict::Failed,
        }
    }
}

/// The last `amrelay promotion reset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reset {
    pub at_ms: i64,
    pub actor: String,
    pub reason: String,
    pub from_state: String,
    pub epoch: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ResetError {
    #[error("a promotion run is going (key {key:?}); wait until it ends, or if amrelay is not running, start it once: it records the run as interrupted")]
    Running { key: String },
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

struct Row {
    epoch: u64,
    state: PromotionState,
    last_key: Option<String>,
}

impl Store {
    /// Opens (or creates) `dir/promotion-endpoint.db`.
    pub(crate) fn open(dir: &Path, target: &str) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(FILE);
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // WAL with synchronous=FULL: a commit is on disk when it returns. The busy
        // timeout lets `amrelay promotion reset` write while `serve` runs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "{}: schema version {version} is newer than this binary's {SCHEMA_VERSION}",
                path.display()
            );
        }
        conn.execute_batch(TABLES)
            .with_context(|| format!("creating the tables in {}", path.display()))?;
        if version < 2 {
            // A new store has the columns from TABLES; an older one gets them here.
            let has: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('runs') WHERE name = 'pgid'",
                [],
                |r| r.get(0),
            )?;
            if !has {
                conn.execute_batch(
                    "ALTER TABLE runs ADD COLUMN pgid INTEGER; ALTER TABLE runs ADD COLUMN pg_started INTEGER;",
                )
                .with_context(|| format!("migrating {}", path.display()))?;
            }
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Store {
            conn,
            target: target.to_owned(),
        })
    }

    /// At start-up: a run still `promoting` was cut off by a stop or a crash. It becomes
    /// `interrupted`, final for its key (422), never rerun. Returns the keys.
    pub(crate) fn recover(&mut self, now_ms: i64) -> anyhow::Result<Vec<String>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let keys: Vec<String> = {
            let mut q = tx.prepare("SELECT key FROM runs WHERE state = 'promoting'")?;
            let rows = q.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if keys.is_empty() {
            return Ok(keys);
        }
        tx.execute(
            "UPDATE runs SET state = 'interrupted', finished_at = ?1, error = ?2 WHERE state = 'promoting'",
            params![
                now_ms,
                "interrupted: amrelay stopped during the run; not rerun. Check what the command did, then run `amrelay promotion reset`"
            ],
        )?;
        tx.execute(
            "UPDATE endpoint SET state = 'interrupted', updated_at = ?1 WHERE state = 'promoting'",
            [now_ms],
        )?;
        let answer = Answer {
            status: status(&tx, &self.target)?,
            result: Verdict::Failed,
        };
        tx.execute(
            "UPDATE runs SET answer_status = 422, answer_body = ?1 WHERE state = 'interrupted' AND answer_body IS NULL",
            [serde_json::to_string(&answer)?],
        )?;
        tx.commit()?;
        Ok(keys)
    }

    pub(crate) fn status(&self) -> anyhow::Result<PromotionStatus> {
        status(&self.conn, &self.target)
    }

    /// The run's command is running in this process group.
    pub(crate) fn ran_in(&mut self, key: &str, group: Group) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE runs SET pgid = ?2, pg_started = ?3 WHERE key = ?1",
            params![key, group.pgid, group.started as i64],
        )?;
        Ok(())
    }

    /// Records a signed request's (webhook-id, webhook-timestamp); false when the pair
    /// was seen before (a replay). Pairs older than `oldest` are dropped: a request that
    /// old is refused by the clock-skew check anyway.
    pub(crate) fn first_sight(
        &mut self,
        id: &str,
        timestamp: i64,
        oldest: i64,
    ) -> anyhow::Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM seen WHERE timestamp < ?1", [oldest])?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO seen (webhook_id, timestamp) VALUES (?1, ?2)",
            params![id, timestamp],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// The endpoint rule (`docs/promotion-protocol.md`). When the answer is `Start`, the
    /// run is committed as `promoting` and the epoch advanced before this returns.
    pub(crate) fn decide(&mut self, req: &PromoteRequest, now_ms: i64) -> anyhow::Result<Decision> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ep = endpoint_row(&tx)?;
        let run: Option<(PromotionState, Option<u16>, Option<String>, u32)> = tx
            .query_row(
                "SELECT state, answer_status, answer_body, attempt FROM runs WHERE key = ?1",
                [&req.key],
                |r| {
                    Ok((
                        state_col(r.get::<_, String>(0)?),
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                    ))
                },
            )
            .optional()?;
        let answer = |verdict| -> anyhow::Result<Decision> {
            Ok(Decision::Answer(
                verdict,
                Box::new(Answer {
                    status: status(&tx, &self.target)?,
                    result: verdict,
                }),
            ))
        };
        let attempt = match run {
            Some((PromotionState::Promoting, ..)) => return answer(Verdict::Running),
            Some((PromotionState::Standby, _, _, attempt)) => {
                // Asked to be retried: again only while it is still the latest run.
                let latest = ep.last_key.as_deref() == Some(req.key.as_str());
                if !(latest && ep.state == PromotionState::Standby) {
                    return answer(Verdict::Refused);
                }
                attempt + 1
            }
            Some((state, Some(status), Some(body), _)) => {
                let verdict = if state == PromotionState::Promoted {
                    Verdict::Promoted
                } else {
                    Verdict::Failed
                };
                return Ok(Decision::Stored {
                    verdict,
                    status,
                    body,
                });
            }
            Some((state, ..)) => {
                anyhow::bail!("run {:?} is {state} but has no stored answer", req.key)
            }
            None => {
                let open = !matches!(
                    ep.state,
                    PromotionState::Promoted | PromotionState::Promoting
                );
                if !(open && req.epoch == ep.epoch + 1) {
                    return answer(Verdict::Refused);
                }
                1
            }
        };
        if req.dry_run {
            return answer(Verdict::Verified);
        }
        if let Some((key, group)) = running_group(&tx)? {
            tracing::warn!(run = %key, pgid = group.pgid, "an earlier run's command still runs (its amrelay was killed mid-run); refusing until it ends or `amrelay promotion reset`");
            return answer(Verdict::Refused);
        }
        tx.execute(
            "INSERT INTO runs (key, epoch, state, reason, manual, attempt, started_at)
             VALUES (?1, ?2, 'promoting', ?3, ?4, ?5, ?6)
             ON CONFLICT (key) DO UPDATE SET state = 'promoting', reason = excluded.reason,
                 manual = excluded.manual, attempt = excluded.attempt,
                 started_at = excluded.started_at, finished_at = NULL, exit_code = NULL,
                 error = NULL, stdout_tail = '', stderr_tail = ''",
            params![req.key, req.epoch, req.reason, req.manual, attempt, now_ms],
        )?;
        tx.execute(
            "UPDATE endpoint SET epoch = ?1, state = 'promoting', last_key = ?2, updated_at = ?3",
            params![req.epoch, req.key, now_ms],
        )?;
        tx.commit()?;
        Ok(Decision::Start { attempt })
    }

    /// Records how the run of `key` ended, and its final answer unless it asked to be
    /// retried.
    pub(crate) fn finish(&mut self, key: &str, f: &Finish, now_ms: i64) -> anyhow::Result<Answer> {
        let verdict = f.verdict();
        let (run_state, endpoint_state) = match verdict {
            Verdict::Promoted => (PromotionState::Promoted, PromotionState::Promoted),
            Verdict::Retry => (PromotionState::Standby, PromotionState::Standby),
            _ => (PromotionState::Failed, PromotionState::Failed),
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE runs SET state = ?2, finished_at = ?3, exit_code = ?4, error = ?5,
                 stdout_tail = ?6, stderr_tail = ?7
             WHERE key = ?1 AND state = 'promoting'",
            params![
                key,
                run_state.as_str(),
                now_ms,
                f.exit_code,
                f.error,
                f.stdout_tail,
                f.stderr_tail
            ],
        )?;
        anyhow::ensure!(n == 1, "run {key:?} is not promoting any more");
        tx.execute(
            "UPDATE endpoint SET state = ?1, updated_at = ?2 WHERE last_key = ?3 AND state = 'promoting'",
            params![endpoint_state.as_str(), now_ms, key],
        )?;
        let answer = Answer {
            status: status(&tx, &self.target)?,
            result: verdict,
        };
        if verdict != Verdict::Retry {
            tx.execute(
                "UPDATE runs SET answer_status = ?2, answer_body = ?3 WHERE key = ?1",
                params![key, verdict.status(), serde_json::to_string(&answer)?],
            )?;
        }
        tx.commit()?;
        Ok(answer)
    }

    /// The operator's manual failback: back to `standby`, the epoch kept, so the next
    /// incident (epoch + 1) may promote again. Refused while a run is going.
    pub(crate) fn reset(
        &mut self,
        actor: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Reset, ResetError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("starting a transaction")?;
        let ep = endpoint_row(&tx)?;
        if ep.state == PromotionState::Promoting {
            return Err(ResetError::Running {
                key: ep.last_key.unwrap_or_default(),
            });
        }
        tx.execute(
            "UPDATE endpoint SET state = 'standby', updated_at = ?1",
            [now_ms],
        )
        .context("updating the state")?;
        // The operator has checked what an earlier command left running.
        tx.execute(
            "UPDATE runs SET pgid = NULL, pg_started = NULL WHERE pgid IS NOT NULL",
            [],
        )
        .context("forgetting the runs' process groups")?;
        tx.execute(
            "INSERT INTO resets (at, actor, reason, from_state, epoch) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now_ms, actor, reason, ep.state.as_str(), ep.epoch],
        )
        .context("recording the reset")?;
        tx.commit().context("committing the reset")?;
        Ok(Reset {
            at_ms: now_ms,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            from_state: ep.state.as_str().to_owned(),
            epoch: ep.epoch,
        })
    }

    pub(crate) fn last_reset(&self) -> anyhow::Result<Option<Reset>> {
        Ok(self
            .conn
            .query_row(
                "SELECT at, actor, reason, from_state, epoch FROM resets ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(Reset {
                        at_ms: r.get(0)?,
                        actor: r.get(1)?,
                        reason: r.get(2)?,
                        from_state: r.get(3)?,
                        epoch: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}

/// A run whose command's process group still runs (a run that ended, or was cut off
/// by a crash, may leave one). Groups seen gone are forgotten.
fn running_group(conn: &Connection) -> anyhow::Result<Option<(String, Group)>> {
    let groups: Vec<(String, Group)> = {
        let mut q =
            conn.prepare("SELECT key, pgid, pg_started FROM runs WHERE pgid IS NOT NULL")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Group {
                    pgid: r.get(1)?,
                    started: r.get::<_, i64>(2)? as u64,
                },
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (key, group) in groups {
        if group.alive() {
            return Ok(Some((key, group)));
        }
        conn.execute(
            "UPDATE runs SET pgid = NULL, pg_started = NULL WHERE key = ?1",
            [&key],
        )?;
    }
    Ok(None)
}

fn endpoint_row(conn: &Connection) -> anyhow::Result<Row> {
    Ok(conn.query_row(
        "SELECT epoch, state, last_key FROM endpoint WHERE id = 1",
        [],
        |r| {
            Ok(Row {
                epoch: r.get(0)?,
                state: state_col(r.get::<_, String>(1)?),
                last_key: r.get(2)?,
            })
        },
    )?)
}

/// A state this binary does not know (a newer one wrote it) reads as `failed`: nothing
/// runs on top of it until an operator looks.
fn state_col(s: String) -> PromotionState {
    PromotionState::parse(&s).unwrap_or(PromotionState::Failed)
}

fn status(conn: &Connection, target: &str) -> anyhow::Result<PromotionStatus> {
    let ep = endpoint_row(conn)?;
    let last = match &ep.last_key {
        Some(key) => conn
            .query_row(
                "SELECT key, epoch, state, reason, manual, attempt, started_at, finished_at,
                        exit_code, error, stdout_tail, stderr_tail
                 FROM runs WHERE key = ?1",
                [key],
                |r| {
                    Ok(Run {
                        key: r.get(0)?,
                        epoch: r.get(1)?,
                        state: state_col(r.get(2)?),
                        reason: r.get(3)?,
                        manual: r.get(4)?,
                        attempt: r.get(5)?,
                        started_at: rfc3339(r.get(6)?).unwrap_or_default(),
                        finished_at: r.get::<_, Option<i64>>(7)?.and_then(rfc3339),
                        exit_code: r.get(8)?,
                        error: r.get(9)?,
                        stdout_tail: r.get(10)?,
                        stderr_tail: r.get(11)?,
                    })
                },
            )
            .optional()?,
        None => None,
    };
    Ok(PromotionStatus {
        schema: SCHEMA.to_owned(),
        target: target.to_owned(),
        epoch: ep.epoch,
        state: ep.state,
        last,
    })
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
