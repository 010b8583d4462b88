//! When two webhooks are the same notification.
//!
//! An HA Alertmanager pair sends a notification from both instances, and each repeats it on
//! group_interval and repeat_interval. The bodies differ in `externalURL`, so the body is
//! never hashed: the key is the receiver, the group key and every alert's
//! (fingerprint, status, startsAt).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::domain::Notification;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DedupKey(String);

impl DedupKey {
    pub(crate) fn of(n: &Notification) -> Self {
        use std::fmt::Write;
        // Each alert as `fingerprint 0x1f status 0x1f startsAt-in-ns`, sorted as strings;
        // all in one buffer. Stores hold keys made this way: it must not change.
        let mut text = String::with_capacity(n.alerts.len() * 48);
        let mut spans = Vec::with_capacity(n.alerts.len());
        for a in &n.alerts {
            let start = text.len();
            let _ = write!(
                text,
                "{}\u{1f}{}\u{1f}{}",
                a.fingerprint.as_str(),
                a.status,
                a.starts_at.timestamp_nanos_opt().unwrap_or_default()
            );
            spans.push(start..text.len());
        }
        spans.sort_by(|a, b| text[a.clone()].cmp(&text[b.clone()]));
        let mut h = Sha256::new();
        for part in [&n.receiver, &n.group_key] {
            h.update(part.as_bytes());
            h.update([0x1e]);
        }
        for span in spans {
            h.update(text[span].as_bytes());
            h.update([0x1e]);
        }
        DedupKey(to_hex(&h.finalize()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// A key as the store keeps it.
    #[cfg(test)]
    pub(crate) fn from_stored(key: String) -> Self {
        DedupKey(key)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// A notification is a duplicate when its key was first accepted less than `window` ago.
pub(crate) fn is_duplicate(first_accepted_ms: Option<i64>, now_ms: i64, window: Duration) -> bool {
    first_accepted_ms.is_some_and(|t| now_ms.saturating_sub(t) < window.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::fixture;
    use crate::domain::Status;

    #[test]
    fn keys_are_the_ones_stores_already_hold() {
        // Made by the first version; a changed key would let a repeat through after an upgrade.
        for (name, key) in [
            (
                "group-firing-3-alerts",
                "e67137e6769f499e6d8c15aaab6594db0f914afa50ef7f323d2ed732f2344849",
            ),
            (
                "primary-down-firing",
                "9c35030fb664b558eaedd0cd618c1ae4efc2d4a4397ce4767ccf9ad7738abc11",
            ),
        ] {
            assert_eq!(DedupKey::of(&fixture(name)).as_str(), key, "{name}");
        }
    }

    #[test]
    fn both_ha_instances_produce_the_same_key() {
        let a = fixture("retry-after-500-first-instance");
        let b = fixture("retry-after-500-second-instance");
        assert_ne!(a.external_url, b.external_url);
        assert_eq!(DedupKey::of(&a), DedupKey::of(&b));
    }

    #[test]
    fn a_resolve_or_a_changed_alert_set_is_new() {
        let firing = fixture("primary-down-firing");
        let resolved = fixture("primary-down-resolved");
        assert_ne!(DedupKey::of(&firing), DedupKey::of(&resolved));

        let all = fixture("group-firing-3-alerts");
        let partial = fixture("group-partially-resolved");
        assert_ne!(DedupKey::of(&all), DedupKey::of(&partial));

        let mut fewer = all.clone();
        fewer.alerts.pop();
        assert_ne!(DedupKey::of(&all), DedupKey::of(&fewer));

        let mut flipped = all.clone();
        flipped.alerts[0].status = Status::Resolved;
        assert_ne!(DedupKey::of(&all), DedupKey::of(&flipped));
    }

    #[test]
    fn alert_order_and_annotations_do_not_matter() {
        let all = fixture("group-firing-3-alerts");
        let mut shuffled = all.clone();
        shuffled.alerts.reverse();
        shuffled.alerts[0].annotations.insert("summary", "edited");
        assert_eq!(DedupKey::of(&all), DedupKey::of(&shuffled));
    }

    #[test]
    fn receiver_and_group_key_are_part_of_the_key() {
        let n = fixture("primary-down-firing");
        let mut other = n.clone();
        other.receiver.push('x');
        assert_ne!(DedupKey::of(&n), DedupKey::of(&other));
        let mut other = n.clone();
        other.group_key.push('x');
        assert_ne!(DedupKey::of(&n), DedupKey::of(&other));
    }

    #[test]
    fn the_window_decides() {
        let w = Duration::from_secs(600);
        assert!(!is_duplicate(None, 1_000_000, w));
        assert!(is_duplicate(Some(1_000_000), 1_000_000, w));
        assert!(is_duplicate(Some(1_000_000), 1_000_000 + 599_999, w));
        assert!(!is_duplicate(Some(1_000_000), 1_000_000 + 600_000, w));
    }
}
