//! The alert vocabulary every stage shares: parsed values, never raw wire strings.

mod alert;
pub(crate) mod dedup;
mod labels;
mod matcher;
pub(crate) mod promotion;
pub(crate) mod signature;
pub(crate) mod time;
pub(crate) mod wire;

pub(crate) use alert::{
    Alert, Fingerprint, Notification, Status, ADMIN_RECEIVER, DRILL_LABEL, RESERVED_PREFIX,
};
pub(crate) use dedup::DedupKey;
pub(crate) use labels::LabelSet;
pub(crate) use matcher::Matcher;
