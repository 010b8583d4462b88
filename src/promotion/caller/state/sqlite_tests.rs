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
