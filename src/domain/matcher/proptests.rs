//! Properties of the matcher parser: no input makes it panic, a matcher written in
//! Alertmanager's syntax reads back as written, and `Display` writes one that does.

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,12}"
}

fn op() -> impl Strategy<Value = MatchOp> {
    prop_oneof![
        Just(MatchOp::Equal),
        Just(MatchOp::NotEqual),
        Just(MatchOp::Regex),
        Just(MatchOp::NotRegex),
    ]
}

/// Spaces and tabs, which may surround the name, the operator and the value.
fn blanks() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// The quoted form: `\`, `"` and newlines escaped, everything else as it is.
fn quote(v: &str) -> String {
    let escaped = v
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n");
    format!("\"{escaped}\"")
}

/// Text that is mostly a matcher, with any text in its parts.
fn matcherish() -> impl Strategy<Value = String> {
    let part = prop_oneof![name(), "(?s).{0,8}"];
    let op = prop_oneof![
        Just("="),
        Just("!="),
        Just("=~"),
        Just("!~"),
        Just("~"),
        Just("")
    ];
    let value = prop_oneof!["(?s).{0,12}", "(?s).{0,12}".prop_map(|v| quote(&v))];
    (part, blanks(), op, blanks(), value)
        .prop_map(|(n, b1, op, b2, v)| format!("{n}{b1}{op}{b2}{v}"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_never_panics(s in prop_oneof!["(?s).{0,24}", matcherish()], v in "(?s).{0,8}") {
        if let Ok(m) = Matcher::parse(&s) {
            let _ = m.matches_value(Some(&v));
            let _ = m.matches_value(None);
            let _ = m.to_string();
        }
    }

    #[test]
    fn a_quoted_matcher_reads_back_as_written(
        (n, op, raw) in (name(), op(), "(?s).{0,16}"),
        (b0, b1, b2, b3) in (blanks(), blanks(), blanks(), blanks()),
    ) {
        // A regex matcher's value is the raw text escaped, so that it matches exactly it.
        let value = match op {
            MatchOp::Equal | MatchOp::NotEqual => raw.clone(),
            MatchOp::Regex | MatchOp::NotRegex => regex::escape(&raw),
        };
        let text = format!("{b0}{n}{b1}{}{b2}{}{b3}", op.as_str(), quote(&value));
        let m = Matcher::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(m.name(), n.as_str());
        prop_assert_eq!(m.op, op);
        prop_assert_eq!(&m.value, &value);
        let positive = matches!(op, MatchOp::Equal | MatchOp::Regex);
        prop_assert_eq!(m.matches_value(Some(&raw)), positive);
    }

    #[test]
    fn an_unquoted_value_reads_back_as_written(
        n in name(),
        op in op(),
        // Not starting with '~': `a=~x` is the regex operator (as in Alertmanager).
        value in "[^\"{},~\\s]([^\"{},\n]{0,10}[^\"{},\\s])?",
    ) {
        let m = Matcher::parse(&format!("{n}{}{value}", op.as_str()));
        // A regex operator's value may not be a valid regex; the others always read.
        if let Ok(m) = m {
            prop_assert_eq!(&m.value, &value);
            prop_assert_eq!(m.op, op);
        } else {
            prop_assert!(matches!(op, MatchOp::Regex | MatchOp::NotRegex));
        }
    }

    #[test]
    fn display_writes_a_matcher_that_reads_back_the_same(
        n in name(),
        op in op(),
        raw in "(?s).{0,16}",
    ) {
        let value = match op {
            MatchOp::Equal | MatchOp::NotEqual => raw,
            MatchOp::Regex | MatchOp::NotRegex => regex::escape(&raw),
        };
        let m = Matcher::parse(&format!("{n}{}{}", op.as_str(), quote(&value))).unwrap();
        let again = Matcher::parse(&m.to_string())
            .map_err(|e| TestCaseError::fail(format!("{m}: {e}")))?;
        prop_assert_eq!((again.name(), again.op, &again.value), (m.name(), m.op, &m.value));
    }
}
