//! What goes in and out of the outbox.

use crate::domain::DedupKey;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Io(String),
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// True when the disk is full: the caller answers 503 and Alertmanager retries.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DiskFull)
    }
}

#[derive(Debug)]
pub struct NewNotification {
    pub key: DedupKey,
    pub group_key: String,
    pub received_at: i64,
    /// The webhook body in its stored form (`stored::encode`, format `stored::FORMAT`).
    pub payload: Vec<u8>,
    pub channels: Vec<String>,
    /// Per channel: ingest holds a worker slot and will hand the delivery over itself, so
    /// store it in flight (unless its group has an earlier open delivery on that channel).
    pub fast: Vec<bool>,
    /// Per channel: when the first attempt may start, and whether this notification calls
    /// off the group's deliveries not yet attempted (see `pipeline::hold`).
    pub holds: Vec<Hold>,
}

/// What a channel asks of a delivery before its first attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hold {
    /// Not attempted before this time (ms since the epoch); 0 for at once.
    pub not_before: i64,
    /// Cancel the group's deliveries on this channel that were never attempted.
    pub cancel_unstarted: bool,
}

/// One stored delivery of an accepted notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    /// Stored in flight, for the caller to hand to the worker.
    pub handed_off: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Accepted {
        /// In the order of `NewNotification::channels`.
        deliveries: Vec<Stored>,
        enqueued_at: i64,
    },
    Duplicate,
    Full {
        pending: u64,
        max: u64,
    },
}

#[derive(Debug)]
pub struct Claimed {
    pub id: i64,
    pub channel: String,
    pub notification_id: i64,
    /// Attempts including this one.
    pub attempts: u32,
    pub created_at: i64,
    pub enqueued_at: i64,
    pub format: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub struct Claim {
    pub deliveries: Vec<Claimed>,
    /// When the channel's next pending delivery is due, if it has one.
    pub next_due_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    Delivered,
    RetryAt {
        at: i64,
        error: String,
    },
    FailOver {
        to: String,
        error: String,
    },
    Dead {
        error: String,
    },
    /// Not attempted after all (amrelay is stopping): pending again, attempt not counted.
    Release,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Requeue {
    All,
    Ids(Vec<i64>),
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub channels: Vec<ChannelStats>,
    pub dead: u64,
}

#[derive(Debug, Clone)]
pub struct ChannelStats {
    pub channel: String,
    pub open: u64,
    pub oldest_created_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub channel: String,
    pub attempts: u32,
    pub created_at: i64,
    pub died_at: i64,
    pub last_error: String,
    pub format: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub enum Request {
    Enqueue(NewNotification),
    Claim {
        channel: String,
        limit: usize,
    },
    Complete {
        id: i64,
        completion: Completion,
    },
    /// Counts the undelivered rows again: another process (the CLI) may have requeued
    /// some. The writer keeps the count itself between these.
    CountOpen,
    DeadLetters {
        limit: usize,
    },
    Requeue(Requeue),
    Prune,
    /// A small write, for the readiness probe.
    Probe,
    /// Every in-flight row back to pending: nothing is attempting them any more.
    RecoverInflight,
}

#[derive(Debug)]
pub enum Response {
    Enqueued(Enqueued),
    Claimed(Claim),
    /// An outcome recorded; `wakes` when it may have made a row claimable.
    Completed {
        wakes: bool,
    },
    Done,
    DeadLetters(Vec<DeadLetter>),
    Count(usize),
}
