//! A notification's stored form, and reading it back by its format number.
//!
//! `notifications.format` says how `notifications.payload` holds the notification:
//! - 1: the Alertmanager webhook body (version 4) exactly as received, as TEXT;
//! - 2: the same body compressed with Snappy (block format, `snap::raw`), as a BLOB.
//!
//! New rows are format 2: a webhook body shrinks to about a quarter, so several rows share
//! a page and every commit writes fewer WAL pages. Format 1 rows, written by an earlier
//! version, stay readable.

use crate::domain::wire;
use crate::domain::Notification;

/// The format of the rows this version writes.
pub(crate) const FORMAT: i64 = 2;

/// No body amrelay accepts comes near this; a larger length in a stored row means it is
/// damaged, and reading it must not allocate that much.
const MAX_BODY: usize = 256 * 1024 * 1024;

/// The stored form (`FORMAT`) of a webhook body as received.
pub(crate) fn encode(body: &[u8]) -> Result<Vec<u8>, String> {
    snap::raw::Encoder::new()
        .compress_vec(body)
        .map_err(|e| format!("cannot compress the body for the store: {e}"))
}

pub(crate) fn parse(format: i64, payload: &[u8]) -> Result<Notification, String> {
    match format {
        1 => wire::parse(payload).map_err(|e| e.to_string()),
        2 => {
            let len = snap::raw::decompress_len(payload).map_err(|e| e.to_string())?;
            if len > MAX_BODY {
                return Err(format!("stored length {len} is past {MAX_BODY} bytes"));
            }
            let body = snap::raw::Decoder::new()
                .decompress_vec(payload)
                .map_err(|e| e.to_string())?;
            wire::parse(&body).map_err(|e| e.to_string())
        }
        other => Err(format!(
            "unknown payload format {other}: written by a newer amrelay?"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_is_the_body_as_received() {
        let body = wire::fixture_bytes("primary-down-firing");
        assert_eq!(parse(1, &body).unwrap().alert_name(), "PrimaryDown");
    }

    #[test]
    fn format_2_round_trips_and_is_smaller() {
        let body = wire::fixture_bytes("group-firing-3-alerts");
        let stored = encode(&body).unwrap();
        assert!(
            stored.len() * 2 < body.len(),
            "{} bytes stored for a {}-byte body",
            stored.len(),
            body.len()
        );
        assert_eq!(parse(2, &stored).unwrap(), wire::parse(&body).unwrap());
    }

    #[test]
    fn damaged_rows_and_unknown_formats_are_errors_that_say_so() {
        let body = wire::fixture_bytes("primary-down-firing");
        // Format 2 bytes read as format 1, and the reverse.
        assert!(parse(1, &encode(&body).unwrap()).is_err());
        assert!(parse(2, &body).is_err());
        // A length header claiming 4 GiB must not be believed.
        assert!(parse(2, &[0xff, 0xff, 0xff, 0xff, 0x0f])
            .unwrap_err()
            .contains("past"));
        assert!(parse(3, b"{}")
            .unwrap_err()
            .contains("unknown payload format 3"));
    }
}
