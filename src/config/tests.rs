use super::*;
use std::path::PathBuf;

fn load_str(toml: &str) -> Result<Settings, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("amrelay.toml");
    std::fs::write(&path, toml).unwrap();
    Settings::load(Some(&path))
}

fn problems(toml: &str) -> Vec<String> {
    load_str(toml)
        .expect_err("config should be refused")
        .0
        .into_iter()
        .map(|p| p.text)
        .collect()
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

/// Every problem in `toml` names one of `keys`, and every key is named.
fn names_keys(toml: &str, keys: &[&str]) {
    let p = problems(toml);
    for k in keys {
        assert!(
            p.iter().any(|l| l.starts_with(&format!("{k}:"))),
            "{k} not named in {p:#?}"
        );
    }
    assert_eq!(p.len(), keys.len(), "{p:#?}");
}

#[test]
fn email_channel_problems_name_their_keys() {
    names_keys(
        r#"
        [[channels]]
        name = "mail"
        kind = "email"
        provider = "smtp"
        from = "not an address"
        to = []
        host = "relay.example"
        tls = "none"
        username = "u"
        password_env = "AMRELAY_TEST_UNSET_VARIABLE_XYZ"
        api_key_env = "X"
        subject = "{% if %}"
        circuit_failures = 3
        [[routes]]
        channels = ["mail"]
        "#,
        &[
            "channels[0].from",
            "channels[0].to",
            "channels[0].password_env",
            "channels[0].api_key_env",
            "channels[0].subject",
            "channels[0].circuit_failures",
        ],
    );
    names_keys(
        r#"
        [[channels]]
        name = "mail"
        kind = "email"
        provider = "mailgun"
        from = "a@example.com"
        to = ["b@example.com"]
        api_key_env = "PATH"
        [[routes]]
        channels = ["mail"]
        "#,
        &["channels[0].domain"],
    );
}

#[test]
fn a_valid_email_pair_loads() {
    std::env::set_var("AMRELAY_TEST_CONFIG_SG_KEY", "SG.x");
    let s = load_str(
        r#"
        [[channels]]
        name = "api"
        kind = "email"
        provider = "sendgrid"
        from = "Ops <ops@example.com>"
        to = ["a@example.com", "B <b@example.com>"]
        cc = ["c@example.com"]
        api_key_env = "AMRELAY_TEST_CONFIG_SG_KEY"
        fallback = "smtp"
        circuit_open_for = "10s"
        [[channels]]
        name = "smtp"
        kind = "email"
        provider = "smtp"
        host = "relay.example"
        from = "ops@example.com"
        to = ["a@example.com"]
        [[routes]]
        channels = ["api"]
        "#,
    )
    .unwrap();
    let ChannelKind::Email(e) = &s.channels[0].kind else {
        panic!()
    };
    assert_eq!(e.to.len(), 2);
    assert_eq!(e.provider.name(), "sendgrid");
    assert_eq!(
        s.channels[0].policy.circuit,
        Some(CircuitPolicy {
            failures: 5,
            open_for: Duration::from_secs(10)
        })
    );
    let ChannelKind::Email(smtp) = &s.channels[1].kind else {
        panic!()
    };
    let EmailProvider::Smtp(relay) = &smtp.provider else {
        panic!()
    };
    assert_eq!((relay.port, relay.tls), (587, SmtpTls::StartTls));
    assert_eq!(s.channels[1].policy.concurrency, 4);
}

#[test]
fn promotion_channel_problems_name_their_keys() {
    names_keys(
        r##"
        [[channels]]
        name = "promote"
        kind = "promotion"
        secret_env = "PATH"
        fallback = "ops"
        outcome_channels = ["ops", "nope", "promote"]
        quorum = { label = "monitor", count = 1 }
        channel = "#x"
        [[channels]]
        name = "ops"
        kind = "console"
        [[routes]]
        channels = ["promote"]
        "##,
        &[
            "channels[0].url",
            "channels[0].target",
            "channels[0].fallback",
            "channels[0].quorum.count",
            "channels[0].channel",
        ],
    );
    // Outcome channels are checked once the channel itself is whole.
    names_keys(
        r#"
        [[channels]]
        name = "promote"
        kind = "promotion"
        url = "http://backup.example:9098"
        target = "primary"
        secret_env = "PATH"
        outcome_channels = ["ops", "nope", "promote"]
        [[channels]]
        name = "ops"
        kind = "console"
        [[routes]]
        channels = ["promote"]
        "#,
        &[
            "channels[0].outcome_channels[1]",
            "channels[0].outcome_channels[2]",
        ],
    );
}

#[test]
fn a_promotion_url_copied_with_its_endpoint_path_means_the_base_above_it() {
    let url = |u: &str| {
        let s = load_str(&format!(
            r#"
            [[channels]]
            name = "promote"
            kind = "promotion"
            url = "{u}"
            target = "primary"
            secret_env = "PATH"
            [[routes]]
            channels = ["promote"]
            "#
        ))
        .unwrap();
        let ChannelKind::Promotion(p) = &s.channels[0].kind else {
            panic!("not a promotion channel")
        };
        p.url.to_string()
    };
    for (given, base) in [
        ("http://backup:9098", "http://backup:9098/"),
        ("http://backup:9098/v1/promote", "http://backup:9098/"),
        ("http://backup:9098/v1/promote/", "http://backup:9098/"),
        ("http://backup:9098/v1/promotion", "http://backup:9098/"),
        ("https://lb/amrelay/v1/promote", "https://lb/amrelay/"),
        ("https://lb/amrelay/", "https://lb/amrelay/"),
    ] {
        assert_eq!(url(given), base, "url = {given:?}");
    }
}

#[test]
fn a_whsec_secret_must_be_base64() {
    std::env::set_var("AMRELAY_TEST_CONFIG_BAD_WHSEC", "whsec_not base64!");
    names_keys(
        r#"
        [[channels]]
        name = "hook"
        kind = "webhook"
        url = "http://127.0.0.1:1/hook"
        secret_env = "AMRELAY_TEST_CONFIG_BAD_WHSEC"
        [[routes]]
        channels = ["hook"]
        "#,
        &["channels[0].secret_env"],
    );
}

#[test]
fn admin_needs_a_token() {
    names_keys(
        r#"
        [admin]
        listen = "127.0.0.1:9099"
        [[channels]]
        name = "c"
        kind = "console"
        [[routes]]
        channels = ["c"]
        "#,
        &["admin.token_file"],
    );
}

#[test]
fn a_backup_may_configure_only_the_promotion_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("promotion.secret");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let s = load_str(&format!(
        r#"
        [promotion_endpoint]
        listen = "0.0.0.0:9098"
        target = "primary"
        secret_file = "{}"
        command = ["promote-backup", "--fence"]
        timeout = "2m"
        "#,
        secret.display()
    ))
    .unwrap();
    let e = s.promotion_endpoint.unwrap();
    assert_eq!(e.listen.to_string(), "0.0.0.0:9098");
    assert_eq!(e.command, vec!["promote-backup", "--fence"]);
    assert_eq!(e.timeout, Duration::from_secs(120));
    assert_eq!(e.max_clock_skew, Duration::from_secs(300));
    assert_eq!(e.retry_after, Duration::from_secs(5));
    // Alerts it might receive go to the console, as without a file.
    assert!(matches!(s.channels[0].kind, ChannelKind::Console));
    assert_eq!(s.routes[0].channels, vec!["console".to_string()]);
}

#[test]
fn every_promotion_endpoint_problem_names_its_key() {
    let text = problems(
        r#"
        [server]
        listen = "127.0.0.1:9097"
        [promotion_endpoint]
        listen = "127.0.0.1:9097"
        target = "pri/mary"
        command = []
        max_clock_skew = "soon"
        retries = 3
        "#,
    )
    .join("\n");
    assert!(text.contains("retries"), "{text}");
    let text = problems(
        r#"
        [server]
        listen = "127.0.0.1:9097"
        [promotion_endpoint]
        listen = "127.0.0.1:9097"
        target = "pri/mary"
        command = []
        max_clock_skew = "soon"
        "#,
    )
    .join("\n");
    for key in [
        "promotion_endpoint.listen: \"127.0.0.1:9097\" is server.listen already",
        "promotion_endpoint.target: expected letters",
        "promotion_endpoint.secret_file: set secret_file or secret_env",
        "promotion_endpoint.command: is required",
        "promotion_endpoint.max_clock_skew: expected a duration",
    ] {
        assert!(text.contains(key), "missing {key:?} in:\n{text}");
    }
    let text = problems(
        r#"
        [promotion_endpoint]
        listen = "127.0.0.1:9098"
        target = "primary"
        secret_env = "AMRELAY_TEST_UNSET_VAR"
        command = ["/nonexistent/promote"]
        "#,
    )
    .join("\n");
    assert!(
        text.contains("promotion_endpoint.secret_env: environment variable"),
        "{text}"
    );
    assert!(
        text.contains("promotion_endpoint.command[0]: \"/nonexistent/promote\" is not a file"),
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

#[test]
fn a_fallback_never_leads_to_a_promotion_channel() {
    names_keys(
        r#"
        [[channels]]
        name = "hook"
        kind = "webhook"
        url = "http://127.0.0.1:1/hook"
        fallback = "promote"
        [[channels]]
        name = "promote"
        kind = "promotion"
        url = "http://127.0.0.1:2"
        target = "primary"
        secret_env = "PATH"
        [[routes]]
        channels = ["hook"]
        "#,
        &["channels[0].fallback"],
    );
}

#[test]
fn storage_defaults_to_sqlite_and_postgres_keys_need_the_postgres_backend() {
    let s = Settings::from_raw(RawConfig::default(), true).unwrap();
    assert!(matches!(s.storage.backend, StorageBackend::Sqlite));
    assert!(!s.server.instance.is_empty());
    let p = problems(
        r#"
        [server]
        instance = "a b"
        [storage]
        pool_size = 4
        [[routes]]
        channels = ["console"]
        [[channels]]
        name = "console"
        kind = "console"
        "#,
    );
    assert!(p.iter().any(|m| m.starts_with("server.instance:")), "{p:?}");
    assert!(
        p.iter()
            .any(|m| m.starts_with("storage.pool_size: applies to backend = \"postgres\"")),
        "{p:?}"
    );
}

#[test]
fn a_postgres_store_reads_its_url_from_a_file_and_names_each_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("pg.url");
    std::fs::write(
        &url,
        "postgres://amrelay:secret@db.example.com:5432/amrelay\n",
    )
    .unwrap();
    let s = load_str(&format!(
        r#"
        [server]
        instance = "relay-1"
        [storage]
        backend = "postgres"
        url_file = "{}"
        pool_size = 4
        sslmode = "disable"
        lease = "5s"
        [[routes]]
        channels = ["console"]
        [[channels]]
        name = "console"
        kind = "console"
        "#,
        url.display()
    ))
    .unwrap();
    assert_eq!(s.server.instance, "relay-1");
    let StorageBackend::Postgres(pg) = &s.storage.backend else {
        panic!("not postgres: {:?}", s.storage.backend);
    };
    assert_eq!(pg.pool_size, 4);
    assert_eq!(pg.tls, PostgresTls::Disable);
    assert_eq!(pg.lease, std::time::Duration::from_secs(5));
    // The password is not printed with the settings.
    assert!(!format!("{s:?}").contains("secret@"));

    let p = problems(
        r#"
        [storage]
        backend = "postgres"
        sslmode = "prefer"
        lease = "100ms"
        [[routes]]
        channels = ["console"]
        [[channels]]
        name = "console"
        kind = "console"
        "#,
    );
    for key in ["storage.url_file:", "storage.sslmode:", "storage.lease:"] {
        assert!(p.iter().any(|m| m.starts_with(key)), "{key} in {p:?}");
    }
    let p = problems(
        r#"
        [storage]
        backend = "mysql"
        [[routes]]
        channels = ["console"]
        [[channels]]
        name = "console"
        kind = "console"
        "#,
    );
    assert!(
        p.iter()
            .any(|m| m.contains("storage.backend: expected \"sqlite\" or \"postgres\"")),
        "{p:?}"
    );
}

/// Loads `toml` (or no file) with `env` as the environment: every problem, as printed.
fn printed(toml: Option<&str>, env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("amrelay.toml");
    if let Some(t) = toml {
        std::fs::write(&path, t).unwrap();
    }
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let errors = Settings::load_from(toml.map(|_| path.as_path()), env, false)
        .expect_err("config should be refused");
    let shown = path.display().to_string();
    errors
        .0
        .iter()
        .map(|p| p.to_string().replace(&shown, "FILE"))
        .collect()
}

const CONSOLE_ROUTED: &str =
    "[[channels]]\nname = \"c\"\nkind = \"console\"\n[[routes]]\nchannels = [\"c\"]\n";

#[test]
fn every_problem_of_every_section_is_named_in_one_run_with_its_line() {
    let p = printed(
        Some(&format!(
            "[server]\nlisten_adress = \"0.0.0.0:9097\"\nmax_body = 5\n\
             [storage]\nmax_pending = \"lots\"\nretension = \"1d\"\n\
             [dedup]\nwindow = \"soon\"\n\
             [log]\nformt = \"json\"\n\
             [admin]\nlisten = \"127.0.0.1:9099\"\ntoken_flie = \"/x\"\n\
             [[collector.targets]]\njb = \"node\"\nurl = \"http://127.0.0.1:9100/metrics\"\n\
             [[collector.remote_write]]\nname = \"prom\"\nurl = \"http://127.0.0.1:9090/api/v1/write\"\nbasic_auth = {{ usernme = \"u\" }}\n\
             [promotion_endpoint]\ntarget = \"primary\"\nsecret_file = \"/x\"\ncomand = [\"/bin/true\"]\n\
             {CONSOLE_ROUTED}"
        )),
        &[],
    );
    let want = [
        "FILE:2: server.listen_adress: unknown key; did you mean `listen`?",
        "FILE:3: server.max_body: invalid type: integer `5`, expected a string",
        "FILE:5: storage.max_pending: expected a whole number",
        "FILE:6: storage.retension: unknown key; did you mean `retention`?",
        "FILE:8: dedup.window: ",
        "FILE:10: log.formt: unknown key; did you mean `format`?",
        "FILE:13: admin.token_flie: unknown key; did you mean `token_file`?",
        "admin.token_file: the admin API needs token_file or token_env",
        "FILE:15: collector.targets[0].jb: unknown key; did you mean `job`?",
        "FILE:20: collector.remote_write[0].basic_auth.usernme: unknown key; did you mean `username`?",
        "FILE:24: promotion_endpoint.comand: unknown key; did you mean `command`?",
    ];
    for w in want {
        assert!(p.iter().any(|l| l.contains(w)), "{w:?} not in {p:#?}");
    }
}

#[test]
fn a_toml_syntax_error_is_one_clean_line_with_its_place() {
    let p = printed(Some("[server]\nlisten = \"127.0.0.1:9097\n[dedup]\n"), &[]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with("FILE:2:"), "{p:#?}");
    assert!(p[0].contains(": TOML syntax error: "), "{p:#?}");
    assert!(
        !p[0].contains('\n') && !p[0].ends_with(" in FILE"),
        "{p:#?}"
    );
}

#[test]
fn a_channel_that_cannot_be_read_is_reported_once_and_routes_to_it_are_not() {
    let p = printed(
        Some(
            "[[channels]]\nname = \"mail\"\nkind = \"email\"\nport = \"twenty-five\"\n\
             [[routes]]\nchannels = [\"mail\"]\n",
        ),
        &[],
    );
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("FILE:4: channels[0].port: invalid type"),
        "{p:#?}"
    );
}

#[test]
fn a_problem_set_by_an_environment_variable_names_the_variable() {
    let p = printed(None, &[("AMRELAY__SERVER__LISTEN", "notanaddr")]);
    assert_eq!(
        p,
        ["AMRELAY__SERVER__LISTEN: server.listen: expected an address like \"127.0.0.1:9097\", got \"notanaddr\""]
    );
    let p = printed(
        Some(CONSOLE_ROUTED),
        &[
            ("AMRELAY__SERVER__LISTN", "127.0.0.1:1"),
            ("AMRELAY__SEVER__LISTEN", "127.0.0.1:1"),
            ("AMRELAY__CHANNELS__NAME", "x"),
            ("AMRELAY__STORAGE__POOL_SIZE", "8"),
            ("AMRELAY__DEDUP__WINDOW", "soon"),
        ],
    );
    let want = [
        "AMRELAY__SERVER__LISTN: server.listn: unknown key; did you mean AMRELAY__SERVER__LISTEN?",
        "AMRELAY__SEVER__LISTEN: sever.listen: unknown section; did you mean AMRELAY__SERVER__...?",
        "AMRELAY__CHANNELS__NAME: channels.name: the environment sets keys of [server]",
        "AMRELAY__STORAGE__POOL_SIZE: storage.pool_size: applies to backend = \"postgres\"",
        "AMRELAY__DEDUP__WINDOW: dedup.window: ",
    ];
    for w in want {
        assert!(p.iter().any(|l| l.starts_with(w)), "{w:?} not in {p:#?}");
    }
    assert_eq!(p.len(), want.len(), "{p:#?}");
}

#[test]
fn numbers_from_the_environment_are_read_as_numbers() {
    let env = [
        ("AMRELAY__STORAGE__MAX_PENDING", "500"),
        ("AMRELAY__SERVER__LISTEN", "127.0.0.1:0"),
    ];
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let s = Settings::load_from(None, env, false).unwrap();
    assert_eq!(s.storage.max_pending, 500);
    assert_eq!(s.server.listen.port(), 0);
}

#[test]
fn a_config_path_that_is_a_directory_or_missing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let e = Settings::load(Some(dir.path())).unwrap_err().to_string();
    assert!(
        e.ends_with(
            ": is a directory; --config takes the TOML file itself (e.g. amrelay.toml in it)"
        ),
        "{e}"
    );
    let e = Settings::load(Some(&dir.path().join("nope.toml")))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("nope.toml: no such file"), "{e}");
}

#[test]
fn near_misses_get_a_suggestion_and_far_ones_do_not() {
    use super::source::did_you_mean;
    let server = [
        "listen",
        "instance",
        "bearer_token_file",
        "bearer_token_env",
        "basic_auth",
        "max_body",
        "shutdown_grace",
    ];
    assert_eq!(did_you_mean("listen_adress", &server), Some("listen"));
    assert_eq!(did_you_mean("listn", &server), Some("listen"));
    assert_eq!(did_you_mean("maxbody", &server), Some("max_body"));
    assert_eq!(
        did_you_mean("bearer_token", &server),
        Some("bearer_token_env")
    );
    assert_eq!(did_you_mean("colour", &server), None);
}

#[test]
fn drill_problems_name_their_keys() {
    let promotion = r#"
[[channels]]
name = "promote"
kind = "promotion"
url = "http://127.0.0.1:9 "
target = "primary"
secret_env = "AMRELAY_TEST_NEVER_SET_SECRET"
[[routes]]
channels = ["promote"]
"#;
    // The channel's own problems (its URL, its secret) are named too: 2 of them.
    let base = problems(promotion).len();
    let with = |drills: &str| {
        let p = problems(&format!("{promotion}\n{drills}"));
        p.into_iter().skip(base).collect::<Vec<_>>()
    };
    let p = with(
        r#"
[[drills]]
target = "db"
every = "soon"
window = "9-5"
step_timeout = "0s"
alertmanagers = ["am:9093"]
[[drills]]
every = "90d"
[[drills]]
target = "primary"
"#,
    );
    for key in [
        "drills[0].every:",
        "drills[0].window:",
        "drills[0].step_timeout:",
        "drills[0].alertmanagers[0]:",
        "drills[1].target:",
        "drills[2].every:",
    ] {
        assert!(p.iter().any(|l| l.starts_with(key)), "{key} not in {p:#?}");
    }
    assert_eq!(p.len(), 6, "{p:#?}");
}

#[test]
fn a_drill_of_a_target_no_promotion_channel_has_is_refused() {
    let p = problems(
        r#"
[[channels]]
name = "log"
kind = "console"
[[routes]]
channels = ["log"]
[[drills]]
target = "primary"
every = "90d"
"#,
    );
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("drills[0].target:")
            && p[0].contains("no promotion channel has target \"primary\" (targets: none)"),
        "{p:#?}"
    );
}
