//! The alert vocabulary every stage shares: parsed values, never raw wire strings.

mod alert;
mod matcher;

pub use alert::{Alert, Fingerprint, LabelSet, Notification, Status};
pub use matcher::{MatchOp, Matcher, MatcherError};
