//! Properties of the webhook parser: no body makes it panic, and every payload in the
//! shape Alertmanager sends parses and reads back the same through `encode`.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// A string of `len` chars from `alphabet`. Built from chars rather than regexes: regex
/// strategies cost several times as much in a debug build, and these run many times per
/// payload.
fn from(alphabet: &'static [u8], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet).prop_map(char::from), len)
        .prop_map(String::from_iter)
}

/// Any text: escapes, control characters, non-ASCII, the empty string.
fn any_text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), len).prop_map(String::from_iter)
}

/// Label names and values: mostly plain, sometimes any text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => from(b"abcxyzABCXYZ_019", 1..10), 1 => any_text(0..10)]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(text(), text(), 0..5)
}

/// An RFC 3339 time as Go writes it (and a few shapes only chrono reads), weighted
/// towards the ends of the range, where an offset can move the time out of it.
pub(super) fn time_text() -> impl Strategy<Value = String> {
    let year = prop_oneof![4 => 0i32..=9999, 1 => Just(0), 1 => Just(1), 1 => Just(9999)];
    let month = prop_oneof![3 => 1u32..=12, 1 => Just(1), 1 => Just(12)];
    let day = prop_oneof![3 => 1u32..=31, 1 => Just(1), 1 => Just(31)];
    let hms = (0u32..24, 0u32..60, 0u32..60);
    let fraction = prop::option::of(from(b"0123456789", 1..10));
    let offset = prop_oneof![
        2 => Just("Z".to_owned()),
        1 => Just("+00:00".to_owned()),
        2 => (any::<bool>(), 0u32..24, 0u32..60)
            .prop_map(|(minus, h, m)| format!("{}{h:02}:{m:02}", if minus { '-' } else { '+' })),
    ];
    let sep = prop_oneof![8 => Just('T'), 1 => Just('t'), 1 => Just(' ')];
    (year, month, day, hms, fraction, offset, sep)
        .prop_filter("a real date", |(y, m, d, ..)| {
            NaiveDate::from_ymd_opt(*y, *m, *d).is_some()
        })
        .prop_map(|(y, mo, d, (h, mi, s), frac, off, sep)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

/// A time a payload may carry: one that stays within RFC 3339's years once in UTC.
fn valid_time() -> impl Strategy<Value = String> {
    time_text().prop_filter("years 0-9999 in UTC", |s| rfc3339(s).is_some())
}

/// chrono's reading, within the years RFC 3339 can write.
fn rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| (0..=9999).contains(&t.year()))
}

fn status() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("firing"), Just("resolved")]
}

/// Fields a newer Alertmanager might add, with any value: ignored.
fn unknown_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let value = prop_oneof![
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
        prop::collection::vec(text(), 0..3).prop_map(Value::from),
    ];
    prop::collection::btree_map(from(b"xyzXYZ", 1..6), value, 0..2)
}

fn alert() -> impl Strategy<Value = Value> {
    let ends = prop_oneof![
        Just(None),
        Just(Some("0001-01-01T00:00:00Z".to_owned())),
        valid_time().prop_map(Some),
    ];
    (
        status(),
        labels(),
        labels(),
        valid_time(),
        ends,
        text(),
        from(b"0123456789abcdefABCXYZ", 1..65),
        unknown_fields(),
    )
        .prop_map(|(status, l, a, starts, ends, url, fp, extra)| {
            let mut v = json!({
                "status": status, "labels": l, "annotations": a, "startsAt": starts,
                "generatorURL": url, "fingerprint": fp,
            });
            if let Some(e) = ends {
                v["endsAt"] = e.into();
            }
            v.as_object_mut().unwrap().extend(extra);
            v
        })
}

/// A payload in the shape Alertmanager sends.
fn payload() -> impl Strategy<Value = Value> {
    let truncated = prop_oneof![3 => Just(0u64), 1 => 0..=MAX_TRUNCATED, 1 => Just(MAX_TRUNCATED)];
    (
        (any_text(1..16), status(), any_text(1..24), text()),
        prop::collection::vec(alert(), 1..5),
        (labels(), labels(), labels()),
        truncated,
        unknown_fields(),
    )
        .prop_map(
            |((receiver, status, group_key, url), alerts, (g, c, ca), truncated, extra)| {
                let mut v = json!({
                    "version": "4", "receiver": receiver, "status": status, "alerts": alerts,
                    "groupKey": group_key, "groupLabels": g, "commonLabels": c,
                    "commonAnnotations": ca, "externalURL": url, "truncatedAlerts": truncated,
                });
                v.as_object_mut().unwrap().extend(extra);
                v
            },
        )
}

/// Any JSON; object keys are often the payload's own, so that some of it gets deep.
pub(super) fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        any_text(0..10).prop_map(Value::from),
        time_text().prop_map(Value::from),
        Just(Value::from("4")),
        status().prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("version"),
        Just("receiver"),
        Just("status"),
        Just("alerts"),
        Just("groupKey"),
        Just("groupLabels"),
        Just("commonLabels"),
        Just("labels"),
        Just("startsAt"),
        Just("endsAt"),
        Just("fingerprint"),
        Just("truncatedAlerts"),
        Just("x"),
    ]
    .prop_map(str::to_owned);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every place in a JSON value (RFC 6901 pointers), the root included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Whatever a body is, `parse` answers; a notification it accepts reads back the same
/// through `encode`, and a refusal says why.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    match parse(body) {
        Ok(n) => {
            let _ = n.title();
            let again = parse(encode(&n).as_bytes());
            prop_assert_eq!(again, Ok(n));
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_valid_payload_parses_and_reads_back_the_same_through_encode(v in payload()) {
        let body = serde_json::to_vec(&v).unwrap();
        let n = parse(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&n.receiver, v["receiver"].as_str().unwrap());
        prop_assert_eq!(n.status.as_str(), v["status"].as_str().unwrap());
        prop_assert_eq!(n.alerts.len(), v["alerts"].as_array().unwrap().len());
        let labels = |v: &Value| -> LabelSet {
            serde_json::from_value::<BTreeMap<String, String>>(v.clone()).unwrap().into()
        };
        prop_assert_eq!(&n.common_labels, &labels(&v["commonLabels"]));
        for (a, w) in n.alerts.iter().zip(v["alerts"].as_array().unwrap()) {
            prop_assert_eq!(&a.labels, &labels(&w["labels"]));
            prop_assert_eq!(a.fingerprint.as_str(), w["fingerprint"].as_str().unwrap());
            prop_assert_eq!(Some(a.starts_at), rfc3339(w["startsAt"].as_str().unwrap()));
        }
        check(&body)?;
    }

    #[test]
    fn a_payload_with_any_part_replaced_or_removed_never_panics(
        v in payload(),
        at in any::<Index>(),
        with in prop::option::of(any_json()),
    ) {
        let mut v = v;
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        let at = &all[at.index(all.len())];
        match (with, at.rsplit_once('/')) {
            (Some(x), _) => *v.pointer_mut(at).unwrap() = x,
            (None, Some((parent, last))) => match v.pointer_mut(parent).unwrap() {
                Value::Object(m) => {
                    m.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(a) => {
                    a.remove(last.parse::<usize>().unwrap());
                }
                _ => unreachable!("a parent is an object or an array"),
            },
            (None, None) => v = Value::Null,
        }
        check(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn any_json_never_panics(v in any_json()) {
        check(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn any_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body)?;
    }

    #[test]
    fn a_valid_body_cut_short_or_with_a_byte_changed_never_panics(
        v in payload(),
        at in any::<Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut body = serde_json::to_vec(&v).unwrap();
        let i = at.index(body.len());
        if cut {
            body.truncate(i);
        } else {
            body[i] = byte;
        }
        check(&body)?;
    }

    #[test]
    fn a_truncated_alerts_count_past_the_limit_is_refused_naming_the_field(
        v in payload(),
        n in MAX_TRUNCATED + 1..=u64::MAX,
    ) {
        let mut v = v;
        v["truncatedAlerts"] = n.into();
        match parse(&serde_json::to_vec(&v).unwrap()) {
            Err(PayloadError::Field { field, .. }) => prop_assert_eq!(field, "truncatedAlerts"),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    /// The fast path for Go's shape and chrono's general parser agree on every time, and
    /// one that UTC puts outside years 0-9999 is refused.
    #[test]
    fn times_read_as_chrono_reads_them(s in time_text()) {
        prop_assert_eq!(time::parse(&s), rfc3339(&s));
    }

    #[test]
    fn any_time_text_never_panics(s in "(?s).{0,40}", go in "[0-9:.T+Z-]{18,40}") {
        let _ = time::parse(&s);
        let _ = time::parse(&go);
    }
}
