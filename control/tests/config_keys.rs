//! Configuration keys: the ike view of a connection, `load --file`,
//! equality, defaults, dataplane and lifetime keys, state_dir, max_child_sas
//! and pfs.

use std::time::Duration;

use control::config::{self, AuthMethod, Dataplane};
use control::secrets::Secrets;
use ike::config::Mode;
use ike::ts::parse_ts;

mod common;
use common::*;

#[test]
fn to_peer_config_builds_the_ike_view() {
    let dir = Dir::new("peer");
    let text = DESIGN_EXAMPLE
        .replace("retransmit_timeout = \"2s\"", "retransmit_timeout = \"3s\"")
        .replace("retransmit_tries = 5", "retransmit_tries = 7")
        .replace("encap = false", "encap = true")
        + r#"
[connections.oregon.children.dmz]
local_ts = ["198.19.3.0/24[tcp/443]"]
remote_ts = ["198.19.4.0/24", "2001:db8::/32"]
mode = "transport"
"#;
    let main = dir.write("vpnd.toml", &text);
    dir.write_secret("secrets.toml", SECRETS);
    let c = ok(config::load(&main));
    let o = &c.connections[0];
    let p = o.to_peer_config(&c.secrets).unwrap();
    assert_eq!(p.name, "oregon");
    assert_eq!(p.local_id, ike::config::parse_identity("a.test").unwrap());
    assert_eq!(
        p.remote_id,
        Some(ike::config::parse_identity("b.test").unwrap())
    );
    assert_eq!(
        p.psk.as_ref().map(|k| k.0.to_vec()),
        Some(b"correct horse battery staple".to_vec())
    );
    assert_eq!(p.ike_proposals, vec![ike("aes256gcm16-prfsha256-x25519")]);
    assert_eq!(
        p.retransmit,
        ike::config::Retransmit {
            timeout: Duration::from_secs(3),
            tries: 7,
            max_timeout: Duration::from_secs(60),
        }
    );
    assert!(p.encap);
    assert!(p.initial_contact);
    let children: Vec<(&str, Mode)> = p
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.mode))
        .collect();
    assert_eq!(children, [("net", Mode::Tunnel), ("dmz", Mode::Transport)]);
    let dmz = p.child("dmz").unwrap();
    assert_eq!(
        dmz.local_ts,
        vec![parse_ts("198.19.3.0/24[tcp/443]").unwrap()]
    );
    assert_eq!(
        dmz.remote_ts,
        vec![
            parse_ts("198.19.4.0/24").unwrap(),
            parse_ts("2001:db8::/32").unwrap()
        ]
    );
    assert_eq!(dmz.esp_proposals, vec![esp("default")]);
    assert_eq!(
        p.child("net").unwrap().esp_proposals,
        vec![esp("aes256gcm16")]
    );

    // No matching secret: still a config; ike reports it at auth time.
    let p = o.to_peer_config(&Secrets::empty()).unwrap();
    assert!(p.psk.is_none());
}

#[test]
fn pubkey_needs_a_local_cert() {
    let dir = Dir::new("pubkey");
    let main = dir.write(
        "vpnd.toml",
        &format!("[connections.pk]\n{CONN}auth = \"pubkey\"\n{}", child("pk")),
    );
    let c = ok(config::load(&main));
    assert_eq!(c.connections[0].auth, AuthMethod::Pubkey);
    assert_eq!(
        c.connections[0].to_peer_config(&c.secrets).unwrap_err(),
        "auth = pubkey needs local_cert (our certificate)"
    );
}

#[test]
fn load_extra_reads_one_conf_d_file() {
    let dir = Dir::new("extra");
    let main = dir.write(
        "vpnd.toml",
        &format!(
            "[daemon]\ninclude = [\"conf.d/*.toml\"]\n\n[defaults]\nkeyingtries = 9\nretry_max = \"10m\"\n\n{}",
            conn("main")
        ),
    );
    let existing = dir.write("conf.d/existing.toml", &conn("existing"));
    let c = ok(config::load(&main));
    assert_eq!(c.connections.len(), 2);

    // A new file, not yet matched when the config was loaded, with its own
    // [defaults] layered over the main file's.
    let new = dir.write(
        "conf.d/new.toml",
        &format!(
            "[defaults]\nkeyingtries = 1\n\n{}\n[connections.new2]\n{CONN}keyingtries = 4\n\n{}",
            conn("new1"),
            child("new2")
        ),
    );
    let conns = config::load_extra(&c, &new).unwrap();
    let got: Vec<(&str, u32, Duration, usize)> = conns
        .iter()
        .map(|c| (c.name.as_str(), c.keyingtries, c.retry_max, c.line))
        .collect();
    assert_eq!(
        got,
        [
            ("new1", 1, Duration::from_secs(600), 4),
            ("new2", 4, Duration::from_secs(600), 13),
        ]
    );
    assert!(conns.iter().all(|c| c.file == new));

    // Re-reading a file the config already includes is not a duplicate...
    let again = config::load_extra(&c, &existing).unwrap();
    assert_eq!(again, vec![c.connection("existing").unwrap().clone()]);

    // ... but taking another file's name is.
    let clash = dir.write("conf.d/clash.toml", &conn("main"));
    assert_eq!(
        config::load_extra(&c, &clash).unwrap_err().to_string(),
        format!(
            "{}:1: connections.main: duplicate connection name 'main': already defined at {}:8",
            d(&clash),
            d(&main)
        )
    );

    // [daemon] is refused in an extra file too.
    let bad = dir.write("conf.d/bad.toml", "[scheduler]\nmax_concurrent = 2\n");
    assert_eq!(
        config::load_extra(&c, &bad).unwrap_err().to_string(),
        format!(
            "{}:1: scheduler: [scheduler] is only allowed in the main configuration file ({}); an included file may only define [connections.*]",
            d(&bad),
            d(&main)
        )
    );
}

#[test]
fn equality_ignores_position_but_not_settings() {
    let dir = Dir::new("equality");
    let main = dir.write("vpnd.toml", &conn("t"));
    let before = ok(config::load(&main)).connections.remove(0);
    let main = dir.write("vpnd.toml", &format!("# a comment\n\n{}", conn("t")));
    let moved = ok(config::load(&main)).connections.remove(0);
    assert_eq!(moved.line, before.line + 2);
    assert_eq!(moved, before);
    let main = dir.write(
        "vpnd.toml",
        &conn("t").replace(
            "remote_ts = [\"198.19.2.0/24\"]",
            "remote_ts = [\"198.19.9.0/24\"]",
        ),
    );
    let changed = ok(config::load(&main)).connections.remove(0);
    assert_ne!(changed, before);
}

#[test]
fn defaults_errors_and_children_in_defaults() {
    let dir = Dir::new("deferr");
    let text = format!(
        "[defaults]\nkeyingtries = \"three\"\nremote_adrs = []\n\n[defaults.children.net]\nlocal_ts = []\n\n{}",
        conn("t")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:2: defaults.keyingtries: expected an integer, found a string"),
            format!("{m}:3: defaults.remote_adrs: unknown key 'remote_adrs' (did you mean 'remote_addrs'?)"),
            format!("{m}:5: defaults.children: children cannot be set in [defaults]: each connection defines its own"),
        ]
    );
}

#[test]
fn userspace_dataplane_keys_and_lifetimes() {
    let dir = Dir::new("userspace");
    let text = format!(
        "[daemon]\ndataplane = \"userspace\"\ntun = \"esp0\"\nworkers = 2\nkeep_alive = \"5s\"\nroute_table = 100\nfwmark = 0x4000\n\n{}rekey_bytes = 1000000\nlife_bytes = 2000000\nrekey_packets = 100\nlife_packets = 200\nlife_time = \"2h\"\n",
        conn("a")
    );
    let c = ok(config::load(&dir.write("vpnd.toml", &text)));
    assert_eq!(c.daemon.dataplane, Dataplane::Userspace);
    assert_eq!(c.daemon.tun, "esp0");
    assert_eq!(c.daemon.workers, 2);
    assert_eq!(c.daemon.keep_alive, Duration::from_secs(5));
    assert_eq!((c.daemon.route_table, c.daemon.fwmark), (100, 0x4000));
    let ch = &c.connections[0].children[0];
    assert_eq!((ch.rekey_bytes, ch.life_bytes), (1_000_000, 2_000_000));
    assert_eq!((ch.rekey_packets, ch.life_packets), (100, 200));
    assert_eq!(ch.life_time, Some(Duration::from_secs(7200)));

    // Soft limits at or above the hard ones, and a bad device name, are
    // refused with the key named.
    let bad = format!(
        "[daemon]\ntun = \"this-name-is-too-long\"\nroute_table = 254\nfwmark = 0\n\n{}rekey_packets = 300\nlife_packets = 200\nlife_time = \"10m\"\n",
        conn("a")
    );
    let e = errors(config::load(&dir.write("bad.toml", &bad))).join("\n");
    assert!(e.contains("daemon.tun: invalid interface name"), "{e}");
    assert!(
        e.contains("daemon.route_table: invalid value 254: tables 253, 254 and 255"),
        "{e}"
    );
    assert!(e.contains("daemon.fwmark: invalid value 0"), "{e}");
    assert!(
        e.contains("rekey_packets (300) must be below life_packets (200)"),
        "{e}"
    );
    assert!(
        e.contains("life_time must be longer than rekey_time"),
        "{e}"
    );
}

#[test]
fn state_dir_defaults_resolves_relative_and_can_be_turned_off() {
    let dir = Dir::new("statedir");
    let c = ok(config::load(&dir.write("vpnd.toml", &conn("a"))));
    assert_eq!(
        c.daemon.state_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/vpnd"))
    );
    let main = dir.write(
        "rel.toml",
        &format!("[daemon]\nstate_dir = \"state\"\n\n{}", conn("a")),
    );
    let c = ok(config::load(&main));
    assert_eq!(
        c.daemon.state_dir,
        Some(main.parent().unwrap().join("state"))
    );
    let c = ok(config::load(&dir.write(
        "off.toml",
        &format!("[daemon]\nstate_dir = \"\"\n\n{}", conn("a")),
    )));
    assert_eq!(c.daemon.state_dir, None);
    let e = errors(config::load(&dir.write(
        "bad.toml",
        &format!(
            "[daemon]\nstate_dir = \"/var/lib/../../etc\"\n\n{}",
            conn("a")
        ),
    )))
    .join("\n");
    assert!(
        e.contains("daemon.state_dir: invalid directory '/var/lib/../../etc': '..' is not allowed"),
        "{e}"
    );
    let e = errors(config::load(&dir.write(
        "typo.toml",
        &format!("[daemon]\nstate_dri = \"/x\"\n\n{}", conn("a")),
    )))
    .join("\n");
    assert!(e.contains("did you mean 'state_dir'"), "{e}");
}

#[test]
fn max_child_sas_defaults_inherits_and_is_bounded() {
    let dir = Dir::new("maxchild");
    let text = format!(
        r#"[defaults]
max_child_sas = 8

[connections.t]
{CONN}{}
[connections.u]
{CONN}max_child_sas = 0
{}
[connections.v]
{CONN}max_child_sas = 10001
{}"#,
        child("t"),
        child("u"),
        child("v")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:16: connections.u.max_child_sas: invalid value 0: must be between 1 and 10000"),
            format!("{m}:25: connections.v.max_child_sas: invalid value 10001: must be between 1 and 10000"),
        ]
    );
    let good = dir.write(
        "good.toml",
        &format!(
            "[defaults]\nmax_child_sas = 8\n\n[connections.t]\n{CONN}{}\n[connections.w]\n{CONN}{}",
            child("t"),
            child("w")
        ),
    );
    let c = ok(config::load(&good));
    assert_eq!(c.connections[0].max_child_sas, 8, "inherited");
    let only = dir.write(
        "one.toml",
        &format!("[connections.w]\n{CONN}{}", child("w")),
    );
    let c = ok(config::load(&only));
    assert_eq!(
        c.connections[0].max_child_sas,
        ike::config::DEFAULT_MAX_CHILD_SAS
    );
    let secrets = control::secrets::Secrets::default();
    let peer = c.connections[0].to_peer_config(&secrets).unwrap();
    assert_eq!(peer.max_child_sas, 64);
}

#[test]
fn pfs_prefers_by_default_and_require_needs_a_group() {
    let dir = Dir::new("pfs");
    let c = ok(config::load(&dir.write("vpnd.toml", &conn("a"))));
    assert!(!c.connections[0].children[0].pfs_required);
    let strict = dir.write(
        "strict.toml",
        &format!(
            "{}esp_proposals = [\"aes256gcm16-x25519\"]\npfs = \"require\"\n",
            conn("a")
        ),
    );
    let c = ok(config::load(&strict));
    assert!(c.connections[0].children[0].pfs_required);
    let no_group = dir.write("nogroup.toml", &format!("{}pfs = \"require\"\n", conn("a")));
    let e = errors(config::load(&no_group)).join("\n");
    assert!(
        e.contains(
            "connections.a.children.net.pfs: pfs = \"require\" needs a group in esp_proposals"
        ),
        "{e}"
    );
    let bad = dir.write("bad.toml", &format!("{}pfs = \"yes\"\n", conn("a")));
    let e = errors(config::load(&bad)).join("\n");
    assert!(
        e.contains("connections.a.children.net.pfs: invalid value 'yes'"),
        "{e}"
    );
}

#[test]
fn fragment_size_defaults_inherits_is_bounded_and_reaches_the_peer_config() {
    let dir = Dir::new("fragsize");
    let text = format!(
        r#"[defaults]
fragment_size = 1400

[connections.t]
{CONN}{}
[connections.u]
{CONN}fragment_size = 575
{}
[connections.v]
{CONN}fragment_size = 65536
{}"#,
        child("t"),
        child("u"),
        child("v")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    let why = "must be 0 (no fragmentation) or between 576 and 65535";
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:16: connections.u.fragment_size: invalid value 575: {why}"),
            format!("{m}:25: connections.v.fragment_size: invalid value 65536: {why}"),
        ]
    );
    let good = dir.write(
        "good.toml",
        &format!(
            "[defaults]\nfragment_size = 1400\n\n[connections.t]\n{CONN}{}\n[connections.w]\n{CONN}fragment_size = 0\n{}",
            child("t"),
            child("w")
        ),
    );
    let c = ok(config::load(&good));
    assert_eq!(c.connections[0].fragment_size, 1400, "inherited");
    assert_eq!(c.connections[1].fragment_size, 0, "0 turns it off");
    let secrets = Secrets::default();
    let peer = c.connections[1]
        .to_peer_config(&secrets)
        .expect("peer config");
    assert_eq!(peer.fragment_size, 0);
    let only = dir.write(
        "one.toml",
        &format!("[connections.w]\n{CONN}{}", child("w")),
    );
    let c = ok(config::load(&only));
    assert_eq!(
        c.connections[0].fragment_size,
        ike::config::DEFAULT_FRAGMENT_SIZE
    );
}
