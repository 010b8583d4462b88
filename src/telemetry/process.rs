//! The standard `process_*` metrics every Prometheus exporter has, read from `/proc` at
//! each scrape (Linux only; elsewhere there are none), with the names and help texts of
//! the Go client's process collector.
//!
//! Written here because prometheus-client has no process collector of its own, and the
//! one crate that adds it for prometheus-client (kubert-prometheus-process) is built on
//! an older prometheus-client, whose registry amrelay's metrics cannot join.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One reading of this process's counters.
#[derive(Debug)]
pub(crate) struct Sample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// `/proc/self/stat`'s fields after the command name, which is in parentheses and may
/// hold spaces and parentheses itself, so the fields start after the last `)`.
/// Returns (utime + stime in ticks, threads, start time in ticks after boot, vsize bytes,
/// rss pages); see proc_pid_stat(5).
pub(crate) fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; proc(5) numbers fields from 1.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some((
        field(14)? + field(15)?,
        field(20)?,
        field(22)?,
        field(23)?,
        field(24)?,
    ))
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
pub(crate) fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(target_os = "linux")]
fn read() -> Option<Sample> {
    // SAFETY: sysconf and getrlimit only read; the rlimit is written into a local.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let (ticks, page) = (ticks as f64, page as u64);
    let (cpu, threads, start, vsize, rss) =
        parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: see above.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some(limit.rlim_cur);
    Some(Sample {
        cpu_seconds: cpu as f64 / ticks,
        resident_bytes: rss * page,
        virtual_bytes: vsize,
        start_time_seconds: boot as f64 + start as f64 / ticks,
        threads,
        open_fds,
        max_fds,
    })
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<Sample> {
    None
}

/// Registered once per registry; reads `/proc` when the registry is encoded.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, v: f64| -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        if let Some(n) = s.open_fds {
            // The directory listing's own descriptor is counted too, as in the Go client.
            gauge(
                "process_open_fds",
                "Number of open file descriptors.",
                n as f64,
            )?;
        }
        if let Some(n) = s.max_fds {
            gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                n as f64,
            )?;
        }
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            s.virtual_bytes as f64,
        )?;
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            s.resident_bytes as f64,
        )?;
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds,
        )?;
        gauge(
            "process_threads",
            "Number of OS threads in the process.",
            s.threads as f64,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_boot_time, parse_stat};

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (amrelay (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    150 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0";
        assert_eq!(parse_stat(stat), Some((200, 7, 123456, 104857600, 2560)));
        assert_eq!(parse_stat("4242 (amrelay) S 1"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(parse_boot_time(stat), Some(1_700_000_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_started_and_using_memory_and_descriptors() {
        let s = super::read().expect("/proc is readable");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0 * 365.0);
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.open_fds.unwrap() >= 3 && s.max_fds.unwrap() >= s.open_fds.unwrap());
        assert!(s.threads >= 1);
    }
}
