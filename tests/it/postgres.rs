//! A throwaway PostgreSQL cluster per test (`scripts/pg-throwaway`): its own temp dir and
//! free port, so the HA tests run at once; paused and resumed on the same port; stopped
//! and removed on drop, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-throwaway");

pub struct Pg {
    /// `postgres://amrelay@127.0.0.1:PORT/amrelay`
    pub url: String,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Pg {
    pub fn start() -> Pg {
        let tmp = tempfile::tempdir().unwrap();
        // Run as root, the server runs as its own user, which must get through to DIR.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let dir = tmp.path().join("pg");
        let out = Command::new(SCRIPT)
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-throwaway start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(url.starts_with("postgres://"), "{url}");
        Pg {
            url,
            dir,
            _tmp: tmp,
        }
    }

    /// Stops the server (fast shutdown: sessions ended, data kept); it refuses
    /// connections until `resume`.
    pub async fn pause(&self) {
        self.run("pause").await;
    }

    /// Starts it again on the same port.
    pub async fn resume(&self) {
        self.run("resume").await;
    }

    async fn run(&self, what: &str) {
        let out = tokio::process::Command::new(SCRIPT)
            .arg(what)
            .arg(&self.dir)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pg-throwaway {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A connection of the test's own, for what the test looks at or changes in the
    /// database.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// Deliveries not settled yet (pending or in flight) across every instance, on
    /// `channel` or on all.
    pub async fn open_deliveries(&self, channel: Option<&str>) -> i64 {
        self.client()
            .await
            .query_one(
                "SELECT COUNT(*) FROM deliveries
                 WHERE state IN ('pending', 'inflight') AND ($1::TEXT IS NULL OR channel = $1)",
                &[&channel],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until every instance's deliveries are settled.
    pub async fn wait_drained(&self, timeout: Duration) {
        self.wait_settled(None, timeout).await
    }

    /// Waits until no delivery on `channel` (or on any) is pending or in flight.
    pub async fn wait_settled(&self, channel: Option<&str>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = self.open_deliveries(channel).await;
            if open == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?}: {open} deliveries on {channel:?} still open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Config (TOML) for one amrelay of several on this database, named `instance`:
    /// writes the URL into `dir/pg.url`. `storage_keys`: more `[storage]` keys.
    pub fn config(&self, dir: &Path, instance: &str, storage_keys: &str) -> String {
        std::fs::write(dir.join("pg.url"), format!("{}\n", self.url)).unwrap();
        format!(
            "[server]\ninstance = \"{instance}\"\n\n[storage]\nbackend = \"postgres\"\nurl_file = \"{}/pg.url\"\nsslmode = \"disable\"\n{storage_keys}\n\n",
            dir.display()
        )
    }

    /// amrelay in-process on this database, named `instance`, with `channels` (TOML:
    /// channels and routes; `{dir}` is its temp dir).
    pub async fn app(&self, instance: &str, channels: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let config = self.config(dir.path(), instance, "") + channels;
        spawn_app_in(dir, &config).await
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).arg("stop").arg(&self.dir).output();
    }
}

/// A certificate authority and a server certificate for 127.0.0.1 (openssl), for a
/// cluster that speaks TLS.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path, name: &str) -> Certs {
        let p = |f: &str| dir.join(format!("{name}-{f}"));
        let (ca_key, ca, key, csr, cert, ext) = (
            p("ca.key"),
            p("ca.crt"),
            p("server.key"),
            p("server.csr"),
            p("server.crt"),
            p("ext.cnf"),
        );
        std::fs::write(&ext, "subjectAltName = IP:127.0.0.1\n").unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let s = |p: &PathBuf| p.display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &s(&ext),
            "-out",
            &s(&cert),
        ]);
        Certs { ca, cert, key }
    }
}

impl Pg {
    /// Turns TLS on with `certs` and restarts the server (same port).
    pub async fn enable_tls(&self, certs: &Certs) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.dir.join("data");
        let owner = std::fs::metadata(&data).unwrap();
        for (from, to) in [(&certs.cert, "server.crt"), (&certs.key, "server.key")] {
            let dest = data.join(to);
            std::fs::copy(from, &dest).unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(
                &dest,
                Some(std::os::unix::fs::MetadataExt::uid(&owner)),
                Some(std::os::unix::fs::MetadataExt::gid(&owner)),
            )
            .unwrap();
        }
        let conf = data.join("throwaway.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        self.pause().await;
        self.resume().await;
    }
}
