//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

/// The HMAC key. A `whsec_`-prefixed secret is base64 after the prefix, as the spec's
/// libraries expect; any other secret is used as its bytes.
pub(crate) struct SigningKey(SecretSlice<u8>);

impl SigningKey {
    /// Refuses a `whsec_` secret whose rest is not base64: receivers using the Standard
    /// Webhooks libraries would reject every signature made with it.
    pub(crate) fn parse(secret: &SecretString) -> Result<Self, String> {
        let s = secret.expose_secret();
        let bytes = match s.strip_prefix("whsec_") {
            Some(b64) => STANDARD.decode(b64).map_err(|_| {
                "a secret starting with \"whsec_\" must be base64 after the prefix".to_owned()
            })?,
            None => s.as_bytes().to_vec(),
        };
        Ok(SigningKey(SecretSlice::from(bytes)))
    }

    /// For a secret that config loading already checked with `parse`.
    pub(crate) fn from_secret(secret: &SecretString) -> Self {
        Self::parse(secret).unwrap_or_else(|_| {
            SigningKey(SecretSlice::from(
                secret.expose_secret().as_bytes().to_vec(),
            ))
        })
    }
}

pub(crate) fn sign(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Checks a `webhook-signature` header: space-separated `v1,<base64>` entries (several
/// during a key rotation), one match is enough. Compared in constant time.
pub(crate) fn verify(
    key: &SigningKey,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = mac(key, id, timestamp, body);
    let mut matched = false;
    for entry in header.split_ascii_whitespace() {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        // `verify_slice` compares in constant time; every entry is checked, so the time
        // does not tell which one matched.
        matched |= expected.clone().verify_slice(&given).is_ok();
    }
    matched
}

/// HMAC-SHA256 over `id.timestamp.body`, the signed content of Standard Webhooks.
fn mac(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.0.expose_secret()).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks reference libraries' test suites.
    #[test]
    fn matches_the_reference_example() {
        let key = SigningKey::from_secret(&SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ));
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verify_accepts_the_reference_example_among_others_and_nothing_else() {
        let key = SigningKey::from_secret(&SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ));
        let body = br#"{"test": 2432232314}"#;
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(verify(&key, id, 1614265330, body, good));
        assert!(verify(
            &key,
            id,
            1614265330,
            body,
            &format!("v1,bm9wZQ== v2,x {good}")
        ));
        assert!(!verify(&key, id, 1614265331, body, good));
        assert!(!verify(&key, "other", 1614265330, body, good));
        assert!(!verify(&key, id, 1614265330, b"{}", good));
        assert!(!verify(&key, id, 1614265330, body, ""));
        assert!(!verify(&key, id, 1614265330, body, "v1,!!!"));
        assert!(!verify(
            &key,
            id,
            1614265330,
            body,
            &good.replace("v1,", "v2,")
        ));
    }

    #[test]
    fn a_whsec_secret_that_is_not_base64_is_refused() {
        assert!(SigningKey::parse(&SecretString::from("whsec_not base64!")).is_err());
        assert!(SigningKey::parse(&SecretString::from("plain-secret")).is_ok());
    }

    #[test]
    fn a_plain_secret_is_used_as_bytes() {
        let a = sign(
            &SigningKey::from_secret(&SecretString::from("k1")),
            "id",
            1,
            b"{}",
        );
        let b = sign(
            &SigningKey::from_secret(&SecretString::from("k2")),
            "id",
            1,
            b"{}",
        );
        assert_ne!(a, b);
        assert!(a.starts_with("v1,"));
    }
}

#[cfg(test)]
mod proptests;
