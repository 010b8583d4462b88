//! `startsAt` and `endsAt`: RFC 3339 times, as Go's `time.Time` writes them
//! (`2026-11-26T15:34:53.030123456Z`, or with a `+01:00` offset).
//!
//! chrono's general parser took about 0.4 µs a time, a sixth of parsing a whole webhook
//! of five alerts; the shape Go writes is read here directly, and anything else (a leap
//! second, more than nine digits of fraction, a lower-case `t`) goes to chrono.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// A time read from the wire.
#[derive(Debug, Clone, Copy)]
pub(super) struct Time(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TimeVisitor)
    }
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = Time;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 time")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Time, E> {
        parse(s)
            .map(Time)
            .ok_or_else(|| E::custom(format!("expected an RFC 3339 time, got {s:?}")))
    }
}

pub(super) fn parse(s: &str) -> Option<DateTime<Utc>> {
    go_shape(s)
        .or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        // RFC 3339 years have four digits. An offset can move a time at either end out
        // of them (`0000-01-01T00:00:00+01:00` is in year -1 UTC), and `encode` could not
        // write it back in a form this reads.
        .filter(|t| (0..=9999).contains(&t.year()))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, up to nine digits of fraction.
fn go_shape(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |v, c| {
            c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let (mut i, mut nanos) = (19, 0u32);
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(start, i)? * 10u32.pow((9 - digits) as u32);
    }
    let offset = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let secs = i64::from(num(i + 1, i + 3)? * 3600 + num(i + 4, i + 6)? * 60);
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, nanos)?;
    let utc = date
        .and_time(time)
        .checked_sub_signed(TimeDelta::seconds(offset))?;
    Some(utc.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_reads_every_shape_as_chrono_does() {
        for s in [
            "2026-11-26T15:34:53Z",
            "2026-11-26T15:34:53.0Z",
            "2026-11-26T15:34:53.03Z",
            "2026-11-26T15:34:53.030Z",
            "2026-11-26T15:34:53.030123456Z",
            "2026-11-26T15:34:53.1+01:00",
            "2026-11-26T00:10:00-05:30",
            "2026-01-01T00:30:00+02:00",
            "0001-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999999Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
            assert_eq!(go_shape(s), Some(want), "{s}");
        }
    }

    #[test]
    fn other_valid_shapes_go_to_chrono() {
        for s in [
            "2026-11-26t15:34:53z",
            "2026-11-26T15:34:53.0123456789Z",
            "2026-11-26 15:34:53Z",
        ] {
            assert_eq!(go_shape(s), None, "{s}");
            assert!(parse(s).is_some(), "{s}");
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for s in [
            "",
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-11-26T25:00:00Z",
            "2026-11-26T15:34:53.Z",
            "2026-11-26T15:34:53",
            "2026-11-26T15:34:53+0100",
            "2026-11-26T15:34:53Zjunk",
            "2026-1a-26T15:34:53Z",
            // In year -1 and year 10000 once in UTC (found by wire/proptests.rs).
            "0000-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }
}
