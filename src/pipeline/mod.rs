//! The pure decisions between ingest and the outbox: which notifications are the same
//! (dedup), which channels get one (route), and what a channel asks before the first
//! attempt (hold). No I/O here.

pub mod dedup;
pub mod hold;
pub mod route;

pub use dedup::DedupKey;
pub use hold::Holds;
pub use route::Router;
