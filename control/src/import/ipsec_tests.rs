//! ipsec.conf and ipsec.secrets conversion.

use super::*;
use crate::import::test_util::*;
use crate::import::{Collect, NoteKind, Val};

fn run(text: &str) -> Collect {
    let mut out = Collect::default();
    convert(Path::new("ipsec.conf"), text, None, &mut out);
    out
}

fn ok(text: &str) -> Collect {
    without_errors(run(text))
}

const FULL: &str = "\
config setup
\tuniqueids=no

conn %default
\tkeyexchange=ikev2
\tauthby=psk
\tike=aes256gcm16-prfsha256-x25519!
\tesp=aes256gcm16!
\tkeyingtries=%forever
\tdpddelay=10s
\tdpdaction=restart

conn base
\tleft=198.18.0.1
\tleftid=a.test
\tright=198.18.0.2
\trightid=@b.test
\tikelifetime=2h
\tmargintime=10m
\tlifetime=40m

conn net
\talso=base
\tleftsubnet=198.19.1.0/24
\trightsubnet=198.19.2.0/24,198.19.4.0/24
\tforceencaps=yes
\tfragmentation=no
\tauto=start

conn host
\talso=base
\ttype=transport
\tleftprotoport=tcp/443
\tesp=aes128gcm16-ecp256!
\tlifebytes=2000000
\tmarginbytes=500000
\tleftupdown=/etc/vpnd/updown.sh
\tauto=route
";

#[test]
fn every_supported_keyword_is_converted() {
    let out = ok(FULL);
    let net = conn(&out, "net");
    assert_eq!(net.get("local_addrs"), Some(&l(&["198.18.0.1"])));
    assert_eq!(net.get("remote_addrs"), Some(&l(&["198.18.0.2"])));
    assert_eq!(net.get("local_id"), Some(&s("a.test")));
    assert_eq!(net.get("remote_id"), Some(&s("@b.test")));
    assert_eq!(
        net.get("proposals"),
        Some(&l(&["aes256gcm16-prfsha256-x25519"]))
    );
    assert_eq!(net.get("auto"), Some(&s("start")));
    assert_eq!(
        net.get("rekey_time"),
        Some(&s("110m")),
        "ikelifetime - margintime"
    );
    assert_eq!(net.get("dpd_delay"), Some(&s("10s")));
    assert_eq!(net.get("dpd_action"), Some(&s("restart")));
    assert_eq!(net.get("keyingtries"), Some(&Val::Int(0)));
    assert_eq!(net.get("encap"), Some(&Val::Bool(true)));
    let ch = &net.children[0];
    assert_eq!(ch.name, "net");
    assert_eq!(ch.get("local_ts"), Some(&l(&["198.19.1.0/24"])));
    assert_eq!(
        ch.get("remote_ts"),
        Some(&l(&["198.19.2.0/24", "198.19.4.0/24"]))
    );
    assert_eq!(ch.get("esp_proposals"), Some(&l(&["aes256gcm16"])));
    assert_eq!(ch.get("mode"), Some(&s("tunnel")));
    assert_eq!(
        ch.get("rekey_time"),
        Some(&s("30m")),
        "lifetime - margintime"
    );
    assert_eq!(ch.get("life_time"), Some(&s("40m")));

    assert_eq!(net.get("fragment_size"), Some(&Val::Int(0)));

    let host = conn(&out, "host");
    assert_eq!(host.get("auto"), Some(&s("route")));
    assert_eq!(host.get("encap"), Some(&Val::Bool(false)));
    assert_eq!(host.get("fragment_size"), None, "vpnd's default");
    let ch = &host.children[0];
    assert_eq!(ch.get("local_ts"), Some(&l(&["198.18.0.1/32[tcp/443]"])));
    assert_eq!(ch.get("remote_ts"), Some(&l(&["198.18.0.2/32"])));
    assert_eq!(ch.get("mode"), Some(&s("transport")));
    assert_eq!(ch.get("esp_proposals"), Some(&l(&["aes128gcm16-ecp256"])));
    assert_eq!(ch.get("pfs"), Some(&s("require")));
    assert_eq!(ch.get("rekey_bytes"), Some(&Val::Int(1_500_000)));
    assert_eq!(ch.get("life_bytes"), Some(&Val::Int(2_000_000)));
    assert_eq!(ch.get("updown"), Some(&s("/etc/vpnd/updown.sh")));

    // `base` is only a base; `config setup` is listed; left is local.
    assert!(out.connections.iter().all(|c| c.name != "base"));
    let got: Vec<(usize, &str, NoteKind)> = out
        .notes
        .iter()
        .map(|n| (n.line, n.key.as_str(), n.kind))
        .collect();
    assert_eq!(
        got,
        [
            (2, "config setup: uniqueids", NoteKind::Dropped),
            (13, "conn base", NoteKind::Ignored),
            (22, "conn net", NoteKind::Changed),
        ],
        "{:#?}",
        out.notes
    );
}

#[test]
fn ipsec_defaults_are_written() {
    let out = ok("conn c\n  right=198.18.0.2\n  left=198.18.0.1\n  authby=secret\n  leftsubnet=10.1.0.0/16\n  rightsubnet=10.2.0.0/16\n");
    let c = conn(&out, "c");
    assert_eq!(c.get("auto"), Some(&s("ignore")), "ipsec.conf's default");
    assert_eq!(c.get("keyingtries"), Some(&Val::Int(3)));
    assert_eq!(c.get("dpd_delay"), Some(&s("0s")), "dpdaction=none");
    assert_eq!(c.get("dpd_action"), Some(&s("clear")));
    assert_eq!(c.get("rekey_time"), Some(&s("171m")), "3h - 9m");
    assert_eq!(c.get("local_id"), Some(&s("198.18.0.1")));
    assert_eq!(c.get("remote_id"), Some(&s("198.18.0.2")));
    assert_eq!(c.get("proposals"), Some(&l(&["default"])));
    let ch = &c.children[0];
    assert_eq!(ch.get("rekey_time"), Some(&s("51m")));
    assert_eq!(ch.get("life_time"), Some(&s("1h")));
}

#[test]
fn proposals_without_bang_are_reported_as_looser() {
    let out = ok("conn c\n  right=198.18.0.2\n  left=198.18.0.1\n  authby=psk\n  leftsubnet=10.1.0.0/16\n  rightsubnet=10.2.0.0/16\n  ike=aes256-sha256-modp2048,aes256gcm16-prfsha256-ecp256\n  esp=3des-md5\n  auto=add\n");
    let c = conn(&out, "c");
    assert_eq!(
        c.get("proposals"),
        Some(&l(&["aes256gcm16-prfsha256-ecp256"]))
    );
    assert_eq!(c.children[0].get("esp_proposals"), Some(&l(&["default"])));
    let got: Vec<(usize, &str, NoteKind)> = out
        .notes
        .iter()
        .filter(|n| n.conn.is_some())
        .map(|n| (n.line, n.key.as_str(), n.kind))
        .collect();
    assert_eq!(
        got,
        [
            (7, "conn c: ike", NoteKind::Dropped),
            (7, "conn c: ike", NoteKind::Changed),
            (8, "conn c: esp", NoteKind::Dropped),
            (8, "conn c: esp", NoteKind::Changed),
        ],
        "{:#?}",
        out.notes
    );
}

#[test]
fn refused_and_dropped_keywords() {
    let out = ok("conn rw\n  left=%any\n  leftid=gw.test\n  right=%any\n  authby=psk\n  leftsubnet=0.0.0.0/0\n  rightsourceip=10.3.0.0/24\n  auto=add\nconn cert\n  left=198.18.0.1\n  right=198.18.0.2\n  leftcert=gw.pem\n  auto=add\nconn v1\n  keyexchange=ikev1\n  left=198.18.0.1\n  right=198.18.0.2\n  authby=psk\n  mobike=yes\n  auto=add\n");
    assert!(out.connections.is_empty(), "{:#?}", out.connections);
    let refused: Vec<(usize, &str)> = out
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Refused)
        .map(|n| (n.line, n.key.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (7, "conn rw: rightsourceip"),
            (1, "conn rw: rightsubnet"),
            (9, "conn cert: authby"),
            (15, "conn v1: keyexchange"),
        ],
        "{:#?}",
        out.notes
    );
    // What else a refused conn would lose is listed too.
    let dropped: Vec<(usize, &str)> = out
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Dropped)
        .map(|n| (n.line, n.key.as_str()))
        .collect();
    assert_eq!(
        dropped,
        [(12, "conn cert: leftcert"), (19, "conn v1: mobike")]
    );
}

#[test]
fn also_errors_and_invalid_values_name_the_line() {
    let out = run("conn a\n  also=b\nconn b\n  also=a\nconn c\n  also=nowhere\nconn d\n  auto=sometimes\n  type=tunel\n");
    let got: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "ipsec.conf:4: conn b: also: 'a' includes this conn again (a loop)",
            "ipsec.conf:2: conn a: also: 'b' includes this conn again (a loop)",
            "ipsec.conf:6: conn c: also: no conn named 'nowhere'",
            "ipsec.conf:8: conn d: auto: invalid value 'sometimes': expected start, route, add or ignore",
            "ipsec.conf:9: conn d: type: invalid value 'tunel': expected tunnel, transport, transport_proxy, passthrough or drop",
        ]
    );
}

#[test]
fn linearization_follows_the_starter() {
    // D also=C also=B, B also=A, C also=A: D B C A (A once, last).
    let text =
        "conn A\n  x=a\nconn B\n  also=A\nconn C\n  also=A\n  x=c\nconn D\n  also=C\n  also=B\n";
    let secs = parse::parse(Path::new("i"), text, &mut Vec::new()).unwrap();
    let by: HashMap<&str, &Sec> = secs.iter().map(|s| (s.name.as_str(), s)).collect();
    let chain = linearize(by["D"], &by, &mut Vec::new()).unwrap();
    let names: Vec<&str> = chain.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["D", "B", "C", "A"]);
    let v = View { chain };
    assert_eq!(v.value("x").unwrap().0, "c", "C comes before A");
}

#[test]
fn secrets_file_entries() {
    let dir = std::env::temp_dir().join(format!("vpnd-import-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("more.secrets"), "@c.test : PSK 'more'\n").unwrap();
    let p = dir.join("ipsec.secrets");
    std::fs::write(
        &p,
        "# comment\n: PSK \"for anyone\"\na.test b.test : PSK \"ab\"\n: RSA gw.pem\ninclude more.secrets\n\"C=CH, CN=x\" : PSK \"dn\"\n",
    )
    .unwrap();
    let mut out = Collect::default();
    read_secrets(&p, &mut out);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let psks: Vec<(Vec<String>, &str, usize)> = out
        .psks
        .iter()
        .map(|p| (p.ids.clone(), p.secret.as_str(), p.line))
        .collect();
    assert_eq!(
        psks,
        [
            (vec!["%any".to_string()], "for anyone", 2),
            (vec!["a.test".to_string(), "b.test".to_string()], "ab", 3),
            (vec!["@c.test".to_string()], "more", 1),
        ]
    );
    let notes: Vec<(usize, &str, NoteKind)> = out
        .notes
        .iter()
        .map(|n| (n.line, n.key.as_str(), n.kind))
        .collect();
    assert_eq!(
        notes,
        [(4, "RSA", NoteKind::Dropped), (6, "PSK", NoteKind::Dropped)]
    );
    // A broken line is an error with its line, and never quotes the secret.
    std::fs::write(&p, "a.test PSK \"hidden\"\n").unwrap();
    let mut out = Collect::default();
    read_secrets(&p, &mut out);
    let e = out.errors[0].to_string();
    assert!(
        e.ends_with(
            "ipsec.secrets:1: syntax error: missing ' : ' between the identities and the secret"
        ),
        "{e}"
    );
    assert!(!e.contains("hidden"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_setting_before_any_section_is_ignored_as_strongswan_does() {
    let out = ok("  left=1.2.3.4\nconn c\n  right=198.18.0.2\n");
    assert_eq!(out.notes[0].line, 1);
    assert_eq!(out.notes[0].key, "left");
    assert_eq!(out.notes[0].kind, NoteKind::Ignored);
}

#[test]
fn fragmentation_accept_and_force_are_changed_and_nonsense_is_an_error() {
    let text = |v: &str| {
        format!("conn gw\n\tkeyexchange=ikev2\n\tauthby=psk\n\tleft=198.18.0.1\n\tright=198.18.0.2\n\tleftsubnet=198.19.1.0/24\n\trightsubnet=198.19.2.0/24\n\tfragmentation={v}\n\tauto=add\n")
    };
    for v in ["accept", "force"] {
        let out = ok(&text(v));
        assert_eq!(conn(&out, "gw").get("fragment_size"), None);
        assert!(
            out.notes.iter().any(|n| n.kind == NoteKind::Changed
                && n.message.contains(&format!("fragmentation = {v}"))),
            "{v}: {:#?}",
            out.notes
        );
    }
    let out = run(&text("maybe"));
    assert!(
        out.errors
            .iter()
            .any(|e| e.to_string().contains("fragmentation")),
        "{:?}",
        out.errors
    );
}
