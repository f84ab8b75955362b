//! The Debian package: `cargo deb` builds it (from this build's binaries,
//! profile dev), `dpkg --root` installs it into a scratch root, and every
//! file is there with its mode; the postinst creates the secrets file with
//! mode 0600; the shipped configuration loads; no file collides with one of
//! an installed strongSwan package, and the package declares no conflict.
//!
//! Needs cargo-deb (`cargo install cargo-deb --locked`; scripts/test-all
//! installs it when absent) and root (dpkg).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package, built once for the tests of this binary.
fn deb() -> &'static Path {
    static DEB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEB.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        build_deb(&dir)
    })
}

fn build_deb(out_dir: &Path) -> PathBuf {
    let have = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have,
        "cargo-deb is missing: cargo install cargo-deb --locked (scripts/test-all installs it)"
    );
    xtask::write_docs(&xtask::docs_dir()).expect("docs");
    let deb = out_dir.join("vpnd.deb");
    run(Command::new(cargo())
        .current_dir(xtask::workspace_root())
        .args([
            "deb",
            "--package",
            "control",
            "--profile",
            "dev",
            "--no-strip",
        ])
        .arg("--output")
        .arg(&deb));
    deb
}

/// (path, mode) of each expected file, below the root.
const FILES: &[(&str, u32)] = &[
    ("usr/sbin/vpnd", 0o755),
    ("usr/sbin/vpnctl", 0o755),
    ("usr/lib/systemd/system/vpnd.service", 0o644),
    ("etc/vpnd/vpnd.toml", 0o644),
    ("etc/vpnd/conf.d/README", 0o644),
    ("usr/share/man/man8/vpnd.8", 0o644),
    ("usr/share/man/man8/vpnctl.8", 0o644),
    ("usr/share/man/man5/vpnd.toml.5", 0o644),
    ("usr/share/bash-completion/completions/vpnd", 0o644),
    ("usr/share/bash-completion/completions/vpnctl", 0o644),
    ("usr/share/zsh/vendor-completions/_vpnd", 0o644),
    ("usr/share/zsh/vendor-completions/_vpnctl", 0o644),
    ("usr/share/doc/vpnd/examples/updown-nftables.sh", 0o755),
];

/// Man pages may be compressed by the packager.
fn find(root: &Path, rel: &str) -> Option<PathBuf> {
    [rel.to_string(), format!("{rel}.gz")]
        .into_iter()
        .map(|r| root.join(r))
        .find(|p| p.exists())
}

#[test]
fn package_installs_every_file_with_its_mode() {
    let scratch =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deb-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let deb = deb();

    // No Conflicts/Breaks/Replaces: it installs beside strongSwan.
    for field in ["Conflicts", "Breaks", "Replaces"] {
        let v = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field));
        assert!(v.trim().is_empty(), "{field}: {v}");
    }
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));

    // A scratch root with an empty dpkg database.
    let root = scratch.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends", "-i"])
        .arg(deb));

    for (rel, mode) in FILES {
        let p = find(&root, rel).unwrap_or_else(|| panic!("{rel} is not installed:\n{listing}"));
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, *mode, "mode of {rel}");
        assert_eq!((m.uid(), m.gid()), (0, 0), "owner of {rel}");
    }
    let conf_d = std::fs::metadata(root.join("etc/vpnd/conf.d")).unwrap();
    assert!(conf_d.is_dir());
    // The postinst made the secrets file, root's and mode 0600.
    let secrets = root.join("etc/vpnd/secrets.toml");
    let m = std::fs::metadata(&secrets).expect("postinst creates /etc/vpnd/secrets.toml");
    assert_eq!(m.permissions().mode() & 0o7777, 0o600, "secrets.toml mode");
    assert_eq!(m.uid(), 0);
    // The configuration is a conffile.
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/vpnd.conffiles")).unwrap();
    assert!(
        conffiles.lines().any(|l| l == "/etc/vpnd/vpnd.toml"),
        "{conffiles}"
    );

    // The installed binaries run, and the shipped configuration (with the
    // secrets file the postinst wrote) loads.
    let v = run(Command::new(root.join("usr/sbin/vpnctl")).arg("--version"));
    assert!(v.starts_with("vpnctl "), "{v}");
    let cfg = control::config::load(&root.join("etc/vpnd/vpnd.toml"));
    let cfg = cfg.unwrap_or_else(|e| panic!("the shipped vpnd.toml does not load:\n{e}"));
    assert!(cfg.connections.is_empty());

    // A second install (an upgrade) keeps an edited secrets file.
    std::fs::write(&secrets, "# mine\n").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends", "-i"])
        .arg(deb));
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), "# mine\n");

    // Purge removes the secrets file too.
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--purge",
            "vpnd",
        ]));
    assert!(!secrets.exists(), "purge removes secrets.toml");
    assert!(!root.join("usr/sbin/vpnd").exists());
    let _ = std::fs::remove_dir_all(&scratch);
}

/// No file of the package is also shipped by an installed strongSwan
/// package (charon, swanctl, starter, plugins), so both can be installed.
#[test]
fn package_shares_no_file_with_strongswan() {
    let deb = deb();
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let ours: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    assert!(ours.iter().any(|p| p == "/usr/sbin/vpnd"), "{listing}");
    let pkgs =
        run(Command::new("dpkg-query").args(["-W", "-f", "${Package} ${db:Status-Status}\n"]));
    let strongswan: Vec<&str> = pkgs
        .lines()
        .filter(|l| l.ends_with(" installed"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.contains("strongswan") || p.contains("charon"))
        .collect();
    assert!(
        !strongswan.is_empty(),
        "no strongSwan package is installed to compare with (scripts/deps.sh installs them)"
    );
    for p in &strongswan {
        let files = run(Command::new("dpkg-query").args(["-L", p]));
        for f in files.lines() {
            if Path::new(f).is_dir() {
                continue;
            }
            assert!(!ours.iter().any(|o| o == f), "{f} is in both vpnd and {p}");
        }
    }
    // Nor do the names clash with strongSwan's commands and units.
    for name in [
        "/usr/sbin/ipsec",
        "/usr/sbin/swanctl",
        "/usr/sbin/charon-systemd",
    ] {
        assert!(!ours.iter().any(|o| o == name));
    }
}
