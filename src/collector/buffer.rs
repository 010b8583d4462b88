//! One endpoint's durable buffer: every scrape is a row (its samples as a remote-write
//! request, snappy-compressed) in a SQLite file of its own, so buffered samples survive a
//! restart of amrelay. Bounded by bytes and by age; the oldest rows go first, and what is
//! dropped is counted.
//!
//! Rows leave in id order, which per series is timestamp order: one target's scrapes
//! never overlap, so each is appended after the one before. A batch is a run of whole
//! rows; while it is out, the buffer remembers it, so that a retry resends exactly it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

use super::remote_write;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scrapes (
    id      INTEGER PRIMARY KEY,
    ts      INTEGER NOT NULL,   -- the scrape's time, ms since the epoch
    samples INTEGER NOT NULL,
    data    BLOB    NOT NULL    -- a remote-write WriteRequest, snappy block format
);
";
/// Bumped when the row format changes, so a newer binary knows what it reads.
const SCHEMA_VERSION: i64 = 1;

/// A run of rows on its way to the endpoint; resent unchanged until it is answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub first_id: i64,
    pub last_id: i64,
    pub samples: u64,
    pub oldest_ts: i64,
    /// The request body, snappy-compressed.
    pub body: Vec<u8>,
}

impl Batch {
    /// The rows it holds, first and last id.
    pub fn span(&self) -> (i64, i64) {
        (self.first_id, self.last_id)
    }
}

/// Samples that left the buffer without being sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Over `max_bytes`: the oldest rows made room.
    pub full: u64,
    /// Older than `max_age`: the receiver would refuse them.
    pub too_old: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_bytes: u64,
    pub max_age: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub rows: u64,
    pub samples: u64,
    pub bytes: u64,
    pub oldest_ts: Option<i64>,
}

pub struct Buffer {
    conn: Connection,
    bounds: Bounds,
    stats: Stats,
    /// The rows of the batch that is out, if any.
    out: Option<(i64, i64)>,
}

impl Buffer {
    pub fn open(path: &Path, bounds: Bounds) -> anyhow::Result<Buffer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A committed scrape survives a crash of amrelay; a power loss may cost the last
        // few (the outbox pays for fsync; metrics can be re-scraped, alerts cannot).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "{} has buffer format {version}; this amrelay reads up to {SCHEMA_VERSION}",
                path.display()
            );
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let mut b = Buffer {
            conn,
            bounds,
            stats: Stats::default(),
            out: None,
        };
        b.refresh_stats()?;
        Ok(b)
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn refresh_stats(&mut self) -> rusqlite::Result<()> {
        let (rows, samples, bytes): (i64, i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(length(data)), 0) FROM scrapes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let oldest_ts = self
            .conn
            .query_row("SELECT MIN(ts) FROM scrapes", [], |r| r.get(0))
            .optional()?
            .flatten();
        self.stats = Stats {
            rows: rows as u64,
            samples: samples as u64,
            bytes: bytes as u64,
            oldest_ts,
        };
        Ok(())
    }

    /// Stores one scrape, then enforces the bounds (`now` in ms since the epoch).
    pub fn append(
        &mut self,
        ts: i64,
        samples: u64,
        compressed: &[u8],
        now: i64,
    ) -> anyhow::Result<Dropped> {
        self.conn
            .prepare_cached("INSERT INTO scrapes (ts, samples, data) VALUES (?1, ?2, ?3)")?
            .execute(params![ts, samples as i64, compressed])?;
        self.stats.rows += 1;
        self.stats.samples += samples;
        self.stats.bytes += compressed.len() as u64;
        self.stats.oldest_ts = Some(self.stats.oldest_ts.map_or(ts, |o| o.min(ts)));
        self.enforce(now)
    }

    /// Drops rows older than `max_age`, then the oldest rows while over `max_bytes`.
    pub fn enforce(&mut self, now: i64) -> anyhow::Result<Dropped> {
        let mut dropped = Dropped::default();
        let cutoff = now.saturating_sub(self.bounds.max_age.as_millis() as i64);
        if self.stats.oldest_ts.is_some_and(|o| o < cutoff) {
            let (last, n): (Option<i64>, i64) = self.conn.query_row(
                "SELECT MAX(id), COALESCE(SUM(samples), 0) FROM scrapes WHERE ts < ?1",
                [cutoff],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if let Some(last) = last {
                self.delete_through(last)?;
                dropped.too_old += n as u64;
            }
        }
        while self.stats.bytes > self.bounds.max_bytes {
            let over = self.stats.bytes - self.bounds.max_bytes;
            // The fewest oldest rows that bring the total under the bound.
            let (last, n) = {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT id, samples, length(data) FROM scrapes ORDER BY id LIMIT 1000",
                )?;
                let mut rows = stmt.query([])?;
                let (mut freed, mut last, mut n) = (0u64, None, 0i64);
                while let Some(r) = rows.next()? {
                    last = Some(r.get::<_, i64>(0)?);
                    n += r.get::<_, i64>(1)?;
                    freed += r.get::<_, i64>(2)? as u64;
                    if freed >= over {
                        break;
                    }
                }
                (last, n)
            };
            let Some(last) = last else { break };
            self.delete_through(last)?;
            dropped.full += n as u64;
        }
        Ok(dropped)
    }

    /// Deletes every row up to `last_id`; a batch that was out among them is forgotten.
    fn delete_through(&mut self, last_id: i64) -> anyhow::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM scrapes WHERE id <= ?1")?
            .execute([last_id])?;
        if self.out.is_some_and(|(first, _)| first <= last_id) {
            self.out = None;
        }
        self.refresh_stats()?;
        Ok(())
    }

    /// The oldest rows, up to `max_samples` (at least one row), as one request body.
    pub fn next_batch(&mut self, max_samples: u64) -> anyhow::Result<Option<Batch>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, ts, samples, data FROM scrapes ORDER BY id LIMIT 10000")?;
        let mut rows = stmt.query([])?;
        let mut raw = Vec::new();
        let mut batch: Option<Batch> = None;
        while let Some(r) = rows.next()? {
            let (id, ts, n): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if let Some(b) = &batch {
                if b.samples + n as u64 > max_samples {
                    break;
                }
            }
            let data: Vec<u8> = r.get(3)?;
            // Concatenated WriteRequests decode as one with all their series.
            raw.extend(
                remote_write::decompress(&data)
                    .with_context(|| format!("buffered scrape {id} is corrupt"))?,
            );
            let b = batch.get_or_insert(Batch {
                first_id: id,
                last_id: id,
                samples: 0,
                oldest_ts: ts,
                body: Vec::new(),
            });
            b.last_id = id;
            b.samples += n as u64;
            b.oldest_ts = b.oldest_ts.min(ts);
        }
        drop(rows);
        drop(stmt);
        let Some(mut b) = batch else {
            return Ok(None);
        };
        b.body = remote_write::compress(&raw)?;
        self.out = Some((b.first_id, b.last_id));
        Ok(Some(b))
    }

    /// Whether the batch (its [`Batch::span`]) is still held: false once the bounds
    /// dropped its rows.
    pub fn holds(&self, span: (i64, i64)) -> bool {
        self.out == Some(span)
    }

    /// The endpoint answered for `batch` (accepted, or refused for good): its rows go.
    /// Returns false when the bounds had dropped the rows already (counted there).
    pub fn remove(&mut self, span: (i64, i64)) -> anyhow::Result<bool> {
        if !self.holds(span) {
            return Ok(false);
        }
        self.conn
            .prepare_cached("DELETE FROM scrapes WHERE id BETWEEN ?1 AND ?2")?
            .execute([span.0, span.1])?;
        self.out = None;
        self.refresh_stats()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use remote_write::{Label, TimeSeries, WriteRequest};

    const MIN: i64 = 60_000;

    fn scrape(ts: i64, n: usize) -> Vec<u8> {
        let req = WriteRequest {
            timeseries: (0..n)
                .map(|i| TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: format!("s{i}"),
                    }],
                    samples: vec![remote_write::Sample {
                        value: ts as f64,
                        timestamp: ts,
                    }],
                })
                .collect(),
        };
        remote_write::compress(&req.encode_to_vec()).unwrap()
    }

    fn open(dir: &Path, max_bytes: u64, max_age_min: u64) -> Buffer {
        Buffer::open(
            &dir.join("ep.db"),
            Bounds {
                max_bytes,
                max_age: Duration::from_secs(max_age_min * 60),
            },
        )
        .unwrap()
    }

    fn timestamps(b: &Batch) -> Vec<i64> {
        remote_write::decode_body(&b.body)
            .unwrap()
            .timeseries
            .iter()
            .map(|t| t.samples[0].timestamp)
            .collect()
    }

    #[test]
    fn batches_are_whole_scrapes_in_order_and_leave_only_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = open(dir.path(), 1 << 30, 60);
        for t in 1..=5 {
            b.append(t * 1000, 2, &scrape(t * 1000, 2), 5000).unwrap();
        }
        let first = b.next_batch(5).unwrap().unwrap();
        assert_eq!((first.samples, first.first_id, first.last_id), (4, 1, 2));
        assert_eq!(timestamps(&first), vec![1000, 1000, 2000, 2000]);
        // Asked again before an answer: the same rows, the same bytes.
        let again = b.next_batch(5).unwrap().unwrap();
        assert_eq!(again, first);
        assert!(b.remove(first.span()).unwrap());
        let next = b.next_batch(5).unwrap().unwrap();
        assert_eq!(timestamps(&next), vec![3000, 3000, 4000, 4000]);
        assert_eq!(b.stats().samples, 6);
    }

    #[test]
    fn a_scrape_larger_than_the_batch_size_goes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = open(dir.path(), 1 << 30, 60);
        b.append(1000, 10, &scrape(1000, 10), 1000).unwrap();
        b.append(2000, 1, &scrape(2000, 1), 2000).unwrap();
        let batch = b.next_batch(3).unwrap().unwrap();
        assert_eq!((batch.samples, batch.last_id), (10, 1));
    }

    #[test]
    fn over_max_bytes_the_oldest_scrapes_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000;
        let bound = scrape(t0, 50).len() as u64 * 7 / 2;
        let mut b = open(dir.path(), bound, 60);
        let mut dropped = 0;
        for t in 0..10 {
            let ts = t0 + t * 1000;
            dropped += b.append(ts, 50, &scrape(ts, 50), ts).unwrap().full;
            assert!(b.stats().bytes <= bound, "{:?}", b.stats());
        }
        assert!(dropped >= 6 * 50, "{dropped}");
        assert_eq!(
            dropped + b.stats().samples,
            500,
            "every sample is kept or counted"
        );
        let batch = b.next_batch(1000).unwrap().unwrap();
        let kept = timestamps(&batch);
        assert_eq!(*kept.last().unwrap(), t0 + 9000, "the newest are kept");
        assert_eq!(kept[0], t0 + 10_000 - (kept.len() as i64 / 50) * 1000);
    }

    #[test]
    fn older_than_max_age_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = open(dir.path(), 1 << 30, 10);
        for m in 0..5 {
            b.append(m * MIN, 3, &scrape(m * MIN, 3), m * MIN).unwrap();
        }
        // At minute 13, the scrapes of minutes 0..=2 are older than 10 minutes.
        let d = b.enforce(13 * MIN).unwrap();
        assert_eq!(
            d,
            Dropped {
                full: 0,
                too_old: 9
            }
        );
        assert_eq!(b.stats().oldest_ts, Some(3 * MIN));
        assert_eq!(b.stats().samples, 6);
    }

    #[test]
    fn a_batch_dropped_by_the_bounds_is_no_longer_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = open(dir.path(), 1 << 30, 10);
        b.append(0, 1, &scrape(0, 1), 0).unwrap();
        b.append(5 * MIN, 1, &scrape(5 * MIN, 1), 5 * MIN).unwrap();
        let batch = b.next_batch(1).unwrap().unwrap();
        assert!(b.holds(batch.span()));
        b.enforce(11 * MIN).unwrap();
        assert!(!b.holds(batch.span()));
        assert!(
            !b.remove(batch.span()).unwrap(),
            "counted as dropped, not as sent"
        );
        assert_eq!(b.stats().rows, 1);
    }

    #[test]
    fn buffered_scrapes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = open(dir.path(), 1 << 30, 60);
            b.append(1000, 4, &scrape(1000, 4), 1000).unwrap();
            b.append(2000, 4, &scrape(2000, 4), 2000).unwrap();
        }
        let mut b = open(dir.path(), 1 << 30, 60);
        assert_eq!(
            b.stats(),
            Stats {
                rows: 2,
                samples: 8,
                bytes: 2 * scrape(1000, 4).len() as u64,
                oldest_ts: Some(1000)
            }
        );
        let batch = b.next_batch(100).unwrap().unwrap();
        assert_eq!(
            timestamps(&batch),
            vec![1000; 4]
                .into_iter()
                .chain(vec![2000; 4])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ep.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = Buffer::open(
            &path,
            Bounds {
                max_bytes: 1,
                max_age: Duration::from_secs(1),
            },
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("format 99"), "{e}");
    }
}
