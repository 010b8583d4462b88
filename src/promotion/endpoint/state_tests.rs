//! The endpoint rule, one case per test, against a real store in a temp dir.

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), "primary").unwrap();
    (dir, s)
}

fn req(epoch: u64) -> PromoteRequest {
    PromoteRequest::new("primary", epoch, "PrimaryDown")
}

fn exit(code: i32) -> Finish {
    Finish {
        exit_code: Some(code),
        error: None,
        stdout_tail: "out".into(),
        stderr_tail: "err".into(),
    }
}

fn verdict(d: &Decision) -> Option<Verdict> {
    match d {
        Decision::Answer(o, _) | Decision::Stored { verdict: o, .. } => Some(*o),
        Decision::Start { .. } => None,
    }
}

#[test]
fn a_fresh_store_is_standby_at_epoch_zero_without_a_last_run() {
    let (_d, s) = store();
    let st = s.status().unwrap();
    assert_eq!(
        (st.epoch, st.state, st.last),
        (0, PromotionState::Standby, None)
    );
}

#[test]
fn the_next_epoch_starts_and_is_promoting_on_disk_before_the_command_runs() {
    let (d, mut s) = store();
    assert_eq!(
        s.decide(&req(1), 1_000).unwrap(),
        Decision::Start { attempt: 1 }
    );
    // Another connection (a restart, the CLI) sees it already.
    let other = Store::open(d.path(), "primary").unwrap().status().unwrap();
    assert_eq!((other.epoch, other.state), (1, PromotionState::Promoting));
    let last = other.last.unwrap();
    assert_eq!(
        (last.key.as_str(), last.state),
        ("primary/1", PromotionState::Promoting)
    );
}

#[test]
fn a_skipped_epoch_or_a_new_key_while_running_is_refused() {
    let (_d, mut s) = store();
    assert_eq!(
        verdict(&s.decide(&req(2), 1).unwrap()),
        Some(Verdict::Refused)
    );
    assert_eq!(
        s.decide(&req(1), 2).unwrap(),
        Decision::Start { attempt: 1 }
    );
    assert_eq!(
        verdict(&s.decide(&req(2), 3).unwrap()),
        Some(Verdict::Refused)
    );
    assert_eq!(
        verdict(&s.decide(&req(1), 4).unwrap()),
        Some(Verdict::Running)
    );
}

#[test]
fn a_finished_key_gets_its_stored_answer_and_promoted_latches_until_reset() {
    let (_d, mut s) = store();
    s.decide(&req(1), 1).unwrap();
    let a = s.finish("primary/1", &exit(0), 2).unwrap();
    assert_eq!(
        (a.result, a.status.state),
        (Verdict::Promoted, PromotionState::Promoted)
    );
    let Decision::Stored { status, body, .. } = s.decide(&req(1), 3).unwrap() else {
        panic!("expected the stored answer")
    };
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Answer>(&body).unwrap(), a);
    assert_eq!(
        verdict(&s.decide(&req(2), 4).unwrap()),
        Some(Verdict::Refused)
    );
    let r = s.reset("alice", "failback drill", 5).unwrap();
    assert_eq!((r.from_state.as_str(), r.epoch), ("promoted", 1));
    assert_eq!(s.status().unwrap().state, PromotionState::Standby);
    assert_eq!(s.last_reset().unwrap().unwrap().actor, "alice");
    assert_eq!(
        s.decide(&req(2), 6).unwrap(),
        Decision::Start { attempt: 1 }
    );
    // The old key still answers what it answered.
    assert_eq!(
        verdict(&s.decide(&req(1), 7).unwrap()),
        Some(Verdict::Promoted)
    );
}

#[test]
fn a_dry_run_verifies_and_changes_nothing() {
    let (_d, mut s) = store();
    let mut r = req(1);
    r.dry_run = true;
    assert_eq!(verdict(&s.decide(&r, 1).unwrap()), Some(Verdict::Verified));
    let st = s.status().unwrap();
    assert_eq!(
        (st.epoch, st.state, st.last),
        (0, PromotionState::Standby, None)
    );
    r.epoch = 3;
    r.key = "primary/3".into();
    assert_eq!(verdict(&s.decide(&r, 1).unwrap()), Some(Verdict::Refused));
}

#[test]
fn exit_75_goes_back_to_standby_and_only_the_same_latest_key_runs_again() {
    let (_d, mut s) = store();
    s.decide(&req(1), 1).unwrap();
    let a = s.finish("primary/1", &exit(75), 2).unwrap();
    assert_eq!(
        (a.result, a.status.state, a.status.epoch),
        (Verdict::Retry, PromotionState::Standby, 1)
    );
    assert_eq!(
        s.decide(&req(1), 3).unwrap(),
        Decision::Start { attempt: 2 }
    );
    s.finish("primary/1", &exit(75), 4).unwrap();
    // A newer incident may go ahead instead; the older key is then stale.
    assert_eq!(
        s.decide(&req(2), 5).unwrap(),
        Decision::Start { attempt: 1 }
    );
    s.finish("primary/2", &exit(0), 6).unwrap();
    assert_eq!(
        verdict(&s.decide(&req(1), 7).unwrap()),
        Some(Verdict::Refused)
    );
}

#[test]
fn a_failure_is_final_for_its_key_but_the_next_epoch_may_try() {
    let (_d, mut s) = store();
    s.decide(&req(1), 1).unwrap();
    let a = s.finish("primary/1", &exit(3), 2).unwrap();
    assert_eq!(
        (a.result, a.status.state),
        (Verdict::Failed, PromotionState::Failed)
    );
    let Decision::Stored { status, .. } = s.decide(&req(1), 3).unwrap() else {
        panic!("expected the stored failure")
    };
    assert_eq!(status, 422);
    assert_eq!(
        s.decide(&req(2), 4).unwrap(),
        Decision::Start { attempt: 1 }
    );
}

#[test]
fn a_run_found_promoting_at_start_up_is_interrupted_final_and_not_rerun() {
    let (d, mut s) = store();
    s.decide(&req(1), 1).unwrap();
    drop(s);
    let mut s = Store::open(d.path(), "primary").unwrap();
    assert_eq!(s.recover(2).unwrap(), vec!["primary/1".to_owned()]);
    assert!(s.recover(3).unwrap().is_empty(), "recovered once");
    let st = s.status().unwrap();
    assert_eq!(st.state, PromotionState::Interrupted);
    assert!(st.last.unwrap().error.unwrap().contains("interrupted"));
    let Decision::Stored {
        status,
        verdict,
        body,
    } = s.decide(&req(1), 4).unwrap()
    else {
        panic!("expected the stored failure")
    };
    assert_eq!((status, verdict), (422, Verdict::Failed));
    assert!(body.contains("\"interrupted\""), "{body}");
}

#[test]
fn reset_is_refused_while_a_run_is_going() {
    let (_d, mut s) = store();
    s.decide(&req(1), 1).unwrap();
    let e = s.reset("bob", "why", 2).unwrap_err();
    assert!(e.to_string().contains("primary/1"), "{e}");
    assert_eq!(s.status().unwrap().state, PromotionState::Promoting);
}

#[test]
fn a_pair_seen_before_is_a_replay_until_it_ages_out() {
    let (_d, mut s) = store();
    assert!(s.first_sight("amrelay-1", 100, 0).unwrap());
    assert!(!s.first_sight("amrelay-1", 100, 0).unwrap());
    assert!(
        s.first_sight("amrelay-1", 101, 0).unwrap(),
        "a retry has a new timestamp"
    );
    assert!(s.first_sight("amrelay-2", 100, 0).unwrap());
    // Pruned once older than the window: the skew check refuses such a request anyway.
    assert!(s.first_sight("amrelay-1", 100, 101).unwrap());
}
