//! `[storage]`: where the outbox lives. SQLite under `path` (the embedded default, one
//! amrelay at a time), or a PostgreSQL database that several amrelays share
//! (docs/high-availability.md).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::raw::RawStorage;
use super::Problems;

#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// The SQLite store, and the files every backend keeps locally (the promotion
    /// endpoint's state, the collector's buffers).
    pub path: PathBuf,
    pub backend: StorageBackend,
    pub max_pending: u64,
    pub retention: Duration,
}

#[derive(Debug, Clone, Default)]
pub enum StorageBackend {
    #[default]
    Sqlite,
    Postgres(PostgresSettings),
}

#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// A libpq connection string or URL; it may hold a password, hence a secret.
    pub url: SecretString,
    pub pool_size: usize,
    pub tls: PostgresTls,
    /// How long a channel stays with an instance that stopped renewing its claim: the
    /// bound on taking over from a dead instance.
    pub lease: Duration,
}

/// `sslmode`. There is no "encrypt but trust anyone" mode: with TLS the server's
/// certificate is always checked (against `ca_file`, or the system's roots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresTls {
    Disable,
    /// TLS, the certificate checked against the CA and the host name.
    VerifyFull {
        ca_file: Option<PathBuf>,
    },
}

impl Default for PostgresTls {
    fn default() -> Self {
        PostgresTls::VerifyFull { ca_file: None }
    }
}

pub(super) fn storage(raw: &RawStorage, p: &mut Problems) -> StorageSettings {
    let backend = match raw.backend.as_deref() {
        None | Some("sqlite") => {
            for (key, set) in [
                ("url_file", raw.url_file.is_some()),
                ("url_env", raw.url_env.is_some()),
                ("pool_size", raw.pool_size.is_some()),
                ("sslmode", raw.sslmode.is_some()),
                ("ca_file", raw.ca_file.is_some()),
                ("lease", raw.lease.is_some()),
            ] {
                if set {
                    p.push::<()>(
                        format!("storage.{key}"),
                        "applies to backend = \"postgres\" only",
                    );
                }
            }
            StorageBackend::Sqlite
        }
        Some("postgres") => {
            postgres(raw, p).map_or(StorageBackend::Sqlite, StorageBackend::Postgres)
        }
        Some(other) => p.push(
            "storage.backend",
            format!("expected \"sqlite\" or \"postgres\", got {other:?}"),
        ),
    };
    StorageSettings {
        path: PathBuf::from(raw.path.as_deref().unwrap_or("./data")),
        backend,
        max_pending: match raw.max_pending {
            Some(0) => p.push("storage.max_pending", "must be above zero"),
            Some(n) => n,
            None => 100_000,
        },
        retention: p.duration("storage.retention", raw.retention.as_deref(), "7d"),
    }
}

fn postgres(raw: &RawStorage, p: &mut Problems) -> Option<PostgresSettings> {
    if raw.url_file.is_none() && raw.url_env.is_none() {
        p.push::<()>(
            "storage.url_file",
            "backend = \"postgres\" needs url_file or url_env (the connection string may hold a password)",
        );
    }
    let url = p.secret(
        "storage.url",
        raw.url_file.as_deref(),
        raw.url_env.as_deref(),
    );
    if let Some(u) = &url {
        use secrecy::ExposeSecret;
        if let Err(e) = u.expose_secret().parse::<tokio_postgres::Config>() {
            // The parser's message does not repeat the string, so no password leaks.
            p.push::<()>(
                "storage.url",
                format!("expected a connection string like \"postgres://amrelay@db.example.com/amrelay\": {e}"),
            );
        }
    }
    let pool_size = match raw.pool_size {
        Some(0) => p.push("storage.pool_size", "must be above zero"),
        Some(n) => n,
        None => 16,
    };
    let tls = match raw.sslmode.as_deref() {
        None | Some("verify-full") => PostgresTls::VerifyFull {
            ca_file: raw.ca_file.as_ref().map(PathBuf::from),
        },
        Some("disable") => {
            if raw.ca_file.is_some() {
                p.push::<()>("storage.ca_file", "set, but sslmode = \"disable\"");
            }
            PostgresTls::Disable
        }
        Some(other) => p.push(
            "storage.sslmode",
            format!("expected \"verify-full\" (the default) or \"disable\", got {other:?}"),
        ),
    };
    if let PostgresTls::VerifyFull { ca_file: Some(f) } = &tls {
        if !f.is_file() {
            p.push::<()>(
                "storage.ca_file",
                format!("{} is not a readable file", f.display()),
            );
        }
    }
    let lease = p.duration("storage.lease", raw.lease.as_deref(), "3s");
    if lease < Duration::from_secs(1) {
        p.push::<()>(
            "storage.lease",
            "must be at least 1s (it is renewed every third of it)",
        );
    }
    Some(PostgresSettings {
        url: url?,
        pool_size,
        tls,
        lease,
    })
}
