//! Properties of the exposition parser: no body makes it panic, an error names a line of
//! the body, and samples written in either format read back as written.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Text), Just(Format::OpenMetrics)]
}

/// A sample as a scrape would expose it: labels by name (unique), any value.
#[derive(Debug, Clone)]
struct Written {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
    timestamp: Option<i64>,
}

fn written() -> impl Strategy<Value = Written> {
    let value = prop_oneof![
        4 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        2 => (-1000i32..1000).prop_map(f64::from),
    ];
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,16}",
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "(?s).{0,8}", 0..4),
        value,
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(name, labels, value, timestamp)| Written {
            name,
            labels,
            value,
            timestamp,
        })
}

/// Go's way to write a float: `NaN`, `+Inf`, `-Inf`; Rust's shortest round trip else,
/// sometimes in exponent form.
fn number(v: f64, exponent: bool) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if exponent {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The body a target would serve for these samples, with comments, blanks and a
/// timestamp in the format's own unit.
fn body(samples: &[Written], format: Format, style: &[u8]) -> String {
    let mut out = String::new();
    for (i, s) in samples.iter().enumerate() {
        let style = style.get(i).copied().unwrap_or(0);
        if style & 1 != 0 {
            out += &format!("# HELP {} some help\n# TYPE {} gauge\n", s.name, s.name);
        }
        if style & 2 != 0 && format == Format::Text {
            out += "\n  \t\n";
        }
        out += &s.name;
        if !s.labels.is_empty() || style & 4 != 0 {
            let sep = if style & 8 != 0 { " , " } else { "," };
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let trailing = if style & 16 != 0 && !labels.is_empty() {
                ","
            } else {
                ""
            };
            out += &format!("{{{}{trailing}}}", labels.join(sep));
        }
        out += if style & 32 != 0 { " \t" } else { " " };
        out += &number(s.value, style & 64 != 0);
        match (s.timestamp, format) {
            (Some(t), Format::Text) => out += &format!(" {t}"),
            (Some(t), Format::OpenMetrics) => {
                out += &format!(" {}.{:03}", t / 1000, (t % 1000).abs())
            }
            (None, _) => {}
        }
        if format == Format::OpenMetrics && style & 128 != 0 {
            out += " # {trace_id=\"abc\"} 1.0";
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out += "# EOF\n";
    }
    out
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Whatever the body, `parse` answers, and an error names one of its lines.
fn check(body: &str, format: Format) -> Result<(), TestCaseError> {
    if let Err(e) = parse(body, format) {
        prop_assert!(e.line <= body.lines().count().max(1), "{} in {:?}", e, body);
        prop_assert!(!e.message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn samples_read_back_as_written(
        samples in prop::collection::vec(written(), 0..8),
        format in format(),
        style in prop::collection::vec(any::<u8>(), 8),
    ) {
        let text = body(&samples, format, &style);
        let got = parse(&text, format).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(got.len(), samples.len(), "{}", text);
        for (g, w) in got.iter().zip(&samples) {
            prop_assert_eq!(&g.name, &w.name);
            // An empty label value is the same as no label.
            let want: Vec<(String, String)> = w
                .labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(&g.labels, &want);
            prop_assert!(same_value(g.value, w.value), "{} != {}", g.value, w.value);
        }
    }

    #[test]
    fn any_text_never_panics(text in "(?s).{0,64}", format in format()) {
        check(&text, format)?;
    }

    #[test]
    fn text_shaped_like_a_scrape_never_panics(
        lines in prop::collection::vec(
            "[a-z_:{}=\",# \t\\\\.0-9+eEInfa-]{0,24}|# EOF|[a-z]+\\{[a-z]+=\"[^\"]{0,4}\"\\} [0-9.eE+-]{1,6}( [0-9.]{1,6})?",
            0..8,
        ),
        format in format(),
    ) {
        check(&lines.join("\n"), format)?;
    }

    #[test]
    fn a_valid_body_cut_short_or_with_a_char_inserted_never_panics(
        samples in prop::collection::vec(written(), 1..6),
        format in format(),
        at in any::<prop::sample::Index>(),
        c in prop_oneof![Just('"'), Just('\\'), Just('\n'), Just('{'), Just('}'), Just(' '), any::<char>()],
        cut in any::<bool>(),
    ) {
        let mut text = body(&samples, format, &[]);
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let i = boundaries[at.index(boundaries.len())];
        if cut {
            text.truncate(i);
        } else {
            text.insert(i, c);
        }
        check(&text, format)?;
    }
}
