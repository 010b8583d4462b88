//! Properties of the config loader: no file makes it panic, a refused one comes with
//! messages, and a valid one reads back as written.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;

/// Each case writes a file and loads it: a few milliseconds, so fewer cases.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(128)
}

fn load_text(text: &str, collect: bool) -> Result<Settings, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("amrelay.toml");
    std::fs::write(&path, text).unwrap();
    if collect {
        Settings::load_for_collect(Some(&path))
    } else {
        Settings::load(Some(&path))
    }
}

/// A raw struct's name, and its fields' names and types.
type RawStruct = (String, Vec<(String, String)>);

/// Each raw struct's fields and their types, read from `raw.rs` so that a new key is
/// covered too.
fn raw_fields() -> &'static [RawStruct] {
    static FIELDS: OnceLock<Vec<RawStruct>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut structs: Vec<RawStruct> = Vec::new();
        for l in include_str!("raw.rs").lines().map(str::trim) {
            if let Some(rest) = l.strip_prefix("pub(super) struct ") {
                let name = rest.trim_end_matches(" {").to_owned();
                structs.push((name, Vec::new()));
            } else if let Some((k, ty)) = l.strip_prefix("pub ").and_then(|f| f.split_once(':')) {
                let ty = ty.trim().trim_end_matches(',').to_owned();
                // `continue_` is `continue` in the file.
                let k = k.trim_end_matches('_').to_owned();
                structs.last_mut().unwrap().1.push((k, ty));
            }
        }
        structs
    })
}

/// Every key the file may hold, in any section.
fn keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys: Vec<String> = raw_fields()
            .iter()
            .flat_map(|(_, f)| f.iter().map(|(k, _)| k.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    })
}

/// The fields of one raw struct, by its name.
fn struct_fields(raw: &str) -> &'static [(String, String)] {
    raw_fields()
        .iter()
        .find(|(name, _)| name == raw)
        .map(|(_, f)| f.as_slice())
        .unwrap_or(&[])
}

const SECTIONS: &[&str] = &[
    "[server]",
    "[server.basic_auth]",
    "[storage]",
    "[dedup]",
    "[log]",
    "[admin]",
    "[[channels]]",
    "[channels.quorum]",
    "[[routes]]",
    "[promotion_endpoint]",
    "[collector]",
    "[collector.labels]",
    "[[collector.targets]]",
    "[[collector.remote_write]]",
    "[collector.remote_write.basic_auth]",
];

/// Strings the loader gives meaning to, so that generated files get past the first check.
const WORDS: &[&str] = &[
    "console",
    "slack",
    "webhook",
    "email",
    "promotion",
    "sendgrid",
    "postmark",
    "mailgun",
    "smtp",
    "starttls",
    "tls",
    "none",
    "text",
    "json",
    "info",
    "amrelay=debug,info",
    "sqlite",
    "postgres",
    "verify-full",
    "disable",
    "1/s",
    "30/m",
    "0/s",
    "10s",
    "5m",
    "0s",
    "7d",
    "4MiB",
    "0B",
    "127.0.0.1:0",
    "[::1]:0",
    "http://127.0.0.1:1/hook",
    "https://example.invalid/x?token=secret",
    "ftp://x",
    "severity=\"critical\"",
    "a=~\"(\"",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_not base64!",
    "a@example.com",
    "{{ title }}",
    "{% if %}",
    "{{",
    "#ops",
    "primary",
    ".",
    "",
    "HOME",
    "A\u{0}B",
    "A=B",
];

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Any text but a path: a generated `*_file` must not name `/dev/zero` or the like.
fn text() -> impl Strategy<Value = String> {
    "[^/]{0,12}"
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(WORDS).prop_map(str::to_owned), 1 => text()]
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        6 => string().prop_map(|s| toml_string(&s)),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop_oneof![Just(0i64), Just(1), Just(-1), Just(65536)].prop_map(|n| n.to_string()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => Just("1.5".to_owned()),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(keys()), inner), 0..3).prop_map(|kv| {
                let kv: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
}

/// A line of a config file: mostly a section or a known key, sometimes anything.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(SECTIONS).prop_map(str::to_owned),
        6 => (prop::sample::select(keys()), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => (text(), value()).prop_map(|(k, v)| format!("{} = {v}", toml_string(&k))),
        1 => "(?s).{0,16}",
    ]
}

/// A value of the field's type, mostly, and sometimes of another.
fn typed_value(ty: &str) -> BoxedStrategy<String> {
    let typed = if let Some(raw) = ty.strip_prefix("Option<Raw") {
        // basic_auth, quorum: an inline table of the struct's own keys.
        table(struct_fields(&format!("Raw{}", raw.trim_end_matches('>'))))
            .prop_map(|lines| format!("{{ {} }}", lines.join(", ")))
            .boxed()
    } else if ty.contains("Vec<String>") {
        prop::collection::vec(string().prop_map(|s| toml_string(&s)), 0..3)
            .prop_map(|v| format!("[{}]", v.join(", ")))
            .boxed()
    } else if ty.contains("Map") {
        prop::collection::btree_map(text(), string(), 0..3)
            .prop_map(|kv| {
                let kv: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
                    .collect();
                format!("{{ {} }}", kv.join(", "))
            })
            .boxed()
    } else if ty.contains("String") {
        string().prop_map(|s| toml_string(&s)).boxed()
    } else if ty.contains("bool") {
        any::<bool>().prop_map(|b| b.to_string()).boxed()
    } else {
        // The unsigned integers.
        prop_oneof![
            2 => Just(0u64),
            2 => Just(1),
            8 => 1u64..100,
            1 => Just(u64::from(u16::MAX) + 1),
            1 => Just(u64::from(u32::MAX)),
            1 => Just(i64::MAX as u64),
        ]
        .prop_map(|n| n.to_string())
        .boxed()
    };
    prop_oneof![49 => typed, 1 => value()].boxed()
}

/// `key = value` lines for some of a struct's keys, each at most once.
fn table(fields: &'static [(String, String)]) -> BoxedStrategy<Vec<String>> {
    if fields.is_empty() {
        return Just(Vec::new()).boxed();
    }
    // Arrays of tables ([[collector.targets]]) are sections of their own.
    let fields: Vec<&'static (String, String)> = fields
        .iter()
        .filter(|(_, ty)| !ty.starts_with("Vec<Raw"))
        .collect();
    let line = prop::sample::select(fields)
        .prop_flat_map(|(k, ty)| typed_value(ty).prop_map(move |v| (k.clone(), v)));
    prop::collection::vec(line, 0..6)
        .prop_map(|kv| {
            let mut seen = std::collections::HashSet::new();
            kv.into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .map(|(k, v)| format!("{k} = {v}"))
                .collect()
        })
        .boxed()
}

/// A file of the sections amrelay reads, each with keys of its own and values mostly of
/// their types, so that most of it gets past TOML and serde to the typed checks.
fn structured_file() -> impl Strategy<Value = String> {
    let section = |header: &'static str, raw: &'static str| {
        table(struct_fields(raw)).prop_map(move |l| format!("{header}\n{}\n", l.join("\n")))
    };
    let tables = (
        prop::option::of(section("[server]", "RawServer")),
        prop::option::of(section("[storage]", "RawStorage")),
        prop::option::of(section("[dedup]", "RawDedup")),
        prop::option::of(section("[log]", "RawLog")),
        prop::option::of(section("[admin]", "RawAdmin")),
        prop::option::of(section("[promotion_endpoint]", "RawPromotionEndpoint")),
        prop::option::of(section("[collector]", "RawCollector")),
    );
    let arrays = (
        prop::collection::vec(section("[[channels]]", "RawChannel"), 0..4),
        prop::collection::vec(section("[[routes]]", "RawRoute"), 0..3),
        prop::collection::vec(section("[[collector.targets]]", "RawTarget"), 0..2),
        prop::collection::vec(
            section("[[collector.remote_write]]", "RawRemoteWrite"),
            0..2,
        ),
    );
    (tables, arrays).prop_map(|((a, b, c, d, e, f, g), (ch, r, t, w))| {
        [a, b, c, d, e, f, g]
            .into_iter()
            .flatten()
            .chain(ch)
            .chain(r)
            .chain(t)
            .chain(w)
            .collect::<String>()
    })
}

/// A channel that always loads: a console, or a webhook to a local URL.
#[derive(Debug, Clone)]
struct Channel {
    name: String,
    webhook: bool,
    rate: Option<(u32, &'static str)>,
    timeout_s: Option<u64>,
}

fn channels() -> impl Strategy<Value = Vec<Channel>> {
    let channel = (
        "[a-z][a-z0-9_.-]{0,8}",
        any::<bool>(),
        prop::option::of((1u32..=1000, prop::sample::select(&["s", "m", "h"][..]))),
        prop::option::of(1u64..=3600),
    )
        .prop_map(|(name, webhook, rate, timeout_s)| Channel {
            name,
            webhook,
            rate,
            timeout_s,
        });
    prop::collection::vec(channel, 1..4).prop_map(|mut v| {
        // Names are unique: the n-th one gets a suffix.
        for (i, c) in v.iter_mut().enumerate() {
            c.name = format!("{}{i}", c.name);
        }
        v
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_file_loads_or_is_refused_with_messages(
        lines in prop::collection::vec(line(), 0..16),
        collect in any::<bool>(),
    ) {
        if let Err(e) = load_text(&lines.join("\n"), collect) {
            prop_assert!(!e.0.is_empty());
            prop_assert!(e.0.iter().all(|m| !m.text.trim().is_empty()), "{:?}", e.0);
        }
    }

    #[test]
    fn a_file_of_known_keys_with_any_values_loads_or_is_refused_with_messages(
        file in structured_file(),
        collect in any::<bool>(),
    ) {
        if let Err(e) = load_text(&file, collect) {
            prop_assert!(!e.0.is_empty());
            prop_assert!(e.0.iter().all(|m| !m.text.trim().is_empty()), "{:?}", e.0);
        }
    }

    #[test]
    fn a_valid_file_reads_back_as_written(
        channels in channels(),
        max_body_kib in 1usize..=65536,
        window_s in 0u64..=86400,
        matchers in prop::collection::vec(
            ("[a-z_][a-z0-9_]{0,8}", prop::sample::select(&["=", "!=", "=~", "!~"][..]), "[a-zA-Z0-9 _.-]{0,12}"),
            0..3,
        ),
    ) {
        let mut text = format!(
            "[server]\nmax_body = \"{max_body_kib}KiB\"\n[dedup]\nwindow = \"{window_s}s\"\n"
        );
        for c in &channels {
            text += &format!("[[channels]]\nname = {}\n", toml_string(&c.name));
            if c.webhook {
                text += "kind = \"webhook\"\nurl = \"http://127.0.0.1:1/hook\"\n";
            } else {
                text += "kind = \"console\"\n";
            }
            if let Some((n, unit)) = c.rate {
                text += &format!("rate_limit = \"{n}/{unit}\"\n");
            }
            if let Some(t) = c.timeout_s {
                text += &format!("timeout = \"{t}s\"\n");
            }
        }
        let written: Vec<String> = matchers
            .iter()
            .map(|(n, op, v)| format!("{n}{op}\"{v}\""))
            .collect();
        let names: Vec<String> = channels.iter().map(|c| toml_string(&c.name)).collect();
        text += &format!(
            "[[routes]]\nmatchers = [{}]\nchannels = [{}]\n[[routes]]\nchannels = [{}]\n",
            written.iter().map(|m| toml_string(m)).collect::<Vec<_>>().join(", "),
            names.join(", "),
            names[0],
        );
        let s = load_text(&text, false).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(s.server.max_body, max_body_kib * 1024);
        prop_assert_eq!(s.dedup_window, Duration::from_secs(window_s));
        prop_assert_eq!(s.channels.len(), channels.len());
        for (got, want) in s.channels.iter().zip(&channels) {
            prop_assert_eq!(&got.name, &want.name);
            prop_assert_eq!(matches!(got.kind, ChannelKind::Webhook { .. }), want.webhook);
            if let Some((n, unit)) = want.rate {
                prop_assert_eq!(got.rate_limit, Some(Rate::parse(&format!("{n}/{unit}")).unwrap()));
            }
            if let Some(t) = want.timeout_s {
                prop_assert_eq!(got.policy.timeout, Duration::from_secs(t));
            }
        }
        prop_assert_eq!(s.routes.len(), 2);
        let got: Vec<&str> = s.routes[0].matchers.iter().map(|m| m.name()).collect();
        let want: Vec<&str> = matchers.iter().map(|(n, ..)| n.as_str()).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(s.routes[1].channels.len(), 1);
    }
}
