use super::*;

fn load_str(toml: &str) -> Result<Settings, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("amrelay.toml");
    std::fs::write(&path, toml).unwrap();
    Settings::load(Some(&path))
}

fn problems(toml: &str) -> Vec<String> {
    load_str(toml).expect_err("config should be refused").0
}

#[test]
fn built_in_defaults_route_everything_to_the_console() {
    let s = Settings::from_raw(RawConfig::default(), true).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:9097");
    assert_eq!(s.storage.path, PathBuf::from("./data"));
    assert_eq!(s.channels.len(), 1);
    assert!(matches!(s.channels[0].kind, ChannelKind::Console));
    assert_eq!(s.routes[0].channels, vec!["console".to_string()]);
    assert!(s.routes[0].matchers.is_empty());
}

#[test]
fn a_valid_file_loads_with_typed_values() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("slack.token");
    std::fs::write(&token, "xoxb-test\n").unwrap();
    let s = load_str(&format!(
        r##"
        [server]
        max_body = "1MiB"
        [dedup]
        window = "5m"
        [[channels]]
        name = "ops-slack"
        kind = "slack"
        api_url = "http://127.0.0.1:1/api"
        token_file = "{}"
        channel = "#ops"
        rate_limit = "2/s"
        fallback = "hook"
        [[channels]]
        name = "hook"
        kind = "webhook"
        url = "http://127.0.0.1:2/hook"
        [[routes]]
        matchers = ['severity="critical"']
        channels = ["ops-slack"]
        continue = true
        [[routes]]
        channels = ["hook"]
        "##,
        token.display()
    ))
    .unwrap();
    assert_eq!(s.server.max_body, 1024 * 1024);
    assert_eq!(s.dedup_window, Duration::from_secs(300));
    assert_eq!(s.channels[0].rate_limit.unwrap().count.get(), 2);
    assert_eq!(s.channels[0].fallback.as_deref(), Some("hook"));
    assert!(s.routes[0].continue_);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let got = problems(
        r##"
        [log]
        level = "loud=="
        [storage]
        retention = "forever"
        [[channels]]
        name = "a"
        kind = "slack"
        channel = "#x"
        rate_limit = "fast"
        [[channels]]
        name = "b"
        kind = "pager"
        [[routes]]
        matchers = ['severity=~"("']
        channels = ["nope"]
        "##,
    );
    let text = got.join("\n");
    for key in [
        "storage.retention:",
        "log.level:",
        "channels[0].token_file:",
        "channels[0].rate_limit: expected \"N/s\", \"N/m\" or \"N/h\", got \"fast\"",
        "channels[1].kind:",
        "routes[0].matchers[0]:",
        "routes[0].channels[0]: no channel is named \"nope\"",
        "routes[0].matchers: the last route must be a catch-all",
    ] {
        assert!(text.contains(key), "missing {key:?} in:\n{text}");
    }
}

#[test]
fn unknown_keys_and_misplaced_kind_keys_are_refused() {
    let text = problems("[server]\nlisen = \"x\"\n").join("\n");
    assert!(text.contains("lisen"), "{text}");
    let text = problems(
        r#"
        [[channels]]
        name = "c"
        kind = "console"
        url = "http://x"
        [[routes]]
        channels = ["c"]
        "#,
    )
    .join("\n");
    assert!(
        text.contains("channels[0].url: is not a key of a \"console\" channel"),
        "{text}"
    );
}

#[test]
fn fallback_loops_and_duplicate_names_are_refused() {
    let text = problems(
        r#"
        [[channels]]
        name = "a"
        kind = "console"
        fallback = "b"
        [[channels]]
        name = "b"
        kind = "console"
        fallback = "a"
        [[channels]]
        name = "b"
        kind = "console"
        [[routes]]
        channels = ["a"]
        "#,
    )
    .join("\n");
    assert!(
        text.contains("fallbacks form a loop: a -> b -> a"),
        "{text}"
    );
    assert!(
        text.contains("channels[2].name: \"b\" is used by an earlier channel"),
        "{text}"
    );
}

#[test]
fn a_file_without_channels_is_refused() {
    let text = problems("[server]\nlisten = \"127.0.0.1:0\"\n").join("\n");
    assert!(
        text.contains("channels: at least one channel is required"),
        "{text}"
    );
    assert!(
        text.contains("routes: at least one route is required"),
        "{text}"
    );
}

const COLLECTOR_BASE: &str = r#"
[[channels]]
name = "c"
kind = "console"
[[routes]]
channels = ["c"]
"#;

#[test]
fn a_collector_section_loads_with_defaults_and_target_labels() {
    let s = load_str(&format!(
        r#"{COLLECTOR_BASE}
        [collector]
        labels = {{ collector = "backup" }}
        [[collector.targets]]
        job = "node"
        url = "http://127.0.0.1:9100/metrics"
        labels = {{ env = "prod", Zone = "A" }}
        [[collector.targets]]
        job = "self"
        url = "http://localhost/metrics"
        interval = "5s"
        [[collector.remote_write]]
        name = "prom-a"
        url = "http://127.0.0.1:9090/api/v1/write"
        "#
    ))
    .unwrap();
    let c = &s.collector;
    assert!(c.enabled());
    assert_eq!(c.labels, vec![("collector".into(), "backup".into())]);
    let t = &c.targets[0];
    assert_eq!(t.interval, Duration::from_secs(15));
    assert_eq!(t.timeout, Duration::from_secs(10));
    assert_eq!(
        t.labels,
        vec![
            ("Zone".to_string(), "A".to_string()),
            ("env".to_string(), "prod".to_string()),
            ("instance".to_string(), "127.0.0.1:9100".to_string()),
            ("job".to_string(), "node".to_string()),
        ]
    );
    assert_eq!(
        c.targets[1].timeout,
        Duration::from_secs(5),
        "at most the interval"
    );
    assert_eq!(c.targets[1].labels[0].1, "localhost:80");
    let e = &c.remote_write[0];
    assert_eq!(e.max_age, Duration::from_secs(3600));
    assert_eq!(e.batch_size, 5000);
    assert!(e.auth.is_none());
    assert_eq!(
        c.buffer_dir(Path::new("/var/lib/amrelay")),
        PathBuf::from("/var/lib/amrelay/collector")
    );
}

#[test]
fn no_collector_section_means_no_collector() {
    let s = load_str(COLLECTOR_BASE).unwrap();
    assert!(!s.collector.enabled());
}

#[test]
fn every_collector_problem_names_its_key() {
    let text = problems(&format!(
        r#"{COLLECTOR_BASE}
        [collector]
        labels = {{ collector = "backup", "__x" = "y" }}
        [[collector.targets]]
        url = "ftp://x"
        interval = "1s"
        timeout = "2s"
        max_body = "huge"
        labels = {{ collector = "again", job = "j", "bad-name" = "v" }}
        [[collector.targets]]
        job = "a"
        url = "http://h:1/m"
        [[collector.targets]]
        job = "a"
        url = "http://h:1/m"
        [[collector.remote_write]]
        name = "bad name"
        url = "nope"
        batch_size = 0
        max_age = "old"
        bearer_token_env = "AMRELAY_TEST_UNSET_VAR"
        [[collector.remote_write]]
        url = "http://x/api/v1/write"
        "#
    ))
    .join("\n");
    for key in [
        "collector.labels.__x: expected a label name",
        "collector.targets[0].url: expected an http(s) URL, got \"ftp://x\"",
        "collector.targets[0].job: is required",
        "collector.targets[0].timeout: must be above zero and at most the interval",
        "collector.targets[0].max_body:",
        "collector.targets[0].labels.collector: is set by collector.labels already",
        "collector.targets[0].labels.job: set the target's `job` key instead",
        "collector.targets[0].labels.bad-name: expected a label name",
        "collector.targets[2]: has the same job and labels as an earlier target",
        "collector.remote_write[0].name: expected letters",
        "collector.remote_write[0].url: expected an http(s) URL",
        "collector.remote_write[0].batch_size: must be above zero",
        "collector.remote_write[0].max_age: expected a duration",
        "collector.remote_write[0].bearer_token_env: environment variable",
        "collector.remote_write[1].name: is required",
    ] {
        assert!(text.contains(key), "missing {key:?} in:\n{text}");
    }
}

#[test]
fn collector_targets_and_endpoints_come_together() {
    let text = problems(&format!(
        "{COLLECTOR_BASE}\n[[collector.targets]]\njob = \"a\"\nurl = \"http://h/m\"\n"
    ))
    .join("\n");
    assert!(
        text.contains("collector.remote_write: at least one endpoint is required"),
        "{text}"
    );
    let text = problems("[collector]\nbufer_path = \"x\"\n").join("\n");
    assert!(text.contains("bufer_path"), "{text}");
}

#[test]
fn collect_alone_needs_no_channels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"
        [collector]
        [[collector.targets]]
        job = "a"
        url = "http://h/m"
        [[collector.remote_write]]
        name = "p"
        url = "http://p/api/v1/write"
        "#,
    )
    .unwrap();
    let s = Settings::load_for_collect(Some(&path)).unwrap();
    assert_eq!(s.collector.targets.len(), 1);
    assert!(
        Settings::load(Some(&path)).is_err(),
        "serve still needs channels"
    );
}
