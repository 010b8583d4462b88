//! What every HTTP fake keeps: a script of answers, what it received, and a way for a
//! test to wait on either. Each fake keeps its vendor's parts (parsing, documented
//! refusals, answer bodies) and its own `Answer` and `Received` types.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::{watch, Notify};

pub struct Recorder<A, R> {
    log: Arc<Mutex<Log<A, R>>>,
    changed: watch::Sender<usize>,
    release: Arc<Notify>,
}

impl<A, R> Clone for Recorder<A, R> {
    fn clone(&self) -> Self {
        Recorder {
            log: self.log.clone(),
            changed: self.changed.clone(),
            release: self.release.clone(),
        }
    }
}

struct Log<A, R> {
    script: VecDeque<A>,
    default: Option<A>,
    received: Vec<R>,
}

impl<A: Clone, R: Clone> Recorder<A, R> {
    pub fn new() -> Self {
        Recorder {
            log: Arc::new(Mutex::new(Log {
                script: VecDeque::new(),
                default: None,
                received: Vec::new(),
            })),
            changed: watch::channel(0).0,
            release: Arc::new(Notify::new()),
        }
    }

    pub fn script(&self, answers: impl IntoIterator<Item = A>) {
        self.log.lock().unwrap().script.extend(answers);
    }

    /// The answer once the script has run out.
    pub fn set_default(&self, answer: A) {
        self.log.lock().unwrap().default = Some(answer);
    }

    /// The next scripted answer; else the default; else `otherwise`.
    pub fn next_answer(&self, otherwise: A) -> A {
        let mut log = self.log.lock().unwrap();
        let next = log.script.pop_front();
        next.or_else(|| log.default.clone()).unwrap_or(otherwise)
    }

    /// Wakes every request held until a release.
    pub fn release_held(&self) {
        self.release.notify_waiters();
    }

    /// The next release. A handler takes it before `push`: a test that sees the request
    /// arrive and releases it at once must not find nobody listening yet.
    pub fn next_release(&self) -> Notified<'_> {
        self.release.notified()
    }

    /// Records a request; returns its index for `update`.
    pub fn push(&self, r: R) -> usize {
        let i = {
            let mut log = self.log.lock().unwrap();
            log.received.push(r);
            log.received.len() - 1
        };
        self.changed.send_modify(|n| *n += 1);
        i
    }

    /// Changes a recorded request (its answer, once given).
    pub fn update(&self, i: usize, f: impl FnOnce(&mut R)) {
        f(&mut self.log.lock().unwrap().received[i]);
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn received(&self) -> Vec<R> {
        self.log.lock().unwrap().received.clone()
    }

    /// A look at what was received, without copying it.
    pub fn read<T>(&self, f: impl FnOnce(&[R]) -> T) -> T {
        f(&self.log.lock().unwrap().received)
    }

    /// Waits until `pred` holds over what was received, or panics after `within`; `who`
    /// names the fake in the panic.
    pub async fn wait_for(
        &self,
        who: &str,
        what: &str,
        within: Duration,
        pred: impl Fn(&[R]) -> bool,
    ) {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.read(&pred) {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let got = self.read(<[R]>::len);
                panic!(
                    "timed out after {within:?} waiting for {what} ({who} received {got} requests)"
                );
            }
        }
    }
}
