//! The `reason` label of `amrelay_delivery_attempt_failures_total`: a bounded vocabulary
//! the code owns (Alertmanager's `Reason` enum is the model). A sink's reason may come
//! from the far side (Slack's `error` string, a proxy's `proxy_error_<uuid>`, an SMTP
//! code); as a label it is one of the values below, and anything else is `other`, so
//! that no answer can add series. The far side's own words stay in the logs,
//! `last_error` and the dead letters. The README lists the values.

/// Reasons that are labels as they are.
const KNOWN: &[&str] = &[
    // Transport (net::http), any kind of channel.
    "timeout",
    "connect",
    "transport",
    // HTTP statuses worth telling apart; others fall into their class (below).
    "http_400",
    "http_401",
    "http_403",
    "http_404",
    "http_408",
    "http_413",
    "http_420",
    "http_422",
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_status",
    // Slack's documented chat.postMessage errors
    // (https://docs.slack.dev/reference/methods/chat.postMessage#errors).
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "msg_too_long",
    "no_text",
    "invalid_blocks",
    "invalid_blocks_format",
    "invalid_arguments",
    "restricted_action",
    "team_access_not_granted",
    "bad_answer",
    "unknown_error",
    // SMTP reply codes a relay commonly sends (RFC 5321 section 4.2.3); others fall into
    // their class.
    "smtp_421",
    "smtp_450",
    "smtp_451",
    "smtp_452",
    "smtp_454",
    "smtp_535",
    "smtp_550",
    "smtp_552",
    "smtp_553",
    "smtp_554",
    // SMTP (lettre) before a reply code.
    "smtp_tls",
    "smtp_connection",
    "smtp_client",
    "smtp_setup",
    // amrelay's own.
    "template",
    "message",
    "encode",
    "parse",
    "stdout",
    "promotion_state",
    "promotion_request",
    "promotion_answer",
    "promotion_running",
    "promotion_retry",
];

/// The label for a sink's `reason`.
pub(crate) fn label(reason: &str) -> &'static str {
    if let Some(k) = KNOWN.iter().find(|k| **k == reason) {
        return k;
    }
    // Reply codes: the class keeps the meaning (4xx temporary, 5xx permanent for SMTP).
    let class = |rest: &str| rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = reason.strip_prefix("http_").filter(|r| class(r)) {
        return match rest.as_bytes()[0] {
            b'3' => "http_3xx",
            b'4' => "http_4xx",
            b'5' => "http_5xx",
            _ => "http_other",
        };
    }
    if let Some(rest) = reason.strip_prefix("smtp_").filter(|r| class(r)) {
        return match rest.as_bytes()[0] {
            b'4' => "smtp_4xx",
            b'5' => "smtp_5xx",
            _ => "smtp_other",
        };
    }
    if reason.starts_with("postmark_") {
        // Postmark's ErrorCode, a number from its documented table; the number stays in
        // the logs.
        return "postmark_error";
    }
    "other"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_reasons_stay_and_codes_fall_into_their_class() {
        assert_eq!(label("http_401"), "http_401");
        assert_eq!(label("http_418"), "http_4xx");
        assert_eq!(label("http_599"), "http_5xx");
        assert_eq!(label("smtp_451"), "smtp_451");
        assert_eq!(label("smtp_459"), "smtp_4xx");
        assert_eq!(label("smtp_571"), "smtp_5xx");
        assert_eq!(label("invalid_blocks"), "invalid_blocks");
        assert_eq!(label("postmark_406"), "postmark_error");
        assert_eq!(label("http_1234"), "other");
    }

    #[test]
    fn a_thousand_distinct_vendor_errors_make_one_label() {
        let labels: std::collections::BTreeSet<&str> = (0..1000)
            .map(|i| label(&format!("proxy_error_{i:08x}-4b1e")))
            .collect();
        assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["other"]);
    }
}
