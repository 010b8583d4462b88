//! `kind = "email"` channels: the addresses, the templates, and one provider (an HTTP
//! API, or SMTP as the fallback).

use lettre::message::Mailbox;
use reqwest::Url;
use secrecy::SecretString;

use super::raw::RawChannel;
use super::Problems;

#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// Mailboxes as RFC 5322 writes them: `amrelay@example.com` or `Ops <ops@example.com>`.
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub templates: TemplateSources,
    pub provider: EmailProvider,
}

/// A channel's own templates (None: the shipped default), each known to compile. The
/// sink compiles its renderer from them (`sinks::email`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateSources {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Clone)]
pub enum EmailProvider {
    /// SendGrid v3 `POST /v3/mail/send`; `api_url` is the base (`https://api.sendgrid.com`).
    SendGrid {
        api_url: Url,
        api_key: SecretString,
    },
    /// Postmark `POST /email`; `api_url` is the base (`https://api.postmarkapp.com`).
    Postmark {
        api_url: Url,
        server_token: SecretString,
        message_stream: Option<String>,
    },
    /// Mailgun `POST /v3/{domain}/messages`; `api_url` is the base
    /// (`https://api.mailgun.net`, or `https://api.eu.mailgun.net` for the EU region).
    Mailgun {
        api_url: Url,
        domain: String,
        api_key: SecretString,
    },
    Smtp(SmtpSettings),
}

impl EmailProvider {
    pub fn name(&self) -> &'static str {
        match self {
            EmailProvider::SendGrid { .. } => "sendgrid",
            EmailProvider::Postmark { .. } => "postmark",
            EmailProvider::Mailgun { .. } => "mailgun",
            EmailProvider::Smtp(_) => "smtp",
        }
    }

    /// Default concurrency for the provider: APIs take parallel requests well, a relay
    /// gets a few pooled connections.
    pub fn default_concurrency(name: &str) -> u32 {
        if name == "smtp" {
            4
        } else {
            8
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(String, SecretString)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host or network.
    None,
}

const PROVIDERS: &str = "\"sendgrid\", \"postmark\", \"mailgun\" or \"smtp\"";

/// Whether an email channel with this provider has the key (beyond the delivery policy).
pub(super) fn allows(provider: &str, field: &str) -> bool {
    const COMMON: &[&str] = &[
        "provider",
        "from",
        "to",
        "cc",
        "subject",
        "text_template_file",
        "html_template_file",
    ];
    let own: &[&str] = match provider {
        "sendgrid" => &["api_url", "api_key_file", "api_key_env"],
        "postmark" => &["api_url", "api_key_file", "api_key_env", "message_stream"],
        "mailgun" => &["api_url", "api_key_file", "api_key_env", "domain"],
        "smtp" => &[
            "host",
            "port",
            "tls",
            "username",
            "password_file",
            "password_env",
        ],
        _ => &[],
    };
    COMMON.contains(&field) || own.contains(&field)
}

pub(super) fn settings(
    c: &RawChannel,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<EmailSettings> {
    let provider_name = match c.provider.as_deref() {
        Some(n @ ("sendgrid" | "postmark" | "mailgun" | "smtp")) => n,
        Some(other) => {
            return p.push(
                key("provider"),
                format!("expected {PROVIDERS}, got {other:?}"),
            );
        }
        None => return p.push(key("provider"), format!("is required: {PROVIDERS}")),
    };
    let from = match c.from.as_deref() {
        Some(f) => mailbox(&key("from"), f, p),
        None => p.push(key("from"), "is required"),
    };
    let to = match c.to.as_deref() {
        Some([]) | None => p.push(key("to"), "is required: at least one address"),
        Some(list) => addresses("to", list, key, p),
    };
    let cc = addresses("cc", c.cc.as_deref().unwrap_or_default(), key, p);
    let templates = templates(c, key, p);
    let provider = match provider_name {
        "smtp" => smtp(c, key, p).map(EmailProvider::Smtp),
        api => {
            let default_url = match api {
                "sendgrid" => "https://api.sendgrid.com",
                "postmark" => "https://api.postmarkapp.com",
                _ => "https://api.mailgun.net",
            };
            let api_url = p.url(&key("api_url"), c.api_url.as_deref().unwrap_or(default_url));
            let api_key = p.secret(
                &key("api_key"),
                c.api_key_file.as_deref(),
                c.api_key_env.as_deref(),
            );
            if c.api_key_file.is_none() && c.api_key_env.is_none() {
                p.push::<()>(
                    key("api_key_file"),
                    format!("a {api} channel needs api_key_file or api_key_env"),
                );
            }
            match (api, api_url, api_key) {
                ("sendgrid", Some(api_url), Some(api_key)) => {
                    Some(EmailProvider::SendGrid { api_url, api_key })
                }
                ("postmark", Some(api_url), Some(server_token)) => Some(EmailProvider::Postmark {
                    api_url,
                    server_token,
                    message_stream: c.message_stream.clone().filter(|s| !s.is_empty()),
                }),
                ("mailgun", Some(api_url), Some(api_key)) => match c.domain.as_deref() {
                    Some(d) if valid_domain(d) => Some(EmailProvider::Mailgun {
                        api_url,
                        domain: d.to_owned(),
                        api_key,
                    }),
                    Some(d) => p.push(
                        key("domain"),
                        format!("expected a sending domain like \"mg.example.com\", got {d:?}"),
                    ),
                    None => p.push(key("domain"), "is required (the Mailgun sending domain)"),
                },
                _ => None,
            }
        }
    };
    Some(EmailSettings {
        from: from?,
        to,
        cc,
        templates: templates?,
        provider: provider?,
    })
}

fn smtp(c: &RawChannel, key: &dyn Fn(&str) -> String, p: &mut Problems) -> Option<SmtpSettings> {
    let host = match c.host.as_deref() {
        Some(h) if !h.trim().is_empty() => Some(h.trim().to_owned()),
        _ => p.push(key("host"), "is required (the relay's host name)"),
    };
    let tls = match c.tls.as_deref().unwrap_or("starttls") {
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Implicit,
        "none" => SmtpTls::None,
        other => p.push(
            key("tls"),
            format!("expected \"starttls\", \"tls\" or \"none\", got {other:?}"),
        ),
    };
    let port = match c.port {
        Some(0) => p.push(key("port"), "must be above zero"),
        Some(n) => n,
        None => match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        },
    };
    let password = p.secret(
        &key("password"),
        c.password_file.as_deref(),
        c.password_env.as_deref(),
    );
    let credentials = match (c.username.clone(), password) {
        (Some(u), Some(pw)) => Some((u, pw)),
        (None, None) if c.password_file.is_none() && c.password_env.is_none() => None,
        (None, _) => p.push(key("username"), "is required with a password"),
        (Some(_), None) => {
            if c.password_file.is_none() && c.password_env.is_none() {
                p.push::<()>(
                    key("password_file"),
                    "set password_file or password_env with username",
                );
            }
            None
        }
    };
    if credentials.is_some() && tls == SmtpTls::None {
        p.push::<()>(
            key("tls"),
            "\"none\" would send the password in clear text; use \"starttls\" or \"tls\"",
        );
    }
    Some(SmtpSettings {
        host: host?,
        port,
        tls,
        credentials,
    })
}

fn templates(
    c: &RawChannel,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<TemplateSources> {
    let mut read = |k: &str, path: Option<&str>| -> Option<String> {
        let path = path?;
        std::fs::read_to_string(path)
            .map_err(|e| p.push::<()>(key(k), format!("cannot read {path:?}: {e}")))
            .ok()
    };
    let text = read("text_template_file", c.text_template_file.as_deref());
    let html = read("html_template_file", c.html_template_file.as_deref());
    let sources = TemplateSources {
        subject: c.subject.clone(),
        text,
        html,
    };
    let mut ok = true;
    for (k, source) in [
        ("subject", &sources.subject),
        ("text_template_file", &sources.text),
        ("html_template_file", &sources.html),
    ] {
        if let Some(source) = source {
            if let Err(e) = minijinja::Environment::new().template_from_str(source) {
                ok = false;
                p.push::<()>(key(k), format!("template does not compile: {e:#}"));
            }
        }
    }
    ok.then_some(sources)
}

fn addresses(
    field: &str,
    list: &[String],
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Vec<Mailbox> {
    list.iter()
        .enumerate()
        .filter_map(|(i, a)| mailbox(&key(&format!("{field}[{i}]")), a, p))
        .collect()
}

fn mailbox(key: &str, value: &str, p: &mut Problems) -> Option<Mailbox> {
    match value.parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(e) => p.push(
            key,
            format!("expected an address like \"ops@example.com\" or \"Ops <ops@example.com>\", got {value:?} ({e})"),
        ),
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}
