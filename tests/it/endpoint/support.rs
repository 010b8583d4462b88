//! What the endpoint tests share: the scripts, Standard Webhooks signing written from the
//! spec, and a client that talks like the caller.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The Standard Webhooks reference secret: `whsec_` + base64 of the key.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The promotion command: records each run in `runs`, holds while `hold` exists and
/// `release` does not, and exits with the code in `exit` (0 without it).
const PROMOTE_SH: &str = r#"#!/bin/sh
echo "$AMRELAY_EPOCH $AMRELAY_INCIDENT $AMRELAY_ATTEMPT" >> "$D/runs"
if [ -f "$D/hold" ]; then
  i=0
  while [ ! -f "$D/release" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
fi
echo "promoting $AMRELAY_TARGET: $AMRELAY_REASON"
echo "warning from the command" >&2
exit "$(cat "$D/exit" 2>/dev/null || echo 0)"
"#;

/// Hangs with a child in the background, past any short timeout.
const HANG_SH: &str = r#"#!/bin/sh
echo "$AMRELAY_EPOCH $AMRELAY_INCIDENT" >> "$D/runs"
sleep 60 &
echo $! > "$D/sleeper"
wait
"#;

/// Writes the scripts and the secret into `dir`, and returns the config (TOML).
pub fn endpoint_config(dir: &Path, script: &str, listen: &str, extra: &str) -> String {
    for (name, body) in [("promote.sh", PROMOTE_SH), ("hang.sh", HANG_SH)] {
        let path = dir.join(name);
        let text = body.replace("$D", &dir.display().to_string());
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.join("promotion.secret"), format!("{SECRET}\n")).unwrap();
    format!(
        "[promotion_endpoint]\nlisten = \"{listen}\"\ntarget = \"primary\"\nsecret_file = \"{{dir}}/promotion.secret\"\ncommand = [\"{{dir}}/{script}\"]\nretry_after = \"1s\"\n{extra}\n"
    )
}

/// Signs like a Standard Webhooks sender: HMAC-SHA256 of `id.timestamp.body` with the
/// base64-decoded key after `whsec_`.
pub fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn fresh_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn request(epoch: u64) -> Value {
    json!({
        "schema": "amrelay.promotion.v1",
        "key": format!("primary/{epoch}"),
        "target": "primary",
        "epoch": epoch,
        "reason": "PrimaryDown: firing on monitor-a, monitor-b",
        "manual": false,
        "dry_run": false
    })
}

pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub json: Value,
}

/// Talks to an endpoint at `base` the way the caller does.
#[derive(Clone)]
pub struct Caller {
    pub base: String,
    pub client: reqwest::Client,
}

impl Caller {
    pub fn new(addr: SocketAddr) -> Self {
        Caller {
            base: format!("http://{addr}"),
            client: crate::helpers::http_client(),
        }
    }

    /// A fresh delivery: new id, the current time.
    pub async fn promote(&self, body: &Value) -> Reply {
        let body = serde_json::to_vec(body).unwrap();
        self.send_signed(&body, &fresh_id(), now(), SECRET).await
    }

    pub async fn send_signed(&self, body: &[u8], id: &str, ts: i64, secret: &str) -> Reply {
        let r = self
            .client
            .post(format!("{}/v1/promote", self.base))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(secret, id, ts, body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        reply(r).await
    }

    /// Resends `body` with fresh signatures until the answer is not 202.
    pub async fn until_done(&self, body: &Value, timeout: Duration) -> Reply {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = self.promote(body).await;
            if r.status != 202 {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running after {timeout:?}: {}",
                r.json
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn status(&self) -> Reply {
        let (id, ts) = (fresh_id(), now());
        let r = self
            .client
            .get(format!("{}/v1/promotion", self.base))
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(SECRET, &id, ts, b""))
            .send()
            .await
            .unwrap();
        reply(r).await
    }
}

async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let json = r.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        json,
    }
}

/// The lines the promotion command appended to `runs`.
pub fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs"))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

pub async fn wait_for_file(path: &Path, timeout: Duration) {
    crate::helpers::eventually(path.display(), timeout, || {
        path.exists()
            .then_some(())
            .ok_or_else(|| "it does not exist".to_owned())
    })
    .await
}
