//! What the writer thread is asked to do. Each request carries its own reply channel of
//! the exact answer type (mini-redis's pattern), so a wrong answer cannot compile.
//!
//! The writer runs a batch of requests in one transaction, so an answer is held in its
//! request until the transaction commits: a batch that rolls back clears them all and
//! runs each request alone.

use tokio::sync::oneshot;

use crate::outbox::types::*;

/// One answer on its way back: held until its transaction commits, then sent.
pub(super) struct Responder<T> {
    held: Option<T>,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

impl<T> Responder<T> {
    /// A reply slot and the receiver its caller awaits.
    pub(super) fn new() -> (Self, oneshot::Receiver<Result<T, StoreError>>) {
        let (tx, rx) = oneshot::channel();
        (Responder { held: None, tx }, rx)
    }

    /// The answer of the transaction under way.
    pub(super) fn hold(&mut self, answer: T) {
        self.held = Some(answer);
    }

    fn held(&self) -> Option<&T> {
        self.held.as_ref()
    }

    fn send(self, failed: Option<StoreError>) {
        let answer = match (failed, self.held) {
            (Some(e), _) => Err(e),
            (None, Some(a)) => Ok(a),
            // Every request holds its answer before its transaction commits.
            (None, None) => Err(StoreError::Refused(
                "request ended without an answer".into(),
            )),
        };
        // The caller may have gone (a webhook whose client hung up); nothing to do then.
        let _ = self.tx.send(answer);
    }
}

pub(super) enum Request {
    Enqueue(NewNotification, Responder<Enqueued>),
    Claim {
        channel: String,
        limit: usize,
        reply: Responder<Claim>,
    },
    /// Answers whether the change may have made a row claimable (`Completed::wakes`).
    Complete {
        id: i64,
        completion: Completion,
        reply: Responder<Completed>,
    },
    /// Counts the undelivered rows again: another process (the CLI) may have requeued
    /// some. The writer keeps the count itself between these.
    CountOpen(Responder<usize>),
    DeadLetters {
        limit: usize,
        reply: Responder<Vec<DeadLetter>>,
    },
    Requeue(Requeue, Responder<Requeued>),
    Prune(Responder<usize>),
    /// A small write, for the readiness probe.
    Probe(Responder<()>),
    /// Every in-flight row back to pending: nothing is attempting them any more.
    RecoverInflight(Responder<usize>),
}

/// An outcome recorded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Completed {
    /// The change may have made a row claimable.
    pub(super) wakes: bool,
}

impl Request {
    /// An acknowledgement promises the notification survives a power loss, so a batch
    /// with one of these is fsynced before its replies go out.
    pub(super) fn needs_fsync(&self) -> bool {
        matches!(self, Request::Enqueue(..) | Request::Requeue(..))
    }

    /// Whether, once committed, workers should look at the store again. A delivery
    /// handed straight to its worker gives them nothing to claim.
    pub(super) fn makes_work(&self) -> bool {
        match self {
            Request::Enqueue(_, r) => matches!(
                r.held(),
                Some(Enqueued::Accepted { deliveries, .. }) if deliveries.iter().any(|d| !d.handed_off)
            ),
            Request::Complete { reply, .. } => reply.held().is_some_and(|c| c.wakes),
            Request::Requeue(_, r) => r.held().is_some_and(|r| r.count > 0),
            Request::RecoverInflight(r) => r.held().is_some_and(|n| *n > 0),
            _ => false,
        }
    }

    /// Sends the answer held, or `failed`.
    pub(super) fn answer(self, failed: Option<StoreError>) {
        match self {
            Request::Enqueue(_, r) => r.send(failed),
            Request::Claim { reply, .. } => reply.send(failed),
            Request::Complete { reply, .. } => reply.send(failed),
            Request::CountOpen(r) | Request::Prune(r) | Request::RecoverInflight(r) => {
                r.send(failed)
            }
            Request::DeadLetters { reply, .. } => reply.send(failed),
            Request::Requeue(_, r) => r.send(failed),
            Request::Probe(r) => r.send(failed),
        }
    }

    /// Forgets the answer held: its transaction rolled back.
    pub(super) fn forget(&mut self) {
        match self {
            Request::Enqueue(_, r) => r.held = None,
            Request::Claim { reply, .. } => reply.held = None,
            Request::Complete { reply, .. } => reply.held = None,
            Request::CountOpen(r) | Request::Prune(r) | Request::RecoverInflight(r) => {
                r.held = None
            }
            Request::DeadLetters { reply, .. } => reply.held = None,
            Request::Requeue(_, r) => r.held = None,
            Request::Probe(r) => r.held = None,
        }
    }
}
