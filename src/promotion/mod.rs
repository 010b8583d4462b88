//! Failover: the two halves of the `amrelay.promotion.v1` protocol
//! (`docs/promotion-protocol.md`), whose words are in [`crate::domain::promotion`].
//!
//! - [`endpoint`]: the backup's side, which runs the promotion command at most once per
//!   incident.
pub mod endpoint;
