//! swanctl.conf conversion: every supported key, what is listed, what is
//! refused, and the errors.

use super::*;
use crate::import::test_util::*;
use crate::import::{Collect, NoteKind, Val};

fn run(text: &str) -> Collect {
    let mut out = Collect::default();
    convert(Path::new("swanctl.conf"), text, &mut out);
    out
}

fn ok(text: &str) -> Collect {
    without_errors(run(text))
}

const FULL: &str = r#"
connections {
    gw {
        version = 2
        local_addrs = 198.18.0.1
        remote_addrs = 198.18.0.2
        proposals = aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256
        encap = yes
        fragmentation = no
        dpd_delay = 10s
        rekey_time = 2h
        keyingtries = 0
        local {
            auth = psk
            id = a.test
        }
        remote {
            auth = psk
            id = @b.test
        }
        children {
            net {
                local_ts = 198.19.1.0/24, 198.19.3.0/24[tcp/443]
                remote_ts = 198.19.2.0/24
                esp_proposals = aes256gcm16-x25519
                mode = tunnel
                rekey_time = 30m
                life_time = 40m
                rekey_bytes = 1m
                life_bytes = 2m
                rekey_packets = 1000
                life_packets = 2000
                updown = /etc/vpnd/updown.sh
                start_action = start
                dpd_action = restart
            }
            host {
                mode = transport
                start_action = start
            }
        }
    }
}
secrets {
    ike-gw {
        id-a = a.test
        id-b = b.test
        secret = "s3cret with spaces"
    }
    ike-any {
        secret = 0x0102
    }
}
"#;

#[test]
fn every_supported_key_is_converted() {
    let out = ok(FULL);
    assert!(out.notes.is_empty(), "nothing to report: {:#?}", out.notes);
    let c = conn(&out, "gw");
    assert_eq!(c.line, 3);
    assert_eq!(c.get("local_addrs"), Some(&l(&["198.18.0.1"])));
    assert_eq!(c.get("remote_addrs"), Some(&l(&["198.18.0.2"])));
    assert_eq!(c.get("local_id"), Some(&s("a.test")));
    assert_eq!(c.get("remote_id"), Some(&s("@b.test")));
    assert_eq!(c.get("auth"), Some(&s("psk")));
    assert_eq!(
        c.get("proposals"),
        Some(&l(&[
            "aes256gcm16-prfsha256-x25519",
            "aes128gcm16-prfsha256-ecp256"
        ]))
    );
    assert_eq!(c.get("auto"), Some(&s("start")));
    assert_eq!(c.get("rekey_time"), Some(&s("2h")));
    assert_eq!(c.get("dpd_delay"), Some(&s("10s")));
    assert_eq!(c.get("dpd_action"), Some(&s("restart")));
    assert_eq!(c.get("keyingtries"), Some(&Val::Int(0)));
    assert_eq!(c.get("encap"), Some(&Val::Bool(true)));
    assert_eq!(c.get("fragment_size"), Some(&Val::Int(0)));
    let net = &c.children[0];
    assert_eq!(net.name, "net");
    assert_eq!(
        net.get("local_ts"),
        Some(&l(&["198.19.1.0/24", "198.19.3.0/24[tcp/443]"]))
    );
    assert_eq!(net.get("remote_ts"), Some(&l(&["198.19.2.0/24"])));
    assert_eq!(net.get("esp_proposals"), Some(&l(&["aes256gcm16-x25519"])));
    assert_eq!(net.get("mode"), Some(&s("tunnel")));
    assert_eq!(net.get("rekey_time"), Some(&s("30m")));
    assert_eq!(net.get("life_time"), Some(&s("40m")));
    assert_eq!(net.get("rekey_bytes"), Some(&Val::Int(1 << 20)));
    assert_eq!(net.get("life_bytes"), Some(&Val::Int(2 << 20)));
    assert_eq!(net.get("rekey_packets"), Some(&Val::Int(1000)));
    assert_eq!(net.get("life_packets"), Some(&Val::Int(2000)));
    assert_eq!(net.get("updown"), Some(&s("/etc/vpnd/updown.sh")));
    assert_eq!(
        net.get("pfs"),
        Some(&s("require")),
        "a group in every ESP proposal"
    );
    // The second child: strongSwan's defaults, "dynamic" selectors.
    let host = &c.children[1];
    assert_eq!(host.get("local_ts"), Some(&l(&["198.18.0.1/32"])));
    assert_eq!(host.get("remote_ts"), Some(&l(&["198.18.0.2/32"])));
    assert_eq!(host.get("esp_proposals"), Some(&l(&["default"])));
    assert_eq!(host.get("mode"), Some(&s("transport")));
    assert_eq!(host.get("rekey_time"), Some(&s("1h")));
    assert_eq!(host.get("pfs"), None);

    assert_eq!(out.psks.len(), 2);
    assert_eq!(out.psks[0].ids, ["a.test", "b.test"]);
    assert_eq!(&*out.psks[0].secret, "s3cret with spaces");
    assert_eq!(out.psks[1].ids, ["%any"]);
    assert_eq!(&*out.psks[1].secret, "0x0102");
}

#[test]
fn strongswan_defaults_are_written_where_vpnd_differs() {
    let out = ok("connections { c { remote_addrs = 198.18.0.2\n local { auth = psk\n id = a }\n remote { auth = psk }\n children { x { local_ts = 10.0.0.0/8\n remote_ts = 10.1.0.0/16 } } } }\n");
    let c = conn(&out, "c");
    assert_eq!(c.get("local_addrs"), Some(&l(&["%any"])));
    assert_eq!(c.get("remote_id"), Some(&s("%any")));
    assert_eq!(c.get("proposals"), Some(&l(&["default"])));
    assert_eq!(c.get("auto"), Some(&s("add")), "start_action = none");
    assert_eq!(c.get("dpd_delay"), Some(&s("0s")), "swanctl: no DPD");
    assert_eq!(c.get("dpd_action"), Some(&s("clear")));
    assert_eq!(c.get("keyingtries"), Some(&Val::Int(1)));
    assert_eq!(c.get("rekey_time"), Some(&s("4h")));
    assert_eq!(c.get("encap"), Some(&Val::Bool(false)));
}

#[test]
fn unsupported_options_are_listed_with_line_key_and_connection() {
    let text = "connections {\n  gw {\n    remote_addrs = 198.18.0.2\n    local_addrs = 198.18.0.1\n    mobike = yes\n    mobike_typo = 1\n    proposals = aes256-sha256-modp2048, aes256gcm16-prfsha256-x25519\n    local { auth = psk }\n    remote {\n      auth = psk\n      certs = peer.pem\n    }\n    children {\n      net {\n        local_ts = 10.1.0.0/16\n        remote_ts = 10.2.0.0/16\n        replay_window = 64\n        close_action = trap\n        policies = yes\n      }\n    }\n  }\n}\n";
    let out = ok(text);
    assert_eq!(out.connections.len(), 1);
    let got: Vec<(usize, &str, NoteKind)> = out
        .notes
        .iter()
        .map(|n| (n.line, n.key.as_str(), n.kind))
        .collect();
    assert_eq!(
        got,
        [
            (5, "connections.gw.mobike", NoteKind::Dropped),
            (6, "connections.gw.mobike_typo", NoteKind::Ignored),
            (7, "connections.gw.proposals", NoteKind::Dropped),
            (11, "connections.gw.remote.certs", NoteKind::Dropped),
            (
                17,
                "connections.gw.children.net.replay_window",
                NoteKind::Dropped
            ),
            (
                18,
                "connections.gw.children.net.close_action",
                NoteKind::Dropped
            ),
        ]
    );
    assert!(out.notes.iter().all(|n| n.conn.as_deref() == Some("gw")));
    assert_eq!(
        out.notes[0].to_string(),
        "swanctl.conf:5: connections.gw.mobike: not supported: mobike = yes: MOBIKE is not supported yet"
    );
    assert!(
        out.notes[2].message.contains("aes256-sha256-modp2048"),
        "{}",
        out.notes[2]
    );
    assert_eq!(
        conn(&out, "gw").get("proposals"),
        Some(&l(&["aes256gcm16-prfsha256-x25519"]))
    );
}

#[test]
fn what_vpnd_cannot_run_is_refused_with_the_reason() {
    let text = "connections {\n  rw {\n    pools = p\n    local { auth = psk\n id = a }\n    remote { auth = psk }\n    children { n { local_ts = 0.0.0.0/0\n remote_ts = dynamic } }\n  }\n  certs {\n    remote_addrs = 198.18.0.2\n    local { id = a }\n    remote { auth = pubkey }\n    children { n { local_ts = 10.0.0.0/8\n remote_ts = 10.1.0.0/16 } }\n  }\n  v1 {\n    version = 1\n    remote_addrs = 198.18.0.2\n    local { auth = psk\n id = a }\n    remote { auth = psk\n id = \"C=CH, CN=b\" }\n    children { n { local_ts = 10.0.0.0/8\n remote_ts = 10.1.0.0/16\n mode = beet } }\n  }\n}\npools {\n  p { addrs = 10.3.0.0/24 }\n}\n";
    let out = ok(text);
    assert!(out.connections.is_empty(), "{:?}", out.connections);
    let refused: Vec<(usize, &str)> = out
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Refused)
        .map(|n| (n.line, n.key.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (3, "connections.rw.pools"),
            (8, "connections.rw.children.n.remote_ts"),
            (12, "connections.certs.local.auth"),
            (13, "connections.certs.remote.auth"),
            (18, "connections.v1.version"),
            (23, "connections.v1.remote.id"),
            (26, "connections.v1.children.n.mode"),
            (30, "pools.p"),
        ],
        "{:#?}",
        out.notes
    );
    let pool = out.notes.iter().find(|n| n.key == "pools.p").unwrap();
    assert!(pool.message.contains("pools are not supported"), "{pool}");
    let dn = out
        .notes
        .iter()
        .find(|n| n.key == "connections.v1.remote.id")
        .unwrap();
    assert!(dn.message.contains("distinguished name"), "{dn}");
}

#[test]
fn invalid_values_are_errors_with_line_and_key() {
    let out = run("connections {\n  c {\n    version = 3\n    dpd_delay = soon\n    children {\n      n {\n        mode = tunel\n        start_action = go\n      }\n    }\n  }\n}\n");
    let got: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "swanctl.conf:3: connections.c.version: invalid IKE version '3': expected 0, 1 or 2",
            "swanctl.conf:4: connections.c.dpd_delay: invalid time 'soon': expected a number with s, m, h or d",
            "swanctl.conf:7: connections.c.children.n.mode: invalid mode 'tunel': expected tunnel, transport, transport_proxy, iptfs, beet, pass or drop",
            "swanctl.conf:8: connections.c.children.n.start_action: invalid action 'go': expected none, trap or start",
        ]
    );
}

#[test]
fn syntax_errors_stop_the_import() {
    let out = run("connections {\n  c {\n    x = 1\n  \n}\n");
    assert_eq!(out.errors.len(), 1);
    assert_eq!(
        out.errors[0].to_string(),
        "swanctl.conf:1: syntax error: section 'connections' is not closed (missing '}')"
    );
}

#[test]
fn children_disagreeing_on_actions_are_merged_and_reported() {
    let text = "connections {\n c {\n  remote_addrs = 198.18.0.2\n  local_addrs = 198.18.0.1\n  local { auth = psk }\n  remote { auth = psk }\n  children {\n   a { start_action = trap\n dpd_action = trap }\n   b { start_action = start }\n  }\n }\n}\n";
    let out = ok(text);
    let c = conn(&out, "c");
    assert_eq!(c.get("auto"), Some(&s("start")));
    assert_eq!(c.get("dpd_action"), Some(&s("hold")));
    assert_eq!(
        c.get("local_id"),
        Some(&s("198.18.0.1")),
        "the address, as strongSwan"
    );
    let changed: Vec<&str> = out
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Changed)
        .map(|n| n.key.as_str())
        .collect();
    assert_eq!(changed, ["connections.c.children.b.start_action"]);
}

#[test]
fn secrets_of_other_kinds_are_listed() {
    let out = ok("secrets {\n  eap-carol {\n    id = carol\n    secret = x\n  }\n  private-gw {\n    file = gw.pem\n  }\n  ike-dn {\n    id = \"C=CH, CN=x\"\n    secret = y\n  }\n}\n");
    assert!(out.psks.is_empty());
    let got: Vec<(usize, &str, NoteKind)> = out
        .notes
        .iter()
        .map(|n| (n.line, n.key.as_str(), n.kind))
        .collect();
    assert_eq!(
        got,
        [
            (2, "secrets.eap-carol", NoteKind::Dropped),
            (6, "secrets.private-gw", NoteKind::Dropped),
            (10, "secrets.ike-dn.id", NoteKind::Dropped),
        ]
    );
}

#[test]
fn a_childless_base_of_others_is_a_template_not_a_connection() {
    let text = "connections {\n  base {\n    local_addrs = 198.18.0.1\n    remote_addrs = 198.18.0.2\n    mobike = yes\n    local { auth = psk }\n    remote { auth = psk }\n  }\n  gw : connections.base {\n    children { n { local_ts = 10.1.0.0/16\n remote_ts = 10.2.0.0/16 } }\n  }\n}\n";
    let out = ok(text);
    let names: Vec<&str> = out.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["gw"]);
    let got: Vec<(usize, &str, NoteKind)> = out
        .notes
        .iter()
        .map(|n| (n.line, n.key.as_str(), n.kind))
        .collect();
    assert_eq!(
        got,
        [
            (2, "connections.base", NoteKind::Ignored),
            (5, "connections.gw.mobike", NoteKind::Dropped),
        ]
    );
    assert_eq!(conn(&out, "gw").get("local_id"), Some(&s("198.18.0.1")));
}

#[test]
fn fragmentation_yes_keeps_the_default_accept_and_force_are_changed() {
    let text = |v: &str| {
        format!(
            "connections {{\n gw {{\n  remote_addrs = 198.18.0.2\n  fragmentation = {v}\n  local {{\n   auth = psk\n   id = a.test\n  }}\n  remote {{\n   auth = psk\n   id = b.test\n  }}\n  children {{\n   net {{\n    local_ts = 198.19.1.0/24\n    remote_ts = 198.19.2.0/24\n   }}\n  }}\n }}\n}}\n"
        )
    };
    let out = ok(&text("yes"));
    assert!(out.notes.is_empty(), "{:#?}", out.notes);
    assert_eq!(
        conn(&out, "gw").get("fragment_size"),
        None,
        "vpnd's default"
    );
    for v in ["accept", "force"] {
        let out = ok(&text(v));
        assert_eq!(conn(&out, "gw").get("fragment_size"), None);
        assert!(
            out.notes.iter().any(|n| n.kind == NoteKind::Changed
                && n.key == "connections.gw.fragmentation"
                && n.message.contains(&format!("fragmentation = {v}"))),
            "{v}: {:#?}",
            out.notes
        );
    }
    let out = run(&text("sometimes"));
    assert!(
        out.errors
            .iter()
            .any(|e| e.to_string().contains("invalid fragmentation 'sometimes'")),
        "{:?}",
        out.errors
    );
}
