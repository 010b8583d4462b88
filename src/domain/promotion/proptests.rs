//! Properties of the promotion request parser: no body makes it panic, a request reads
//! back as it was sent (whatever else the body carries), and a field of the wrong type
//! is named.

use proptest::prelude::*;
use serde_json::Value;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

const FIELDS: [&str; 7] = [
    "schema", "key", "target", "epoch", "reason", "manual", "dry_run",
];

fn request() -> impl Strategy<Value = PromoteRequest> {
    (
        prop_oneof![Just(SCHEMA.to_owned()), "(?s).{0,12}"],
        "(?s).{0,16}",
        prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()],
        "(?s).{0,24}",
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(schema, target, epoch, reason, manual, dry_run, own_key)| {
                let mut r = PromoteRequest::new(&target, epoch, reason);
                r.schema = schema;
                r.manual = manual;
                r.dry_run = dry_run;
                if !own_key {
                    r.key = format!("{}x", r.key);
                }
                r
            },
        )
}

/// Any JSON, with the request's own field names as keys more often than not.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "(?s).{0,8}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        3 => prop::sample::select(&FIELDS[..]).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_request_reads_back_as_sent_whatever_else_the_body_carries(
        r in request(),
        extra in prop::collection::btree_map("x[a-z_]{0,8}", any_json(), 0..3),
        null_flags in any::<bool>(),
    ) {
        let mut v = serde_json::to_value(&r).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.extend(extra);
        if null_flags && !r.manual && !r.dry_run {
            obj.insert("manual".into(), Value::Null);
            obj.remove("dry_run");
        }
        let body = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(PromoteRequest::parse(&body), Ok(r));
    }

    #[test]
    fn a_field_of_the_wrong_type_or_missing_is_named(
        r in request(),
        field in prop::sample::select(&FIELDS[..]),
        with in prop::option::of(any_json()),
    ) {
        let mut v = serde_json::to_value(&r).unwrap();
        let obj = v.as_object_mut().unwrap();
        let fits = match (&with, field) {
            (None, "manual" | "dry_run") => true, // optional
            (None, _) => false,
            (Some(Value::Null | Value::Bool(_)), "manual" | "dry_run") => true,
            (Some(Value::String(_)), "schema" | "key" | "target" | "reason") => true,
            (Some(x), "epoch") => x.is_u64(),
            (Some(_), _) => false,
        };
        match with {
            Some(x) => obj.insert(field.to_owned(), x),
            None => obj.remove(field),
        };
        let got = PromoteRequest::parse(&serde_json::to_vec(&v).unwrap());
        if fits {
            prop_assert!(got.is_ok(), "{:?}", got);
        } else {
            let e = got.unwrap_err();
            prop_assert!(e.starts_with(&format!("{field}: ")), "{} should name {}", e, field);
        }
    }

    #[test]
    fn any_json_never_panics(v in any_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        if let Ok(r) = PromoteRequest::parse(&body) {
            let again = serde_json::to_vec(&r).unwrap();
            prop_assert_eq!(PromoteRequest::parse(&again), Ok(r));
        }
    }

    #[test]
    fn any_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = PromoteRequest::parse(&body);
    }

    #[test]
    fn a_request_cut_short_never_panics(r in request(), at in any::<prop::sample::Index>()) {
        let body = serde_json::to_vec(&r).unwrap();
        let cut = &body[..at.index(body.len())];
        prop_assert!(PromoteRequest::parse(cut).is_err());
    }
}
