//! The alert vocabulary every stage shares: parsed values, never raw wire strings.

mod alert;
mod labels;
mod matcher;
pub mod time;

pub use alert::{Alert, Fingerprint, Notification, Status};
pub use labels::LabelSet;
pub use matcher::{MatchOp, Matcher, MatcherError};
