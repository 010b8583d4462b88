//! The circuit breaker of a channel with a fallback. After `failures` failed attempts in
//! a row the circuit opens: deliveries go straight to the fallback instead of waiting
//! out retries against a channel that is down. After `open_for`, one delivery probes
//! the channel (half-open); its success closes the circuit, its failure opens it again.
//! Pure: the caller passes the time.

use std::sync::Mutex;

use tokio::time::{Duration, Instant};

use crate::config::CircuitPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// The value of `amrelay_channel_circuit_state`.
    pub(super) fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

/// What to do with the delivery at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    Send,
    /// Send, as the one probe of a half-open circuit.
    Probe,
    /// Hand to the fallback without an attempt.
    Divert,
}

pub(super) struct Circuit {
    policy: CircuitPolicy,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    failures: u32,
    open_until: Option<Instant>,
    /// A probe in flight since then. A probe that never reports (its attempt was
    /// abandoned at shutdown) stops counting after `open_for`.
    probing_since: Option<Instant>,
}

impl Circuit {
    pub(super) fn new(policy: CircuitPolicy) -> Self {
        Circuit {
            policy,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(super) fn admit(&self, now: Instant) -> Admit {
        let mut c = self.lock();
        match c.open_until {
            None => Admit::Send,
            Some(until) if now < until => Admit::Divert,
            Some(_) => match c.probing_since {
                Some(since) if now < since + self.policy.open_for => Admit::Divert,
                _ => {
                    c.probing_since = Some(now);
                    Admit::Probe
                }
            },
        }
    }

    /// Records an attempt's result; returns the new state when it changed.
    pub(super) fn record(
        &self,
        admitted: Admit,
        success: bool,
        now: Instant,
    ) -> Option<CircuitState> {
        let mut c = self.lock();
        let before = state_of(&c, now, self.policy.open_for);
        if success {
            *c = Inner::default();
        } else if admitted == Admit::Probe {
            c.open_until = Some(now + self.policy.open_for);
            c.probing_since = None;
        } else {
            c.failures = c.failures.saturating_add(1);
            if c.open_until.is_none() && c.failures >= self.policy.failures {
                c.open_until = Some(now + self.policy.open_for);
            }
        }
        let after = state_of(&c, now, self.policy.open_for);
        (after != before).then_some(after)
    }

    #[cfg(test)]
    pub(super) fn state(&self, now: Instant) -> CircuitState {
        state_of(&self.lock(), now, self.policy.open_for)
    }

    pub(super) fn failures(&self) -> u32 {
        self.lock().failures
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn state_of(c: &Inner, now: Instant, open_for: Duration) -> CircuitState {
    match (c.open_until, c.probing_since) {
        (None, _) => CircuitState::Closed,
        (Some(_), Some(since)) if now < since + open_for => CircuitState::HalfOpen,
        (Some(_), _) => CircuitState::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit() -> Circuit {
        Circuit::new(CircuitPolicy {
            failures: 3,
            open_for: Duration::from_secs(30),
        })
    }

    #[test]
    fn opens_after_n_failures_in_a_row() {
        let c = circuit();
        let t = Instant::now();
        assert_eq!(c.record(Admit::Send, false, t), None);
        assert_eq!(c.record(Admit::Send, false, t), None);
        // A success in between starts the count again.
        assert_eq!(c.record(Admit::Send, true, t), None);
        assert_eq!(c.record(Admit::Send, false, t), None);
        assert_eq!(c.record(Admit::Send, false, t), None);
        assert_eq!(c.admit(t), Admit::Send);
        assert_eq!(c.record(Admit::Send, false, t), Some(CircuitState::Open));
        assert_eq!(c.admit(t + Duration::from_secs(29)), Admit::Divert);
    }

    #[test]
    fn one_probe_at_a_time_then_closed_or_open_again() {
        let c = circuit();
        let t = Instant::now();
        for _ in 0..3 {
            c.record(Admit::Send, false, t);
        }
        let later = t + Duration::from_secs(30);
        assert_eq!(c.admit(later), Admit::Probe);
        assert_eq!(c.state(later), CircuitState::HalfOpen);
        assert_eq!(c.admit(later), Admit::Divert, "a second probe at once");
        // The probe fails: open for another period.
        assert_eq!(
            c.record(Admit::Probe, false, later),
            Some(CircuitState::Open)
        );
        assert_eq!(c.admit(later + Duration::from_secs(10)), Admit::Divert);
        let again = later + Duration::from_secs(30);
        assert_eq!(c.admit(again), Admit::Probe);
        assert_eq!(
            c.record(Admit::Probe, true, again),
            Some(CircuitState::Closed)
        );
        assert_eq!(c.admit(again), Admit::Send);
        assert_eq!(c.failures(), 0);
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced() {
        let c = circuit();
        let t = Instant::now();
        for _ in 0..3 {
            c.record(Admit::Send, false, t);
        }
        let probe_at = t + Duration::from_secs(30);
        assert_eq!(c.admit(probe_at), Admit::Probe);
        assert_eq!(c.admit(probe_at + Duration::from_secs(29)), Admit::Divert);
        assert_eq!(c.admit(probe_at + Duration::from_secs(30)), Admit::Probe);
    }
}
