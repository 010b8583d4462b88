//! The `amrelay.promotion.v1` protocol's vocabulary (`docs/promotion-protocol.md`): the
//! request, the answers and the states that amrelay on the monitoring host (the caller)
//! and amrelay on the backup (the endpoint) exchange. Both halves live in `promotion`;
//! the words are here, below them, so that telemetry and the promotion sink can use
//! them without reaching up.

use serde::{Deserialize, Serialize};

/// The `schema` field of every request and answer.
pub(crate) const SCHEMA: &str = "amrelay.promotion.v1";
/// `POST`: ask for a promotion.
pub(crate) const PROMOTE_PATH: &str = "/v1/promote";
/// `GET`: the endpoint's epoch, state and last run.
pub(crate) const STATUS_PATH: &str = "/v1/promotion";

/// The incident key: `<target>/<epoch>`.
pub(crate) fn incident_key(target: &str, epoch: u64) -> String {
    format!("{target}/{epoch}")
}

/// The body of `POST /v1/promote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PromoteRequest {
    pub schema: String,
    /// `<target>/<epoch>`, the same on every retry of one incident.
    pub key: String,
    pub target: String,
    pub epoch: u64,
    pub reason: String,
    #[serde(default)]
    pub manual: bool,
    /// Check everything, run and store nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl PromoteRequest {
    pub(crate) fn new(target: &str, epoch: u64, reason: impl Into<String>) -> Self {
        PromoteRequest {
            schema: SCHEMA.to_owned(),
            key: incident_key(target, epoch),
            target: target.to_owned(),
            epoch,
            reason: reason.into(),
            manual: false,
            dry_run: false,
        }
    }

    /// Reads a request body. Fields this version does not know are ignored (a newer
    /// caller may add some); a missing or mistyped field is named in the error.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| "body: expected a JSON object".to_owned())?;
        let string = |k: &str| -> Result<String, String> {
            match obj.get(k) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("{k}: expected a string, got {other}")),
                None => Err(format!("{k}: is required")),
            }
        };
        let flag = |k: &str| -> Result<bool, String> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(false),
                Some(serde_json::Value::Bool(b)) => Ok(*b),
                Some(other) => Err(format!("{k}: expected true or false, got {other}")),
            }
        };
        let epoch = match obj.get("epoch") {
            Some(e) => e
                .as_u64()
                .ok_or_else(|| format!("epoch: expected a whole number (0 or more), got {e}"))?,
            None => return Err("epoch: is required".into()),
        };
        Ok(PromoteRequest {
            schema: string("schema")?,
            key: string("key")?,
            target: string("target")?,
            epoch,
            reason: string("reason")?,
            manual: flag("manual")?,
            dry_run: flag("dry_run")?,
        })
    }
}

/// The endpoint's state, as `GET /v1/promotion` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionState {
    /// Nothing ran, the last run asked to be retried (exit 75), or an operator ran
    /// `amrelay promotion reset`.
    Standby,
    /// A run is going.
    Promoting,
    /// Latched until `amrelay promotion reset`.
    Promoted,
    Failed,
    /// The endpoint stopped during the run; never rerun automatically.
    Interrupted,
}

impl PromotionState {
    pub const ALL: [PromotionState; 5] = [
        PromotionState::Standby,
        PromotionState::Promoting,
        PromotionState::Promoted,
        PromotionState::Failed,
        PromotionState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PromotionState::Standby => "standby",
            PromotionState::Promoting => "promoting",
            PromotionState::Promoted => "promoted",
            PromotionState::Failed => "failed",
            PromotionState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<PromotionState> {
        PromotionState::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for PromotionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `result` of a `POST /v1/promote` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// 200: the command exited 0.
    Promoted,
    /// 202: the run is going; ask again with the same key after `Retry-After`.
    Running,
    /// 503: the command exited 75; ask again with the same key after `Retry-After`.
    Retry,
    /// 409: a new key with the wrong epoch or in the wrong state; final.
    Refused,
    /// 422: the command failed, timed out or was interrupted; final for this key.
    Failed,
    /// 200: a `dry_run` that would have run.
    Verified,
}

impl Verdict {
    #[cfg(test)]
    pub(crate) const ALL: [Verdict; 6] = [
        Verdict::Promoted,
        Verdict::Running,
        Verdict::Retry,
        Verdict::Refused,
        Verdict::Failed,
        Verdict::Verified,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Promoted => "promoted",
            Verdict::Running => "running",
            Verdict::Retry => "retry",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
            Verdict::Verified => "verified",
        }
    }

    /// The HTTP status the endpoint answers with.
    pub(crate) fn status(self) -> u16 {
        match self {
            Verdict::Promoted | Verdict::Verified => 200,
            Verdict::Running => 202,
            Verdict::Retry => 503,
            Verdict::Refused => 409,
            Verdict::Failed => 422,
        }
    }
}

/// One run of the command for one key (the latest attempt when it was retried).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub key: String,
    pub epoch: u64,
    /// `promoting` while it runs, then `promoted`, `failed`, `interrupted`, or
    /// `standby` when the command asked to be retried (exit 75).
    pub state: PromotionState,
    pub reason: String,
    #[serde(default)]
    pub manual: bool,
    /// How many times the command ran for this key (more than 1 after exit 75).
    #[serde(default = "one")]
    pub attempt: u32,
    /// RFC 3339, UTC, milliseconds.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// None while running, and when the command was killed or never started.
    pub exit_code: Option<i32>,
    /// Why the run failed when the exit code does not say: a timeout, an interruption,
    /// a command that could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last few KiB of the command's output.
    pub stdout_tail: String,
    pub stderr_tail: String,
}

fn one() -> u32 {
    1
}

/// The body of `GET /v1/promotion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionStatus {
    pub schema: String,
    /// The endpoint's configured name for what it promotes.
    pub target: String,
    pub epoch: u64,
    pub state: PromotionState,
    /// Null before the first run.
    pub last: Option<Run>,
}

/// The body of every `POST /v1/promote` answer but 400 and 401: the status plus `result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Answer {
    #[serde(flatten)]
    pub status: PromotionStatus,
    pub result: Verdict,
}

/// The body of a 400 or 401 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_request_parses_and_round_trips() {
        let body = br#"{"schema":"amrelay.promotion.v1","key":"primary/5","target":"primary",
            "epoch":5,"reason":"PrimaryDown","manual":false,"dry_run":false,"new_field":1}"#;
        let r = PromoteRequest::parse(body).unwrap();
        assert_eq!(r, PromoteRequest::new("primary", 5, "PrimaryDown"));
        let again = serde_json::to_vec(&r).unwrap();
        assert_eq!(PromoteRequest::parse(&again).unwrap(), r);
    }

    #[test]
    fn a_bad_field_is_named() {
        for (body, named) in [
            (&br#"{"schema":"x","key":"a/1","target":"a","reason":"r"}"#[..], "epoch:"),
            (
                br#"{"schema":"x","key":"a/1","target":"a","epoch":"1","reason":"r"}"#,
                "epoch:",
            ),
            (
                br#"{"schema":"x","key":"a/1","target":"a","epoch":-1,"reason":"r"}"#,
                "epoch:",
            ),
            (br#"{"schema":"x","key":7,"target":"a","epoch":1,"reason":"r"}"#, "key:"),
            (
                br#"{"schema":"x","key":"a/1","target":"a","epoch":1,"reason":"r","dry_run":"yes"}"#,
                "dry_run:",
            ),
            (br#"{"schema":"x""#, "not JSON"),
            (b"[]", "JSON object"),
        ] {
            let e = PromoteRequest::parse(body).unwrap_err();
            assert!(e.contains(named), "{e:?} should name {named:?}");
        }
    }

    /// The renames (`Verdict`, `PromotionState`, `PromotionStatus`) are Rust's only: the
    /// bytes on the wire are the documented ones, in the documented order.
    #[test]
    fn the_wire_bytes_are_the_documented_ones() {
        let req = PromoteRequest::new("primary", 5, "PrimaryDown");
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"schema":"amrelay.promotion.v1","key":"primary/5","target":"primary","epoch":5,"reason":"PrimaryDown","manual":false,"dry_run":false}"#
        );
        let answer = Answer {
            status: PromotionStatus {
                schema: SCHEMA.to_owned(),
                target: "primary".into(),
                epoch: 4,
                state: PromotionState::Promoted,
                last: Some(Run {
                    key: "primary/4".into(),
                    epoch: 4,
                    state: PromotionState::Standby,
                    reason: "r".into(),
                    manual: false,
                    attempt: 2,
                    started_at: "2026-11-26T10:00:01.120Z".into(),
                    finished_at: None,
                    exit_code: Some(75),
                    error: None,
                    stdout_tail: String::new(),
                    stderr_tail: "e".into(),
                }),
            },
            result: Verdict::Retry,
        };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            concat!(
                r#"{"schema":"amrelay.promotion.v1","target":"primary","epoch":4,"state":"promoted","#,
                r#""last":{"key":"primary/4","epoch":4,"state":"standby","reason":"r","manual":false,"#,
                r#""attempt":2,"started_at":"2026-11-26T10:00:01.120Z","finished_at":null,"#,
                r#""exit_code":75,"stdout_tail":"","stderr_tail":"e"},"result":"retry"}"#
            )
        );
        for v in Verdict::ALL {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
        }
        for s in PromotionState::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn the_documented_answer_parses() {
        let body = r#"{
          "schema": "amrelay.promotion.v1", "target": "primary", "epoch": 4,
          "state": "promoted", "result": "promoted",
          "last": {
            "key": "primary/4", "epoch": 4, "state": "promoted",
            "reason": "PrimaryDown from monitor-a, monitor-b",
            "started_at": "2026-11-26T10:00:01.120Z", "finished_at": "2026-11-26T10:00:02.340Z",
            "exit_code": 0, "stdout_tail": "...", "stderr_tail": "..."
          }
        }"#;
        let a: Answer = serde_json::from_str(body).unwrap();
        assert_eq!(a.result, Verdict::Promoted);
        assert_eq!(a.status.state, PromotionState::Promoted);
        assert_eq!(a.status.last.unwrap().attempt, 1);
    }
}

#[cfg(test)]
mod proptests;
