//! Failover: the two halves of the `amrelay.promotion.v1` protocol
//! (`docs/promotion-protocol.md`), whose words are in [`crate::domain::promotion`].
//!
//! - [`caller`]: the monitoring host's side, behind a `kind = "promotion"` channel:
//!   incidents, epochs, guards, outcome messages.
//! - [`endpoint`]: the backup's side, which runs the promotion command at most once per
//!   incident.

pub(crate) mod caller;
pub(crate) mod endpoint;
