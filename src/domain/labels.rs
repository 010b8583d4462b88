//! A label or annotation set: names to values, sorted by name.
//!
//! Every name and value lives in one string buffer, so a set costs two allocations
//! however many labels it has. A webhook of five alerts carries a hundred or so names and
//! values; parsing and dropping them one `String` (and one map node) each was about a
//! fifth of amrelay's CPU at 3,000 webhooks/s.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Default)]
pub struct LabelSet {
    text: String,
    /// One per label, sorted by name, names unique: where it lies in `text`.
    entries: Vec<Entry>,
}

#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    name_end: u32,
    end: u32,
}

impl LabelSet {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.value(self.entries[i]))
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|e| (self.name(*e), self.value(*e)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets a label, replacing its value if it has one.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        let start = self.text.len();
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        let e = Entry {
            start: offset(start),
            name_end: offset(name_end),
            end: offset(self.text.len()),
        };
        match self.find(name) {
            Ok(i) => self.entries[i] = e,
            Err(i) => self.entries.insert(i, e),
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| self.name(*e).cmp(name))
    }

    fn name(&self, e: Entry) -> &str {
        &self.text[e.start as usize..e.name_end as usize]
    }

    fn value(&self, e: Entry) -> &str {
        &self.text[e.name_end as usize..e.end as usize]
    }

    /// Entries as they were read: sorts them by name; of a name given twice, the last
    /// value wins, as it would in a map.
    fn sort_entries(&mut self) {
        let sorted = self
            .entries
            .windows(2)
            .all(|w| self.name(w[0]) < self.name(w[1]));
        if sorted {
            return;
        }
        let mut entries = std::mem::take(&mut self.entries);
        entries.reverse();
        entries.sort_by(|a, b| self.name(*a).cmp(self.name(*b)));
        entries.dedup_by(|a, b| self.name(*a) == self.name(*b));
        self.entries = entries;
    }
}

/// Offsets are u32 to keep entries small; a body is far below 4 GiB (`server.max_body`).
fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a label set holds less than 4 GiB of text")
}

impl PartialEq for LabelSet {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for LabelSet {}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for LabelSet {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut set = LabelSet::default();
        for (k, v) in iter {
            set.insert(k, v);
        }
        set
    }
}

impl<K: AsRef<str>, V: AsRef<str>> From<std::collections::BTreeMap<K, V>> for LabelSet {
    fn from(map: std::collections::BTreeMap<K, V>) -> Self {
        map.into_iter().collect()
    }
}

impl Serialize for LabelSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LabelSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SetVisitor)
    }
}

struct SetVisitor;

impl<'de> Visitor<'de> for SetVisitor {
    type Value = LabelSet;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of strings to strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelSet, A::Error> {
        let mut set = LabelSet {
            text: String::with_capacity(128),
            entries: Vec::with_capacity(map.size_hint().unwrap_or(8)),
        };
        loop {
            let start = set.text.len();
            if map.next_key_seed(Append(&mut set.text))?.is_none() {
                break;
            }
            let name_end = set.text.len();
            map.next_value_seed(Append(&mut set.text))?;
            let end = u32::try_from(set.text.len())
                .map_err(|_| de::Error::custom("label set larger than 4 GiB"))?;
            set.entries.push(Entry {
                start: start as u32,
                name_end: name_end as u32,
                end,
            });
        }
        set.sort_entries();
        Ok(set)
    }
}

/// Reads one string straight onto the end of the set's buffer: no allocation of its own.
struct Append<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Append<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> LabelSet {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_parsed_set_is_sorted_by_name_and_keeps_the_last_of_a_repeated_name() {
        let s = parse(r#"{"b":"2","a":"1","c":"3","a":"one"}"#);
        let got: Vec<_> = s.iter().collect();
        assert_eq!(got, [("a", "one"), ("b", "2"), ("c", "3")]);
        assert_eq!(s.get("a"), Some("one"));
        assert_eq!(s.get("z"), None);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn escapes_are_decoded_and_empty_names_and_values_are_kept() {
        let s = parse(r#"{"":"","q":"say \"hi\"\n","u":"\u00e9"}"#);
        assert_eq!(s.get(""), Some(""));
        assert_eq!(s.get("q"), Some("say \"hi\"\n"));
        assert_eq!(s.get("u"), Some("é"));
    }

    #[test]
    fn insert_replaces_or_adds_in_order() {
        let mut s = parse(r#"{"alertname":"A","severity":"warning"}"#);
        s.insert("severity", "critical");
        s.insert("instance", "db-1");
        let got: Vec<_> = s.iter().collect();
        assert_eq!(
            got,
            [
                ("alertname", "A"),
                ("instance", "db-1"),
                ("severity", "critical")
            ]
        );
    }

    #[test]
    fn equality_and_json_ignore_the_input_order() {
        let a = parse(r#"{"x":"1","y":"2"}"#);
        let b: LabelSet = [("y", "2"), ("x", "1")].into_iter().collect();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"x":"1","y":"2"}"#);
        assert_ne!(a, parse(r#"{"x":"1","y":"3"}"#));
        assert_eq!(format!("{a:?}"), r#"{"x": "1", "y": "2"}"#);
    }

    #[test]
    fn a_value_that_is_not_a_string_is_refused() {
        let e = serde_json::from_str::<LabelSet>(r#"{"a":1}"#).unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
        assert!(serde_json::from_str::<LabelSet>(r#"["a"]"#).is_err());
    }
}
