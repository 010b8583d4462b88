//! Webhook authentication, exactly as Alertmanager's `http_config` sends it:
//! `Authorization: Bearer <token>` or `Authorization: Basic base64(user:pass)`.
//! Compared in constant time.

use axum::http::{self, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::config::HttpAuth;

pub(crate) fn check(auth: Option<&HttpAuth>, headers: &HeaderMap) -> bool {
    let Some(auth) = auth else { return true };
    let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, credentials)) = value.trim().split_once(' ') else {
        return false;
    };
    let credentials = credentials.trim();
    match auth {
        HttpAuth::Bearer(token) => {
            scheme.eq_ignore_ascii_case("bearer")
                && eq(credentials.as_bytes(), token.expose_secret().as_bytes())
        }
        HttpAuth::Basic { username, password } => {
            if !scheme.eq_ignore_ascii_case("basic") {
                return false;
            }
            let Ok(decoded) = STANDARD.decode(credentials) else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|b| *b == b':') else {
                return false;
            };
            let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
            // Both compared, always, so the time does not tell which one was wrong.
            let user_ok = eq(user, username.as_bytes());
            let pass_ok = eq(pass, password.expose_secret().as_bytes());
            user_ok & pass_ok
        }
    }
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use secrecy::SecretString;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    /// The credentials in the shared fixtures' README.
    #[test]
    fn alertmanager_bearer_and_basic_headers_pass() {
        let bearer = HttpAuth::Bearer(SecretString::from("test-bearer-token-123"));
        assert!(check(Some(&bearer), &with("Bearer test-bearer-token-123")));
        let basic = HttpAuth::Basic {
            username: "amuser".into(),
            password: SecretString::from("ampass"),
        };
        assert!(check(Some(&basic), &with("Basic YW11c2VyOmFtcGFzcw==")));
    }

    #[test]
    fn wrong_missing_or_mixed_credentials_fail() {
        let bearer = HttpAuth::Bearer(SecretString::from("test-bearer-token-123"));
        assert!(!check(Some(&bearer), &HeaderMap::new()));
        assert!(!check(Some(&bearer), &with("Bearer test-bearer-token-12")));
        assert!(!check(Some(&bearer), &with("Basic test-bearer-token-123")));
        assert!(!check(Some(&bearer), &with("Bearertest-bearer-token-123")));
        let basic = HttpAuth::Basic {
            username: "amuser".into(),
            password: SecretString::from("ampass"),
        };
        assert!(!check(Some(&basic), &with("Basic YW11c2VyOndyb25n"))); // amuser:wrong
        assert!(!check(Some(&basic), &with("Basic !!!")));
        assert!(!check(Some(&basic), &with("Bearer YW11c2VyOmFtcGFzcw==")));
    }

    #[test]
    fn no_auth_configured_lets_everything_in() {
        assert!(check(None, &HeaderMap::new()));
    }
}
