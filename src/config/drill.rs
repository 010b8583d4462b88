//! `[[drills]]`: surprise failover drills that `serve` fires by itself, at a random
//! moment within a time-of-day window, about every `every`. A drill never promotes: it
//! runs the whole chain with a dry-run request (`amrelay drill` says what each step
//! checks).

use std::time::Duration;

use reqwest::Url;

use super::raw::RawDrill;
use super::{Problems, Settings};

#[derive(Debug, Clone, PartialEq)]
pub struct DrillSettings {
    /// A promotion channel's target.
    pub target: String,
    /// The mean time between two surprise drills of the target.
    pub every: Duration,
    /// Up to this much is added at random to `every`.
    pub jitter: Duration,
    /// When in the day (UTC) a drill may start.
    pub window: Window,
    /// Post the drill's alert through these Alertmanagers' API (the real routing path);
    /// none: straight to this amrelay's webhook.
    pub alertmanagers: Vec<Url>,
    /// Each step must pass within this.
    pub step_timeout: Duration,
}

/// A time-of-day window in UTC, `"HH:MM-HH:MM"`, minutes from midnight; `end` may be
/// below `start` (a window across midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

impl Window {
    pub const ALL_DAY: Window = Window {
        start: 0,
        end: 24 * 60,
    };

    pub fn parse(s: &str) -> Result<Window, String> {
        let expected =
            || format!("expected \"HH:MM-HH:MM\" (UTC), e.g. \"09:00-16:00\", got {s:?}");
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(expected)?;
        let (start, end) = (
            minutes(a).ok_or_else(expected)?,
            minutes(b).ok_or_else(expected)?,
        );
        if start == end {
            return Err(format!("{s:?} is an empty window"));
        }
        Ok(Window { start, end })
    }

    /// Minutes of the day the window covers.
    pub fn length(self) -> u32 {
        if self.end > self.start {
            self.end - self.start
        } else {
            24 * 60 - self.start + self.end
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

pub(super) fn drills(raw: &[RawDrill], p: &mut Problems) -> Vec<DrillSettings> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, d)| drill(i, d, p))
        .collect()
}

fn drill(i: usize, d: &RawDrill, p: &mut Problems) -> Option<DrillSettings> {
    let key = |k: &str| format!("drills[{i}].{k}");
    let target = match d.target.as_deref() {
        Some(t) if !t.is_empty() => Some(t.to_owned()),
        _ => p.push(
            key("target"),
            "is required: the target of a promotion channel",
        ),
    };
    let every = match d.every.as_deref().map(super::values::duration) {
        Some(Ok(e)) if e.is_zero() => p.push(key("every"), "must be above zero"),
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => p.push(key("every"), e),
        None => p.push(key("every"), "is required, e.g. \"90d\""),
    };
    let jitter = p.duration(&key("jitter"), d.jitter.as_deref(), "0s");
    let window = match d.window.as_deref() {
        None => Some(Window::ALL_DAY),
        Some(w) => Window::parse(w).map_or_else(|e| p.push(key("window"), e), Some),
    };
    let alertmanagers: Vec<Url> = d
        .alertmanagers
        .iter()
        .enumerate()
        .filter_map(|(j, u)| p.url(&key(&format!("alertmanagers[{j}]")), u))
        .collect();
    let step_timeout = p.duration(&key("step_timeout"), d.step_timeout.as_deref(), "5m");
    if step_timeout.is_zero() {
        p.push::<()>(key("step_timeout"), "must be above zero");
    }
    Some(DrillSettings {
        target: target?,
        every: every?,
        jitter,
        window: window?,
        alertmanagers,
        step_timeout,
    })
}

/// Each drill names a promotion channel's target, once.
pub(super) fn check_targets(s: &Settings, p: &mut Problems) {
    for (i, d) in s.drills.iter().enumerate() {
        if let Err(e) = s.promotion_channel_of(&d.target) {
            p.push::<()>(format!("drills[{i}].target"), e);
        }
        if s.drills[..i].iter().any(|o| o.target == d.target) {
            p.push::<()>(
                format!("drills[{i}].target"),
                format!(
                    "{:?} has a drill already: one [[drills]] per target",
                    d.target
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_cross_midnight() {
        let w = Window::parse("09:00-16:30").unwrap();
        assert_eq!((w.start, w.end, w.length()), (540, 990, 450));
        let night = Window::parse("22:00-02:00").unwrap();
        assert_eq!(night.length(), 240);
        assert_eq!(Window::parse("00:00-24:00").unwrap(), Window::ALL_DAY);
        assert_eq!(night.to_string(), "22:00-02:00");
        for bad in [
            "9-16",
            "09:00",
            "25:00-26:00",
            "09:60-10:00",
            "10:00-10:00",
            "24:01-01:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
