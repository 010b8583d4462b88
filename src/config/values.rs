//! Parsers for the value types the config uses: durations, sizes, rates and secrets.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

/// A token-bucket rate: `N/s`, `N/m` or `N/h`; the burst is N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = || format!("expected \"N/s\", \"N/m\" or \"N/h\", got {s:?}");
        let (n, unit) = s.trim().split_once('/').ok_or_else(expected)?;
        let count = n
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(expected)?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(expected()),
        };
        Ok(Rate { count, per })
    }
}

pub(super) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("expected a duration like \"30s\", \"10m\" or \"7d\", got {s:?} ({e})")
    })
}

pub(super) fn byte_size(s: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like \"4MiB\" or \"512KiB\", got {s:?}"))?;
    usize::try_from(size.as_u64())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("expected a size above zero, got {s:?}"))
}

/// This host's name, for `server.instance`; "amrelay" when it has none that fits.
pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| instance_name(h))
        .unwrap_or_else(|| "amrelay".to_owned())
}

/// What an instance may be called: short, and safe in a log line and a label.
pub(super) fn instance_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Reads a secret from `<base>_file` (trimmed) or `<base>_env` (an environment variable's name).
pub(super) fn secret(
    base: &str,
    file: Option<&str>,
    env: Option<&str>,
) -> Result<Option<SecretString>, (String, String)> {
    match (file, env) {
        (Some(_), Some(_)) => Err((
            format!("{base}_file"),
            format!("set either {base}_file or {base}_env, not both"),
        )),
        (Some(path), None) => match std::fs::read_to_string(Path::new(path)) {
            Ok(s) if s.trim().is_empty() => {
                Err((format!("{base}_file"), format!("{path:?} is empty")))
            }
            Ok(s) => Ok(Some(SecretString::from(s.trim().to_owned()))),
            Err(e) => Err((format!("{base}_file"), format!("cannot read {path:?}: {e}"))),
        },
        (None, Some(var)) => match std::env::var(var) {
            Ok(s) if !s.trim().is_empty() => Ok(Some(SecretString::from(s.trim().to_owned()))),
            _ => Err((
                format!("{base}_env"),
                format!("environment variable {var:?} is not set or empty"),
            )),
        },
        (None, None) => Ok(None),
    }
}

/// A name amrelay uses in keys, files and labels: letters, digits, '-', '_' or '.'.
pub(super) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_per_second_minute_and_hour() {
        assert_eq!(Rate::parse("1/s").unwrap().per, Duration::from_secs(1));
        assert_eq!(Rate::parse("30/m").unwrap().count.get(), 30);
        assert_eq!(
            Rate::parse(" 2 / h ").unwrap().per,
            Duration::from_secs(3600)
        );
        for bad in ["fast", "0/s", "1/d", "-1/s", "1"] {
            assert!(Rate::parse(bad).unwrap_err().contains("expected"), "{bad}");
        }
    }

    #[test]
    fn sizes_and_durations_name_what_was_expected() {
        assert_eq!(byte_size("4MiB").unwrap(), 4 * 1024 * 1024);
        assert!(byte_size("lots").unwrap_err().contains("\"lots\""));
        assert!(byte_size("0B").is_err());
        assert_eq!(duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert!(duration("soon").unwrap_err().contains("\"soon\""));
    }

    #[test]
    fn secret_files_are_trimmed_and_both_sources_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "  xoxb-123\n").unwrap();
        let s = secret("token", p.to_str(), None).unwrap().unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&s), "xoxb-123");
        assert_eq!(
            secret("token", Some("a"), Some("B")).unwrap_err().0,
            "token_file"
        );
        assert_eq!(
            secret("token", None, Some("AMRELAY_TEST_UNSET_VAR"))
                .unwrap_err()
                .0,
            "token_env"
        );
    }
}

#[cfg(test)]
mod proptests;
