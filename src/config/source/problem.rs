//! A problem and its place: the file's line (from the parser's spans) or the variable.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem, where it was found, and what it is (`key: what is wrong`).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub origin: Origin,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// The file, at a line (and column) when the parser knows it.
    File {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// The environment variable that set the key.
    Env(String),
    /// No file was given: the built-in defaults.
    Defaults,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, line, column } => {
                write!(f, "{}", path.display())?;
                if let Some(l) = line {
                    write!(f, ":{l}")?;
                }
                if let Some(c) = column {
                    write!(f, ":{c}")?;
                }
            }
            Origin::Env(var) => write!(f, "{var}")?,
            Origin::Defaults => write!(f, "built-in defaults")?,
        }
        write!(f, ": {}", self.text)
    }
}

/// Line and column (from 1) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The span of `key` (`channels[2].quorum.count`) in the document, or of the closest
/// table above it that is there.
pub(super) fn lookup(root: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    let mut found = None;
    let mut table = Some(root);
    for part in key.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        let Some((k, v)) = table.and_then(|t| t.get_key_value(name)) else {
            break;
        };
        found = Some(k.span());
        let mut value = Some(v.get_ref());
        for index in indexes
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            let Some(DeValue::Array(a)) = value else {
                break;
            };
            let Some(e) = a.get(index) else { break };
            found = Some(e.span());
            value = Some(e.get_ref());
        }
        table = value.and_then(DeValue::as_table);
        if table.is_none() {
            break;
        }
    }
    found
}

/// The dotted key whose key or value holds `span`, the deepest one. (A table's own
/// span may be only its `[header]`, so every table is searched.)
pub(super) fn key_at(root: &DeTable<'_>, span: &Range<usize>) -> String {
    fn inside(s: Range<usize>, span: &Range<usize>) -> bool {
        s.start <= span.start && span.end <= s.end.max(s.start + 1)
    }
    fn find(v: &DeValue<'_>, span: &Range<usize>, path: &str) -> Option<String> {
        // (dotted path, value, the key's span: none for an array element)
        type Child<'v, 'i> = (String, &'v Spanned<DeValue<'i>>, Option<Range<usize>>);
        let children: Vec<Child<'_, '_>> = match v {
            DeValue::Table(t) => t
                .iter()
                .map(|(k, v)| {
                    let p = if path.is_empty() {
                        k.get_ref().to_string()
                    } else {
                        format!("{path}.{}", k.get_ref())
                    };
                    (p, v, Some(k.span()))
                })
                .collect(),
            DeValue::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v, None))
                .collect(),
            _ => return None,
        };
        for (p, v, key_span) in children {
            if let Some(deeper) = find(v.get_ref(), span, &p) {
                return Some(deeper);
            }
            let at_key = key_span.is_some_and(|k| inside(k, span));
            let at_value = !v.get_ref().is_table() && inside(v.span(), span);
            if at_key || at_value {
                return Some(p);
            }
        }
        None
    }
    find(&DeValue::Table(root.clone()), span, "").unwrap_or_default()
}
