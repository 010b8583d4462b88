//! The pure decisions between ingest and the outbox: which channels get a notification
//! (route), and what a channel asks before the first attempt (hold). No I/O here.
//! Which notifications are the same is the notification's own key (`domain::dedup`); the
//! outbox decides a duplicate in the transaction that would store it.

pub(crate) mod hold;
pub(crate) mod route;

pub(crate) use hold::Holds;
pub(crate) use route::Routes;
