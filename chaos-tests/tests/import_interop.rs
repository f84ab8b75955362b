//! `vpnctl import` round trips against strongSwan: the test writes side A's
//! strongSwan configuration (a swanctl.conf with an include and several
//! connections, or an ipsec.conf with ipsec.secrets), vpnd on side A runs
//! what `vpnctl import` made of it, and charon on side B runs the mirror
//! configuration. Every tunnel comes up on both sides. The swanctl.conf is
//! first loaded by a charon of its own, so it is one strongSwan accepts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

/// One tunnel: name, child, proposals, the initiator's start action.
struct Tunnel {
    name: &'static str,
    child: &'static str,
    ike: &'static str,
    esp: &'static str,
    /// swanctl start_action on side A: vpnd starts it, or `vpnctl up`.
    start: bool,
}

const TUNNELS: [Tunnel; 3] = [
    Tunnel {
        name: "east",
        child: "net0",
        ike: "aes256gcm16-prfsha256-x25519",
        esp: "aes256gcm16",
        start: true,
    },
    Tunnel {
        name: "west",
        child: "net1",
        ike: "aes128gcm16-prfsha384-ecp384",
        esp: "aes128gcm16-ecp384",
        start: true,
    },
    Tunnel {
        name: "north",
        child: "net2",
        ike: "chacha20poly1305-prfsha512-ecp256",
        esp: "chacha20poly1305",
        start: false,
    },
];

fn psk(i: usize) -> String {
    format!("import-interop-secret-{i}")
}

/// Side A's selectors for tunnel i: 198.19.i.0/25 === 198.19.i.128/25.
fn lans(i: usize) -> (String, String) {
    (format!("198.19.{i}.0/25"), format!("198.19.{i}.128/25"))
}

fn lab(tag: &str) -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways(tag);
    let a_lans: Vec<String> = (0..TUNNELS.len())
        .map(|i| format!("198.19.{i}.1/25"))
        .collect();
    let b_lans: Vec<String> = (0..TUNNELS.len())
        .map(|i| format!("198.19.{i}.129/25"))
        .collect();
    lab.lan(&a, &a_lans.iter().map(String::as_str).collect::<Vec<_>>());
    lab.lan(&b, &b_lans.iter().map(String::as_str).collect::<Vec<_>>());
    (lab, a, b)
}

/// charon on B: the mirror of every tunnel, waiting for A.
fn charon_b(lab: &mut Lab, b: &Ns) -> Charon {
    let conns: Vec<CharonConn> = TUNNELS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut c = CharonConn::psk(
                t.name,
                "198.18.0.2",
                "198.18.0.1",
                &format!("b{i}.test"),
                &format!("a{i}.test"),
                &psk(i),
            );
            let (a_lan, b_lan) = lans(i);
            c.local_ts = b_lan;
            c.remote_ts = a_lan;
            c.child = t.child.into();
            c.proposals = t.ike.into();
            c.esp_proposals = t.esp.into();
            c
        })
        .collect();
    Charon::start(lab, b, "charon-b", &conns)
}

/// Side A as swanctl.conf: the first tunnel in the main file, the others
/// in conf.d/ (included), keys in `secrets`, and options vpnd drops.
fn swanctl_a(dir: &Path) -> std::path::PathBuf {
    let conn = |i: usize, t: &Tunnel| {
        let (a_lan, b_lan) = lans(i);
        format!(
            "  {name} {{\n    version = 2\n    local_addrs = 198.18.0.1\n    remote_addrs = 198.18.0.2\n    proposals = {ike}\n    encap = yes\n    mobike = no\n    fragmentation = yes\n    local {{\n      auth = psk\n      id = a{i}.test\n    }}\n    remote {{\n      auth = psk\n      id = b{i}.test\n    }}\n    children {{\n      {child} {{\n        local_ts = {a_lan}\n        remote_ts = {b_lan}\n        esp_proposals = {esp}\n        start_action = {start}\n        replay_window = 64\n      }}\n    }}\n  }}\n",
            name = t.name,
            ike = t.ike,
            child = t.child,
            esp = t.esp,
            start = if t.start { "start" } else { "none" },
        )
    };
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    let mut main = format!(
        "connections {{\n{}  include conf.d/*.conf\n}}\nsecrets {{\n",
        conn(0, &TUNNELS[0])
    );
    for (i, t) in TUNNELS.iter().enumerate().skip(1) {
        std::fs::write(dir.join(format!("conf.d/{}.conf", t.name)), conn(i, t)).unwrap();
    }
    for i in 0..TUNNELS.len() {
        main.push_str(&format!(
            "  ike-{i} {{\n    id-a = a{i}.test\n    id-b = b{i}.test\n    secret = \"{}\"\n  }}\n",
            psk(i)
        ));
    }
    main.push_str("}\n");
    let p = dir.join("swanctl.conf");
    std::fs::write(&p, main).unwrap();
    p
}

/// Side A as ipsec.conf + ipsec.secrets.
fn ipsec_a(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut conf = String::from(
        "config setup\n\tuniqueids=no\n\nconn %default\n\tkeyexchange=ikev2\n\tauthby=psk\n\tleft=198.18.0.1\n\tright=198.18.0.2\n\tforceencaps=yes\n\tkeyingtries=1\n\n",
    );
    let mut secrets = String::new();
    for (i, t) in TUNNELS.iter().enumerate() {
        let (a_lan, b_lan) = lans(i);
        conf.push_str(&format!(
            "conn {child}\n\tleftid=a{i}.test\n\trightid=b{i}.test\n\tleftsubnet={a_lan}\n\trightsubnet={b_lan}\n\tike={ike}!\n\tesp={esp}!\n\tauto={auto}\n\n",
            child = t.child,
            ike = t.ike,
            esp = t.esp,
            auto = if t.start { "start" } else { "add" },
        ));
        secrets.push_str(&format!("a{i}.test b{i}.test : PSK \"{}\"\n", psk(i)));
    }
    std::fs::write(dir.join("ipsec.secrets"), secrets).unwrap();
    let p = dir.join("ipsec.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

/// Runs `vpnctl import SRC --out OUT`; returns its report.
fn import(src: &Path, out: &Path) -> String {
    let o = Command::new(chaos_tests::vpnd::bin_dir().join("vpnctl"))
        .arg("import")
        .arg(src)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "vpnctl import failed:\n{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

const VPND_A: &str = "[daemon]\nlisten = [\"198.18.0.1\"]\ndataplane = \"none\"\ninclude = [\"imported/conf.d/*.toml\"]\nsecrets = [\"imported/secrets.toml\"]\n";

/// vpnd on A with the imported files; `up` what is not started; every
/// tunnel installed on both sides. `conns` are vpnd's connection names.
fn run_and_check(lab: &mut Lab, a: &Ns, charon: &Charon, conns: &[&str], manual: &str) {
    let v = Vpnd::start(lab, a, "vpnd-a", VPND_A, "", &[]);
    let up = v.ctl(&["up", manual]);
    assert!(up.ok(), "up {manual}: {up:?}\n{}", lab.log("vpnd-a"));
    let all = Lab::wait_until(Duration::from_secs(20), || {
        v.installed_children() == TUNNELS.len()
    });
    assert!(
        all,
        "vpnd:\n{}\ncharon:\n{}",
        lab.log("vpnd-a"),
        charon.list_sas()
    );
    for (name, t) in conns.iter().zip(&TUNNELS) {
        let c = v
            .installed_child(name)
            .unwrap_or_else(|| panic!("{name}: {}", v.conn(name)));
        assert_eq!(c["name"], t.child);
        let spi_in = c["spi_in"].as_str().unwrap().to_string();
        assert!(
            Lab::wait_until(Duration::from_secs(5), || charon.has_installed(t.child)),
            "charon has no {}:\n{}",
            t.child,
            charon.list_sas()
        );
        assert!(
            charon.list_sas().contains(&spi_in),
            "{spi_in}\n{}",
            charon.list_sas()
        );
    }
}

/// strongSwan itself takes side A's swanctl.conf as it is: a charon in a
/// namespace of its own loads it (connections, include, secrets).
fn strongswan_accepts(lab: &mut Lab, conf: &Path) {
    let c = lab.ns("c");
    let check = Charon::start(lab, &c, "charon-check", &[]);
    let (ok, out) = check.swanctl(&["--load-all", "--noprompt", "--file", conf.to_str().unwrap()]);
    assert!(ok, "strongSwan refuses {}:\n{out}", conf.display());
    assert!(out.contains("loaded ike secret 'ike-2'"), "{out}");
    let (_, conns) = check.swanctl(&["--list-conns"]);
    for t in &TUNNELS {
        assert!(conns.contains(&format!("{}: IKEv2", t.name)), "{conns}");
    }
}

#[test]
fn swanctl_conf_imported_into_vpnd_brings_every_tunnel_up_with_charon() {
    let (mut lab, a, b) = lab("impsw");
    let src = lab.dir().join("strongswan-a");
    let conf = swanctl_a(&src);
    strongswan_accepts(&mut lab, &conf);
    let report = import(&conf, &lab.dir().join("vpnd-a/imported"));
    for t in &TUNNELS {
        assert!(
            !report.contains(&format!("connections.{}.fragmentation", t.name)),
            "fragmentation = yes is what vpnd does: {report}"
        );
        assert!(
            report.contains(&format!(
                "connections.{}.children.{}.replay_window: not supported",
                t.name, t.child
            )),
            "{report}"
        );
    }
    assert!(
        report.contains("3 connection(s) converted (east, north, west), 3 pre-shared key(s)"),
        "{report}"
    );
    let charon = charon_b(&mut lab, &b);
    run_and_check(&mut lab, &a, &charon, &["east", "west", "north"], "north");
}

#[test]
fn ipsec_conf_imported_into_vpnd_brings_every_tunnel_up_with_charon() {
    let (mut lab, a, b) = lab("impip");
    let src = lab.dir().join("strongswan-a");
    let conf = ipsec_a(&src);
    let report = import(&conf, &lab.dir().join("vpnd-a/imported"));
    assert!(
        report.contains("config setup: uniqueids: not supported"),
        "{report}"
    );
    assert!(
        report.contains("3 connection(s) converted (net0, net1, net2), 3 pre-shared key(s)"),
        "{report}"
    );
    let charon = charon_b(&mut lab, &b);
    // ipsec.conf names the connection after the conn: net0, net1, net2.
    run_and_check(&mut lab, &a, &charon, &["net0", "net1", "net2"], "net2");
}
