//! What goes in and out of the outbox.

use std::time::Duration;

use crate::domain::DedupKey;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// With its causes in the text: tokio-postgres says "error performing TLS handshake"
    /// and keeps the why (an unknown issuer, a name mismatch) in its source.
    #[error("database: {}", chain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to the database within the pool's wait.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A file or thread the store needs; `what` says which.
    #[error("store: {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The store is there, but refuses this request (full, or a value it cannot take).
    #[error("store: {0}")]
    Refused(String),
    #[error("store is closed")]
    Closed,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !s.contains(&more) {
            s.push_str(": ");
            s.push_str(&more);
        }
        source = inner.source();
    }
    s
}

impl StoreError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            what: what.into(),
            source,
        }
    }

    /// True when the disk is full: the caller answers 503 and Alertmanager retries.
    pub(crate) fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// A channel owner's term. One instance at a time delivers a channel (its owner, under
/// a lease in a shared store); each new term has a higher epoch, and a delivery taken in
/// flight under one term is completed only under it. The SQLite store, with one process,
/// has a single term, 0.
pub(crate) type Epoch = i64;

#[derive(Debug)]
pub(crate) struct NewNotification {
    pub key: DedupKey,
    pub group_key: String,
    pub received_at: i64,
    /// The webhook body in its stored form (`stored::encode`, format `stored::FORMAT`).
    pub payload: Vec<u8>,
    pub channels: Vec<String>,
    /// Per channel: ingest holds a slot of the channel's worker, which owns the channel
    /// under this epoch, and will hand the delivery over itself; so store it in flight
    /// (unless its group has an earlier open delivery on that channel, or the epoch is
    /// no longer the channel's).
    pub fast: Vec<Option<Epoch>>,
    /// Per channel: when the first attempt may start, and whether this notification calls
    /// off the group's deliveries not yet attempted (see `pipeline::hold`).
    pub holds: Vec<Hold>,
}

/// What a channel asks of a delivery before its first attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hold {
    /// Not attempted before this time (ms since the epoch); 0 for at once.
    pub not_before: i64,
    /// Cancel the group's deliveries on this channel that were never attempted.
    pub cancel_unstarted: bool,
}

/// One stored delivery of an accepted notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    pub id: i64,
    /// Stored in flight, for the caller to hand to the worker.
    pub handed_off: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Enqueued {
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
pub(crate) struct Claimed {
    pub id: i64,
    /// The term under which it was claimed, for [`crate::outbox::Outbox::complete`].
    pub epoch: Epoch,
    /// Attempts including this one.
    pub attempts: u32,
    pub created_at: i64,
    pub enqueued_at: i64,
    pub format: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Claim {
    pub deliveries: Vec<Claimed>,
    /// When the channel's next pending delivery is due, if it has one.
    pub next_due_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Completion {
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
pub(crate) enum Requeue {
    All,
    Ids(Vec<i64>),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub channels: Vec<ChannelStats>,
    pub dead: u64,
    /// In a shared store, which instance delivers each channel now (channel, instance);
    /// empty for the SQLite store, whose one process delivers them all.
    pub owners: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct ChannelStats {
    pub channel: String,
    pub open: u64,
    pub oldest_created_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    pub id: i64,
    pub channel: String,
    pub attempts: u32,
    pub created_at: i64,
    pub died_at: i64,
    pub last_error: String,
    pub format: i64,
    pub payload: Vec<u8>,
}

/// What a requeue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Requeued {
    pub count: usize,
    /// Asked-for ids that are not dead letters (never were, or no longer are).
    pub not_dead: Vec<i64>,
}

/// What the writer needs to know to accept or refuse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_pending: u64,
    pub dedup_window: Duration,
    pub retention: Duration,
}

impl Limits {
    pub(crate) fn of(s: &crate::config::Settings) -> Self {
        Limits {
            max_pending: s.storage.max_pending,
            dedup_window: s.dedup_window,
            retention: s.storage.retention,
        }
    }
}
