//! The caller's memory in the shared database (tables `caller_*`, created with the
//! outbox's schema). Opening an incident takes an advisory lock on its target, so two
//! callers on two instances open one incident and send one key.

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;

use super::{
    DrillNotes, DrillRecord, Incident, NewIncident, Result, TargetStatus, OBSERVATION_TTL_MS,
};

/// The first key of the two-key advisory lock on a target: "amrp".
const TARGET_LOCK: i32 = 0x616d_7270;

const SELECT: &str = "SELECT id, target, key, epoch, state, delivery_id, reason, firing_since, opened_at, finished_at, detail FROM caller_incidents";

#[derive(Clone)]
pub(super) struct PgState {
    pool: Pool,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("promotion state: {e}")
}

impl PgState {
    pub(super) fn new(pool: Pool) -> Self {
        PgState { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(err)
    }

    pub(super) async fn owned_by(
        &self,
        target: &str,
        delivery_id: i64,
        delivery_created: i64,
    ) -> Result<Option<Incident>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!("{SELECT} WHERE target = $1 AND delivery_id = $2 AND delivery_created = $3 ORDER BY id DESC LIMIT 1"),
                &[&target, &delivery_id, &delivery_created],
            )
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(incident))
    }

    pub(super) async fn open_incident(&self, target: &str) -> Result<Option<Incident>> {
        let c = self.client().await?;
        open_incident(&c, target).await
    }

    pub(super) async fn take_over(
        &self,
        id: i64,
        delivery_id: i64,
        delivery_created: i64,
    ) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE caller_incidents SET delivery_id = $2, delivery_created = $3 WHERE id = $1",
            &[&id, &delivery_id, &delivery_created],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn last_promoted_at(&self, target: &str) -> Result<Option<i64>> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT MAX(finished_at) FROM caller_incidents WHERE target = $1 AND state = 'promoted'",
                &[&target],
            )
            .await
            .map_err(err)?;
        Ok(row.get(0))
    }

    pub(super) async fn observe(
        &self,
        target: &str,
        values: &[String],
        group_key: &str,
        at: i64,
        since: i64,
    ) -> Result<Vec<String>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(err)?;
        for v in values {
            tx.execute(
                "INSERT INTO caller_observations (target, value, at, group_key, firing) VALUES ($1, $2, $3, $4, TRUE)
                 ON CONFLICT (target, value, at) DO UPDATE SET firing = TRUE, group_key = EXCLUDED.group_key",
                &[&target, v, &at, &group_key],
            )
            .await
            .map_err(err)?;
        }
        // Every target's (and every drill's scope's) old reports, not only this one's.
        tx.execute(
            "DELETE FROM caller_observations WHERE at < $1",
            &[&(at - OBSERVATION_TTL_MS)],
        )
        .await
        .map_err(err)?;
        let rows = tx
            .query(
                "SELECT DISTINCT value FROM caller_observations WHERE target = $1 AND (at >= $2 OR firing) ORDER BY value",
                &[&target, &since],
            )
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn resolved_group(
        &self,
        target: &str,
        group_key: &str,
    ) -> Result<Option<Incident>> {
        let c = self.client().await?;
        c.execute(
            "UPDATE caller_observations SET firing = FALSE WHERE target = $1 AND group_key = $2",
            &[&target, &group_key],
        )
        .await
        .map_err(err)?;
        open_incident(&c, target).await
    }

    pub(super) async fn close_incident(&self, id: i64, now: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE caller_incidents SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL",
            &[&id, &now],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn last_epoch(&self, target: &str) -> Result<Option<i64>> {
        let c = self.client().await?;
        last_epoch(&c, target).await
    }

    pub(super) async fn saw_epoch(&self, target: &str, epoch: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO caller_epochs (target, last_epoch) VALUES ($1, $2)
             ON CONFLICT (target) DO UPDATE SET last_epoch = GREATEST(caller_epochs.last_epoch, EXCLUDED.last_epoch)",
            &[&target, &epoch],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn open_or_join(&self, new: &NewIncident) -> Result<(Incident, bool)> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(err)?;
        // Callers on other instances wait here for this one's commit, then join.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&TARGET_LOCK, &new.target],
        )
        .await
        .map_err(err)?;
        if let Some(open) = open_incident(&tx, &new.target).await? {
            return Ok((open, false));
        }
        let key = crate::domain::promotion::incident_key(&new.target, new.epoch.max(0) as u64);
        let row = tx
            .query_one(
                &format!(
                    "WITH opened AS (
                       INSERT INTO caller_incidents (target, key, epoch, state, delivery_id, delivery_created, reason,
                                                     firing_since, opened_at)
                       VALUES ($1, $2, $3, 'requesting', $4, $5, $6, $7, $8)
                       RETURNING *)
                     {} ",
                    SELECT.replace("FROM caller_incidents", "FROM opened")
                ),
                &[
                    &new.target,
                    &key,
                    &new.epoch,
                    &new.delivery_id,
                    &new.delivery_created,
                    &new.reason,
                    &new.firing_since,
                    &new.now,
                ],
            )
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok((incident(&row), true))
    }

    pub(super) async fn finish(&self, id: i64, state: &str, detail: &str, now: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE caller_incidents SET state = $2, detail = $3, finished_at = $4 WHERE id = $1 AND finished_at IS NULL",
            &[&id, &state, &detail, &now],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn status(&self, target: &str) -> Result<TargetStatus> {
        let c = self.client().await?;
        let last = c
            .query_opt(
                &format!("{SELECT} WHERE target = $1 ORDER BY id DESC LIMIT 1"),
                &[&target],
            )
            .await
            .map_err(err)?;
        Ok(TargetStatus {
            last_epoch: last_epoch(&c, target).await?,
            open: open_incident(&c, target).await?,
            last: last.as_ref().map(incident),
        })
    }
}

const DRILL: &str = "SELECT id, target, live, surprise, instance, started_at, finished_at, passed, report, notes FROM caller_drills";

fn drill_row(r: &Row) -> DrillRecord {
    DrillRecord {
        id: r.get(0),
        target: r.get(1),
        live: r.get(2),
        surprise: r.get(3),
        instance: r.get(4),
        started_at: r.get(5),
        finished_at: r.get(6),
        passed: r.get(7),
        report: r.get(8),
        notes: DrillNotes::from_json(r.get(9)),
    }
}

impl PgState {
    pub(super) async fn drill_create(&self, d: &DrillRecord) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO caller_drills (id, target, live, surprise, instance, started_at, report, notes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&d.id, &d.target, &d.live, &d.surprise, &d.instance, &d.started_at, &d.report, &d.notes.to_json()],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn drill(&self, id: &str) -> Result<Option<DrillRecord>> {
        let c = self.client().await?;
        let row = c
            .query_opt(&format!("{DRILL} WHERE id = $1"), &[&id])
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(drill_row))
    }

    pub(super) async fn drills(
        &self,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DrillRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("{DRILL} WHERE $1::TEXT IS NULL OR target = $1 ORDER BY started_at DESC, id DESC LIMIT $2"),
                &[&target, &limit],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(drill_row).collect())
    }

    pub(super) async fn drill_note<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut DrillNotes) -> T,
    ) -> Result<Option<T>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(err)?;
        let Some(row) = tx
            .query_opt(
                "SELECT notes FROM caller_drills WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        let mut notes = DrillNotes::from_json(row.get(0));
        let out = f(&mut notes);
        tx.execute(
            "UPDATE caller_drills SET notes = $2 WHERE id = $1",
            &[&id, &notes.to_json()],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Some(out))
    }

    pub(super) async fn drill_report(
        &self,
        id: &str,
        report: &str,
        passed: Option<bool>,
        now: i64,
    ) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE caller_drills SET report = $2, passed = $3,
                 finished_at = CASE WHEN $3::BOOLEAN IS NULL THEN NULL ELSE $4::BIGINT END
             WHERE id = $1",
            &[&id, &report, &passed, &now],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn drills_interrupted(&self, instance: &str, now: i64) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE caller_drills SET passed = FALSE, finished_at = $2
                 WHERE instance = $1 AND finished_at IS NULL RETURNING id",
                &[&instance, &now],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn drill_due_at(&self, target: &str, first: i64) -> Result<i64> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO caller_drill_schedule (target, due_at) VALUES ($1, $2) ON CONFLICT (target) DO NOTHING",
            &[&target, &first],
        )
        .await
        .map_err(err)?;
        let row = c
            .query_one(
                "SELECT due_at FROM caller_drill_schedule WHERE target = $1",
                &[&target],
            )
            .await
            .map_err(err)?;
        Ok(row.get(0))
    }

    pub(super) async fn drill_take(&self, target: &str, due: i64, next: i64) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE caller_drill_schedule SET due_at = $3 WHERE target = $1 AND due_at = $2",
                &[&target, &due, &next],
            )
            .await
            .map_err(err)?;
        Ok(n == 1)
    }
}

async fn open_incident(c: &impl GenericClient, target: &str) -> Result<Option<Incident>> {
    let row = c
        .query_opt(
            &format!("{SELECT} WHERE target = $1 AND closed_at IS NULL ORDER BY id DESC LIMIT 1"),
            &[&target],
        )
        .await
        .map_err(err)?;
    Ok(row.as_ref().map(incident))
}

async fn last_epoch(c: &impl GenericClient, target: &str) -> Result<Option<i64>> {
    let row = c
        .query_opt(
            "SELECT last_epoch FROM caller_epochs WHERE target = $1",
            &[&target],
        )
        .await
        .map_err(err)?;
    Ok(row.map(|r| r.get(0)))
}

fn incident(r: &Row) -> Incident {
    Incident {
        id: r.get(0),
        target: r.get(1),
        key: r.get(2),
        epoch: r.get(3),
        state: r.get(4),
        delivery_id: r.get(5),
        reason: r.get(6),
        firing_since: r.get(7),
        opened_at: r.get(8),
        finished_at: r.get(9),
        detail: r.get(10),
    }
}
