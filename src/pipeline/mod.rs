//! The pure decisions between ingest and the outbox: which notifications are the same
//! (dedup) and which channels get one (route). No I/O here.

pub mod dedup;
pub mod route;

pub use dedup::DedupKey;
pub use route::Router;
