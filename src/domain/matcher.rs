//! Label matchers in Alertmanager syntax: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

use std::fmt;

use regex::Regex;

use super::LabelSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// Anchored as Alertmanager anchors it: `^(?:value)$`.
    regex: Option<Regex>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatcherError {
    #[error("expected `name<op>value` with op one of =, !=, =~, !~, got {0:?}")]
    Syntax(String),
    #[error("label name {0:?} must match [a-zA-Z_][a-zA-Z0-9_]*")]
    BadName(String),
    #[error("unterminated or badly escaped quoted value in {0:?}")]
    BadQuote(String),
    #[error("invalid regex {0:?}: {1}")]
    BadRegex(String, String),
}

impl Matcher {
    pub fn parse(input: &str) -> Result<Self, MatcherError> {
        let s = input.trim();
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| MatcherError::Syntax(input.to_owned()))?;
        let name = &s[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(MatcherError::BadName(name.to_owned()));
        }
        let rest = s[name_end..].trim_start();
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .iter()
        .find_map(|(tok, op)| rest.strip_prefix(tok).map(|r| (*op, r.trim_start())))
        .ok_or_else(|| MatcherError::Syntax(input.to_owned()))?;
        let value = if rest.starts_with('"') {
            unquote(rest).ok_or_else(|| MatcherError::BadQuote(input.to_owned()))?
        } else if rest.contains(['"', ',', '{', '}']) {
            return Err(MatcherError::Syntax(input.to_owned()));
        } else {
            rest.trim_end().to_owned()
        };
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| MatcherError::BadRegex(value.clone(), e.to_string()))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    /// A missing label matches as the empty string, as in Alertmanager.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matches_value(labels.get(&self.name))
    }

    /// The label this matcher tests.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value an equality matcher (`name="v"`) asks for; None for the other kinds.
    pub(crate) fn equal_value(&self) -> Option<&str> {
        (self.op == MatchOp::Equal).then_some(self.value.as_str())
    }

    /// Whether the label's value (`None`: not set) matches.
    pub fn matches_value(&self, v: Option<&str>) -> bool {
        let v = v.unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

/// Written as `parse` reads it: the value quoted with only the escapes `unquote` knows
/// (Rust's `{:?}` would write `\t` or `\u{7f}`, which it refuses).
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op.as_str())?;
        for c in self.value.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        f.write_str("\"")
    }
}

/// The whole rest must be one double-quoted string with `\"`, `\\` and `\n` escapes.
fn unquote(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.strip_prefix('"')?.chars();
    loop {
        match chars.next()? {
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                c @ ('"' | '\\') => out.push(c),
                _ => return None,
            },
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_operator_matches_as_alertmanager_does() {
        let l = labels(&[("severity", "critical"), ("alertname", "PrimaryDown")]);
        let cases = [
            (r#"severity="critical""#, true),
            (r#"severity!="critical""#, false),
            (r#"alertname=~"Primary.*""#, true),
            (r#"alertname!~"Primary.*""#, false),
            (r#"alertname=~"Primary""#, false), // anchored
            (r#"alertname=~"Down""#, false),    // anchored at the start too
            ("severity=critical", true),        // unquoted value
            (r#"team="""#, true),               // missing label is ""
            (r#"team!="""#, false),
            (r#" severity = "critical" "#, true),
        ];
        for (m, want) in cases {
            assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
        }
    }

    #[test]
    fn quoted_values_unescape() {
        let m = Matcher::parse(r#"summary="say \"hi\"\\""#).unwrap();
        assert!(m.matches(&labels(&[("summary", r#"say "hi"\"#)])));
    }

    #[test]
    fn display_writes_what_parse_reads() {
        let text = "a=\"tab\there \\\"q\\\" \\\\ \\n \u{7f}\"";
        let m = Matcher::parse(text).unwrap();
        assert_eq!(m.value, "tab\there \"q\" \\ \n \u{7f}");
        assert_eq!(m.to_string(), text);
        assert_eq!(Matcher::parse(&m.to_string()).unwrap().value, m.value);
    }

    #[test]
    fn bad_matchers_are_refused_with_the_reason() {
        assert!(matches!(
            Matcher::parse("severity"),
            Err(MatcherError::Syntax(_))
        ));
        assert!(matches!(
            Matcher::parse("1abc=\"x\""),
            Err(MatcherError::BadName(_))
        ));
        assert!(matches!(
            Matcher::parse("a=\"x"),
            Err(MatcherError::BadQuote(_))
        ));
        assert!(matches!(
            Matcher::parse("a=\"x\" junk"),
            Err(MatcherError::BadQuote(_))
        ));
        assert!(matches!(
            Matcher::parse("a=~\"(\""),
            Err(MatcherError::BadRegex(..))
        ));
        assert!(matches!(
            Matcher::parse("=\"x\""),
            Err(MatcherError::BadName(_))
        ));
    }
}

#[cfg(test)]
mod proptests;
