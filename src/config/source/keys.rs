//! The keys each table of the file may have, read from the raw structs themselves, and
//! what a near miss was meant to be.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::config::raw::{
    RawAdmin, RawBasicAuth, RawChannel, RawCollector, RawConfig, RawDedup, RawDrill, RawHeartbeat,
    RawLog, RawPromotionEndpoint, RawQuorum, RawRemoteWrite, RawRoute, RawServer, RawStorage,
    RawTarget,
};

/// The field names of a raw struct, as its derived `Deserialize` declares them.
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(introspect::Fields) {
        Err(introspect::Found(f)) => f,
        Ok(_) => &[],
    }
}

mod introspect {
    //! A deserializer that only asks a struct for its field names.
    use serde::de::{Deserializer, Visitor};

    #[derive(Debug)]
    pub(super) struct Found(pub &'static [&'static str]);

    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "fields {:?}", self.0)
        }
    }
    impl std::error::Error for Found {}
    impl serde::de::Error for Found {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Found(&[])
        }
    }

    pub(super) struct Fields;

    impl<'de> Deserializer<'de> for Fields {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
}

/// The keys a table may have, by its place in the file (`[]` for any array element);
/// None for a free map (labels) or a value that is no table.
pub(super) fn keys_at(place: &str) -> Option<&'static [&'static str]> {
    Some(match place {
        "" => fields::<RawConfig>(),
        "server" => fields::<RawServer>(),
        "server.basic_auth" | "collector.remote_write[].basic_auth" => fields::<RawBasicAuth>(),
        "storage" => fields::<RawStorage>(),
        "dedup" => fields::<RawDedup>(),
        "log" => fields::<RawLog>(),
        "admin" => fields::<RawAdmin>(),
        "channels[]" => fields::<RawChannel>(),
        "channels[].quorum" => fields::<RawQuorum>(),
        "routes[]" => fields::<RawRoute>(),
        "heartbeats[]" => fields::<RawHeartbeat>(),
        "promotion_endpoint" => fields::<RawPromotionEndpoint>(),
        "collector" => fields::<RawCollector>(),
        "collector.targets[]" => fields::<RawTarget>(),
        "collector.remote_write[]" => fields::<RawRemoteWrite>(),
        "drills[]" => fields::<RawDrill>(),
        _ => return None,
    })
}

/// The sections an environment variable may set keys of (tables, not arrays).
pub(super) fn env_sections() -> Vec<&'static str> {
    fields::<RawConfig>()
        .iter()
        .copied()
        .filter(|s| keys_at(s).is_some())
        .collect()
}

/// The closest of `known` to `unknown`: a small edit distance, or else the same first
/// word (`listen_adress` -> `listen`).
pub(crate) fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let by_distance = known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .min_by_key(|(d, _)| *d)?;
    let close = (unknown.chars().count() / 3).clamp(1, 3);
    if by_distance.0 <= close {
        return Some(by_distance.1);
    }
    let first = |s: &str| s.split('_').next().unwrap_or(s).to_owned();
    known
        .iter()
        .filter(|k| first(k) == first(unknown))
        .min_by_key(|k| edit_distance(unknown, k))
        .copied()
}

/// Levenshtein distance with adjacent transpositions (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// `what is unknown; did you mean ...` for an unknown key among `known`.
pub(super) fn unknown_key(key: &str, known: &[&str], spell: impl Fn(&str) -> String) -> String {
    match did_you_mean(key, known) {
        Some(k) => format!("unknown key; did you mean {}?", spell(k)),
        None if known.len() <= 12 => format!(
            "unknown key; expected one of {}",
            known
                .iter()
                .map(|k| spell(k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "unknown key; config/amrelay.example.toml lists every key".into(),
    }
}

/// Finds the unknown keys of every table, depth first, and removes them.
pub(super) fn check_keys(
    table: &mut DeTable<'_>,
    place: &str,
    dotted: &str,
    unknown: &mut Vec<(String, Range<usize>, Vec<&'static str>)>,
) {
    let Some(known) = keys_at(place) else { return };
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            format!("{a}.{b}")
        }
    };
    let mut gone = Vec::new();
    for (k, v) in table.iter_mut() {
        let name: &str = k.get_ref();
        if !known.contains(&name) {
            unknown.push((join(dotted, name), k.span(), known.to_vec()));
            gone.push(name.to_owned());
            continue;
        }
        let (place, dotted) = (join(place, name), join(dotted, name));
        match v.get_mut() {
            DeValue::Table(t) => check_keys(t, &place, &dotted, unknown),
            DeValue::Array(a) => {
                for (i, e) in a.iter_mut().enumerate() {
                    if let DeValue::Table(t) = e.get_mut() {
                        check_keys(t, &format!("{place}[]"), &format!("{dotted}[{i}]"), unknown);
                    }
                }
            }
            _ => {}
        }
    }
    for name in gone {
        table.remove(name.as_str());
    }
}
