//! Properties of Standard Webhooks signatures: what `sign` makes, `verify` accepts, among
//! other entries too; any change to the id, the timestamp, the body, the signature or
//! the key is refused; no header or secret makes either panic.

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// A secret as an operator writes it: `whsec_` and base64, or any other text.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..48)
            .prop_map(|k| format!("whsec_{}", STANDARD.encode(k))),
        "(?s).{1,40}",
    ]
}

fn key(secret: &str) -> SigningKey {
    SigningKey::parse(&SecretString::from(secret.to_owned())).unwrap()
}

/// A message: its id, timestamp and body.
fn message() -> impl Strategy<Value = (String, i64, Vec<u8>)> {
    (
        prop_oneof!["amrelay-[0-9a-f-]{36}", "(?s).{0,24}"],
        prop_oneof![1_000_000_000i64..4_000_000_000, any::<i64>()],
        prop::collection::vec(any::<u8>(), 0..256),
    )
}

/// Other entries a header may carry beside the right one: another version, another
/// key's signature, garbage.
fn other_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 32).prop_map(|t| format!("v1,{}", STANDARD.encode(t))),
        prop::collection::vec(any::<u8>(), 32).prop_map(|t| format!("v2,{}", STANDARD.encode(t))),
        "v1,[A-Za-z0-9+/=!]{0,50}",
        "[^ \t\n]{1,20}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_signature_verifies_alone_and_among_other_entries(
        secret in secret(),
        (id, ts, body) in message(),
        before in prop::collection::vec(other_entry(), 0..3),
        after in prop::collection::vec(other_entry(), 0..3),
    ) {
        let key = key(&secret);
        let sig = sign(&key, &id, ts, &body);
        prop_assert!(verify(&key, &id, ts, &body, &sig));
        let header = [before, vec![sig], after].concat().join(" ");
        prop_assert!(verify(&key, &id, ts, &body, &header), "{}", header);
    }

    #[test]
    fn any_change_to_the_message_is_refused(
        secret in secret(),
        (id, ts, body) in message(),
        (other_id, other_ts, other_body) in message(),
    ) {
        let key = key(&secret);
        let sig = sign(&key, &id, ts, &body);
        if other_id != id {
            prop_assert!(!verify(&key, &other_id, ts, &body, &sig));
        }
        if other_ts != ts {
            prop_assert!(!verify(&key, &id, other_ts, &body, &sig));
        }
        if other_body != body {
            prop_assert!(!verify(&key, &id, ts, &other_body, &sig));
        }
    }

    #[test]
    fn a_body_with_one_bit_flipped_is_refused(
        secret in secret(),
        (id, ts, body) in message(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        prop_assume!(!body.is_empty());
        let key = key(&secret);
        let sig = sign(&key, &id, ts, &body);
        let mut changed = body.clone();
        changed[at.index(body.len())] ^= 1 << bit;
        prop_assert!(!verify(&key, &id, ts, &changed, &sig));
    }

    #[test]
    fn a_changed_signature_or_another_key_is_refused(
        (secret, other_secret) in (secret(), secret()),
        (id, ts, body) in message(),
        at in 0usize..32,
        bit in 0u8..8,
        cut in 1usize..44,
    ) {
        let key = key(&secret);
        let sig = sign(&key, &id, ts, &body);
        let mut tag = STANDARD.decode(&sig["v1,".len()..]).unwrap();
        tag[at] ^= 1 << bit;
        let flipped = format!("v1,{}", STANDARD.encode(&tag));
        prop_assert!(!verify(&key, &id, ts, &body, &flipped));
        // Cut short: no longer the tag, or no longer base64.
        prop_assert!(!verify(&key, &id, ts, &body, &sig[..sig.len() - cut]));
        let other = SigningKey::from_secret(&SecretString::from(other_secret));
        if other.0.expose_secret() != key.0.expose_secret() {
            prop_assert!(!verify(&other, &id, ts, &body, &sig));
        }
    }

    #[test]
    fn any_header_never_panics_and_without_the_signature_is_refused(
        secret in secret(),
        (id, ts, body) in message(),
        header in prop_oneof![
            "(?s).{0,80}",
            prop::collection::vec(other_entry(), 0..4).prop_map(|e| e.join(" ")),
        ],
    ) {
        let key = key(&secret);
        prop_assume!(!header.contains(&sign(&key, &id, ts, &body)));
        prop_assert!(!verify(&key, &id, ts, &body, &header));
    }

    #[test]
    fn any_secret_is_read_or_refused_without_panic(s in prop_oneof!["(?s).{0,40}", "whsec_(?s).{0,40}"]) {
        let secret = SecretString::from(s.clone());
        match SigningKey::parse(&secret) {
            Ok(k) => { let _ = sign(&k, "id", 1, b"{}"); }
            Err(e) => prop_assert!(s.starts_with("whsec_") && e.contains("base64"), "{}", e),
        }
        let _ = sign(&SigningKey::from_secret(&secret), "id", 1, b"{}");
    }
}
