//! SMTP through lettre: STARTTLS, implicit TLS, or plain for a local relay; pooled
//! connections. RFC 5321 section 4.2.1: a 4yz reply at any step, the one after the
//! message body included, means "not now" and is retried; a 5yz is permanent.

use std::time::Duration;

use lettre::message::{header::ContentType, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::Email;
use crate::config::{DeliveryPolicy, SmtpSettings, SmtpTls};
use crate::net::{http, Outcome};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

pub(super) struct Smtp {
    /// Err when the settings cannot make a transport (a host name TLS cannot verify):
    /// every attempt then fails permanently with that reason.
    transport: Result<Transport, String>,
}

impl Smtp {
    pub(super) fn new(s: &SmtpSettings, policy: &DeliveryPolicy) -> Self {
        let transport = build(s, policy.timeout, policy.concurrency);
        if let Err(e) = &transport {
            tracing::error!(host = %s.host, error = %e, "cannot set up the SMTP transport");
        }
        Smtp { transport }
    }

    pub(super) async fn send(&self, e: &Email<'_>) -> Outcome {
        let transport = match &self.transport {
            Ok(t) => t,
            Err(err) => return Outcome::permanent("smtp_setup", err.clone()),
        };
        let message = match message(e) {
            Ok(m) => m,
            Err(err) => return Outcome::permanent("message", err),
        };
        match transport.send(message).await {
            Ok(_) => Outcome::Delivered,
            Err(err) => classify(&err),
        }
    }
}

fn build(s: &SmtpSettings, timeout: Duration, pool: u32) -> Result<Transport, String> {
    let builder = match s.tls {
        SmtpTls::StartTls => Transport::starttls_relay(&s.host).map_err(|e| e.to_string())?,
        SmtpTls::Implicit => Transport::relay(&s.host).map_err(|e| e.to_string())?,
        SmtpTls::None => Transport::builder_dangerous(&s.host),
    };
    let mut builder = builder
        .port(s.port)
        .timeout(Some(timeout))
        .pool_config(PoolConfig::new().max_size(pool.max(1)));
    if let Some((user, password)) = &s.credentials {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// The Message-ID is the same on every attempt of a delivery, so that a copy sent again
/// after an unknown outcome (a timeout after the body) is one message to mail clients.
fn message(e: &Email<'_>) -> Result<Message, String> {
    let env = e.envelope;
    let domain = env.from.email.domain();
    let mut b = Message::builder()
        .from(env.from.clone())
        .subject(e.content.subject.clone())
        .message_id(Some(format!(
            "<amrelay.{}.{}@{domain}>",
            e.delivery_id, e.created_at
        )));
    for to in &env.to {
        b = b.to(to.clone());
    }
    for cc in &env.cc {
        b = b.cc(cc.clone());
    }
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(e.content.text.clone()),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(e.content.html.clone()),
        );
    b.multipart(body).map_err(|err| err.to_string())
}

fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let code = e.status().map(|c| c.to_string());
    let detail = http::error_chain(e);
    let reason = |fallback: &str| match &code {
        Some(c) => format!("smtp_{c}"),
        None => fallback.to_owned(),
    };
    if e.is_permanent() {
        Outcome::permanent(reason("smtp_permanent"), detail)
    } else if e.is_transient() {
        Outcome::retryable(reason("smtp_transient"), detail)
    } else if e.is_client() {
        // Our side cannot make this message or session (no auth mechanism in common, an
        // address the relay's syntax refuses): no retry helps; the fallback might.
        Outcome::permanent("smtp_client", detail)
    } else if e.is_timeout() {
        Outcome::retryable("timeout", detail)
    } else if e.is_tls() {
        Outcome::retryable("smtp_tls", detail)
    } else {
        // Connection refused or dropped, a reply that does not parse: the relay may come
        // back, and the fallback chain decides what happens after max_attempts.
        Outcome::retryable("smtp_connection", detail)
    }
}
