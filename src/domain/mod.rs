//! The alert vocabulary every stage shares: parsed values, never raw wire strings.

mod alert;
pub mod dedup;
mod labels;
mod matcher;
pub mod promotion;
pub mod signature;
pub mod time;
pub mod wire;

pub use alert::{Alert, Fingerprint, Notification, Status, ADMIN_RECEIVER, RESERVED_PREFIX};
pub use dedup::DedupKey;
pub use labels::LabelSet;
pub use matcher::{MatchOp, Matcher, MatcherError};
