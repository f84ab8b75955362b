//! `vpnctl import`: what it writes loads with vpnd's own loader, with the
//! keys and secrets the strongSwan files gave; Debian's swanctl.conf (as
//! shipped, and with every commented setting switched on) converts without
//! an error; `--check` writes nothing; existing files are not overwritten.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use control::config::{self, Auto, DpdAction, RemoteAddr};
use control::import::{self, Format, NoteKind, WriteOptions};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vpnd-import-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// vpnd.toml beside the imported files.
fn main_config(dir: &Path) -> PathBuf {
    let p = dir.join("vpnd.toml");
    std::fs::write(
        &p,
        "[daemon]\ninclude = [\"conf.d/*.toml\"]\nsecrets = [\"secrets.toml\"]\n\n[defaults]\nkeyingtries = 7\ndpd_delay = \"45s\"\n",
    )
    .unwrap();
    p
}

const SWANCTL: &str = r#"# three tunnels and their keys
connections {
    base {
        local_addrs = 198.18.0.1
        remote_addrs = 198.18.0.2
        proposals = aes256gcm16-prfsha256-x25519
        local {
            auth = psk
            id = a.test
        }
        remote {
            auth = psk
            id = b.test
        }
        children {
            net {
                local_ts = 198.19.1.0/24
                remote_ts = 198.19.2.0/24
                esp_proposals = aes256gcm16
                start_action = start
            }
        }
    }
    second : connections.base {
        local {
            auth = psk
            id = a2.test
        }
        remote {
            auth = psk
            id = b2.test
        }
        dpd_delay = 20s
        mobike = no
        fragmentation = force
        children {
            net {
                local_ts = 198.19.3.0/24
                remote_ts = 198.19.4.0/24
                start_action = trap
                dpd_action = restart
            }
        }
    }
    include conf.d/*.conf
}
secrets {
    ike-1 {
        id-1 = a.test
        id-2 = b.test
        secret = "first secret"
    }
    ike-2 {
        id = b2.test
        secret = 0sc2Vjb25k
    }
}
"#;

const THIRD: &str = "third {\n  remote_addrs = %any\n  local { auth = psk\n    id = a3.test }\n  remote { auth = psk }\n  children {\n    lan {\n      local_ts = 198.19.5.0/24\n      remote_ts = 0.0.0.0/0\n      mode = transport\n    }\n  }\n}\n";

#[test]
fn swanctl_conf_converts_and_loads_with_vpnds_loader() {
    let src = Dir::new("swanctl-src");
    let conf = src.write("swanctl.conf", SWANCTL);
    src.write("conf.d/third.conf", THIRD);
    let out = Dir::new("swanctl-out");
    let result = import::import(&conf, None, None).expect("converts");
    assert_eq!(result.format, Format::Swanctl);
    let names: Vec<&str> = result.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["base", "second", "third"]);
    let dropped: Vec<(usize, &str)> = result
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Dropped)
        .map(|n| (n.line, n.key.as_str()))
        .collect();
    assert_eq!(dropped, []);
    let report = result.report();
    assert!(
        report.contains("swanctl.conf:35: connections.second.fragmentation: changed: fragmentation = force: vpnd fragments only for a peer that announced support"),
        "{report}"
    );
    assert!(
        report.contains("3 connection(s) converted (base, second, third), 2 pre-shared key(s)"),
        "{report}"
    );

    let written = result
        .write(&WriteOptions {
            dir: out.0.clone(),
            force: false,
        })
        .unwrap();
    assert_eq!(written.connections.len(), 3);
    assert_eq!(written.connections[0], out.0.join("conf.d/base.toml"));
    let mode = std::fs::metadata(&written.secrets)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let cfg = config::load(&main_config(&out.0)).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let base = cfg.connection("base").unwrap();
    assert_eq!(base.auto, Auto::Start);
    assert_eq!(base.local_id, "a.test");
    assert_eq!(
        base.remote_addrs,
        [RemoteAddr::Ip("198.18.0.2".parse().unwrap())]
    );
    assert_eq!(base.keyingtries, 1, "swanctl's default, not [defaults]'");
    assert_eq!(
        base.dpd_delay,
        Duration::ZERO,
        "swanctl's default, not [defaults]'"
    );
    assert_eq!(base.dpd_action, DpdAction::Clear);
    assert_eq!(base.children[0].name, "net");
    let second = cfg.connection("second").unwrap();
    assert_eq!(second.auto, Auto::Route);
    assert_eq!(second.local_id, "a2.test");
    assert_eq!(
        second.local_addrs,
        ["198.18.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(second.dpd_delay, Duration::from_secs(20));
    assert_eq!(second.dpd_action, DpdAction::Restart);
    assert_eq!(
        second.children[0].local_ts,
        [ike::ts::parse_ts("198.19.3.0/24").unwrap()]
    );
    assert_eq!(
        second.children[0].esp_proposals, base.children[0].esp_proposals,
        "inherited from base"
    );
    let third = cfg.connection("third").unwrap();
    assert_eq!(third.remote_addrs, [RemoteAddr::Any]);
    assert_eq!(third.remote_id, "%any");
    assert_eq!(third.children[0].mode, ike::config::Mode::Transport);
    // The secrets serve the identities they named.
    assert!(cfg.secrets.psk_for("a.test", "b.test").is_some());
    assert!(cfg.secrets.psk_for("a2.test", "b2.test").is_some());
    assert!(cfg.secrets.psk_for("a3.test", "c.test").is_none());
    assert_eq!(cfg.secrets.len(), 2);
    let text = std::fs::read_to_string(&written.secrets).unwrap();
    assert!(text.contains("secret = \"first secret\""), "{text}");
    assert!(text.contains("secret = \"0sc2Vjb25k\""), "{text}");
}

const IPSEC: &str = "\
config setup
\tcharondebug=\"ike 2\"

conn %default
\tauthby=secret
\tkeyexchange=ikev2
\tleft=198.18.0.1
\tright=198.18.0.2
\tike=aes256gcm16-prfsha256-x25519!
\tesp=aes256gcm16!
\tdpddelay=15s
\tdpdaction=hold

conn one
\tleftsubnet=198.19.1.0/24
\trightsubnet=198.19.2.0/24
\tauto=start

conn two
\tleftid=@a2.test
\trightid=@b2.test
\tleftsubnet=198.19.3.0/24
\trightsubnet=198.19.4.0/24
\tmobike=yes
\tauto=route
";

#[test]
fn ipsec_conf_and_secrets_convert_and_load_with_vpnds_loader() {
    let src = Dir::new("ipsec-src");
    let conf = src.write("ipsec.conf", IPSEC);
    src.write(
        "ipsec.secrets",
        "198.18.0.1 198.18.0.2 : PSK \"one\"\n@a2.test @b2.test : PSK \"two\"\n",
    );
    let out = Dir::new("ipsec-out");
    let result = import::import(&conf, None, None).expect("converts");
    assert_eq!(result.format, Format::Ipsec);
    assert_eq!(result.secrets_source, Some(src.0.join("ipsec.secrets")));
    let keys: Vec<(usize, &str, NoteKind)> = result
        .notes
        .iter()
        .map(|n| (n.line, n.key.as_str(), n.kind))
        .collect();
    assert_eq!(
        keys,
        [
            (2, "config setup: charondebug", NoteKind::Dropped),
            (14, "conn one", NoteKind::Changed),
            (24, "conn two: mobike", NoteKind::Dropped),
        ]
    );
    result
        .write(&WriteOptions {
            dir: out.0.clone(),
            force: false,
        })
        .unwrap();
    let cfg = config::load(&main_config(&out.0)).unwrap_or_else(|e| panic!("{e}"));
    let one = cfg.connection("one").unwrap();
    assert_eq!(one.auto, Auto::Start);
    assert_eq!(one.local_id, "198.18.0.1");
    assert_eq!(one.remote_id, "198.18.0.2");
    assert_eq!(one.dpd_delay, Duration::from_secs(15));
    assert_eq!(one.dpd_action, DpdAction::Hold);
    assert_eq!(one.keyingtries, 3);
    assert_eq!(one.rekey_time, Duration::from_secs(3 * 3600 - 540));
    assert_eq!(one.children[0].rekey_time, Duration::from_secs(3600 - 540));
    assert_eq!(one.children[0].life_time, Some(Duration::from_secs(3600)));
    let two = cfg.connection("two").unwrap();
    assert_eq!(two.auto, Auto::Route);
    assert_eq!(two.remote_id, "@b2.test");
    assert!(cfg.secrets.psk_for("198.18.0.1", "198.18.0.2").is_some());
    assert!(cfg.secrets.psk_for("@a2.test", "@b2.test").is_some());
}

/// Debian's commented swanctl.conf with every `# key = value`, `# name {`
/// and `# }` switched on: syntax strongSwan accepts, every key it knows.
/// Left commented: the defaults documented as formulas
/// (`life_time = rekey_time + 10%`), which strongSwan refuses as values too.
fn uncomment(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start().strip_prefix("# ");
        let on = rest.filter(|r| {
            let name_ok = |n: &str| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_<>-".contains(c))
            };
            *r == "}"
                || r.strip_suffix(" {").is_some_and(name_ok)
                || r.split_once(" =")
                    .is_some_and(|(k, v)| name_ok(k) && !v.contains(" + "))
        });
        match on {
            Some(r) => out.push_str(&format!("{}{r}\n", &line[..indent])),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

#[test]
fn debians_swanctl_conf_converts_without_an_error() {
    let path = Path::new("/etc/swanctl/swanctl.conf");
    // strongswan-swanctl ships it; scripts/deps.sh installs that.
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (install strongswan-swanctl: scripts/deps.sh test)",
            path.display()
        )
    });
    // As shipped: everything is commented out.
    let r = import::import(path, None, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.connections.is_empty());
    assert!(r.psks.is_empty());
    // Every setting switched on.
    let dir = Dir::new("debian");
    let on = uncomment(&text);
    assert!(on.lines().filter(|l| l.trim() == "}").count() >= 20, "{on}");
    let p = dir.write("swanctl.conf", &on);
    let r = import::import(&p, None, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.connections.is_empty(), "'<conn>' is no name vpnd takes");
    let refused: Vec<&str> = r
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Refused)
        .map(|n| n.key.as_str())
        .collect();
    assert!(refused.contains(&"connections.<conn>"), "{refused:?}");
    assert!(refused.contains(&"pools.<name>"), "{refused:?}");
    let report = r.report();
    assert!(
        report.contains("authorities.<name>: not supported"),
        "{report}"
    );
    assert!(
        report.contains("secrets.eap<suffix>: not supported"),
        "{report}"
    );
}

#[test]
fn debians_ipsec_conf_converts_without_an_error() {
    let path = Path::new("/etc/ipsec.conf");
    if !path.exists() {
        eprintln!(
            "skipped: {} is not installed (strongswan-starter)",
            path.display()
        );
        return;
    }
    let r = import::import(path, None, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.format, Format::Ipsec);
    assert!(r.connections.is_empty(), "its samples are commented out");
}

fn vpnctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vpnctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn vpnctl_import_check_writes_nothing_and_never_overwrites() {
    let src = Dir::new("cli-src");
    let conf = src.write("swanctl.conf", SWANCTL);
    let out = Dir::new("cli-out");
    let target = out.0.join("etc");
    let (conf_s, target_s) = (conf.to_str().unwrap(), target.to_str().unwrap());
    let (code, stdout, stderr) = vpnctl(&["import", conf_s, "--out", target_s, "--check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("connections.second.fragmentation"),
        "{stdout}"
    );
    assert!(
        stdout.contains("include: ignored: 'conf.d/*.conf' matches no file"),
        "{stdout}"
    );
    assert!(stdout.contains("--check: nothing written"), "{stdout}");
    assert!(!target.exists());

    let (code, stdout, stderr) = vpnctl(&["import", conf_s, "--out", target_s]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "wrote {}",
            target.join("conf.d/base.toml").display()
        )),
        "{stdout}"
    );
    assert!(target.join("conf.d/second.toml").is_file());
    assert!(target.join("secrets.toml").is_file());

    // Again: nothing is overwritten, and it says which files exist.
    std::fs::write(target.join("conf.d/base.toml"), "# mine\n").unwrap();
    let (code, _, stderr) = vpnctl(&["import", conf_s, "--out", target_s]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("conf.d/base.toml: already exists (--force overwrites it)"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("conf.d/base.toml")).unwrap(),
        "# mine\n"
    );
    let (code, _, stderr) = vpnctl(&["import", conf_s, "--out", target_s, "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read_to_string(target.join("conf.d/base.toml"))
        .unwrap()
        .contains("[connections.base]"));

    // A broken file: the error has the line, and nothing is written.
    let bad = src.write("bad.conf", "connections {\n  c {\n    children {\n      n {\n        mode = tunel\n      }\n    }\n  }\n}\n");
    let fresh = out.0.join("fresh");
    let (code, _, stderr) = vpnctl(&[
        "import",
        bad.to_str().unwrap(),
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.conf:5: connections.c.children.n.mode: invalid mode 'tunel'"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing written"), "{stderr}");
    assert!(!fresh.exists());
}

/// Every prefix of the test files, and each with a stray `{ } " = # \n :`
/// put in, gives a report or an error, never a panic.
#[test]
fn truncated_and_mangled_files_never_panic() {
    let dir = Dir::new("mangle");
    for (name, text) in [("swanctl.conf", SWANCTL), ("ipsec.conf", IPSEC)] {
        let mut runs = 0;
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        let mut inputs: Vec<String> = bounds.iter().map(|&i| text[..i].to_string()).collect();
        for &i in bounds.iter().step_by(5) {
            for c in ["{", "}", "\"", "=", "#", "\n", ":", "\\"] {
                inputs.push(format!("{}{c}{}", &text[..i], &text[i..]));
            }
        }
        for input in inputs {
            let p = dir.write(name, &input);
            let _ = import::import(&p, None, None);
            runs += 1;
        }
        assert!(runs > 1000, "{runs}");
    }
}
