//! The text exposition format (Prometheus 0.0.4) and OpenMetrics 1.0, parsed into flat
//! samples: one metric name, its labels and a value per line, which is what remote write
//! sends. `# HELP`, `# TYPE` and `# UNIT` carry nothing remote write 1.0 needs, and
//! exemplars are dropped.
//!
//! Written here rather than taken from a crate: the maintained one (`openmetrics-parser`)
//! is LGPL-3.0 and builds metric families, and `prometheus-parse` splits label values on
//! `,` and `=` and skips bad lines silently. Like Prometheus, any malformed line fails the
//! whole scrape, so a truncated or garbled body is never half ingested.

use std::fmt;

/// One line of a scrape. `labels` are as exposed, without `__name__`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`, and anything else that is not OpenMetrics.
    Text,
    /// `application/openmetrics-text`: needs `# EOF` as its last line.
    OpenMetrics,
}

impl Format {
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }
}

/// What was wrong, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

pub fn parse(body: &str, format: Format) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    let mut eof_at = None;
    for (i, raw) in body.lines().enumerate() {
        let n = i + 1;
        let err = |message: String| ParseError { line: n, message };
        if let Some(at) = eof_at {
            return Err(err(format!("content after \"# EOF\" (line {at})")));
        }
        let line = raw.trim_start_matches([' ', '\t']);
        if line.trim().is_empty() {
            if format == Format::OpenMetrics {
                return Err(err("empty lines are not allowed in OpenMetrics".into()));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if format == Format::OpenMetrics && comment.trim_end() == " EOF" {
                eof_at = Some(n);
            }
            // HELP, TYPE, UNIT and free comments: nothing to keep.
            continue;
        }
        samples.push(sample(line, format).map_err(err)?);
    }
    if format == Format::OpenMetrics && eof_at.is_none() {
        return Err(ParseError {
            line: body.lines().count(),
            message: "OpenMetrics body does not end with \"# EOF\" (truncated?)".into(),
        });
    }
    Ok(samples)
}

fn sample(line: &str, format: Format) -> Result<Sample, String> {
    let mut c = Cursor { s: line, at: 0 };
    let name = c
        .name(true)
        .ok_or_else(|| format!("expected a metric name, got {:?}", snippet(line, 0)))?;
    let mut labels: Vec<(String, String)> = Vec::new();
    if c.eat('{') {
        loop {
            c.skip_blanks();
            if c.eat('}') {
                break;
            }
            let label = c
                .name(false)
                .ok_or_else(|| format!("expected a label name at {:?}", snippet(line, c.at)))?;
            c.skip_blanks();
            if !c.eat('=') {
                return Err(format!("expected '=' after label {label:?}"));
            }
            c.skip_blanks();
            let value = c.quoted().map_err(|e| format!("label {label:?}: {e}"))?;
            if labels.iter().any(|(l, _)| *l == label) {
                return Err(format!("label {label:?} appears twice"));
            }
            labels.push((label.to_owned(), value));
            c.skip_blanks();
            if c.eat(',') {
                continue;
            }
            if c.eat('}') {
                break;
            }
            return Err(format!(
                "expected ',' or '}}' after the value of label {label:?}"
            ));
        }
    }
    if !c.skip_blanks() {
        return Err(format!("expected a space before the value of {name:?}"));
    }
    let value_text = c.word();
    let value = value(value_text)
        .ok_or_else(|| format!("expected a number as the value of {name:?}, got {value_text:?}"))?;
    c.skip_blanks();
    let rest = c.rest().trim_end();
    // OpenMetrics: an optional timestamp (seconds, may be fractional), then an optional
    // exemplar after " # ". Text: an optional timestamp in integer milliseconds. Both are
    // checked, and the timestamp is not used: samples carry the scrape's own time.
    let (ts, exemplar) = match rest.split_once('#') {
        Some((ts, ex)) if format == Format::OpenMetrics => (ts.trim(), Some(ex)),
        _ => (rest, None),
    };
    if !ts.is_empty() {
        let ok = match format {
            Format::Text => ts.parse::<i64>().is_ok(),
            Format::OpenMetrics => ts.parse::<f64>().is_ok_and(f64::is_finite),
        };
        if !ok {
            return Err(format!(
                "expected a timestamp or the end of the line, got {ts:?}"
            ));
        }
    }
    if let Some(ex) = exemplar {
        if !ex.trim_start().starts_with('{') {
            return Err(format!("malformed exemplar {:?}", ex.trim()));
        }
    }
    Ok(Sample {
        name: name.to_owned(),
        labels: labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty()) // an empty value is the same as no label
            .collect(),
        value,
    })
}

/// Go's `strconv.ParseFloat` as Prometheus uses it: `NaN`, `+Inf`, `-Inf`, decimals.
fn value(s: &str) -> Option<f64> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c as u8) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Spaces and tabs; true when there was at least one.
    fn skip_blanks(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at > start
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; no ':' in label names.
    fn name(&mut self, metric: bool) -> Option<&'a str> {
        let start = self.at;
        while let Some(b) = self.peek() {
            let ok = b.is_ascii_alphabetic()
                || b == b'_'
                || (metric && b == b':')
                || (self.at > start && b.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        (self.at > start).then(|| &self.s[start..self.at])
    }

    /// A double-quoted label value with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, String> {
        if !self.eat('"') {
            return Err("expected a double-quoted value".into());
        }
        let mut out = String::new();
        let mut chars = self.s[self.at..].char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) => return Err(format!("unknown escape \"\\{other}\"")),
                    None => break,
                },
                ch => out.push(ch),
            }
        }
        Err("the value has no closing quote".into())
    }

    fn word(&mut self) -> &'a str {
        let start = self.at;
        while matches!(self.peek(), Some(b) if b != b' ' && b != b'\t') {
            self.at += 1;
        }
        &self.s[start..self.at]
    }

    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }
}

/// Up to 40 characters of `line` from byte `at`, for error messages.
fn snippet(line: &str, at: usize) -> String {
    line.get(at..).unwrap_or("").chars().take(40).collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
