//! Every request is signed the Standard Webhooks way (`docs/promotion-protocol.md`):
//! the signature, then the clock skew, then the replay check. A refusal is 401 with a
//! message naming what was wrong.
//!
//! Seen (webhook-id, webhook-timestamp) pairs are kept in the store, not in memory: a
//! restart inside the skew window (a crash, a deploy) would otherwise forget them and let
//! a captured request through again. Only pairs with a valid signature are stored, so
//! nobody without the secret can fill the table, and pairs older than the window are
//! dropped on every insert. A request is rare here; its fsync costs nothing that matters.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{error, Shared};
use crate::domain::signature::verify;

/// Longer ids are refused rather than stored.
const MAX_ID: usize = 256;

pub(super) async fn check(sh: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    match refusal(sh, headers, body).await {
        Ok(None) => Ok(()),
        Ok(Some(why)) => {
            sh.count("unauthorized");
            tracing::warn!(why, "promotion request refused: 401");
            Err(error(StatusCode::UNAUTHORIZED, why))
        }
        // Not a 401: the caller takes that as final, and this one is worth a retry.
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "cannot check a promotion request for a replay"
            );
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot check for a replay: {e:#}"),
            ))
        }
    }
}

/// `Ok(Some(why))`: refused. `Err`: the store failed.
async fn refusal(sh: &Shared, headers: &HeaderMap, body: &[u8]) -> anyhow::Result<Option<String>> {
    let header = |name: &str| -> Result<&str, String> {
        headers
            .get(name)
            .ok_or_else(|| format!("the {name} header is missing"))?
            .to_str()
            .map_err(|_| format!("the {name} header is not ASCII"))
    };
    let (id, ts, sig) = match (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) {
        (Ok(i), Ok(t), Ok(s)) => (i.to_owned(), t, s),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return Ok(Some(e)),
    };
    if id.is_empty() || id.len() > MAX_ID {
        return Ok(Some(format!("webhook-id must be 1 to {MAX_ID} bytes long")));
    }
    let Ok(ts) = ts.trim().parse::<i64>() else {
        return Ok(Some(format!(
            "webhook-timestamp: expected Unix seconds, got {ts:?}"
        )));
    };
    if !verify(&sh.key, &id, ts, body, sig) {
        return Ok(Some(
            "webhook-signature does not match (is the secret the same on both sides? is the body signed as sent?)".into(),
        ));
    }
    let now = crate::domain::time::now_ms() / 1000;
    let skew = sh.settings.max_clock_skew.as_secs() as i64;
    let off = now.saturating_sub(ts);
    if off.abs() > skew {
        return Ok(Some(format!(
            "webhook-timestamp {ts} is {off}s off this endpoint's clock; max_clock_skew is {}s (check both clocks, e.g. NTP)",
            skew
        )));
    }
    let pair_id = id.clone();
    let fresh = sh
        .db(move |s| s.first_sight(&pair_id, ts, now - skew))
        .await?;
    Ok((!fresh).then(|| format!(
        "replayed request: webhook-id {id:?} with webhook-timestamp {ts} was seen before (a retry is signed afresh, with a new timestamp)"
    )))
}
