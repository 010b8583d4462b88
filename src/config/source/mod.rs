//! Where the settings come from: the TOML file and `AMRELAY__SECTION__KEY` variables,
//! merged into the raw structs. Every problem is found in one pass and located: a line
//! of the file, or the variable that set the key.
//!
//! Unknown keys are found by walking the parsed document against the raw structs' field
//! names (`keys.rs`, with a "did you mean" for a near miss) and removed, so that each
//! section is then deserialized on its own and a problem in one hides none in another.

mod keys;
mod problem;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::raw::{RawChannel, RawConfig, RawDrill, RawRoute};
use super::ENV_PREFIX;
pub(crate) use keys::did_you_mean;
use keys::{check_keys, env_sections, keys_at, unknown_key};
use problem::{key_at, line_col, lookup};
pub use problem::{Origin, Problem};

/// The file (or none) and the environment, parsed and merged, with what it found so far.
pub(super) struct Source<'a> {
    path: Option<PathBuf>,
    text: &'a str,
    root: Spanned<DeTable<'a>>,
    /// The variables that set keys: each one's synthetic span (past the file's end) and
    /// the key's dotted path.
    env: Vec<(Range<usize>, String, String)>,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Source<'a> {
    /// Parses the file's `text` (empty without a file) and applies the environment. Err
    /// is a syntax error, which leaves nothing to check further.
    pub(super) fn open(
        path: Option<&Path>,
        text: &'a str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Source<'a>, Vec<Problem>> {
        let root = match DeTable::parse(text) {
            Ok(t) => t,
            Err(e) => {
                let (line, column) = e
                    .span()
                    .map(|s| line_col(text, s.start))
                    .map_or((None, None), |(l, c)| (Some(l), Some(c)));
                let message = e.message().trim().replace('\n', "; ");
                return Err(vec![Problem {
                    origin: Origin::File {
                        path: path.map(Path::to_path_buf).unwrap_or_default(),
                        line,
                        column,
                    },
                    text: format!("TOML syntax error: {message}"),
                }]);
            }
        };
        let mut source = Source {
            path: path.map(Path::to_path_buf),
            text,
            root,
            env: Vec::new(),
            problems: Vec::new(),
        };
        let mut unknown = Vec::new();
        check_keys(source.root.get_mut(), "", "", &mut unknown);
        for (dotted, span, known) in unknown {
            let last = dotted.rsplit('.').next().unwrap_or(&dotted).to_owned();
            let last = last.split('[').next().unwrap_or(&last).to_owned();
            let text = format!(
                "{dotted}: {}",
                unknown_key(&last, &known, |k| format!("`{k}`"))
            );
            source.problems.push(Problem {
                origin: source.file_origin(Some(span)),
                text,
            });
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        vars.sort();
        for (var, value) in vars {
            source.apply_env(&var, value);
        }
        Ok(source)
    }

    /// `AMRELAY__SECTION__KEY=value`: the key's value, as a string.
    fn apply_env(&mut self, var: &str, value: String) {
        let prefix = format!("{ENV_PREFIX}__");
        let segments: Vec<String> = var[prefix.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        let spell = |segs: &[&str]| {
            format!(
                "{prefix}{}",
                segs.iter()
                    .map(|s| s.to_uppercase())
                    .collect::<Vec<_>>()
                    .join("__")
            )
        };
        let dotted = segments.join(".");
        let problem = |text: String| Problem {
            origin: Origin::Env(var.to_owned()),
            text,
        };
        let sections = env_sections();
        let Some(section) = segments.first().filter(|s| !s.is_empty()) else {
            return self.problems.push(problem(format!(
                "expected {prefix}SECTION__KEY, for a key of [{}]",
                sections.join("], [")
            )));
        };
        if !sections.contains(&section.as_str()) {
            let text = match did_you_mean(section, &sections) {
                Some(s) => format!(
                    "{dotted}: unknown section; did you mean {}?",
                    spell(&[s, "..."])
                ),
                None => format!(
                    "{dotted}: the environment sets keys of [{}] only",
                    sections.join("], [")
                ),
            };
            return self.problems.push(problem(text));
        }
        if segments.len() < 2 {
            return self.problems.push(problem(format!(
                "{dotted}: name a key of [{section}]: {}",
                spell(&[section, "KEY"])
            )));
        }
        // Every segment but the last names a table; the last, one of its keys.
        let mut place = String::new();
        for (i, seg) in segments.iter().enumerate() {
            let known = keys_at(&place).unwrap_or(&[]);
            if !known.contains(&seg.as_str()) {
                let before: Vec<&str> = segments[..i].iter().map(String::as_str).collect();
                let text = format!(
                    "{dotted}: {}",
                    unknown_key(seg, known, |k| {
                        let mut s = before.clone();
                        s.push(k);
                        spell(&s)
                    })
                );
                return self.problems.push(problem(text));
            }
            if !place.is_empty() {
                place.push('.');
            }
            place.push_str(seg);
            let last = i + 1 == segments.len();
            if !last && keys_at(&place).is_none() {
                return self.problems.push(problem(format!(
                    "{dotted}: {} is not a table",
                    segments[..=i].join(".")
                )));
            }
        }
        let at = self.text.len() + 1 + self.env.len();
        let span = at..at + 1;
        let mut table = self.root.get_mut();
        for seg in &segments[..segments.len() - 1] {
            let entry = table
                .entry(Spanned::new(span.clone(), seg.clone().into()))
                .or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::new())));
            let DeValue::Table(t) = entry.get_mut() else {
                // The file gave it another type, which its section reports.
                return;
            };
            table = t;
        }
        let key = segments[segments.len() - 1].clone();
        table.insert(
            Spanned::new(span.clone(), key.into()),
            Spanned::new(span.clone(), DeValue::String(value.into())),
        );
        self.env.push((span, dotted, var.to_owned()));
    }

    /// Each section into its raw struct, on its own: a problem in one is reported and
    /// the others are still read. A channel or route that cannot be read is left out;
    /// its name (if it has one) is kept, so that no route naming it is reported too.
    pub(super) fn raw(&mut self) -> RawConfig {
        let mut raw = RawConfig::default();
        let root = self.root.get_ref().clone();
        for (key, value) in root.iter() {
            let value = value.clone();
            match key.get_ref().as_ref() {
                "server" => raw.server = self.section(value),
                "storage" => raw.storage = self.section(value),
                "dedup" => raw.dedup = self.section(value),
                "log" => raw.log = self.section(value),
                "admin" => raw.admin = Some(self.section(value)),
                "promotion_endpoint" => raw.promotion_endpoint = Some(self.section(value)),
                "collector" => raw.collector = self.section(value),
                "channels" => {
                    for element in self.elements(value) {
                        let name = element
                            .get_ref()
                            .as_table()
                            .and_then(|t| t.get("name"))
                            .and_then(|n| n.get_ref().as_str())
                            .map(str::to_owned);
                        match self.de::<RawChannel>(element) {
                            Some(c) => raw.channels.push(c),
                            None => raw.unread_channels.push(name),
                        }
                    }
                }
                "drills" => {
                    for element in self.elements(value) {
                        if let Some(d) = self.de::<RawDrill>(element) {
                            raw.drills.push(d);
                        }
                    }
                }
                "routes" => {
                    for element in self.elements(value) {
                        match self.de::<RawRoute>(element) {
                            Some(r) => raw.routes.push(r),
                            None => raw.unread_routes = true,
                        }
                    }
                }
                "heartbeats" => {
                    for element in self.elements(value) {
                        if let Some(h) = self.de(element) {
                            raw.heartbeats.push(h);
                        }
                    }
                }
                // Unknown: reported and removed by check_keys already.
                _ => {}
            }
        }
        raw
    }

    fn section<T: DeserializeOwned + Default>(&mut self, value: Spanned<DeValue<'a>>) -> T {
        self.de(value).unwrap_or_default()
    }

    /// An array's elements; another value is reported as the array it should be.
    fn elements(&mut self, value: Spanned<DeValue<'a>>) -> Vec<Spanned<DeValue<'a>>> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(a) => a.iter().cloned().collect(),
            other => {
                let text = format!(
                    "{}: expected an array of tables ([[...]]), got a {}",
                    key_at(self.root.get_ref(), &span),
                    other.type_str()
                );
                self.problems.push(Problem {
                    origin: self.origin(Some(span)),
                    text,
                });
                Vec::new()
            }
        }
    }

    fn de<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'a>>) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span();
                let key = span
                    .as_ref()
                    .map(|s| key_at(self.root.get_ref(), s))
                    .unwrap_or_default();
                let message = e.message().trim().replace('\n', "; ");
                let text = if key.is_empty() {
                    message
                } else {
                    format!("{key}: {message}")
                };
                self.problems.push(Problem {
                    origin: self.origin(span),
                    text,
                });
                None
            }
        }
    }

    /// Where a problem with a key (`channels[2].url`, `dedup.window`) is: the variable
    /// that set it, or the line of the file that has it (or its closest table).
    pub(super) fn locate(&self, text: String) -> Problem {
        let key = text.split(": ").next().unwrap_or("");
        if let Some((_, _, var)) = self
            .env
            .iter()
            .find(|(_, dotted, _)| dotted == key || dotted.starts_with(&format!("{key}_")))
        {
            return Problem {
                origin: Origin::Env(var.clone()),
                text,
            };
        }
        let span = lookup(self.root.get_ref(), key);
        Problem {
            origin: self.origin(span),
            text,
        }
    }

    fn origin(&self, span: Option<Range<usize>>) -> Origin {
        if let Some(s) = &span {
            if let Some((_, _, var)) = self.env.iter().find(|(r, _, _)| r.start == s.start) {
                return Origin::Env(var.clone());
            }
        }
        self.file_origin(span)
    }

    fn file_origin(&self, span: Option<Range<usize>>) -> Origin {
        match &self.path {
            None => Origin::Defaults,
            Some(path) => Origin::File {
                path: path.clone(),
                line: span
                    .filter(|s| s.start <= self.text.len())
                    .map(|s| line_col(self.text, s.start).0),
                column: None,
            },
        }
    }
}

/// Reads the file; says what is wrong in words when it cannot.
pub(super) fn read(path: &Path) -> Result<String, Vec<Problem>> {
    let problem = |text: String| {
        vec![Problem {
            origin: Origin::File {
                path: path.to_path_buf(),
                line: None,
                column: None,
            },
            text,
        }]
    };
    if path.is_dir() {
        return Err(problem(
            "is a directory; --config takes the TOML file itself (e.g. amrelay.toml in it)".into(),
        ));
    }
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| problem("is not UTF-8 text, so not a TOML file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(problem("no such file".into())),
        Err(e) => Err(problem(format!("cannot read it: {e}"))),
    }
}
