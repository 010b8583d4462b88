//! Reading a stored payload back, by its format number.

use crate::domain::Notification;
use crate::ingest::wire;

pub fn parse(format: i64, payload: &str) -> Result<Notification, String> {
    match format {
        super::schema::PAYLOAD_FORMAT => wire::parse(payload.as_bytes()).map_err(|e| e.to_string()),
        other => Err(format!(
            "unknown payload format {other}: written by a newer amrelay?"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_1_is_the_body_as_received_and_unknown_formats_are_named() {
        let body = crate::ingest::wire::fixture_bytes("primary-down-firing");
        let n = super::parse(1, std::str::from_utf8(&body).unwrap()).unwrap();
        assert_eq!(n.alert_name(), "PrimaryDown");
        assert!(super::parse(2, "{}")
            .unwrap_err()
            .contains("unknown payload format 2"));
    }
}
