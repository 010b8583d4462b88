//! Logs (tracing, text or JSON on stderr) and the Prometheus metrics.

pub(crate) mod exposition;
pub(crate) mod metrics;
pub(crate) mod process;
pub(crate) mod reasons;

pub(crate) use metrics::Metrics;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG` wins over `log.level` when set.
pub(crate) fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Lets one log line through per `every_ms`; the rest are counted. For refusals and
/// failures that come in floods (a full disk, a flood of connections), where a line each
/// would fill the log, and the disk it may share.
pub(crate) struct LogEvery {
    every_ms: i64,
    last_ms: AtomicI64,
    suppressed: AtomicU64,
}

impl LogEvery {
    pub(crate) fn new(every_ms: i64) -> Self {
        LogEvery {
            every_ms,
            last_ms: AtomicI64::new(i64::MIN / 2),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one)` when this one may be logged.
    pub(crate) fn allow(&self, now_ms: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms - last >= self.every_ms
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::LogEvery;

    #[test]
    fn a_flood_of_refusals_logs_once_per_interval_and_counts_the_rest() {
        let l = LogEvery::new(10_000);
        assert_eq!(l.allow(1_000), Some(0));
        assert_eq!(l.allow(1_001), None);
        assert_eq!(l.allow(10_999), None);
        assert_eq!(l.allow(11_000), Some(2));
        assert_eq!(l.allow(11_001), None);
    }
}
