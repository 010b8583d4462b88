//! Several amrelays on one PostgreSQL (issue 13): dedup across instances, one instance at
//! a time delivering each channel, taken over within the lease when it dies, a channel's
//! rate limit held across instances, 503 while the database is down and nothing lost,
//! migrations under a lock and a newer schema refused, one server per SQLite store, and a
//! promotion that runs once through two callers. Each test has its own cluster
//! (`scripts/pg-throwaway`), so they run at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::endpoint::support::{endpoint_config, runs, SECRET};
use crate::fakes::{Answer, Fake, Received};
use crate::helpers::*;
use crate::postgres::{Certs, Pg};

const WAIT: Duration = Duration::from_secs(30);
/// `storage.lease`'s default, which these tests run with.
const LEASE: Duration = Duration::from_secs(3);

/// A notification of its own: its group key and its summary are both `id`, so the fake
/// can tell which one a request carries (`id_of`).
fn tagged(id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&notification("group-firing-3-alerts", id)).unwrap();
    v["commonAnnotations"]["summary"] = id.into();
    serde_json::to_vec(&v).unwrap()
}

/// The notification a request at the fake carries: a webhook's payload keeps the
/// summary; a Slack message's text ends with it.
fn id_of(r: &Received) -> String {
    if let Some(s) = r.json["commonAnnotations"]["summary"].as_str() {
        return s.to_owned();
    }
    r.json["text"]
        .as_str()
        .and_then(|t| t.rsplit(": ").next())
        .unwrap_or("?")
        .to_owned()
}

/// How many requests the fake received for each notification, whatever it answered.
fn counts(fake: &Fake) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in fake.received() {
        *m.entry(id_of(&r)).or_default() += 1;
    }
    m
}

/// Waits until the fake has taken every notification in `ids`.
async fn wait_delivered(fake: &Fake, ids: &HashSet<String>, within: Duration) {
    fake.wait_for(
        &format!("all {} notifications delivered", ids.len()),
        within,
        |got| {
            let taken: HashSet<String> = got.iter().filter(|r| r.accepted).map(id_of).collect();
            ids.is_subset(&taken)
        },
    )
    .await
}

/// Posts webhooks to one instance; 0 for no answer (a refused connection, or none within
/// 10 s).
#[derive(Clone)]
struct Poster {
    client: reqwest::Client,
    base: String,
}

impl Poster {
    fn at(base: String) -> Poster {
        Poster {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base,
        }
    }

    fn app(app: &TestApp) -> Poster {
        Poster::at(app.url(""))
    }

    async fn post(&self, body: Vec<u8>) -> (u16, Value) {
        let sent = self
            .client
            .post(format!("{}/webhook/alertmanager", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn status(&self, path: &str) -> u16 {
        match self.client.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    async fn metric(&self, sample: &str) -> f64 {
        metric_at(&self.client, &self.base, sample).await
    }

    async fn wait_metric(&self, sample: &str, at_least: f64, timeout: Duration) {
        wait_metric_at(&self.client, &self.base, sample, at_least, timeout).await
    }
}

/// Posts each body to the instance `to` picks, all at once; asserts each was taken.
async fn post_all(posters: &[Poster], bodies: Vec<(String, Vec<u8>)>) {
    let mut posts = JoinSet::new();
    for (i, (id, body)) in bodies.into_iter().enumerate() {
        let p = posters[i % posters.len()].clone();
        posts.spawn(async move { (id, p.post(body).await) });
    }
    while let Some(done) = posts.join_next().await {
        let (id, (status, json)) = done.unwrap();
        assert_eq!(status, 200, "{id}: {json}");
    }
}

fn delivered_here(channel: &str) -> String {
    format!("amrelay_channel_delivered_here{{channel=\"{channel}\"}}")
}

/// `amrelay serve` as a process on `dir` (its config in `dir/amrelay.toml`), killed and
/// reaped on drop.
struct Relay {
    child: std::process::Child,
    poster: Poster,
    dir: tempfile::TempDir,
}

impl Relay {
    /// On `pg`, named `instance`, with `channels` (TOML; `{dir}` is its dir).
    async fn on(pg: &Pg, instance: &str, channels: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let config = pg.config(dir.path(), instance, "") + channels;
        Relay::start(dir, &config).await
    }

    async fn start(dir: tempfile::TempDir, config: &str) -> Relay {
        std::fs::write(
            dir.path().join("amrelay.toml"),
            config.replace("{dir}", &dir.path().display().to_string()),
        )
        .unwrap();
        let port = free_port();
        let child = serve_process(dir.path(), port).await;
        Relay {
            child,
            poster: Poster::at(format!("http://127.0.0.1:{port}")),
            dir,
        }
    }

    /// SIGKILL: no clean stop, no channel given up.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("amrelay.log")).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `amrelay ARGS --config CONFIG` to completion (killed if it runs past 20 s).
async fn amrelay(args: &[&str], config: &Path, env: &[(&str, String)]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("amrelay {args:?} still running after 20 s"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_notification_posted_to_both_instances_at_once_is_accepted_once_and_delivered_once(
) {
    const N: usize = 100;
    let pg = Pg::start();
    let hook = Fake::webhook().await;
    let channels = hook_config(&hook.hook_url(), "");
    let a = pg.app("relay-a", &channels).await;
    let b = pg.app("relay-b", &channels).await;
    let posters = [Poster::app(&a), Poster::app(&b)];

    // Ten notifications at a time; each posted to both instances at the same instant
    // (both posts wait on one barrier).
    let mut answers: HashMap<String, Vec<(u16, Value)>> = HashMap::new();
    for batch in 0..N / 10 {
        let mut posts = JoinSet::new();
        for i in batch * 10..batch * 10 + 10 {
            let id = format!("same-{i:03}");
            let barrier = Arc::new(Barrier::new(2));
            for p in &posters {
                let (p, id, barrier) = (p.clone(), id.clone(), barrier.clone());
                posts.spawn(async move {
                    let body = tagged(&id);
                    barrier.wait().await;
                    (id, p.post(body).await)
                });
            }
        }
        while let Some(done) = posts.join_next().await {
            let (id, answer) = done.unwrap();
            answers.entry(id).or_default().push(answer);
        }
    }
    assert_eq!(answers.len(), N);
    for (id, got) in &answers {
        assert!(
            got.iter().all(|(s, _)| (200..300).contains(s)),
            "{id}: {got:?}"
        );
        let mut said: Vec<&str> = got
            .iter()
            .map(|(_, j)| j["status"].as_str().unwrap_or("?"))
            .collect();
        said.sort();
        assert_eq!(said, ["accepted", "duplicate"], "{id}: {got:?}");
    }

    let ids: HashSet<String> = answers.keys().cloned().collect();
    wait_delivered(&hook, &ids, WAIT).await;
    pg.wait_drained(WAIT).await;
    let got = counts(&hook);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "each exactly once: {twice:?}");
    assert_eq!(got.len(), N, "{got:?}");
    let mut dedup = 0.0;
    for p in &posters {
        dedup += p.metric("amrelay_notifications_deduplicated_total").await;
    }
    assert_eq!(
        dedup, N as f64,
        "one duplicate per notification, over both instances"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_posted_to_either_instance_are_each_delivered_exactly_once() {
    const N: usize = 40;
    let pg = Pg::start();
    let hook = Fake::webhook().await;
    let channels = hook_config(&hook.hook_url(), "");
    let a = pg.app("relay-a", &channels).await;
    let b = pg.app("relay-b", &channels).await;
    let posters = [Poster::app(&a), Poster::app(&b)];
    let bodies: Vec<_> = (0..N)
        .map(|i| {
            let id = format!("either-{i:02}");
            (id.clone(), tagged(&id))
        })
        .collect();
    let ids: HashSet<String> = bodies.iter().map(|(id, _)| id.clone()).collect();
    post_all(&posters, bodies).await;

    wait_delivered(&hook, &ids, WAIT).await;
    pg.wait_drained(WAIT).await;
    let got = counts(&hook);
    assert!(got.values().all(|n| *n == 1), "each exactly once: {got:?}");
    assert_eq!(got.len(), N, "{got:?}");
    // One instance delivered the channel: the other stored its half for it.
    let sample = delivered_here("hook");
    let here = [
        posters[0].metric(&sample).await,
        posters[1].metric(&sample).await,
    ];
    assert_eq!(here.iter().sum::<f64>(), 1.0, "one owner: {here:?}");
    let delivered = "amrelay_deliveries_delivered_total{channel=\"hook\"}";
    let counted = posters[0].metric(delivered).await + posters[1].metric(delivered).await;
    assert_eq!(counted, N as f64);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_delivering_instance_hands_its_channel_to_the_other_within_the_lease_losing_nothing(
) {
    const N: usize = 8;
    let pg = Pg::start();
    let hook = Fake::webhook().await;
    // Held open: the attempts in flight at the kill never get their answer.
    hook.set_default(Answer::Hang);
    let channels = hook_config(&hook.hook_url(), "concurrency = 2\ntimeout = \"60s\"\n");
    let mut a = Relay::on(&pg, "relay-a", &channels).await;
    a.poster
        .wait_metric(&delivered_here("hook"), 1.0, WAIT)
        .await;
    let b = Relay::on(&pg, "relay-b", &channels).await;
    assert_eq!(b.poster.metric(&delivered_here("hook")).await, 0.0);

    let bodies: Vec<_> = (0..N)
        .map(|i| {
            let id = format!("kill-{i}");
            (id.clone(), tagged(&id))
        })
        .collect();
    let ids: HashSet<String> = bodies.iter().map(|(id, _)| id.clone()).collect();
    post_all(&[a.poster.clone(), b.poster.clone()], bodies).await;
    hook.wait_for("two attempts in flight", WAIT, |r| r.len() >= 2)
        .await;
    let in_flight: HashSet<String> = hook.received().iter().map(id_of).collect();
    assert!(
        in_flight.len() < N,
        "deliveries must still be pending at the kill"
    );

    let killed_at = Instant::now();
    a.kill();
    hook.set_default(Answer::Ok);
    hook.release_held();

    wait_delivered(&hook, &ids, WAIT).await;
    let first_after = hook
        .received()
        .iter()
        .map(|r| r.at)
        .filter(|at| *at > killed_at)
        .min()
        .unwrap();
    let takeover = first_after - killed_at;
    eprintln!("takeover: first delivery from the other instance {takeover:?} after the kill");
    assert!(
        takeover < LEASE + Duration::from_secs(3),
        "taken over only after {takeover:?}; log of the survivor:\n{}",
        b.log()
    );
    assert_eq!(b.poster.metric(&delivered_here("hook")).await, 1.0);
    pg.wait_drained(WAIT).await;
    let got = counts(&hook);
    assert_eq!(got.len(), N, "{got:?}");
    let twice: HashSet<String> = got
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        twice.is_subset(&in_flight),
        "only what was in flight at the kill ({in_flight:?}) may come twice: {got:?}"
    );
    assert!(
        got.values().all(|n| *n <= 2),
        "nothing more than twice: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_per_second_slack_channel_served_by_two_instances_sends_one_message_per_second() {
    const N: usize = 20;
    let pg = Pg::start();
    let slack = Fake::slack().await;
    // Slack refuses what comes sooner than this after the last message (with a 429).
    slack.enforce_min_interval(Duration::from_millis(900));
    let channels = slack_config(&slack.slack_api_url(), "rate_limit = \"1/s\"");
    let a = pg.app("relay-a", &channels).await;
    let b = pg.app("relay-b", &channels).await;
    let bodies: Vec<_> = (0..N)
        .map(|i| {
            let id = format!("paced-{i:02}");
            (id.clone(), tagged(&id))
        })
        .collect();
    let ids: HashSet<String> = bodies.iter().map(|(id, _)| id.clone()).collect();
    let posted_at = Instant::now();
    post_all(&[Poster::app(&a), Poster::app(&b)], bodies).await;

    wait_delivered(
        &slack,
        &ids,
        Duration::from_secs(22).saturating_sub(posted_at.elapsed()),
    )
    .await;
    eprintln!("{N} messages at 1/s took {:?}", posted_at.elapsed());
    pg.wait_drained(WAIT).await;
    let got = slack.received();
    assert_eq!(
        slack.refused_429(),
        0,
        "sent faster than 1/s: {}",
        gaps(&got)
    );
    assert_eq!(got.len(), N, "no retries needed: {:?}", counts(&slack));
    let mut at: Vec<Instant> = got.iter().map(|r| r.at).collect();
    at.sort();
    let closest = at.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(
        closest >= Duration::from_millis(900),
        "two messages {closest:?} apart: {}",
        gaps(&got)
    );
    a.stop().await;
    b.stop().await;
}

/// The gaps between the requests, for a failure message.
fn gaps(got: &[Received]) -> String {
    let mut at: Vec<Instant> = got.iter().map(|r| r.at).collect();
    at.sort();
    format!(
        "{:?}",
        at.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    )
}

/// One webhook of the steady load: when it was sent, how long its answer took, and what
/// it was.
struct Sent {
    id: String,
    at: Instant,
    took: Duration,
    status: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_webhooks_get_503_and_everything_acknowledged_is_delivered_after() {
    const OUTAGE: Duration = Duration::from_secs(20);
    const EVERY: Duration = Duration::from_millis(150);
    const PROMPT: Duration = Duration::from_secs(5);
    let pg = Pg::start();
    let hook = Fake::webhook().await;
    // The receiver holds every attempt until the database is back: what was acknowledged
    // before the outage is the backlog.
    hook.set_default(Answer::Hang);
    let channels = hook_config(
        &hook.hook_url(),
        "backoff_min = \"100ms\"\nbackoff_max = \"1s\"\n",
    );
    let a = pg.app("relay-a", &channels).await;
    let b = pg.app("relay-b", &channels).await;
    let posters = [Poster::app(&a), Poster::app(&b)];

    // The steady load: a webhook every 150 ms, to each instance in turn, without waiting
    // for the answer.
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let load = {
        let (sent, posters) = (sent.clone(), posters.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            let mut posts = JoinSet::new();
            for i in 0.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (p, sent) = (posters[i % 2].clone(), sent.clone());
                posts.spawn(async move {
                    let id = format!("load-{i:04}");
                    let at = Instant::now();
                    let (status, _) = p.post(tagged(&id)).await;
                    sent.lock().unwrap().push(Sent {
                        id,
                        at,
                        took: at.elapsed(),
                        status,
                    });
                });
            }
            while posts.join_next().await.is_some() {}
        })
    };
    let acked_since = |since: Instant| {
        let sent = sent.clone();
        move || {
            let n = sent
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.at >= since && s.status == 200)
                .count();
            if n >= 10 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        }
    };
    eventually(
        "webhooks taken before the outage",
        WAIT,
        acked_since(Instant::now()),
    )
    .await;

    let backlog = pg.open_deliveries(None).await;
    assert!(backlog >= 10, "a backlog at the outage: {backlog}");
    pg.pause().await;
    let down_from = Instant::now();
    // Down for OUTAGE; meanwhile both instances say they are not ready, promptly.
    let mut readyz = Vec::new();
    while down_from.elapsed() < OUTAGE {
        for p in &posters {
            let at = Instant::now();
            readyz.push((p.status("/readyz").await, at.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let down_until = Instant::now();
    pg.resume().await;
    let up_at = Instant::now();
    eventually(
        "webhooks taken again after the database returned",
        WAIT,
        acked_since(up_at),
    )
    .await;
    stop.send(true).unwrap();
    load.await.unwrap();

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let during: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at >= down_from && s.at < down_until)
        .collect();
    assert!(
        during.len() >= 50,
        "steady load: {} during the outage",
        during.len()
    );
    for s in &during {
        assert_eq!(
            s.status,
            503,
            "{} sent {:?} into the outage",
            s.id,
            s.at - down_from
        );
        assert!(s.took <= PROMPT, "{} answered after {:?}", s.id, s.took);
    }
    assert!(readyz.len() >= 20);
    for (status, took) in &readyz {
        assert_ne!(*status, 200, "/readyz while the database is down");
        assert!(*took <= PROMPT, "/readyz answered after {took:?}");
    }
    let others: Vec<(&str, u16)> = sent
        .iter()
        .filter(|s| s.status != 200 && s.status != 503)
        .map(|s| (s.id.as_str(), s.status))
        .collect();
    assert!(others.is_empty(), "neither taken nor 503: {others:?}");
    let back = sent
        .iter()
        .filter(|s| s.at >= up_at && s.status == 200)
        .map(|s| s.at + s.took - up_at)
        .min()
        .unwrap();
    eprintln!("first webhook taken {back:?} after the database returned");

    // Everything acknowledged (before, at the edges of and after the outage) arrives.
    let acked: HashSet<String> = sent
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.id.clone())
        .collect();
    let released = Instant::now();
    hook.set_default(Answer::Ok);
    hook.release_held();
    wait_delivered(&hook, &acked, WAIT).await;
    pg.wait_drained(WAIT).await;
    eprintln!(
        "{} acknowledged ({backlog} undelivered at the outage), all delivered; drained {:?} after the receiver took them",
        acked.len(),
        released.elapsed()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_start_at_once_on_an_empty_database_and_a_newer_schema_is_refused() {
    let pg = Pg::start();
    let console =
        "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amrelay.toml");
    std::fs::write(&config, pg.config(dir.path(), "checker", "") + console).unwrap();
    let out = amrelay(&["check-config"], &config, &[]).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("PostgreSQL reachable, empty"), "{said}");

    // Both build at once, on two threads: each migrates under the lock, or finds it done.
    let mut starts = JoinSet::new();
    for name in ["relay-a", "relay-b"] {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings_in(dir.path(), &(pg.config(dir.path(), name, "") + console));
        starts.spawn(async move {
            let built = amrelay::app::App::build(settings).await;
            (
                name,
                dir,
                built
                    .map(|app| app.local_addr())
                    .map_err(|e| format!("{e:#}")),
            )
        });
    }
    while let Some(done) = starts.join_next().await {
        let (name, _dir, built) = done.unwrap();
        assert!(built.is_ok(), "{name} did not start: {built:?}");
    }
    let db = pg.client().await;
    let version: i32 = db
        .query_one("SELECT version FROM amrelay_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version >= 1);
    let out = amrelay(&["check-config"], &config, &[]).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("PostgreSQL reachable, schema version {version}\n")),
        "{said}"
    );

    // A newer amrelay migrated the database: this one refuses it, naming the version.
    db.execute("UPDATE amrelay_schema SET version = 99", &[])
        .await
        .unwrap();
    let env = [
        (
            "AMRELAY__SERVER__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "AMRELAY__STORAGE__PATH",
            store_path(dir.path()).display().to_string(),
        ),
    ];
    let out = amrelay(&["serve"], &config, &env).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve ran on a newer schema: {err}");
    assert!(err.contains("schema version 99 is newer"), "{err}");
    let out = amrelay(&["check-config"], &config, &[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("schema version 99 is newer"), "{err}");
}

#[tokio::test]
async fn a_second_server_on_one_sqlite_store_is_refused_naming_the_path_and_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let console =
        "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n";
    let first = Relay::start(dir, console).await;
    let store = store_path(first.dir.path());
    let env = [
        (
            "AMRELAY__SERVER__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("AMRELAY__STORAGE__PATH", store.display().to_string()),
    ];
    let out = amrelay(&["serve"], &first.dir.path().join("amrelay.toml"), &env).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second server started: {err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");
    // The first one serves on.
    assert_eq!(first.poster.status("/readyz").await, 200);
}

/// PrimaryDown for target "primary" reported by `monitor`, firing since now.
fn primary_down(group: &str, monitor: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&notification("primary-down-firing", group)).unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    for section in ["commonLabels", "groupLabels"] {
        v[section]["target"] = "primary".into();
        v[section]["monitor"] = monitor.into();
    }
    for a in v["alerts"].as_array_mut().unwrap() {
        a["labels"]["target"] = "primary".into();
        a["labels"]["monitor"] = monitor.into();
        a["startsAt"] = now.clone().into();
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_through_two_callers_runs_once_and_is_told_once_when_the_delivering_caller_is_killed(
) {
    let pg = Pg::start();
    // The backup: its command holds until the test releases it.
    let backup_tmp = tempfile::tempdir().unwrap();
    let backup_dir = backup_tmp.path().to_path_buf();
    std::fs::write(backup_dir.join("hold"), "").unwrap();
    let backup_port = free_port();
    let backup_config = endpoint_config(
        &backup_dir,
        "promote.sh",
        &format!("127.0.0.1:{backup_port}"),
        "",
    );
    let backup = spawn_app_in(backup_tmp, &backup_config).await;

    let outcomes = Fake::webhook().await;
    let channels = format!(
        r#"
[[channels]]
name = "promote"
kind = "promotion"
url = "http://127.0.0.1:{backup_port}"
target = "primary"
secret_file = "{{dir}}/promotion.secret"
outcome_channels = ["ops"]
backoff_min = "100ms"
backoff_max = "300ms"

[[channels]]
name = "ops"
kind = "webhook"
url = "{hook}"

[[routes]]
matchers = ['alertname="PrimaryDown"']
channels = ["promote"]

[[routes]]
channels = ["ops"]
"#,
        hook = outcomes.hook_url(),
    );
    let caller = |pg: &Pg, name: &'static str| {
        let channels = channels.clone();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("promotion.secret"), format!("{SECRET}\n")).unwrap();
        let config = pg.config(dir.path(), name, "") + &channels;
        async move { Relay::start(dir, &config).await }
    };
    // The first caller delivers both channels; the second stands by.
    let mut a = caller(&pg, "caller-a").await;
    for c in ["promote", "ops"] {
        a.poster.wait_metric(&delivered_here(c), 1.0, WAIT).await;
    }
    let b = caller(&pg, "caller-b").await;

    // Each monitor's Alertmanager posts to a different caller: two deliveries, one
    // incident.
    for (relay, group, monitor) in [(&a, "ha-mon1", "mon1"), (&b, "ha-mon2", "mon2")] {
        let (status, body) = relay.poster.post(primary_down(group, monitor)).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    }
    let told = |needle: &'static str| {
        let outcomes = outcomes.clone();
        move || -> Vec<String> {
            outcomes
                .received()
                .iter()
                .map(|r| r.json["commonAnnotations"]["summary"].to_string())
                .filter(|s| s.contains(needle))
                .collect()
        }
    };
    let requested = told("Promotion of primary requested");
    let succeeded = told("Promotion of primary succeeded");
    // The command runs (held), and "requested" was told and settled, when the caller
    // that sent the request dies.
    eventually("the command running", WAIT, || {
        (!runs(&backup_dir).is_empty())
            .then_some(())
            .ok_or("it has not run".to_owned())
    })
    .await;
    eventually("\"requested\" told", WAIT, || {
        (!requested().is_empty())
            .then_some(())
            .ok_or(format!("{} messages", outcomes.received().len()))
    })
    .await;
    pg.wait_settled(Some("ops"), WAIT).await;
    a.kill();
    std::fs::write(backup_dir.join("release"), "").unwrap();

    eventually("\"succeeded\" told", WAIT, || {
        (!succeeded().is_empty())
            .then_some(())
            .ok_or(format!("log of the survivor:\n{}", b.log()))
    })
    .await;
    pg.wait_drained(WAIT).await;
    let ran = runs(&backup_dir);
    assert_eq!(ran.len(), 1, "the command ran more than once: {ran:?}");
    assert!(ran[0].starts_with("1 primary/1 "), "{ran:?}");
    let incidents: i64 = pg
        .client()
        .await
        .query_one("SELECT COUNT(*) FROM caller_incidents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(incidents, 1, "the callers opened one incident");
    assert_eq!(requested().len(), 1, "{:?}", requested());
    assert_eq!(succeeded().len(), 1, "{:?}", succeeded());
    // The survivor finished what the killed caller started.
    assert_eq!(
        b.poster
            .metric("amrelay_promotion_incidents_total{target=\"primary\",event=\"promoted\"}")
            .await,
        1.0
    );
    backup.stop().await;
}

#[tokio::test]
async fn verify_full_tls_reaches_a_server_whose_certificate_the_ca_file_vouches_for_and_no_other() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let good = Certs::make(dir.path(), "good");
    let other = Certs::make(dir.path(), "other");
    pg.enable_tls(&good).await;
    let check = |ca: &Path| {
        let config = pg
            .config(dir.path(), "tls", &format!("ca_file = \"{}\"", ca.display()))
            .replace("sslmode = \"disable\"", "sslmode = \"verify-full\"")
            + "[[channels]]\nname = \"console\"\nkind = \"console\"\n[[routes]]\nchannels = [\"console\"]\n";
        let path = dir.path().join("amrelay.toml");
        std::fs::write(&path, config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(&good.ca);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("PostgreSQL reachable"), "{said}");
    // A certificate the configured CA did not sign: refused, never used unverified.
    let out = check(&other.ca);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.to_lowercase().contains("certificate"), "{said}");
}
