//! Fakes of the email APIs amrelay sends through (SendGrid, Postmark, Mailgun), written
//! from each vendor's public documentation, not from amrelay's client. As in `fakes.rs`,
//! each fake first refuses what the vendor documents it refuses (credentials, then the
//! required fields), then plays a script of answers, and records what it received.
//!
//! SendGrid v3 `POST /v3/mail/send`, `Authorization: Bearer <key>`
//! (<https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>):
//! - 202 with an empty body when queued (`X-Message-Id` header);
//! - 401 `{"errors":[{"message":...,"field":null,"help":null}]}` for a missing or bad key;
//! - 400 `{"errors":[...]}` naming each bad `field`, all at once
//!   (<https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors>);
//! - 403 for a key without permission or an unverified sender, 429 with `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix time) and no `Retry-After`
//!   (<https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api>:
//!   the `responses` and `rate-limits` pages).
//!
//! Postmark `POST /email`, `X-Postmark-Server-Token`, `Accept` and `Content-Type`
//! `application/json` (<https://postmarkapp.com/developer/api/email-api>):
//! - 200 `{"To","SubmittedAt","MessageID","ErrorCode":0,"Message":"OK"}`;
//! - 401 `{"ErrorCode":10,...}` for a missing or wrong token (the header's name and value
//!   are case-insensitive); 422 `{"ErrorCode":N,"Message":...}` for a refused message:
//!   300 invalid email request, 406 inactive recipient, 409 JSON required, 400 sender
//!   signature not found ...; 429 rate limit (ErrorCode 429, no documented header); 500
//!   (<https://postmarkapp.com/developer/api/overview#error-codes>,
//!   <https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean>).
//!   `Subject` is not a required field.
//!
//! Mailgun `POST /v3/{domain}/messages` under `https://api.mailgun.net` or
//! `https://api.eu.mailgun.net`, HTTP basic auth `api:<key>`, form fields `from`, `to`
//! (repeatable, or comma-separated), `cc`, `subject`, `text`, `html`, `h:X-My-Header`
//! (<https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Messages/>,
//! <https://documentation.mailgun.com/docs/mailgun/api-reference/authentication>):
//! - 200 `{"id":"<...>","message":"Queued. Thank you."}`;
//! - 400 `{"message":...}` for a missing parameter; 404 `{"message":"Domain not found: D"}`;
//!   429; 500 (<https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses>).
//! - A bad key: the docs list 403, but the API answers 401 with the plain-text body
//!   `Forbidden` (mailgun/mailgun.js#393, mailgun/mailgun-js-boland#107), which the fake does.
//! - The documented body is multipart/form-data; the API also takes
//!   application/x-www-form-urlencoded, so the fake parses both.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use base64::Engine;
use serde_json::{json, Value};

use crate::recorder::Recorder;

pub const SENDGRID_KEY: &str = "SG.amrelay-test.key";
pub const POSTMARK_TOKEN: &str = "0c7e5d3a-9f1b-4d2e-8a6c-amrelay-test";
pub const MAILGUN_KEY: &str = "key-amrelay-test";
pub const MAILGUN_DOMAIN: &str = "mg.example.com";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    SendGrid,
    Postmark,
    Mailgun,
}

/// One scripted answer, played only to a request the vendor would have taken; after the
/// script runs out the fake plays its default (`Ok` unless `set_default`).
#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    /// The vendor's answer to a bad key (SendGrid 401, Postmark 401/10, Mailgun 401).
    Unauthorized,
    /// 429 with the vendor's documented headers: SendGrid `X-RateLimit-Reset` = now + secs;
    /// Mailgun `Retry-After: secs` (not documented, see the module doc); Postmark none.
    RateLimited {
        secs: u64,
    },
    /// This status with the vendor's error body for it (no rate-limit headers on a 429).
    Status(u16),
    /// The vendor's synchronous refusal of the recipient, permanent: SendGrid 400 invalid
    /// address, Postmark 422/406 inactive recipient, Mailgun 400 invalid `to`.
    RecipientRejected,
    /// Postmark only: this API error code (422; 401 for 10, 429 for 429), e.g. 400 sender
    /// signature not found, 405 not allowed to send, 412 account pending.
    PostmarkCode(u32),
    /// Answer `Ok`, but only after this long.
    Slow(Duration),
    /// Answer `Ok` only when the test calls `release_held`.
    Hang,
}

/// What an email API request asked to send, the same for every vendor. Addresses are as
/// the client wrote them (`Name <a@b>` or `a@b`), lists split on commas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Email {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Extra headers in request order: SendGrid `headers`, Postmark `Headers`, Mailgun `h:`.
    pub headers: Vec<(String, String)>,
}

impl Email {
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        found.next().map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    /// The request path: for Mailgun it names the domain.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// None when the body could not be read at all (not JSON, not a form).
    pub email: Option<Email>,
    /// What the fake answered (None while held by `Hang` or `Slow`).
    pub answered: Option<u16>,
    /// Whether that answer meant "queued" (SendGrid 202, Postmark and Mailgun 200).
    pub accepted: bool,
}

#[derive(Clone)]
pub struct EmailFake {
    pub vendor: Vendor,
    pub addr: SocketAddr,
    rec: Recorder<Answer, Received>,
}

impl EmailFake {
    pub async fn sendgrid() -> EmailFake {
        EmailFake::start(Vendor::SendGrid).await
    }

    pub async fn postmark() -> EmailFake {
        EmailFake::start(Vendor::Postmark).await
    }

    /// Serves the domain `MAILGUN_DOMAIN`; any other domain in the path is a 404.
    pub async fn mailgun() -> EmailFake {
        EmailFake::start(Vendor::Mailgun).await
    }

    pub async fn start(vendor: Vendor) -> EmailFake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = EmailFake {
            vendor,
            addr: listener.local_addr().unwrap(),
            rec: Recorder::new(),
        };
        let path = match vendor {
            Vendor::SendGrid => "/v3/mail/send",
            Vendor::Postmark => "/email",
            Vendor::Mailgun => "/v3/{domain}/messages",
        };
        let app = Router::new()
            .route(path, post(handle))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// The base URL a client is configured with, in place of the vendor's documented one
    /// (`https://api.sendgrid.com`, `https://api.postmarkapp.com`, `https://api.mailgun.net`):
    /// the client appends `/v3/mail/send`, `/email` or `/v3/{domain}/messages` itself.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full URL of the send endpoint.
    pub fn endpoint(&self) -> String {
        match self.vendor {
            Vendor::SendGrid => format!("{}/v3/mail/send", self.api_url()),
            Vendor::Postmark => format!("{}/email", self.api_url()),
            Vendor::Mailgun => format!("{}/v3/{MAILGUN_DOMAIN}/messages", self.api_url()),
        }
    }

    /// The credential the fake takes: SendGrid API key, Postmark server token, Mailgun key.
    pub fn key(&self) -> &'static str {
        match self.vendor {
            Vendor::SendGrid => SENDGRID_KEY,
            Vendor::Postmark => POSTMARK_TOKEN,
            Vendor::Mailgun => MAILGUN_KEY,
        }
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.rec.script(answers);
    }

    /// The answer once the script has run out.
    pub fn set_default(&self, answer: Answer) {
        self.rec.set_default(answer);
    }

    /// Lets every held (`Hang`) request answer `Ok`.
    pub fn release_held(&self) {
        self.rec.release_held();
    }

    pub fn received(&self) -> Vec<Received> {
        self.rec.received()
    }

    /// The emails the fake answered as queued.
    pub fn accepted(&self) -> Vec<Email> {
        self.rec.read(|got| {
            let accepted = got.iter().filter(|r| r.accepted);
            accepted.filter_map(|r| r.email.clone()).collect()
        })
    }

    pub fn accepted_count(&self) -> usize {
        self.rec
            .read(|got| got.iter().filter(|r| r.accepted).count())
    }

    /// Waits until `n` requests have arrived (answered or not), or panics after `within`.
    pub async fn wait_received(&self, n: usize, within: Duration) {
        let what = format!("{n} requests");
        self.wait_for(&what, within, |r| r.len() >= n).await
    }

    /// Waits until `pred` holds over what was received, or panics after `within`.
    pub async fn wait_for(&self, what: &str, within: Duration, pred: impl Fn(&[Received]) -> bool) {
        let who = format!("{:?} fake", self.vendor);
        self.rec.wait_for(&who, what, within, pred).await
    }

    fn record(&self, req: &Incoming, email: Option<Email>) -> usize {
        self.rec.push(Received {
            at: Instant::now(),
            path: req.path.clone(),
            headers: req.headers.clone(),
            body: req.body.to_vec(),
            email,
            answered: None,
            accepted: false,
        })
    }

    fn answered(&self, i: usize, reply: &Reply) {
        self.rec.update(i, |r| {
            r.answered = Some(reply.status);
            r.accepted = reply.accepted;
        });
    }

    /// The vendor's documented refusal of this request, before any script.
    fn refuse(&self, req: &Incoming) -> Option<Reply> {
        match self.vendor {
            Vendor::SendGrid => sendgrid::refuse(req),
            Vendor::Postmark => postmark::refuse(req),
            Vendor::Mailgun => mailgun::refuse(req),
        }
    }

    fn parse(&self, req: &Incoming) -> Option<Email> {
        match self.vendor {
            Vendor::SendGrid => sendgrid::parse(&req.body),
            Vendor::Postmark => postmark::parse(&req.body),
            Vendor::Mailgun => req.form.as_deref().map(mailgun::parse),
        }
    }

    /// The vendor's answer for a scripted `answer` (not `Slow` or `Hang`).
    fn reply(&self, answer: &Answer, req: &Incoming, email: Option<&Email>) -> Reply {
        match self.vendor {
            Vendor::SendGrid => sendgrid::reply(answer),
            Vendor::Postmark => postmark::reply(answer, email),
            Vendor::Mailgun => mailgun::reply(answer, req),
        }
    }
}

/// The request as the vendor modules see it.
struct Incoming {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    /// Mailgun: the form fields in order, repeated names kept.
    form: Option<Vec<(String, String)>>,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn handle(State(fake): State<EmailFake>, req: Request) -> Response {
    // Created before the request is recorded, so a `release_held` right after
    // `wait_received` cannot be missed.
    let mut released = pin!(fake.rec.next_release());
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let form = match fake.vendor {
        Vendor::Mailgun => read_form(&parts.headers, body.clone()).await,
        _ => None,
    };
    let req = Incoming {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
        form,
    };
    let email = fake.parse(&req);
    let i = fake.record(&req, email.clone());
    let reply = match fake.refuse(&req) {
        Some(refusal) => refusal,
        None => match fake.rec.next_answer(Answer::Ok) {
            Answer::Slow(d) => {
                tokio::time::sleep(d).await;
                fake.reply(&Answer::Ok, &req, email.as_ref())
            }
            Answer::Hang => {
                released.as_mut().await;
                fake.reply(&Answer::Ok, &req, email.as_ref())
            }
            answer => fake.reply(&answer, &req, email.as_ref()),
        },
    };
    fake.answered(i, &reply);
    reply.into_response()
}

/// Mailgun's form, multipart or urlencoded, read with axum's own extractors.
async fn read_form(headers: &HeaderMap, body: Bytes) -> Option<Vec<(String, String)>> {
    let content_type = headers.get(header::CONTENT_TYPE)?.clone();
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, content_type.clone())
        .body(Body::from(body))
        .ok()?;
    if content_type
        .to_str()
        .ok()?
        .starts_with("multipart/form-data")
    {
        let mut multipart = Multipart::from_request(req, &()).await.ok()?;
        let mut fields = Vec::new();
        while let Some(field) = multipart.next_field().await.ok()? {
            let name = field.name().unwrap_or_default().to_owned();
            // Attachments are bytes; the fake only looks at text fields.
            let value = field.bytes().await.ok()?;
            fields.push((name, String::from_utf8_lossy(&value).into_owned()));
        }
        Some(fields)
    } else {
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, &())
            .await
            .ok()?;
        Some(fields)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: ReplyBody,
    accepted: bool,
}

enum ReplyBody {
    Empty,
    Json(Value),
    Text(String),
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(body),
            accepted: false,
        }
    }

    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            body: ReplyBody::Text(body.into()),
            ..Reply::json(status, Value::Null)
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            body: ReplyBody::Empty,
            ..Reply::json(status, Value::Null)
        }
    }

    fn header(mut self, name: &'static str, value: impl ToString) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    fn queued(mut self) -> Reply {
        self.accepted = true;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap();
        let mut response = match self.body {
            ReplyBody::Empty => status.into_response(),
            ReplyBody::Json(v) => (status, axum::Json(v)).into_response(),
            ReplyBody::Text(t) => (status, t).into_response(),
        };
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
}

/// The status's reason phrase, for the bodies of statuses a vendor documents no body for.
fn reason(status: u16) -> String {
    let status = StatusCode::from_u16(status).unwrap();
    status.canonical_reason().unwrap_or("Error").to_owned()
}

fn unix_now() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs()
}

/// Splits `a@b, "Doe, J" <j@d>` into addresses; a comma inside quotes does not split.
pub fn split_addresses(list: &str) -> Vec<String> {
    let (mut out, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in list.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    let out = out.into_iter().map(|a| a.trim().to_owned());
    out.filter(|a| !a.is_empty()).collect()
}

/// `a@b` from `Name <a@b>` (or `a@b` itself).
pub fn bare(address: &str) -> &str {
    match (address.rfind('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => &address[open + 1..close],
        _ => address.trim(),
    }
}

mod sendgrid {
    use super::*;

    const HELP: &str = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html";
    pub(super) const INVALID_GRANT: &str =
        "The provided authorization grant is invalid, expired, or revoked";
    const NO_PERSONALIZATIONS: &str =
        "The personalizations field is required and must have at least one personalization.";
    const NO_TO: &str = "The to parameter is required for all personalization objects, \
        and must have at least one email object with a valid email address.";
    const NO_FROM: &str = "The from object must be provided for every email send. \
        It is an object that requires the email parameter, but may also contain a name parameter.";
    const NO_SUBJECT: &str = "The subject is required. You can get around this requirement \
        if you use a template with a subject defined or if every personalization has a subject defined.";
    const NO_CONTENT: &str = "Unless a valid template_id is provided, the content parameter is \
        required. There must be at least one defined content block. We typically suggest both \
        text/plain and text/html blocks are included, but only one block is required.";
    const INVALID_ADDRESS: &str = "Does not contain a valid address.";

    fn errors(errors: &[(Option<String>, &str)]) -> Value {
        let errors = errors.iter().map(|(field, message)| {
            // The help link's anchor is the field without its indexes.
            let anchor = field.as_deref().map(|f| {
                let parts = f.split('.').filter(|p| p.parse::<usize>().is_err());
                format!("{HELP}#message.{}", parts.collect::<Vec<_>>().join("."))
            });
            json!({"message": message, "field": field, "help": anchor})
        });
        json!({ "errors": errors.collect::<Vec<_>>() })
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, errors(&[(None, message)]))
    }

    pub(super) fn refuse(req: &Incoming) -> Option<Reply> {
        match req.header("authorization") {
            None => return Some(error(401, "authorization required")),
            Some(auth) if auth != format!("Bearer {SENDGRID_KEY}") => {
                return Some(error(401, INVALID_GRANT))
            }
            Some(_) => {}
        }
        let Ok(mail) = serde_json::from_slice::<Value>(&req.body) else {
            return Some(error(400, "Bad Request"));
        };
        let bad = field_errors(&mail);
        (!bad.is_empty()).then(|| Reply::json(400, errors(&bad)))
    }

    /// Every documented field error at once, as SendGrid lists them.
    fn field_errors(mail: &Value) -> Vec<(Option<String>, &'static str)> {
        let mut bad = Vec::new();
        let mut push = |field: String, message| bad.push((Some(field), message));
        let template = mail.get("template_id").is_some();
        let nonempty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
        let personalizations = mail["personalizations"].as_array();
        match personalizations {
            Some(ps) if !ps.is_empty() => {
                for (i, p) in ps.iter().enumerate() {
                    match p["to"].as_array() {
                        Some(to) if !to.is_empty() => {
                            for (j, t) in to.iter().enumerate() {
                                let field = format!("personalizations.{i}.to.{j}.email");
                                match t["email"].as_str() {
                                    None | Some("") => {
                                        push(field, "The to email parameter is required.")
                                    }
                                    Some(e) if !e.contains('@') => push(field, INVALID_ADDRESS),
                                    Some(_) => {}
                                }
                            }
                        }
                        _ => push(format!("personalizations.{i}.to"), NO_TO),
                    }
                }
            }
            _ => push("personalizations".into(), NO_PERSONALIZATIONS),
        }
        if !nonempty(&mail["from"]["email"]) {
            push("from".into(), NO_FROM);
        }
        let every_personalization_has_subject = personalizations
            .is_some_and(|ps| !ps.is_empty() && ps.iter().all(|p| nonempty(&p["subject"])));
        if !template && !nonempty(&mail["subject"]) && !every_personalization_has_subject {
            push("subject".into(), NO_SUBJECT);
        }
        match mail["content"].as_array() {
            Some(content) if !content.is_empty() => {
                for (i, c) in content.iter().enumerate() {
                    if !nonempty(&c["value"]) {
                        push(
                            format!("content.{i}.value"),
                            "The content value must be a string at least one character in length.",
                        );
                    }
                }
            }
            _ if template => {}
            _ => push("content".into(), NO_CONTENT),
        }
        bad
    }

    pub(super) fn parse(body: &[u8]) -> Option<Email> {
        let mail: Value = serde_json::from_slice(body).ok()?;
        let empty = Vec::new();
        let ps = mail["personalizations"].as_array().unwrap_or(&empty);
        let addresses = |key: &str| {
            let all = ps.iter().flat_map(|p| p[key].as_array().unwrap_or(&empty));
            all.map(address).collect()
        };
        let content = |kind: &str| {
            let blocks = mail["content"].as_array().unwrap_or(&empty).iter();
            let mut of_kind = blocks.filter(|c| c["type"].as_str() == Some(kind));
            of_kind.find_map(|c| c["value"].as_str().map(str::to_owned))
        };
        let subject = mail["subject"].as_str();
        let subject = subject.or_else(|| ps.first().and_then(|p| p["subject"].as_str()));
        let header_sets = std::iter::once(&mail["headers"]).chain(ps.iter().map(|p| &p["headers"]));
        let headers = header_sets.filter_map(Value::as_object).flatten();
        Some(Email {
            from: address(&mail["from"]),
            to: addresses("to"),
            cc: addresses("cc"),
            subject: subject.unwrap_or_default().to_owned(),
            text: content("text/plain"),
            html: content("text/html"),
            headers: headers
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect(),
        })
    }

    fn address(v: &Value) -> String {
        match (v["email"].as_str(), v["name"].as_str()) {
            (Some(email), Some(name)) => format!("{name} <{email}>"),
            (Some(email), None) => email.to_owned(),
            _ => String::new(),
        }
    }

    pub(super) fn reply(answer: &Answer) -> Reply {
        match answer {
            Answer::Ok => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                Reply::empty(202).header("x-message-id", id).queued()
            }
            Answer::Unauthorized | Answer::Status(401) => error(401, INVALID_GRANT),
            Answer::RateLimited { secs } => error(429, "too many requests")
                .header("x-ratelimit-limit", 600)
                .header("x-ratelimit-remaining", 0)
                .header("x-ratelimit-reset", unix_now() + secs),
            Answer::Status(429) => error(429, "too many requests"),
            Answer::Status(403) => error(403, "access forbidden"),
            Answer::Status(status) => error(*status, &reason(*status)),
            Answer::RecipientRejected => {
                let field = "personalizations.0.to.0.email".to_owned();
                Reply::json(400, errors(&[(Some(field), INVALID_ADDRESS)]))
            }
            other => panic!("{other:?} is not a SendGrid answer"),
        }
    }
}

mod postmark {
    use super::*;

    const NO_TOKEN: &str = "No Account or Server API tokens were supplied in the HTTP headers. \
        Please add a header for either X-Postmark-Server-Token or X-Postmark-Account-Token.";
    const BAD_TOKEN: &str = "The Server Token you provided in the X-Postmark-Server-Token \
        request header was invalid. Please verify that you are using a valid token.";

    fn error(status: u16, code: u32, message: &str) -> Reply {
        Reply::json(status, json!({"ErrorCode": code, "Message": message}))
    }

    pub(super) fn refuse(req: &Incoming) -> Option<Reply> {
        match req.header("x-postmark-server-token") {
            None => return Some(error(401, 10, NO_TOKEN)),
            // "The header name and value are case insensitive."
            Some(token) if !token.eq_ignore_ascii_case(POSTMARK_TOKEN) => {
                return Some(error(401, 10, BAD_TOKEN))
            }
            Some(_) => {}
        }
        let json_header = |name| {
            let value = req.header(name).unwrap_or_default().to_ascii_lowercase();
            value.contains("application/json")
        };
        if !json_header("accept") || !json_header("content-type") {
            let message = "Your HTTP request does not have the Accept and Content-Type \
                headers set to application/json.";
            return Some(error(422, 409, message));
        }
        let Ok(mail) = serde_json::from_slice::<Value>(&req.body) else {
            return Some(error(422, 402, "Invalid JSON"));
        };
        let field = |name: &str| mail[name].as_str().filter(|s| !s.trim().is_empty());
        if field("From").is_none() {
            return Some(error(422, 300, "Invalid 'From' address: ''."));
        }
        let Some(to) = field("To") else {
            return Some(error(422, 300, "Zero recipients specified"));
        };
        for (name, list) in [("To", Some(to)), ("Cc", field("Cc")), ("Bcc", field("Bcc"))] {
            let list = split_addresses(list.unwrap_or_default());
            if let Some(bad) = list.iter().find(|a| !bare(a).contains('@')) {
                let message = format!(
                    "Error parsing '{name}': Illegal email address '{bad}'. It must contain the '@' symbol."
                );
                return Some(error(422, 300, &message));
            }
        }
        if field("TextBody").is_none() && field("HtmlBody").is_none() {
            return Some(error(
                422,
                300,
                "Provide either email TextBody or HtmlBody or both.",
            ));
        }
        None
    }

    pub(super) fn parse(body: &[u8]) -> Option<Email> {
        let mail: Value = serde_json::from_slice(body).ok()?;
        let string = |name: &str| mail[name].as_str().map(str::to_owned);
        let list = |name: &str| split_addresses(mail[name].as_str().unwrap_or_default());
        let headers = mail["Headers"].as_array().into_iter().flatten();
        let headers = headers.map(|h| {
            let part = |key: &str| h[key].as_str().unwrap_or_default().to_owned();
            (part("Name"), part("Value"))
        });
        Some(Email {
            from: string("From").unwrap_or_default(),
            to: list("To"),
            cc: list("Cc"),
            subject: string("Subject").unwrap_or_default(),
            text: string("TextBody"),
            html: string("HtmlBody"),
            headers: headers.collect(),
        })
    }

    pub(super) fn reply(answer: &Answer, email: Option<&Email>) -> Reply {
        let first_to = email.and_then(|e| e.to.first()).map(|a| bare(a).to_owned());
        match answer {
            Answer::Ok => {
                let submitted = chrono::Utc::now().to_rfc3339();
                let to = email.map(|e| e.to.join(", ")).unwrap_or_default();
                let ok = json!({
                    "To": to,
                    "SubmittedAt": submitted,
                    "MessageID": uuid::Uuid::new_v4().to_string(),
                    "ErrorCode": 0,
                    "Message": "OK",
                });
                Reply::json(200, ok).queued()
            }
            Answer::Unauthorized | Answer::Status(401) | Answer::PostmarkCode(10) => {
                error(401, 10, BAD_TOKEN)
            }
            // Postmark documents no rate-limit header: `secs` has nothing to go into.
            Answer::RateLimited { .. } | Answer::Status(429) | Answer::PostmarkCode(429) => error(
                429,
                429,
                "Rate limit exceeded. Please slow down your requests.",
            ),
            Answer::Status(422) => error(422, 300, "Invalid email request"),
            // Postmark documents no body for these; a plain page is the likeliest.
            Answer::Status(status) => Reply::text(*status, reason(*status)),
            Answer::RecipientRejected => {
                let to = first_to.unwrap_or_default();
                let message = format!(
                    "You tried to send to recipient(s) that have been marked as inactive. \
                     Found inactive addresses: {to}. Inactive recipients are ones that have \
                     generated a hard bounce, a spam complaint, or a manual suppression."
                );
                error(422, 406, &message)
            }
            Answer::PostmarkCode(code) => {
                let message = match code {
                    300 => "Invalid email request",
                    400 => "Sender Signature not found",
                    401 => "Sender signature not confirmed",
                    405 => "Not allowed to send",
                    406 => "Inactive recipient",
                    412 => "Account is Pending",
                    413 => "Account May Not Send",
                    _ => "Error",
                };
                error(422, *code, message)
            }
            other => panic!("{other:?} is not a Postmark answer"),
        }
    }
}

mod mailgun {
    use super::*;

    pub(super) const NEED_BODY: &str =
        "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified";
    const INVALID_TO: &str = "'to' parameter is not a valid address. please check documentation";

    fn message(status: u16, message: &str) -> Reply {
        Reply::json(status, json!({ "message": message }))
    }

    fn domain(path: &str) -> &str {
        path.split('/').nth(2).unwrap_or_default()
    }

    fn authorized(req: &Incoming) -> bool {
        let Some(encoded) = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Basic "))
        else {
            return false;
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim());
        decoded.is_ok_and(|d| d == format!("api:{MAILGUN_KEY}").as_bytes())
    }

    fn values<'a>(form: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
        let named = form.iter().filter(move |(k, _)| k == name);
        named.map(|(_, v)| v.as_str())
    }

    pub(super) fn refuse(req: &Incoming) -> Option<Reply> {
        if !authorized(req) {
            return Some(Reply::text(401, "Forbidden"));
        }
        let asked = domain(&req.path);
        if asked != MAILGUN_DOMAIN {
            return Some(message(404, &format!("Domain not found: {asked}")));
        }
        let form = req.form.as_deref().unwrap_or_default();
        let given = |name| values(form, name).any(|v| !v.trim().is_empty());
        for name in ["from", "to", "subject"] {
            if !given(name) {
                return Some(message(400, &format!("'{name}' parameter is missing")));
            }
        }
        let to = values(form, "to").flat_map(split_addresses);
        if to.into_iter().any(|a| !bare(&a).contains('@')) {
            return Some(message(400, INVALID_TO));
        }
        if !["text", "html", "amp-html", "template"]
            .into_iter()
            .any(given)
        {
            return Some(message(400, NEED_BODY));
        }
        None
    }

    pub(super) fn parse(form: &[(String, String)]) -> Email {
        let first = |name| values(form, name).next().map(str::to_owned);
        let list = |name| values(form, name).flat_map(split_addresses).collect();
        let headers = form.iter().filter_map(|(k, v)| {
            let name = k.strip_prefix("h:")?;
            Some((name.to_owned(), v.clone()))
        });
        Email {
            from: first("from").unwrap_or_default(),
            to: list("to"),
            cc: list("cc"),
            subject: first("subject").unwrap_or_default(),
            text: first("text"),
            html: first("html"),
            headers: headers.collect(),
        }
    }

    pub(super) fn reply(answer: &Answer, req: &Incoming) -> Reply {
        match answer {
            Answer::Ok => {
                let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S%.6f");
                let id = format!("<{stamp}.1@{}>", domain(&req.path));
                Reply::json(200, json!({"id": id, "message": "Queued. Thank you."})).queued()
            }
            Answer::Unauthorized | Answer::Status(401) => Reply::text(401, "Forbidden"),
            // Mailgun's docs say only "retry these requests as defined in the response".
            Answer::RateLimited { secs } => {
                message(429, "Too many requests").header("retry-after", secs)
            }
            Answer::Status(404) => message(404, &format!("Domain not found: {}", domain(&req.path))),
            // Mailgun's per-domain sending limit (mailgun/mailgun-java#50).
            Answer::Status(420) => message(
                420,
                &format!(
                    "Domain {} is not allowed to send: recipient limit exceeded, try again after {}",
                    domain(&req.path),
                    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600)),
                ),
            ),
            Answer::Status(status) => message(*status, &reason(*status)),
            Answer::RecipientRejected => message(400, INVALID_TO),
            other => panic!("{other:?} is not a Mailgun answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each fake against requests built from its vendor's documentation examples.

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn client() -> reqwest::Client {
        crate::helpers::http_client()
    }

    /// SendGrid's "Send your first email" cURL example.
    fn sendgrid_example() -> Value {
        json!({
            "personalizations": [{"to": [{"email": "test@example.com"}]}],
            "from": {"email": "test@example.com"},
            "subject": "Sending with SendGrid is Fun",
            "content": [{"type": "text/plain", "value": "and easy to do anywhere, even with cURL"}]
        })
    }

    /// Postmark's "Send a single email" cURL example.
    fn postmark_example() -> Value {
        json!({
            "From": "sender@example.com",
            "To": "receiver@example.com",
            "Subject": "Postmark test",
            "TextBody": "Hello dear Postmark user.",
            "HtmlBody": "<html><body><strong>Hello</strong> dear Postmark user.</body></html>",
            "MessageStream": "outbound"
        })
    }

    /// Mailgun's quickstart `curl -F` example, with a custom header added.
    const MAILGUN_EXAMPLE: &[(&str, &str)] = &[
        ("from", "Excited User <mailgun@mg.example.com>"),
        ("to", "YOU@example.com"),
        ("to", "bar@example.com"),
        ("subject", "Hello"),
        ("text", "Testing some Mailgun awesomeness!"),
        ("h:X-My-Header", "my-value"),
    ];

    /// A multipart/form-data body as `curl -F` sends it, built by hand.
    fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
        let boundary = "------------------------amrelaytest";
        let mut body = String::new();
        for (name, value) in fields {
            body += &format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            );
        }
        body += &format!("--{boundary}--\r\n");
        (
            format!("multipart/form-data; boundary={boundary}"),
            body.into_bytes(),
        )
    }

    fn sendgrid_post(fake: &EmailFake, key: &str, body: &Value) -> reqwest::RequestBuilder {
        let post = client().post(fake.endpoint()).bearer_auth(key);
        post.json(body)
    }

    fn postmark_post(fake: &EmailFake, token: &str, body: &Value) -> reqwest::RequestBuilder {
        client()
            .post(fake.endpoint())
            .header("Accept", "application/json")
            .header("X-Postmark-Server-Token", token)
            .json(body)
    }

    fn mailgun_post(url: &str, key: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let (content_type, body) = multipart(fields);
        let post = client().post(url).basic_auth("api", Some(key));
        post.header("Content-Type", content_type).body(body)
    }

    /// The vendor's documentation example, with the right credentials.
    fn example(fake: &EmailFake) -> reqwest::RequestBuilder {
        match fake.vendor {
            Vendor::SendGrid => sendgrid_post(fake, fake.key(), &sendgrid_example()),
            Vendor::Postmark => postmark_post(fake, fake.key(), &postmark_example()),
            Vendor::Mailgun => mailgun_post(&fake.endpoint(), fake.key(), MAILGUN_EXAMPLE),
        }
    }

    fn without(mut body: Value, key: &str) -> Value {
        body.as_object_mut().unwrap().remove(key);
        body
    }

    #[tokio::test]
    async fn sendgrid_fake_queues_the_documented_example_with_202_and_no_body() {
        let fake = EmailFake::sendgrid().await;
        let mut body = sendgrid_example();
        body["personalizations"][0]["cc"] = json!([{"email": "cc@example.com", "name": "CC"}]);
        body["headers"] = json!({"X-Amrelay-Fingerprint": "abc123"});
        body["content"] = json!([
            {"type": "text/plain", "value": "plain"},
            {"type": "text/html", "value": "<p>html</p>"}
        ]);

        let r = sendgrid_post(&fake, SENDGRID_KEY, &body)
            .send()
            .await
            .unwrap();

        assert_eq!(r.status(), 202);
        assert!(r.headers().contains_key("x-message-id"));
        assert_eq!(r.bytes().await.unwrap().len(), 0);
        let email = fake.accepted().pop().expect("one accepted email");
        assert_eq!(email.from, "test@example.com");
        assert_eq!(email.to, ["test@example.com"]);
        assert_eq!(email.cc, ["CC <cc@example.com>"]);
        assert_eq!(email.subject, "Sending with SendGrid is Fun");
        assert_eq!(email.text.as_deref(), Some("plain"));
        assert_eq!(email.html.as_deref(), Some("<p>html</p>"));
        assert_eq!(email.header("x-amrelay-fingerprint"), Some("abc123"));
        let raw = &fake.received()[0];
        assert_eq!(
            raw.headers["authorization"],
            format!("Bearer {SENDGRID_KEY}")
        );
        assert_eq!(serde_json::from_slice::<Value>(&raw.body).unwrap(), body);
        assert_eq!(raw.answered, Some(202));
    }

    #[tokio::test]
    async fn sendgrid_fake_refuses_a_missing_or_wrong_key_with_401_whatever_the_script() {
        let fake = EmailFake::sendgrid().await;
        fake.script([Answer::Status(500)]);

        let wrong = sendgrid_post(&fake, "SG.wrong", &sendgrid_example());
        let wrong = wrong.send().await.unwrap();
        let missing = client().post(fake.endpoint()).json(&sendgrid_example());
        let missing = missing.send().await.unwrap();
        let right = example(&fake).send().await.unwrap();

        assert_eq!(
            (wrong.status().as_u16(), missing.status().as_u16()),
            (401, 401)
        );
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["errors"][0]["message"], sendgrid::INVALID_GRANT);
        assert_eq!(body["errors"][0]["field"], Value::Null);
        let body: Value = missing.json().await.unwrap();
        assert!(body["errors"][0]["message"].is_string());
        assert_eq!(right.status(), 500, "the refusals left the script alone");
        assert_eq!(fake.accepted_count(), 0);
    }

    #[tokio::test]
    async fn sendgrid_fake_names_every_missing_field_in_one_400() {
        let fake = EmailFake::sendgrid().await;
        let body = without(without(sendgrid_example(), "from"), "personalizations");

        let r = sendgrid_post(&fake, SENDGRID_KEY, &body)
            .send()
            .await
            .unwrap();

        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        let fields: Vec<_> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["field"])
            .collect();
        assert_eq!(fields, [&json!("personalizations"), &json!("from")]);
        assert_eq!(fake.accepted_count(), 0);
    }

    #[tokio::test]
    async fn sendgrid_fake_scripted_429_carries_the_documented_rate_limit_headers() {
        let fake = EmailFake::sendgrid().await;
        fake.script([Answer::RateLimited { secs: 30 }]);

        let limited = example(&fake).send().await.unwrap();
        let next = example(&fake).send().await.unwrap();

        assert_eq!(limited.status(), 429);
        let header = |name| {
            limited.headers()[name]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(header("x-ratelimit-remaining"), 0);
        assert!(header("x-ratelimit-limit") > 0);
        let reset = header("x-ratelimit-reset");
        assert!(
            (unix_now() + 28..=unix_now() + 31).contains(&reset),
            "reset {reset}"
        );
        assert!(!limited.headers().contains_key("retry-after"));
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["errors"][0]["message"], "too many requests");
        assert_eq!(next.status(), 202, "the script is spent, the default is Ok");
        assert_eq!(fake.accepted_count(), 1);
    }

    #[tokio::test]
    async fn postmark_fake_answers_the_documented_example_with_200_and_a_message_id() {
        let fake = EmailFake::postmark().await;
        let mut body = postmark_example();
        body["Cc"] = json!("\"Doe, Jane\" <jane@example.com>, ops@example.com");
        body["Headers"] = json!([{"Name": "X-Amrelay-Group", "Value": "g1"}]);

        let r = postmark_post(&fake, POSTMARK_TOKEN, &body)
            .send()
            .await
            .unwrap();

        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["ErrorCode"], 0);
        assert_eq!(body["Message"], "OK");
        assert_eq!(body["To"], "receiver@example.com");
        assert!(body["MessageID"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(body["SubmittedAt"].is_string());
        let email = fake.accepted().pop().expect("one accepted email");
        assert_eq!(
            email.cc,
            ["\"Doe, Jane\" <jane@example.com>", "ops@example.com"]
        );
        assert_eq!(email.text.as_deref(), Some("Hello dear Postmark user."));
        assert!(email
            .html
            .as_deref()
            .unwrap()
            .contains("<strong>Hello</strong>"));
        assert_eq!(email.header("X-Amrelay-Group"), Some("g1"));
    }

    #[tokio::test]
    async fn postmark_fake_refuses_a_bad_token_with_error_code_10_but_ignores_its_case() {
        let fake = EmailFake::postmark().await;

        let wrong = postmark_post(&fake, "not-the-token", &postmark_example());
        let wrong = wrong.send().await.unwrap();
        let upper = postmark_post(&fake, &POSTMARK_TOKEN.to_uppercase(), &postmark_example());
        let upper = upper.send().await.unwrap();

        assert_eq!(wrong.status(), 401);
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["ErrorCode"], 10);
        assert_eq!(upper.status(), 200);
        assert_eq!(fake.accepted_count(), 1);
    }

    #[tokio::test]
    async fn postmark_fake_refuses_a_message_without_body_or_json_headers_with_422() {
        let fake = EmailFake::postmark().await;
        let no_body = without(without(postmark_example(), "TextBody"), "HtmlBody");
        let no_to = without(postmark_example(), "To");

        let no_body = postmark_post(&fake, POSTMARK_TOKEN, &no_body)
            .send()
            .await
            .unwrap();
        let no_to = postmark_post(&fake, POSTMARK_TOKEN, &no_to)
            .send()
            .await
            .unwrap();
        let no_accept = client()
            .post(fake.endpoint())
            .header("X-Postmark-Server-Token", POSTMARK_TOKEN)
            .json(&postmark_example())
            .send()
            .await
            .unwrap();

        let mut codes = Vec::new();
        for r in [no_body, no_to, no_accept] {
            assert_eq!(r.status(), 422);
            codes.push(r.json::<Value>().await.unwrap()["ErrorCode"].clone());
        }
        assert_eq!(codes, [json!(300), json!(300), json!(409)]);
        assert_eq!(fake.accepted_count(), 0);
    }

    #[tokio::test]
    async fn postmark_fake_plays_scripted_inactive_recipient_rate_limit_and_sender_signature_errors(
    ) {
        let fake = EmailFake::postmark().await;
        let script = [Answer::RecipientRejected, Answer::RateLimited { secs: 5 }];
        fake.script(script.into_iter().chain([Answer::PostmarkCode(400)]));

        let rejected = example(&fake).send().await.unwrap();
        let limited = example(&fake).send().await.unwrap();
        let no_signature = example(&fake).send().await.unwrap();

        assert_eq!(rejected.status(), 422);
        let body: Value = rejected.json().await.unwrap();
        assert_eq!(body["ErrorCode"], 406);
        assert!(body["Message"]
            .as_str()
            .unwrap()
            .contains("receiver@example.com"));
        assert_eq!(limited.status(), 429);
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["ErrorCode"], 429);
        assert_eq!(no_signature.status(), 422);
        let body: Value = no_signature.json().await.unwrap();
        assert_eq!(body["ErrorCode"], 400);
        let answered: Vec<_> = fake.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered, [Some(422), Some(429), Some(422)]);
        assert_eq!(fake.accepted_count(), 0);
    }

    #[tokio::test]
    async fn mailgun_fake_queues_the_documented_example_sent_as_multipart_or_urlencoded() {
        let fake = EmailFake::mailgun().await;

        let multipart = example(&fake).send().await.unwrap();
        let urlencoded = client()
            .post(fake.endpoint())
            .basic_auth("api", Some(MAILGUN_KEY))
            .form(MAILGUN_EXAMPLE)
            .send()
            .await
            .unwrap();

        for r in [multipart, urlencoded] {
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["message"], "Queued. Thank you.");
            assert!(body["id"].as_str().unwrap().ends_with("@mg.example.com>"));
        }
        let emails = fake.accepted();
        assert_eq!(emails.len(), 2);
        assert_eq!(emails[0], emails[1], "both encodings read alike");
        assert_eq!(emails[0].from, "Excited User <mailgun@mg.example.com>");
        assert_eq!(emails[0].to, ["YOU@example.com", "bar@example.com"]);
        assert_eq!(emails[0].subject, "Hello");
        assert_eq!(emails[0].header("X-My-Header"), Some("my-value"));
        assert_eq!(fake.received()[0].path, "/v3/mg.example.com/messages");
    }

    #[tokio::test]
    async fn mailgun_fake_refuses_a_bad_key_with_401_forbidden_and_an_unknown_domain_with_404() {
        let fake = EmailFake::mailgun().await;
        let other = format!("{}/v3/mg.other.example/messages", fake.api_url());

        let bad_key = mailgun_post(&fake.endpoint(), "key-wrong", MAILGUN_EXAMPLE);
        let bad_key = bad_key.send().await.unwrap();
        let bad_domain = mailgun_post(&other, MAILGUN_KEY, MAILGUN_EXAMPLE);
        let bad_domain = bad_domain.send().await.unwrap();

        assert_eq!(bad_key.status(), 401);
        assert_eq!(bad_key.text().await.unwrap(), "Forbidden");
        assert_eq!(bad_domain.status(), 404);
        let body: Value = bad_domain.json().await.unwrap();
        assert_eq!(body["message"], "Domain not found: mg.other.example");
        assert_eq!(fake.accepted_count(), 0);
    }

    #[tokio::test]
    async fn mailgun_fake_refuses_a_message_without_text_or_html_with_400() {
        let fake = EmailFake::mailgun().await;
        let no_text: Vec<_> = MAILGUN_EXAMPLE
            .iter()
            .filter(|(k, _)| *k != "text")
            .copied()
            .collect();
        let no_to: Vec<_> = MAILGUN_EXAMPLE
            .iter()
            .filter(|(k, _)| *k != "to")
            .copied()
            .collect();

        let no_text = mailgun_post(&fake.endpoint(), MAILGUN_KEY, &no_text);
        let no_text = no_text.send().await.unwrap();
        let no_to = mailgun_post(&fake.endpoint(), MAILGUN_KEY, &no_to);
        let no_to = no_to.send().await.unwrap();

        assert_eq!(
            (no_text.status().as_u16(), no_to.status().as_u16()),
            (400, 400)
        );
        let body: Value = no_text.json().await.unwrap();
        assert_eq!(body["message"], mailgun::NEED_BODY);
        let body: Value = no_to.json().await.unwrap();
        assert_eq!(body["message"], "'to' parameter is missing");
        assert_eq!(fake.accepted_count(), 0);
    }

    #[tokio::test]
    async fn mailgun_fake_plays_a_scripted_429_with_retry_after_and_401_then_its_default_503() {
        let fake = EmailFake::mailgun().await;
        fake.script([Answer::RateLimited { secs: 7 }, Answer::Unauthorized]);
        fake.set_default(Answer::Status(503));

        let limited = example(&fake).send().await.unwrap();
        let unauthorized = example(&fake).send().await.unwrap();
        let unavailable = example(&fake).send().await.unwrap();
        let still_unavailable = example(&fake).send().await.unwrap();

        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "7");
        assert_eq!(unauthorized.status(), 401);
        assert_eq!(unauthorized.text().await.unwrap(), "Forbidden");
        assert_eq!(unavailable.status(), 503);
        assert_eq!(still_unavailable.status(), 503, "the default repeats");
        assert_eq!(fake.accepted_count(), 0);
    }

    #[tokio::test]
    async fn every_fake_answers_ok_only_after_a_scripted_slow_delay() {
        const DELAY: Duration = Duration::from_millis(300);
        for vendor in [Vendor::SendGrid, Vendor::Postmark, Vendor::Mailgun] {
            let fake = EmailFake::start(vendor).await;
            fake.script([Answer::Slow(DELAY)]);

            let started = Instant::now();
            let r = example(&fake).send().await.unwrap();

            assert!(r.status().is_success(), "{vendor:?}: {}", r.status());
            assert!(started.elapsed() >= DELAY, "{vendor:?} answered early");
            let arrived = fake.received()[0].at;
            assert!(
                arrived.elapsed() >= DELAY,
                "{vendor:?} waited before reading"
            );
            assert_eq!(fake.accepted_count(), 1, "{vendor:?}");
        }
    }

    #[tokio::test]
    async fn every_fake_holds_a_hung_request_until_released() {
        for vendor in [Vendor::SendGrid, Vendor::Postmark, Vendor::Mailgun] {
            let fake = EmailFake::start(vendor).await;
            fake.script([Answer::Hang]);

            let held = tokio::spawn(example(&fake).send());
            fake.wait_received(1, WAIT).await;
            let record = &fake.received()[0];
            assert_eq!(
                (record.answered, record.accepted),
                (None, false),
                "{vendor:?}"
            );
            fake.release_held();
            let r = held.await.unwrap().unwrap();

            assert!(r.status().is_success(), "{vendor:?}: {}", r.status());
            assert_eq!(fake.accepted_count(), 1, "{vendor:?}");
        }
    }

    #[test]
    fn addresses_split_on_commas_outside_quotes() {
        let list = split_addresses(" a@x.com,\"Doe, J\" <j@y.com> ,, b@z.com");
        assert_eq!(list, ["a@x.com", "\"Doe, J\" <j@y.com>", "b@z.com"]);
        assert_eq!(bare(&list[1]), "j@y.com");
        assert_eq!(bare("a@x.com"), "a@x.com");
    }
}
