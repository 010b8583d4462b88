//! `amrelay promotion reset` and `amrelay promotion show`: the operator's view of the
//! endpoint's store, from the command line, also while `serve` runs.

use std::fmt::Write;

use anyhow::Context;

use super::state::Store;
use crate::config::{PromotionEndpointSettings, Settings};
use crate::domain::time::now_ms;
use crate::domain::time::rfc3339;

fn open(settings: &Settings) -> anyhow::Result<(Store, &PromotionEndpointSettings)> {
    let e = settings
        .promotion_endpoint
        .as_ref()
        .context("the configuration has no [promotion_endpoint] section")?;
    // The CLI never creates the store: a reset of a fresh file would say "done" while
    // the running endpoint, on another storage.path, stays promoted.
    let file = settings.storage.path.join(super::state::FILE);
    if !file.exists() {
        anyhow::bail!(
            "no promotion state at {}: is storage.path the one `amrelay serve` uses (set it in the file or with AMRELAY__STORAGE__PATH)?",
            file.display()
        );
    }
    let store = Store::open(&settings.storage.path, &e.target).with_context(|| {
        format!(
            "opening the promotion store under storage.path {}",
            settings.storage.path.display()
        )
    })?;
    Ok((store, e))
}

/// Who runs the command, for the record: the user behind sudo if any.
pub(crate) fn actor() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.trim().is_empty() {
                return if var == "SUDO_USER" {
                    format!("{u} (sudo)")
                } else {
                    u
                };
            }
        }
    }
    "unknown".into()
}

/// The manual failback: state back to `standby`, the epoch kept. Returns what to print.
pub(crate) fn reset(settings: &Settings, reason: &str) -> anyhow::Result<String> {
    let (mut store, e) = open(settings)?;
    let actor = actor();
    let r = store.reset(&actor, reason, now_ms())?;
    tracing::warn!(target_name = %e.target, from = %r.from_state, epoch = r.epoch, actor = %r.actor, reason = %r.reason, "promotion reset to standby");
    Ok(format!(
        "{}: {} -> standby at epoch {} (by {}: {:?}); the next incident (epoch {}) may promote again",
        e.target,
        r.from_state,
        r.epoch,
        r.actor,
        r.reason,
        r.epoch + 1
    ))
}

/// The state, the epoch, the last run and the last reset, for a person.
pub(crate) fn show(settings: &Settings) -> anyhow::Result<String> {
    let (store, _) = open(settings)?;
    let s = store.status()?;
    let mut out = String::new();
    let _ = writeln!(out, "target:  {}", s.target);
    let _ = writeln!(out, "state:   {}", s.state);
    let _ = writeln!(out, "epoch:   {}", s.epoch);
    match &s.last {
        None => {
            let _ = writeln!(out, "last run: none");
        }
        Some(r) => {
            let _ = writeln!(out, "last run: {} ({})", r.key, r.state);
            let _ = writeln!(out, "  reason:    {}", r.reason);
            let _ = writeln!(out, "  manual:    {}", r.manual);
            let _ = writeln!(out, "  attempt:   {}", r.attempt);
            let _ = writeln!(out, "  started:   {}", r.started_at);
            let _ = writeln!(
                out,
                "  finished:  {}",
                r.finished_at.as_deref().unwrap_or("-")
            );
            let code = r.exit_code.map_or("-".to_owned(), |c| c.to_string());
            let _ = writeln!(out, "  exit code: {code}");
            if let Some(e) = &r.error {
                let _ = writeln!(out, "  error:     {e}");
            }
            for (name, tail) in [("stdout", &r.stdout_tail), ("stderr", &r.stderr_tail)] {
                if !tail.is_empty() {
                    let _ = writeln!(out, "  {name} (tail):");
                    for line in tail.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
        }
    }
    if let Some(r) = store.last_reset()? {
        let _ = writeln!(
            out,
            "last reset: {} by {} from {} at epoch {}: {:?}",
            rfc3339(r.at_ms).unwrap_or_default(),
            r.actor,
            r.from_state,
            r.epoch,
            r.reason
        );
    }
    Ok(out)
}
