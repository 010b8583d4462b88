//! The caller's store, one rule per test, on an in-memory database.

use super::*;

fn db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(SCHEMA).unwrap();
    c
}

fn new(delivery_id: i64, epoch: i64) -> NewIncident {
    NewIncident {
        target: "primary".into(),
        epoch,
        delivery_id,
        delivery_created: 1,
        reason: "test".into(),
        firing_since: 1,
        now: 10,
    }
}

#[test]
fn one_open_incident_per_target_the_second_joins() {
    let mut c = db();
    let (a, opened) = open_or_join(&mut c, &new(1, 5)).unwrap();
    assert!(opened);
    assert_eq!(a.key, "primary/5");
    let (b, opened) = open_or_join(&mut c, &new(2, 6)).unwrap();
    assert!(!opened);
    assert_eq!(b, a);
    assert_eq!(
        owned_by(&c, "primary", 1, 1).unwrap().map(|i| i.id),
        Some(a.id)
    );
    assert_eq!(
        owned_by(&c, "primary", 1, 2).unwrap(),
        None,
        "another outbox's delivery 1"
    );
    assert_eq!(
        owned_by(&c, "primary", 2, 1).unwrap(),
        None,
        "the joiner owns nothing"
    );
    take_over(&c, a.id, 2, 1).unwrap();
    assert_eq!(
        owned_by(&c, "primary", 2, 1).unwrap().map(|i| i.key),
        Some("primary/5".into())
    );
    // Only what the endpoint shows counts as seen, not what the caller asked for.
    assert_eq!(last_epoch(&c, "primary").unwrap(), None);
    finish(&c, a.id, "promoted", "ok", 20).unwrap();
    assert_eq!(last_promoted_at(&c, "primary").unwrap(), Some(20));
    close_incident(&c, a.id, 30).unwrap();
    assert_eq!(open_incident(&c, "primary").unwrap(), None);
    let (c2, opened) = open_or_join(&mut c, &new(3, 6)).unwrap();
    assert!(opened);
    assert_eq!(c2.key, "primary/6");
}

#[test]
fn epochs_never_go_back() {
    let c = db();
    saw_epoch(&c, "primary", 4).unwrap();
    saw_epoch(&c, "primary", 2).unwrap();
    assert_eq!(last_epoch(&c, "primary").unwrap(), Some(4));
}

#[test]
fn the_quorum_counts_distinct_monitors_in_the_window() {
    let c = db();
    let seen = observe(&c, "primary", &["mon-a".into()], "ga", 1_000, 0).unwrap();
    assert_eq!(seen, ["mon-a"]);
    // The same monitor again is still one.
    let seen = observe(&c, "primary", &["mon-a".into()], "ga", 2_000, 0).unwrap();
    assert_eq!(seen, ["mon-a"]);
    let seen = observe(&c, "primary", &["mon-b".into()], "gb", 3_000, 0).unwrap();
    assert_eq!(seen, ["mon-a", "mon-b"]);
    // Outside the window, mon-a still counts while its group fires...
    let seen = observe(&c, "primary", &["mon-b".into()], "gb", 70_000, 10_000).unwrap();
    assert_eq!(seen, ["mon-a", "mon-b"]);
    // ...and not once it resolved.
    resolved_group(&c, "primary", "ga").unwrap();
    let seen = observe(&c, "primary", &["mon-b".into()], "gb", 71_000, 11_000).unwrap();
    assert_eq!(seen, ["mon-b"]);
    // Within the window, a resolved report still counts (it arrived in time).
    let seen = observe(&c, "primary", &["mon-b".into()], "gb", 72_000, 0).unwrap();
    assert_eq!(seen, ["mon-a", "mon-b"]);
}

#[test]
fn a_due_surprise_drill_is_taken_once_and_its_first_due_time_kept() {
    let c = db();
    assert_eq!(drill_due_at(&c, "primary", 1_000).unwrap(), 1_000);
    // Another instance's first look proposes its own time: the stored one stays.
    assert_eq!(drill_due_at(&c, "primary", 5_000).unwrap(), 1_000);
    // Two instances see it due at 1000 and both try to move it on: one fires it.
    assert!(drill_take(&c, "primary", 1_000, 9_000).unwrap());
    assert!(!drill_take(&c, "primary", 1_000, 9_500).unwrap());
    assert_eq!(drill_due_at(&c, "primary", 0).unwrap(), 9_000);
}

#[test]
fn drill_notes_change_in_place_and_an_unknown_drill_is_none() {
    let mut c = db();
    let d = DrillRecord {
        id: "primary-1".into(),
        target: "primary".into(),
        live: false,
        surprise: false,
        instance: "a".into(),
        started_at: 10,
        finished_at: None,
        passed: None,
        report: "{}".into(),
        notes: DrillNotes::default(),
    };
    drill_create(&c, &d).unwrap();
    let first = drill_note(&mut c, "primary-1", |n| {
        n.received_at.get_or_insert(20).to_owned()
    })
    .unwrap();
    let again = drill_note(&mut c, "primary-1", |n| {
        n.received_at.get_or_insert(30).to_owned()
    })
    .unwrap();
    assert_eq!((first, again), (Some(20), Some(20)));
    assert_eq!(drill_note(&mut c, "nope", |_| ()).unwrap(), None);
    // A drill this instance was running when it stopped is over, failed.
    assert_eq!(
        drills_interrupted(&c, "a", 50).unwrap(),
        vec!["primary-1".to_owned()]
    );
    let stored = drill(&c, "primary-1").unwrap().unwrap();
    assert_eq!((stored.passed, stored.finished_at), (Some(false), Some(50)));
    assert!(drills_interrupted(&c, "a", 60).unwrap().is_empty());
}

#[test]
fn old_reports_are_forgotten_whatever_their_scope() {
    let c = db();
    // A drill's monitors, under the drill's own scope, an hour and more ago.
    observe(&c, "primary#drill/d1", &["drill-1".into()], "g", 1_000, 0).unwrap();
    // A report of another target, later than the TTL: the drill's rows go.
    let later = 1_000 + OBSERVATION_TTL_MS + 1;
    observe(&c, "primary", &["mon1".into()], "g2", later, later).unwrap();
    let left: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM observations WHERE target = 'primary#drill/d1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}
