//! Installing amrelay: the systemd units under `deploy/systemd/` pass
//! `systemd-analyze verify` with no warning, the endpoint's unit keeps a promotion
//! through sudo possible, and the Debian package that `scripts/package` builds holds a
//! binary and configs that work. The package is unpacked with `dpkg -x` into a temp dir,
//! not installed with `dpkg -i`: an install would create a user and write /etc on the
//! machine running the tests (shared by other test runs); what `dpkg -i` adds over
//! `-x` is the maintainer scripts, which are checked with `sh -n` and read below.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::deploy::{assert_passes, assert_refused, deploy, path_str, read, replaced, run, shown};

/// The unit files under deploy/systemd.
fn units() -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(deploy("systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    units.sort();
    units
}

/// A root for `systemd-analyze verify --root`: the host's own units (the targets and
/// slices a unit refers to), `kill` for ExecReload, and `binary` where the unit's
/// ExecStart expects it. Without --root, verify looks for the binary on this machine.
fn verify_root(binary: &Path, binary_at: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let system = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&system).unwrap();
    for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let entry = entry.unwrap();
        let to = system.join(entry.file_name());
        if entry.file_type().unwrap().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), to).unwrap();
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
    for (from, to) in [(Path::new("/bin/kill"), "bin/kill"), (binary, binary_at)] {
        let to = root.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    }
    std::fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
    root
}

/// `systemd-analyze verify` exits 0 on an unknown key or a value it cannot parse, with
/// a warning: any output at all counts as a failure here.
fn verify(root: &Path, unit: &str) {
    let out = run(
        "systemd-analyze",
        &[
            "verify",
            "--man=no",
            &format!("--root={}", path_str(root)),
            unit,
        ],
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {unit}: {}",
        shown(&out)
    );
}

#[test]
fn every_systemd_unit_passes_systemd_analyze_verify_without_a_warning() {
    let units = units();
    assert!(units.len() >= 2, "{units:?}");
    let root = verify_root(
        Path::new(env!("CARGO_BIN_EXE_amrelay")),
        "usr/local/bin/amrelay",
    );
    for unit in &units {
        let name = unit.file_name().unwrap().to_str().unwrap();
        std::fs::copy(unit, root.path().join("etc/systemd/system").join(name)).unwrap();
        verify(root.path(), name);
    }

    // A typo in a key and an address family that does not exist: exit 0, but warnings.
    let broken = root.path().join("etc/systemd/system/amrelay.service");
    let text = read(&broken);
    for (from, to) in [
        ("ProtectSystem=strict", "ProtectSytem=strict"),
        (
            "RestrictAddressFamilies=AF_INET ",
            "RestrictAddressFamilies=AF_BOGUS ",
        ),
    ] {
        std::fs::write(&broken, replaced(&text, from, to)).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.path().display()))
            .arg("amrelay.service")
            .output()
            .unwrap();
        assert!(
            !out.stderr.is_empty() || !out.status.success(),
            "{from} -> {to}: systemd-analyze said nothing: {}",
            shown(&out)
        );
    }
}

/// The keys of a unit file, without comments: (key, value) in order.
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// systemd.exec(5): with `User=`, each of these implies NoNewPrivileges=yes (they are
/// built on seccomp), and then sudo, a setuid program, cannot gain root.
const IMPLY_NO_NEW_PRIVILEGES: [&str; 16] = [
    "SystemCallFilter",
    "SystemCallArchitectures",
    "SystemCallLog",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "PrivateDevices",
    "ProtectClock",
    "ProtectHostname",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "DynamicUser",
];

#[test]
fn the_endpoint_unit_lets_a_promotion_through_sudo_work_and_the_relay_unit_does_not() {
    let endpoint = settings(&read(&deploy("systemd/amrelay-endpoint.service")));
    let relay = settings(&read(&deploy("systemd/amrelay.service")));
    let get = |s: &[(String, String)], key: &str| -> Vec<String> {
        s.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };

    for key in IMPLY_NO_NEW_PRIVILEGES {
        assert!(
            get(&endpoint, key)
                .iter()
                .all(|v| v == "no" || v.is_empty()),
            "amrelay-endpoint.service sets {key}, which implies NoNewPrivileges: sudo would fail"
        );
    }
    assert_eq!(get(&endpoint, "NoNewPrivileges"), ["no"]);
    assert!(get(&endpoint, "PrivateUsers").iter().all(|v| v == "no"));
    assert_eq!(
        get(&endpoint, "User"),
        ["amrelay"],
        "amrelay itself is not root"
    );
    assert_eq!(
        get(&endpoint, "AmbientCapabilities"),
        [""],
        "and holds no capability"
    );
    let bounding = get(&endpoint, "CapabilityBoundingSet").join(" ");
    for cap in [
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_AUDIT_WRITE",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
    ] {
        assert!(
            bounding.split(' ').any(|c| c == cap),
            "{cap} missing: {bounding}"
        );
    }
    for cap in [
        "CAP_SYS_ADMIN",
        "CAP_SYS_MODULE",
        "CAP_SYS_TIME",
        "CAP_SYS_PTRACE",
        "CAP_BPF",
    ] {
        assert!(!bounding.contains(cap), "{cap} should stay out: {bounding}");
    }

    // The reason the endpoint has its own unit: the relay's sandbox stops sudo.
    assert_eq!(get(&relay, "NoNewPrivileges"), ["yes"]);
    assert!(get(&relay, "SystemCallFilter")
        .iter()
        .any(|v| v.contains("@privileged")));
    assert_eq!(get(&relay, "CapabilityBoundingSet"), [""]);
}

/// The version line `amrelay --version` prints.
fn version_line() -> String {
    format!("amrelay {}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn the_debian_package_holds_a_working_binary_units_and_configs() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().unwrap();
    // A debug build: the package's contents and scripts are what is tested here, and
    // the tests already built the debug binary. `scripts/package` alone builds release.
    // Stripped: compressing the 70 MB debug binary takes 40 s, the stripped one 2 s.
    let started = Instant::now();
    let out = Command::new(manifest.join("scripts/package"))
        .args(["--profile", "dev", "--fast", "--strip", "--output"])
        .arg(out_dir.path())
        .current_dir(manifest)
        .output()
        .unwrap();
    assert_passes("scripts/package --profile dev", &out);
    println!("scripts/package --profile dev: {:?}", started.elapsed());
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("no .deb in the output: {}", shown(&out)));
    let deb = path_str(&deb);

    // The control file: the name, the version, the dependencies, the scripts.
    let info = run("dpkg-deb", &["--info", deb]);
    assert_passes("dpkg-deb --info", &info);
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let version = format!("Version: {}-1", env!("CARGO_PKG_VERSION"));
    for expected in [
        "Package: amrelay",
        version.as_str(),
        "passwd",
        "Recommends: sudo",
        " postinst",
        " postrm",
        " prerm",
        " conffiles",
    ] {
        assert!(info.contains(expected), "{expected:?} not in:\n{info}");
    }
    let control = tempfile::tempdir().unwrap();
    assert_passes(
        "dpkg-deb --control",
        &run("dpkg-deb", &["--control", deb, path_str(control.path())]),
    );
    let conffiles = read(&control.path().join("conffiles"));
    for conf in [
        "/etc/amrelay/amrelay.toml",
        "/etc/amrelay/amrelay-endpoint.toml",
    ] {
        assert!(
            conffiles.lines().any(|l| l == conf),
            "{conf} not a conffile: {conffiles}"
        );
    }
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        assert_passes(
            &format!("sh -n {script}"),
            &run("sh", &["-n", path_str(&path)]),
        );
    }
    let postinst = read(&control.path().join("postinst"));
    for expected in [
        "useradd --system",
        "groupadd --system",
        "/etc/amrelay/webhook.token",
    ] {
        assert!(postinst.contains(expected), "postinst: no {expected:?}");
    }

    // Unpacked, not installed (see the module's comment).
    let root = tempfile::tempdir().unwrap();
    assert_passes("dpkg -x", &run("dpkg", &["-x", deb, path_str(root.path())]));
    let at = |p: &str| root.path().join(p);
    for file in [
        "usr/bin/amrelay",
        "lib/systemd/system/amrelay.service",
        "lib/systemd/system/amrelay-endpoint.service",
        "etc/amrelay/amrelay.toml",
        "etc/amrelay/amrelay-endpoint.toml",
        "usr/share/doc/amrelay/examples/amrelay.example.toml",
        "usr/share/doc/amrelay/runbook.md",
        "usr/share/doc/amrelay/copyright",
        "usr/share/amrelay/prometheus/amrelay.rules.yml",
        "usr/share/amrelay/alertmanager/alertmanager.yml",
        "usr/share/amrelay/prometheus/watchdog.rules.yml",
        "usr/share/amrelay/grafana/amrelay-failover.json",
        "usr/share/amrelay/grafana/provisioning/dashboards/amrelay.yml",
        "usr/share/amrelay/grafana/provisioning/datasources/prometheus.yml",
        "usr/share/man/man1/amrelay-drill.1.gz",
        // Made by the binary from its clap definitions (`amrelay man`, `completions`).
        "usr/share/man/man1/amrelay.1.gz",
        "usr/share/man/man1/amrelay-dead-letters-requeue.1.gz",
        "usr/share/bash-completion/completions/amrelay",
        "usr/share/zsh/vendor-completions/_amrelay",
        "usr/share/fish/vendor_completions.d/amrelay.fish",
    ] {
        assert!(at(file).is_file(), "{file} not in the package");
    }

    let amrelay = at("usr/bin/amrelay");
    let out = run(path_str(&amrelay), &["--version"]);
    assert_passes("amrelay --version", &out);
    // `amrelay 0.1.0 (REVISION)`: the revision is git's at build time.
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(said.starts_with(&format!("{} (", version_line())), "{said}");

    // The shipped config as is: valid once the postinst's token exists. The token and
    // the store are moved to the temp dir with amrelay's own overrides.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("webhook.token"), "0123456789abcdef\n").unwrap();
    let config = at("etc/amrelay/amrelay.toml");
    let check = |config: &Path, env: &[(&str, PathBuf)]| {
        Command::new(&amrelay)
            .args(["check-config", "--config", path_str(config)])
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .output()
            .unwrap()
    };
    let overrides = [
        (
            "AMRELAY__SERVER__BEARER_TOKEN_FILE",
            work.path().join("webhook.token"),
        ),
        ("AMRELAY__STORAGE__PATH", work.path().join("data")),
    ];
    assert_passes(
        "check-config on the shipped amrelay.toml",
        &check(&config, &overrides),
    );
    // Without the token it names the key (so the check above read that file).
    let out = check(&config, &overrides[1..]);
    assert_refused("check-config without the webhook token", &out);
    assert!(
        shown(&out).contains("server.bearer_token_file"),
        "{}",
        shown(&out)
    );

    // The endpoint's config, with its secret and its sudo (not on this machine) moved.
    std::fs::write(
        work.path().join("promotion.secret"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .unwrap();
    let mut endpoint = read(&at("etc/amrelay/amrelay-endpoint.toml"));
    endpoint = replaced(
        &endpoint,
        "/etc/amrelay/promotion.secret",
        path_str(&work.path().join("promotion.secret")),
    );
    endpoint = replaced(&endpoint, "\"/usr/bin/sudo\"", "\"/bin/true\"");
    let endpoint_config = work.path().join("amrelay-endpoint.toml");
    std::fs::write(&endpoint_config, endpoint).unwrap();
    assert_passes(
        "check-config on the shipped amrelay-endpoint.toml",
        &check(&endpoint_config, &overrides[1..]),
    );

    // The packaged units run the packaged binary, and verify.
    let verify_in = verify_root(&amrelay, "usr/bin/amrelay");
    for unit in ["amrelay.service", "amrelay-endpoint.service"] {
        let text = read(&at(&format!("lib/systemd/system/{unit}")));
        assert!(
            text.lines()
                .filter(|l| l.starts_with("Exec"))
                .all(|l| !l.contains("/usr/local/bin")),
            "{unit}: ExecStart must be /usr/bin/amrelay"
        );
        assert!(text.contains("ExecStart=/usr/bin/amrelay serve"), "{unit}");
        std::fs::write(verify_in.path().join("etc/systemd/system").join(unit), text).unwrap();
        verify(verify_in.path(), unit);
    }
}
