//! A real SMTP server: `tests/smtp/relay.py`, Debian's python3-aiosmtpd with a handler
//! whose answer the test sets (accept, delay, 451, 421, 550). Messages land in a Maildir.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct SmtpRelay {
    pub port: u16,
    dir: tempfile::TempDir,
    _child: Child,
}

impl SmtpRelay {
    pub async fn start() -> SmtpRelay {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/relay.py");
        // Debian's python3, which has python3-aiosmtpd; not a pyenv one first on PATH.
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg("--maildir")
            .arg(dir.path().join("mail"))
            .arg("--control")
            .arg(dir.path().join("control"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("/usr/bin/python3 (scripts/test installs python3-aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the relay says where it listens")
        .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("relay said {line:?}; is python3-aiosmtpd installed?"));
        SmtpRelay {
            port,
            dir,
            _child: child,
        }
    }

    /// How the relay answers the next messages: `ok`, `delay SECS`, `451`, `421`, `550`.
    pub fn set_mode(&self, mode: &str) {
        std::fs::write(self.dir.path().join("control"), mode).unwrap();
    }

    /// The accepted messages, raw, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail").join("new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect()
    }

    /// The relay's answers so far, as codes (250, 451, ...).
    pub fn answers(&self) -> Vec<u16> {
        std::fs::read_to_string(self.dir.path().join("relay.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .collect()
    }

    /// Polls the Maildir until it holds `n` messages.
    pub async fn wait_messages(&self, n: usize, within: Duration) -> Vec<String> {
        crate::helpers::eventually(
            format!("{n} messages in the relay's mailbox"),
            within,
            || {
                let m = self.messages();
                if m.len() >= n {
                    Ok(m)
                } else {
                    Err(format!("it holds {}", m.len()))
                }
            },
        )
        .await
    }
}

/// The value of the first header `name` of a raw message, unfolded.
pub fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or(message);
    let head = head.split("\n\n").next().unwrap_or(head);
    let mut lines = head.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if !n.eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = v.trim().to_owned();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        return Some(value);
    }
    None
}

/// The message with quoted-printable undone (soft line breaks joined, `=XX` decoded), for
/// assertions on what a reader sees.
pub fn decoded(message: &str) -> String {
    let joined = message.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
