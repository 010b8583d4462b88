//! Notifications amrelay makes itself (promotion outcomes, manual promotions). They take
//! the same road as Alertmanager's: encoded in the v4 wire format, deduplicated by their
//! key, committed to the outbox, delivered by the channels' workers.

use super::{stored, Enqueued, Hold, NewNotification, Outbox, StoreError};
use crate::domain::time::now_ms;
use crate::domain::{wire, DedupKey, Notification};

impl Outbox {
    /// Stores `n` for `channels` and returns the delivery ids; `Ok(None)` when the same
    /// notification was stored within the dedup window already (a retried attempt that
    /// produced it again).
    pub(crate) async fn enqueue_made_here(
        &self,
        n: &Notification,
        channels: &[String],
    ) -> Result<Option<Vec<i64>>, StoreError> {
        if channels.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let new = NewNotification {
            key: DedupKey::of(n),
            group_key: n.group_key.clone(),
            received_at: now_ms(),
            payload: stored::encode(wire::encode(n).as_bytes()).map_err(StoreError::Refused)?,
            channels: channels.to_vec(),
            fast: vec![None; channels.len()],
            holds: vec![Hold::default(); channels.len()],
        };
        match self.enqueue(new).await? {
            Enqueued::Accepted { deliveries, .. } => {
                Ok(Some(deliveries.iter().map(|d| d.id).collect()))
            }
            Enqueued::Duplicate => Ok(None),
            Enqueued::Full { pending, max } => Err(StoreError::Refused(format!(
                "the outbox is full ({pending} undelivered, storage.max_pending = {max})"
            ))),
        }
    }
}
