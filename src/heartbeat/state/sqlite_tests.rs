//! The state's transitions on the SQLite file: each silence is declared once, told once,
//! resolved once, and forgotten after a week.

use super::{HeartbeatState, SourceRow, NO_SOURCE};

const MIN: i64 = 60_000;

fn state() -> (tempfile::TempDir, HeartbeatState) {
    let dir = tempfile::tempdir().unwrap();
    let s = HeartbeatState::sqlite_at(dir.path());
    s.open_now().unwrap();
    (dir, s)
}

fn row<'a>(rows: &'a [SourceRow], source: &str) -> &'a SourceRow {
    rows.iter().find(|r| r.source == source).unwrap()
}

#[tokio::test]
async fn a_quiet_source_is_declared_once_and_its_end_is_resolved_once() {
    let (_d, s) = state();
    s.ensure("w", "all", 0).await.unwrap();
    s.seen("w", &["all".into()], 10 * MIN).await.unwrap();
    // Not quiet past the deadline yet.
    assert!(s.declare("w", 10 * MIN, 11 * MIN).await.unwrap().is_empty());
    assert_eq!(
        s.declare("w", 16 * MIN, 16 * MIN).await.unwrap(),
        vec!["all"]
    );
    // A second check (another instance) finds it declared.
    assert!(s.declare("w", 17 * MIN, 17 * MIN).await.unwrap().is_empty());
    let r = row(&s.rows("w").await.unwrap(), "all").clone();
    assert_eq!(
        (r.missing_since, r.missing_unsent),
        (Some(16 * MIN), Some(16 * MIN))
    );
    s.told_missing("w", "all", 16 * MIN).await.unwrap();
    // Told for another silence: nothing changes.
    s.told_resolved("w", "all", 99).await.unwrap();
    let r = row(&s.rows("w").await.unwrap(), "all").clone();
    assert_eq!(
        (r.missing_since, r.missing_unsent, r.resolve_unsent),
        (Some(16 * MIN), None, None)
    );

    s.seen("w", &["all".into()], 20 * MIN).await.unwrap();
    let r = row(&s.rows("w").await.unwrap(), "all").clone();
    assert_eq!(r.last_seen, Some(20 * MIN));
    assert_eq!((r.missing_since, r.resolve_unsent), (None, Some(16 * MIN)));
    // Seen again before the resolve was told: still one resolve, of that silence.
    s.seen("w", &["all".into()], 21 * MIN).await.unwrap();
    assert_eq!(
        row(&s.rows("w").await.unwrap(), "all").resolve_unsent,
        Some(16 * MIN)
    );
    s.told_resolved("w", "all", 16 * MIN).await.unwrap();
    assert_eq!(row(&s.rows("w").await.unwrap(), "all").resolve_unsent, None);
}

#[tokio::test]
async fn a_heartbeat_never_seen_is_missing_from_its_placeholder_after_the_timeout() {
    let (_d, s) = state();
    s.ensure("w", NO_SOURCE, 0).await.unwrap();
    // Configured again later: the first time stands.
    s.ensure("w", NO_SOURCE, 4 * MIN).await.unwrap();
    assert_eq!(row(&s.rows("w").await.unwrap(), NO_SOURCE).since, 0);
    assert_eq!(s.declare("w", MIN, 6 * MIN).await.unwrap(), vec![NO_SOURCE]);
    s.told_missing("w", NO_SOURCE, 6 * MIN).await.unwrap();
    // The first sighting from any source ends "not seen from any".
    s.seen("w", &["mon1".into()], 7 * MIN).await.unwrap();
    let rows = s.rows("w").await.unwrap();
    assert_eq!(row(&rows, NO_SOURCE).resolve_unsent, Some(6 * MIN));
    assert_eq!(row(&rows, "mon1").last_seen, Some(7 * MIN));
    // Kept until its resolve is told, then forgotten; and never declared again.
    assert_eq!(s.forget("w", 0).await.unwrap(), 0);
    assert!(s.declare("w", 100 * MIN, 100 * MIN).await.unwrap() == vec!["mon1"]);
    s.told_resolved("w", NO_SOURCE, 6 * MIN).await.unwrap();
    assert_eq!(s.forget("w", 0).await.unwrap(), 1);
    let rows = s.rows("w").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    // A heartbeat with rows gets no new placeholder.
    s.ensure("w", NO_SOURCE, 200 * MIN).await.unwrap();
    assert_eq!(s.rows("w").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_source_silent_for_a_week_and_told_is_forgotten_and_one_not_told_is_kept() {
    let (_d, s) = state();
    let week = 7 * 24 * 60 * MIN;
    s.seen("w", &["gone".into(), "untold".into(), "fresh".into()], 0)
        .await
        .unwrap();
    s.seen("w", &["fresh".into()], week).await.unwrap();
    assert_eq!(
        s.declare("w", MIN, 2 * MIN).await.unwrap(),
        vec!["gone", "untold"]
    );
    s.told_missing("w", "gone", 2 * MIN).await.unwrap();
    assert_eq!(s.forget("w", week - MIN).await.unwrap(), 1);
    let sources: Vec<String> = s
        .rows("w")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert_eq!(sources, vec!["fresh", "untold"]);
}

#[tokio::test]
async fn the_state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = HeartbeatState::sqlite_at(dir.path());
    s.seen("w", &["all".into()], 5).await.unwrap();
    s.declare("w", 10, 10).await.unwrap();
    drop(s);
    let again = HeartbeatState::sqlite_at(dir.path());
    let r = row(&again.rows("w").await.unwrap(), "all").clone();
    assert_eq!((r.last_seen, r.missing_since), (Some(5), Some(10)));
    assert!(dir.path().join("heartbeats.db").exists());
}
