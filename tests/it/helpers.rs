//! `spawn_app`: amrelay on port 0 with a config written for the test, plus ways to wait
//! on its metrics instead of sleeping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use amrelay::app::App;
use amrelay::config::Settings;
use tokio::sync::oneshot;

pub const BEARER: &str = "test-bearer-token-123";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/alertmanager/{name}.raw.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A fixture with its group key made unique, so each test's notifications are new.
pub fn notification(name: &str, group: &str) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
    v["groupKey"] = format!("{{}}:{{group=\"{group}\"}}").into();
    serde_json::to_vec(&v).unwrap()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Writes `config` (TOML; `{dir}` is replaced by the test's temp dir) and starts amrelay.
pub async fn spawn_app(config: &str) -> TestApp {
    spawn_app_in(tempfile::tempdir().unwrap(), config).await
}

/// Starts amrelay on `dir` (a restart when the dir holds a store already).
pub async fn spawn_app_in(dir: tempfile::TempDir, config: &str) -> TestApp {
    let settings = settings_in(dir.path(), config);
    spawn_app_with(dir, settings).await
}

/// Starts amrelay with settings the test adjusted (e.g. a fixed listen port).
pub async fn spawn_app_with(dir: tempfile::TempDir, settings: Settings) -> TestApp {
    let app = App::build(settings).await.expect("app starts");
    let addr = app.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        dir,
        client: crate::helpers::http_client(),
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

/// Loads `config` (`{dir}` stands for the test's dir) with port 0 and the store in `dir`.
pub fn settings_in(dir: &Path, config: &str) -> Settings {
    std::fs::write(dir.join("bearer.token"), format!("{BEARER}\n")).unwrap();
    std::fs::write(dir.join("slack.token"), "xoxb-test-token\n").unwrap();
    let path = dir.join("amrelay.toml");
    std::fs::write(&path, config.replace("{dir}", &dir.display().to_string())).unwrap();
    let mut settings =
        Settings::load(Some(&path)).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.storage.path = store_path(dir);
    settings
}

pub fn store_path(dir: &Path) -> PathBuf {
    dir.join("store")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(&self, body: Vec<u8>) -> (u16, serde_json::Value) {
        self.post_with(body, Some(BEARER)).await
    }

    pub async fn post_with(&self, body: Vec<u8>, bearer: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .post(self.url("/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let json = r.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Posts every body at once, as a burst, and asserts that each was taken (200).
    pub async fn post_all_at_once(&self, bodies: impl IntoIterator<Item = Vec<u8>>) {
        let mut posts = tokio::task::JoinSet::new();
        for body in bodies {
            let req = self
                .client
                .post(self.url("/webhook/alertmanager"))
                .header("content-type", "application/json")
                .bearer_auth(BEARER)
                .body(body);
            posts.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
        }
        while let Some(sent) = posts.join_next().await {
            assert_eq!(sent.unwrap().unwrap(), 200);
        }
    }

    /// The value of one sample (`name{labels}` exactly as exposed), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_at(&self.client, &self.url(""), sample).await
    }

    pub async fn wait_metric(&self, sample: &str, at_least: f64, timeout: Duration) {
        wait_metric_at(&self.client, &self.url(""), sample, at_least, timeout).await
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self.dir
    }
}

/// Polls `check` every 20 ms until it gives a value: waits on the condition, not a
/// guess. Fails with `what` (and whatever `check` last saw) after `timeout`.
pub async fn eventually<T>(
    what: impl std::fmt::Display,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `amrelay serve` as a process on `dir/amrelay.toml`, its webhook listener on `port` and
/// its store in `dir/store` through the documented env overrides, stderr appended to
/// `dir/amrelay.log`; returns once `/readyz` answers 200.
pub async fn serve_process(dir: &Path, port: u16) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("amrelay.log"))
        .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_amrelay"))
        .args(["serve", "--config"])
        .arg(dir.join("amrelay.toml"))
        .env("AMRELAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("AMRELAY__STORAGE__PATH", store_path(dir))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    ready_or_reaped(child, dir, port).await
}

/// Waits for `/readyz`; a process that never gets ready is killed and reaped before the
/// test fails.
async fn ready_or_reaped(
    mut child: std::process::Child,
    dir: &Path,
    port: u16,
) -> std::process::Child {
    let client = crate::helpers::http_client();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == 200 {
                return child;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "amrelay did not become ready: {}",
                std::fs::read_to_string(dir.join("amrelay.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A port free now on 127.0.0.1, for a process that must be told its port in advance.
/// An HTTP client for the tests' own requests. reqwest here has no TLS provider of its
/// own (amrelay builds its client with ring); the tests install ring's process-wide, once.
#[allow(clippy::disallowed_methods)]
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of one sample on `base`'s `/metrics`, 0 when absent.
pub async fn metric_at(client: &reqwest::Client, base: &str, sample: &str) -> f64 {
    metric_in(&metrics_at(client, base).await, sample)
}

/// `base`'s `/metrics` as text.
pub async fn metrics_at(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls `base`'s `/metrics` until `sample` reaches `at_least`: waits on the condition,
/// not a guess.
pub async fn wait_metric_at(
    client: &reqwest::Client,
    base: &str,
    sample: &str,
    at_least: f64,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = metric_at(client, base, sample).await;
        if v >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?}: {sample} = {v}, wanted >= {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn metric_in(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A config with one webhook channel "hook" at `url` (extra keys as TOML lines) and a
/// catch-all route to it.
pub fn hook_config(url: &str, extra_channel_keys: &str) -> String {
    format!(
        "[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n{extra_channel_keys}\n[[routes]]\nchannels = [\"hook\"]\n"
    )
}

/// A config with one Slack channel on `fake` (rate limit as given) and a catch-all route.
pub fn slack_config(api_url: &str, extra_channel_keys: &str) -> String {
    format!(
        r##"
[[channels]]
name = "ops-slack"
kind = "slack"
api_url = "{api_url}"
token_file = "{{dir}}/slack.token"
channel = "#ops"
backoff_min = "50ms"
backoff_max = "200ms"
{extra_channel_keys}

[[routes]]
channels = ["ops-slack"]
"##
    )
}

/// `amrelay serve` as a process under a resource limit (`RLIMIT_NOFILE`, `RLIMIT_FSIZE`,
/// ... with SIGXFSZ ignored, so that a write past a size limit fails as on a full disk),
/// ready when this returns. Its stderr lines arrive on `lines`; killed on drop.
pub struct Limited {
    pub pid: u32,
    pub url: String,
    pub lines: std::sync::mpsc::Receiver<String>,
    _child: crate::deploy::Children,
}

pub async fn serve_limited(
    config: &Path,
    port: u16,
    resource: libc::__rlimit_resource_t,
    soft: libc::rlim_t,
    hard: libc::rlim_t,
) -> Limited {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_amrelay"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: signal disposition and a limit set in the child before exec; both calls
    // are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let children = crate::deploy::Children(vec![child]);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let client = http_client();
    let started = std::time::Instant::now();
    while client.get(format!("{url}/readyz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "amrelay did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Limited {
        pid,
        url,
        lines,
        _child: children,
    }
}
