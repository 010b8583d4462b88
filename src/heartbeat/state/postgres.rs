//! The heartbeats' memory in the shared database (table `heartbeat_sources`, created with
//! the outbox's schema, version 2). Each statement decides on its own, under the row's
//! lock: of two instances declaring one silence at once, the second finds
//! `missing_since` set and updates nothing.

use deadpool_postgres::Pool;

use super::{Result, SourceRow, Told, NO_SOURCE};

#[derive(Clone)]
pub(super) struct PgState {
    pool: Pool,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("heartbeat state: {e}")
}

impl PgState {
    pub(super) fn new(pool: Pool) -> Self {
        PgState { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(err)
    }

    pub(super) async fn ensure(&self, name: &str, placeholder: &str, now: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO heartbeat_sources (name, source, since)
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM heartbeat_sources WHERE name = $1)
             ON CONFLICT DO NOTHING",
            &[&name, &placeholder, &now],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn seen(&self, name: &str, sources: &[String], now: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(err)?;
        tx.execute(
            "INSERT INTO heartbeat_sources (name, source, last_seen, since)
             SELECT $1, s, $3, $3 FROM unnest($2::TEXT[]) AS s
             ON CONFLICT (name, source) DO UPDATE SET
                 last_seen = GREATEST(COALESCE(heartbeat_sources.last_seen, 0), EXCLUDED.last_seen),
                 resolve_unsent = COALESCE(heartbeat_sources.missing_since, heartbeat_sources.resolve_unsent),
                 missing_since = NULL",
            &[&name, &sources, &now],
        )
        .await
        .map_err(err)?;
        tx.execute(
            "UPDATE heartbeat_sources SET last_seen = $3,
                 resolve_unsent = COALESCE(missing_since, resolve_unsent), missing_since = NULL
             WHERE name = $1 AND source = $2 AND last_seen IS NULL",
            &[&name, &NO_SOURCE, &now],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    pub(super) async fn declare(&self, name: &str, deadline: i64, now: i64) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE heartbeat_sources SET missing_since = $3, missing_unsent = $3
                 WHERE name = $1 AND missing_since IS NULL AND COALESCE(last_seen, since) < $2
                   AND NOT (source = $4 AND last_seen IS NOT NULL)
                 RETURNING source",
                &[&name, &deadline, &now, &NO_SOURCE],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn rows(&self, name: &str) -> Result<Vec<SourceRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT source, last_seen, since, missing_since, missing_unsent, resolve_unsent
                 FROM heartbeat_sources WHERE name = $1 ORDER BY source",
                &[&name],
            )
            .await
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| SourceRow {
                source: r.get(0),
                last_seen: r.get(1),
                since: r.get(2),
                missing_since: r.get(3),
                missing_unsent: r.get(4),
                resolve_unsent: r.get(5),
            })
            .collect())
    }

    pub(super) async fn told(
        &self,
        name: &str,
        source: &str,
        silence: i64,
        what: Told,
    ) -> Result<()> {
        let col = what.column();
        let c = self.client().await?;
        c.execute(
            &format!("UPDATE heartbeat_sources SET {col} = NULL WHERE name = $1 AND source = $2 AND {col} = $3"),
            &[&name, &source, &silence],
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    pub(super) async fn forget(&self, name: &str, before: i64) -> Result<u64> {
        let c = self.client().await?;
        c.execute(
            "DELETE FROM heartbeat_sources WHERE name = $1 AND last_seen IS NOT NULL
               AND missing_unsent IS NULL
               AND ((missing_since IS NOT NULL AND last_seen < $2)
                    OR (source = $3 AND resolve_unsent IS NULL))",
            &[&name, &before, &NO_SOURCE],
        )
        .await
        .map_err(err)
    }
}
