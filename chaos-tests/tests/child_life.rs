//! CHILD SAs against strongSwan's charon in network namespaces: CHILD
//! rekeys in both directions when charon requires PFS and vpnd's ESP
//! proposals name no group, and when charon refuses PFS and vpnd's name
//! one; and `impair kernel-fail`, which fails one connection's install
//! (reported as a failure) and is retried without touching the others.

use std::time::Duration;

use chaos_tests::{Charon, CharonConn, Lab, Ns, Vpnd};

const PSK: &str = "child-life-interop-secret-7";

fn lab(tag: &str) -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways(tag);
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    (lab, a, b)
}

/// vpnd on A with one connection per entry of `conns` (name, child's
/// local /24, remote /24); ESP proposals `esp`, CHILD rekey `rekey`.
fn vpnd_config(conns: &[(&str, &str, &str)], esp: &str, rekey: &str) -> String {
    let mut s = r#"[daemon]
listen = ["198.18.0.1"]
dataplane = "none"
secrets = ["secrets.toml"]
"#
    .to_string();
    for (name, l, r) in conns {
        s.push_str(&format!(
            r#"
[connections.{name}]
local_addrs = ["198.18.0.1"]
remote_addrs = ["198.18.0.2"]
local_id = "{name}.a.test"
remote_id = "{name}.b.test"
proposals = ["aes256gcm16-prfsha256-x25519"]
auto = "add"
encap = true
keyingtries = 3
retry_base = "1s"
retransmit_timeout = "1s"
retransmit_tries = 2

[connections.{name}.children.net]
local_ts = ["{l}"]
remote_ts = ["{r}"]
esp_proposals = ["{esp}"]
rekey_time = "{rekey}"
"#
        ));
    }
    s
}

fn secrets(names: &[&str]) -> String {
    let ids: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("\"{n}.a.test\""), format!("\"{n}.b.test\"")])
        .collect();
    format!("[[psk]]\nids = [{}]\nsecret = \"{PSK}\"\n", ids.join(", "))
}

fn charon_conn(name: &str, l: &str, r: &str) -> CharonConn {
    let mut c = CharonConn::psk(
        name,
        "198.18.0.2",
        "198.18.0.1",
        &format!("{name}.b.test"),
        &format!("{name}.a.test"),
        PSK,
    );
    c.child = format!("{name}-net");
    c.local_ts = l.into();
    c.remote_ts = r.into();
    c
}

fn wait(secs: u64, f: impl FnMut() -> bool) -> bool {
    Lab::wait_until(Duration::from_secs(secs), f)
}

fn count(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

/// vpnd's installed CHILD SAs of `conn`: (spi_in, proposal).
fn vpnd_children(v: &Vpnd, conn: &str) -> Vec<(String, String)> {
    let c = v.conn(conn);
    c["ike_sas"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["child_sas"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["state"] == "installed")
        .map(|c| {
            (
                c["spi_in"].as_str().unwrap_or("").to_string(),
                c["proposal"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Both directions of CHILD rekey, twice each: vpnd's on its 8 s timer,
/// then charon's with `swanctl --rekey` right after one of vpnd's (so
/// vpnd's next is 8 s away and the two never collide). The tunnel is up
/// on both sides after each.
fn rekeys_both_ways(lab: &Lab, v: &Vpnd, charon: &Charon) {
    let rekeyed = || count(&lab.log("vpnd-a"), "CHILD SA 'net' rekeyed");
    assert!(
        wait(30, || rekeyed() >= 2),
        "vpnd's two rekeys:\n{}\ncharon:\n{}",
        lab.log("vpnd-a"),
        lab.log("charon-b")
    );
    for i in 0..2 {
        let before = rekeyed();
        let (ok, out) = charon.swanctl(&["--rekey", "--child", "c0-net"]);
        assert!(ok, "swanctl --rekey: {out}");
        assert!(
            wait(5, || rekeyed() > before),
            "charon's rekey {i}:\n{}\ncharon:\n{}",
            lab.log("vpnd-a"),
            lab.log("charon-b")
        );
        assert!(
            wait(5, || charon.has_installed("c0-net")),
            "{}",
            charon.list_sas()
        );
    }
    let children = vpnd_children(v, "c0");
    assert_eq!(children.len(), 1, "{children:?}\n{}", lab.log("vpnd-a"));
    let spi = &children[0].0;
    assert!(
        charon.list_sas().contains(spi.as_str()),
        "charon has vpnd's current SA {spi}:\n{}",
        charon.list_sas()
    );
    assert!(
        !lab.log("vpnd-a").contains("expired"),
        "no CHILD SA reached its hard lifetime:\n{}",
        lab.log("vpnd-a")
    );
}

#[test]
fn charon_requires_pfs_vpnd_names_no_group_rekeys_survive_both_ways() {
    let (mut lab, a, b) = lab("clpfs");
    let mut c = charon_conn("c0", "198.19.2.0/24", "198.19.1.0/24");
    c.esp_proposals = "aes256gcm16-x25519".into();
    let charon = Charon::start(&mut lab, &b, "charon-b", &[c]);
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(
            &[("c0", "198.19.1.0/24", "198.19.2.0/24")],
            "aes256gcm16",
            "8s",
        ),
        &secrets(&["c0"]),
        &[],
    );
    let up = v.ctl(&["up", "c0"]);
    assert!(up.ok(), "{up:?}\n{}", lab.log("vpnd-a"));
    rekeys_both_ways(&lab, &v, &charon);
    let log = lab.log("vpnd-a");
    // vpnd's first rekey had no KE: refused, said so, retried with one;
    // the later ones carried it at once.
    assert_eq!(
        count(
            &log,
            "refused by peer (NO_PROPOSAL_CHOSEN); retrying with KE x25519 in 0s"
        ),
        1,
        "{log}"
    );
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains("connection 'c0' child 'net': rekey of "),
        "{log}"
    );
    let children = vpnd_children(&v, "c0");
    assert!(children[0].1.contains("CURVE_25519"), "{children:?}");
}

#[test]
fn charon_refuses_pfs_vpnd_names_a_group_rekeys_survive_both_ways() {
    let (mut lab, a, b) = lab("clnopfs");
    let c = charon_conn("c0", "198.19.2.0/24", "198.19.1.0/24");
    let charon = Charon::start(&mut lab, &b, "charon-b", &[c]);
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(
            &[("c0", "198.19.1.0/24", "198.19.2.0/24")],
            "aes256gcm16-x25519",
            "8s",
        ),
        &secrets(&["c0"]),
        &[],
    );
    let up = v.ctl(&["up", "c0"]);
    assert!(up.ok(), "{up:?}\n{}", lab.log("vpnd-a"));
    rekeys_both_ways(&lab, &v, &charon);
}

#[test]
fn kernel_fail_fails_only_the_impaired_connection_and_it_comes_up_on_retry() {
    let (mut lab, a, b) = lab("clkfail");
    // charon routes each /32 from an address of its own.
    for i in 0..8 {
        lab.lan(&a, &[&format!("198.19.1.{}/32", 10 + i)]);
        lab.lan(&b, &[&format!("198.19.2.{}/32", 10 + i)]);
    }
    let conns: Vec<(String, String, String)> = (0..8)
        .map(|i| {
            (
                format!("c{i}"),
                format!("198.19.1.{}/32", 10 + i),
                format!("198.19.2.{}/32", 10 + i),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = conns
        .iter()
        .map(|(n, l, r)| (n.as_str(), l.as_str(), r.as_str()))
        .collect();
    let names: Vec<&str> = refs.iter().map(|c| c.0).collect();
    let charon_conns: Vec<CharonConn> = refs.iter().map(|(n, l, r)| charon_conn(n, r, l)).collect();
    let charon = Charon::start(&mut lab, &b, "charon-b", &charon_conns);
    let v = Vpnd::start(
        &mut lab,
        &a,
        "vpnd-a",
        &vpnd_config(&refs, "aes256gcm16", "0s"),
        &secrets(&names),
        &["--impair"],
    );
    let imp = v.ctl(&["impair", "c4", "kernel-fail"]);
    assert!(imp.ok(), "{imp:?}");
    for n in ["c0", "c1", "c2", "c3", "c5", "c6", "c7"] {
        let up = v.ctl(&["up", n]);
        assert!(up.ok(), "{n}: {up:?}\n{}", lab.log("vpnd-a"));
        assert!(up.stdout.contains("installed"), "{n}: {up:?}");
    }
    let up = v.ctl(&["up", "c4"]);
    assert_eq!(up.code, 1, "c4 must report the failure: {up:?}");
    assert!(!up.stdout.contains("installed"), "{up:?}");
    assert!(
        up.stderr.contains("could not be installed") && up.stderr.contains("injected failure"),
        "{up:?}"
    );
    assert!(up.stderr.contains("attempt 2 to bring it up"), "{up:?}");
    // The retry (1 s later) installs it, on the same IKE SA, on both sides.
    assert!(
        wait(10, || vpnd_children(&v, "c4").len() == 1),
        "{}",
        lab.log("vpnd-a")
    );
    assert!(
        wait(5, || charon.has_installed("c4-net")),
        "{}",
        charon.list_sas()
    );
    assert_eq!(v.conn("c4")["ike_sas"].as_array().unwrap().len(), 1);
    for n in &names {
        assert_eq!(vpnd_children(&v, n).len(), 1, "{n}");
        assert!(
            charon.has_installed(&format!("{n}-net")),
            "{n}: {}",
            charon.list_sas()
        );
    }
    let log = lab.log("vpnd-a");
    assert_eq!(
        count(&log, "could not be installed"),
        1,
        "one failure, one WARN:\n{log}"
    );
    assert!(
        log.contains("connection 'c4' child 'net' is up again"),
        "{log}"
    );
    for line in log.lines().filter(|l| l.contains("could not be installed")) {
        assert!(line.contains("c4"), "only c4 failed: {line}");
    }
}
