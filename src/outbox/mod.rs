//! The durable outbox, the source of truth: a webhook is acknowledged only once its
//! deliveries are committed here, and a delivery leaves only when its channel took it.
//!
//! One writer thread owns the SQLite connection and commits requests in groups, so a
//! burst of webhooks shares one fsync instead of paying one each. WAL checkpoints run on a
//! thread of their own (`checkpoint.rs`), so a commit never waits for one.

mod checkpoint;
mod made_here;
mod schema;
mod seen;
mod store;
mod types;
mod writer;

pub use store::{Limits, Store};

pub mod stored;

pub use types::*;
pub use writer::Outbox;
