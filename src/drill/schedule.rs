//! Surprise drills (`[[drills]]`): each target's next drill is due at a random moment
//! `every` + up to `jitter` after the last, moved into the time-of-day window. The due
//! time is in the store; the instance that moves it on (a compare-and-set) fires the
//! drill, so that several instances on one store fire each drill once.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use super::{Refusal, Request, Runner};
use crate::config::{DrillSettings, Window};
use crate::domain::time::{human, now_ms};

/// A random number in `0..=max` (uuid's v4 bytes come from the OS's generator).
fn random_up_to(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    (uuid::Uuid::new_v4().as_u128() % (u128::from(max) + 1)) as u64
}

/// The next drill after `now`: `every` plus a random part of `jitter`, then, if that
/// falls outside the window, a random minute of the window's next opening.
pub(crate) fn next_due(now_ms: i64, d: &DrillSettings, random: impl Fn(u64) -> u64) -> i64 {
    let jitter = random(d.jitter.as_millis() as u64);
    let at = now_ms + d.every.as_millis() as i64 + jitter as i64;
    into_window(at, d.window, random)
}

fn into_window(at_ms: i64, w: Window, random: impl Fn(u64) -> u64) -> i64 {
    if w == Window::ALL_DAY {
        return at_ms;
    }
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(at_ms) else {
        return at_ms;
    };
    let minute = t.hour() * 60 + t.minute();
    let inside = if w.end > w.start {
        (w.start..w.end).contains(&minute)
    } else {
        minute >= w.start || minute < w.end
    };
    if inside {
        return at_ms;
    }
    // Minutes until the window opens next, then a random moment within it.
    let until_open = (i64::from(w.start) - i64::from(minute)).rem_euclid(24 * 60);
    let start_of_minute =
        at_ms - i64::from(t.second()) * 1000 - i64::from(t.timestamp_subsec_millis());
    let open = start_of_minute + until_open * 60_000;
    open + random(u64::from(w.length()) * 60_000 - 1) as i64
}

/// How often `serve` looks whether a drill is due.
fn check_every(drills: &[DrillSettings]) -> Duration {
    drills
        .iter()
        .map(|d| d.every / 10)
        .min()
        .unwrap_or(Duration::from_secs(30))
        .clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Fires due surprise drills, and refreshes the drill gauges, until aborted.
pub(crate) async fn run(runner: Runner) {
    loop {
        let drills = runner.settings.lock().await.drills.clone();
        for d in &drills {
            fire_if_due(&runner, d).await;
        }
        runner.refresh_metrics().await;
        tokio::time::sleep(check_every(&drills)).await;
    }
}

async fn fire_if_due(runner: &Runner, d: &DrillSettings) {
    let now = now_ms();
    let due = match runner
        .caller
        .drill_due_at(&d.target, next_due(now, d, random_up_to))
        .await
    {
        Ok(due) => due,
        Err(e) => return tracing::error!(error = %e, "cannot read the drill schedule"),
    };
    if due > now {
        return;
    }
    let next = next_due(now, d, random_up_to);
    match runner.caller.drill_take(&d.target, due, next).await {
        Ok(true) => {}
        // Another instance took it.
        Ok(false) => return,
        Err(e) => return tracing::error!(error = %e, "cannot move the drill schedule on"),
    }
    let req = Request {
        target: d.target.clone(),
        alertmanagers: d.alertmanagers.clone(),
        live: false,
        surprise: true,
        step_timeout: d.step_timeout,
    };
    match runner.start(req).await {
        Ok(rec) => {
            tracing::warn!(drill = %rec.id, target = %d.target, next = %human(next), "surprise failover drill fired (a drill, not an outage)")
        }
        Err(Refusal::Busy(why)) => {
            tracing::warn!(target = %d.target, %why, next = %human(next), "surprise drill skipped")
        }
        Err(e) => tracing::error!(target = %d.target, error = %e, "surprise drill could not start"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(every: &str, jitter: &str, window: &str) -> DrillSettings {
        DrillSettings {
            target: "primary".into(),
            every: humantime::parse_duration(every).unwrap(),
            jitter: humantime::parse_duration(jitter).unwrap(),
            window: Window::parse(window).unwrap(),
            alertmanagers: Vec::new(),
            step_timeout: Duration::from_secs(300),
        }
    }

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn due_is_every_plus_jitter_and_inside_the_window() {
        let d = drill("90d", "7d", "09:00-16:00");
        let now = at("2026-12-04T12:00:00Z");
        // No jitter drawn, inside the window: exactly `every` later.
        assert_eq!(next_due(now, &d, |_| 0), now + 90 * 86_400_000);
        // The most jitter: 7 days more, still noon.
        assert_eq!(next_due(now, &d, |m| m), now + 97 * 86_400_000);
        // From 20:00 the window's next opening is 09:00 the day after; the random
        // part lands within 09:00-16:00 (with the most jitter, 7 days later).
        let evening = at("2026-12-04T20:00:00Z");
        let first = next_due(evening, &d, |_| 0);
        assert_eq!(first, at("2027-03-05T09:00:00Z"));
        let last = next_due(evening, &d, |m| m);
        assert_eq!(last, at("2027-03-12T15:59:59.999Z"));
    }

    #[test]
    fn a_window_across_midnight() {
        let d = drill("1d", "0s", "22:00-02:00");
        let noon = at("2026-12-04T12:00:00Z");
        assert_eq!(next_due(noon, &d, |_| 0), at("2026-12-05T22:00:00Z"));
        let one_am = at("2026-12-04T01:00:00Z");
        assert_eq!(next_due(one_am, &d, |_| 0), at("2026-12-05T01:00:00Z"));
    }

    #[test]
    fn the_random_part_is_within_its_bound() {
        for max in [0, 1, 7, 1_000_000] {
            for _ in 0..200 {
                assert!(random_up_to(max) <= max);
            }
        }
        assert!((0..200).any(|_| random_up_to(1_000_000) > 0));
    }
}
