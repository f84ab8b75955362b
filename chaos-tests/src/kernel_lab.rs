//! Shared pieces of the tests of vpnd's kernel XFRM dataplane
//! (`dataplane = "xfrm"`), which run in a UML guest (`uml::guest_test`):
//! starting vpnd and charon with kernel ESP, waiting for CHILD SAs, pings
//! and TCP that must get through, and checks that the kernel's states and
//! policies are vpnd's (reqids in its range) and carried the traffic.

use std::time::Duration;

use serde_json::Value;

use crate::configs::psk_any;
use crate::lab::{Lab, Ns};
use crate::topology::PSK;
use crate::traffic;
use crate::xfrm::{is_vpnd_reqid, Snapshot, XfrmState};
use crate::{Charon, CharonConn, CharonOptions, Vpnd};

/// From boot to power-off, per guest (the tests aim for well under two
/// minutes; this only bounds a hung guest).
pub const GUEST_LIMIT: Duration = Duration::from_secs(170);

/// How long a CHILD SA may take to come up in the guest: one CPU, debug
/// binaries, crypto modules loaded on first use.
pub const UP: Duration = Duration::from_secs(30);

/// Start vpnd in `ns` with `config` and the labs' PSK; `--impair` when
/// `impair`.
pub fn vpnd(lab: &mut Lab, ns: &Ns, name: &str, config: &str, impair: bool) -> Vpnd {
    let args: &[&str] = if impair { &["--impair"] } else { &[] };
    Vpnd::start(lab, ns, name, config, &psk_any(PSK), args)
}

/// Start charon in `ns` with kernel-netlink as its IPsec backend (real
/// XFRM states and policies) and `extra` inside its `charon { }` section.
pub fn charon(lab: &mut Lab, ns: &Ns, name: &str, conns: &[CharonConn], extra: &str) -> Charon {
    let opts = CharonOptions {
        kernel_esp: true,
        charon_extra: extra.into(),
        ..Default::default()
    };
    Charon::start_with(lab, ns, name, conns, &opts)
}

/// Wait (at most `timeout`) for an installed CHILD SA of connection `conn`
/// and return its status object; panics with vpnd's log otherwise.
pub fn wait_child(lab: &Lab, v: &Vpnd, conn: &str, timeout: Duration) -> Value {
    let mut found = None;
    Lab::wait_until(timeout, || {
        found = v.installed_child(conn);
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "{}: no installed CHILD SA of '{conn}' within {} s\nstatus: {}\nlog:\n{}",
            v.name,
            timeout.as_secs(),
            v.status(),
            lab.log(&v.name)
        )
    })
}

/// The reqid the kernel's objects of a CHILD SA carry, from the SA's
/// status object: vpnd's status may name the full reqid (a number, or a
/// string in decimal or `0x` hex) or only its number n in vpnd's range
/// (`VPND_REQID_BASE | n`, n < 2^16).
pub fn reqid(child: &Value) -> u32 {
    let r = &child["reqid"];
    let n = r
        .as_u64()
        .map(|n| n as u32)
        .or_else(|| {
            let s = r.as_str()?;
            match s.strip_prefix("0x") {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or_else(|| panic!("CHILD SA without a reqid: {child}"));
    if n < 0x1_0000 {
        crate::xfrm::VPND_REQID_BASE | n
    } else {
        n
    }
}

/// A status field holding an SPI in hex.
pub fn spi(child: &Value, key: &str) -> u32 {
    let s = child[key].as_str().unwrap_or("");
    u32::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("CHILD SA without {key}: {child}"))
}

/// A status counter (0 when absent).
pub fn counter(c: &Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or(0)
}

/// `count` pings from `src` to `dst` in `ns`, every one answered.
pub fn assert_ping(lab: &Lab, ns: &Ns, src: &str, dst: &str, count: u32) {
    let out = traffic::ping_output(lab, ns, src, dst, count);
    if traffic::received(&out) != Some(count) {
        panic!(
            "ping {src} -> {dst} in {}:\n{}{}\n{}",
            ns.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            network(lab, ns)
        );
    }
}

/// Rules, routes (main and 220), XFRM states and policies of `ns`: what a
/// failed ping's message shows.
pub fn network(lab: &Lab, ns: &Ns) -> String {
    let mut s = String::new();
    for argv in [
        &["ip", "rule"][..],
        &["ip", "route", "show", "table", "all"],
        &["ip", "-s", "xfrm", "state"],
        &["ip", "-s", "xfrm", "policy"],
    ] {
        let out = lab.try_exec(ns, argv);
        s.push_str(&format!(
            "$ {}\n{}{}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    s
}

/// True when at least one of `count` pings got an answer.
pub fn ping_gets_through(lab: &Lab, ns: &Ns, src: &str, dst: &str, count: u32) -> bool {
    let out = traffic::ping_output(lab, ns, src, dst, count);
    traffic::received(&out).unwrap_or(0) > 0
}

/// TCP from `src` (in `a`) to `dst` (in `b`), `bytes` of it; returns what
/// the server received (at least half must arrive).
pub fn tcp(lab: &mut Lab, a: &Ns, src: &str, b: &Ns, dst: &str, bytes: u64) -> u64 {
    let t = traffic::tcp_transfer_from(lab, a, src, b, dst, bytes)
        .unwrap_or_else(|e| panic!("TCP {src} -> {dst}: {e}"));
    eprintln!(
        "TCP {src} -> {dst}: {} bytes in {:.2} s ({:.0} Mbit/s)",
        t.bytes_received,
        t.seconds,
        t.bits_per_second / 1e6
    );
    assert!(t.bytes_received >= bytes / 2, "TCP {src} -> {dst}: {t:?}");
    t.bytes_received
}

/// The ESP state from `src` to `dst` among `states`.
pub fn state<'a>(states: &'a [XfrmState], src: &str, dst: &str) -> &'a XfrmState {
    states
        .iter()
        .find(|s| s.src == src && s.dst == dst && s.proto == "esp")
        .unwrap_or_else(|| panic!("no ESP state {src} -> {dst}: {states:#?}"))
}

/// What the kernel of vpnd's namespace must hold for one installed CHILD
/// SA (`child`, from vpnd's status) between `me` and `peer`.
pub struct Expect<'a> {
    pub me: &'a str,
    pub peer: &'a str,
    /// `tunnel` or `transport`.
    pub mode: &'a str,
    /// UDP-encapsulated (`encap type espinudp`).
    pub encap: bool,
    /// The AEAD the kernel names (`rfc4106(gcm(aes))`).
    pub aead: &'a str,
}

/// Check vpnd's kernel objects for `child`: its reqid is in vpnd's range;
/// an inbound state (SPI `spi_in`) and an outbound one (`spi_out`) with
/// that reqid, mode, AEAD and encapsulation; `out` and `in` policies
/// (and `fwd` in tunnel mode) whose templates ask for that reqid. Returns
/// the (inbound, outbound) states.
pub fn assert_child_in_kernel(
    snap: &Snapshot,
    child: &Value,
    e: &Expect<'_>,
) -> (XfrmState, XfrmState) {
    let r = reqid(child);
    let diag = || format!("child {child}\nkernel:\n{}", snap.describe());
    assert!(
        is_vpnd_reqid(r),
        "reqid {r:#x} outside vpnd's range: {}",
        diag()
    );
    let (spi_in, spi_out) = (spi(child, "spi_in"), spi(child, "spi_out"));
    let find = |src: &str, dst: &str, spi: u32| -> XfrmState {
        snap.states
            .iter()
            .find(|s| s.src == src && s.dst == dst && s.spi == spi && s.proto == "esp")
            .cloned()
            .unwrap_or_else(|| panic!("no ESP state {src} -> {dst} spi {spi:08x}: {}", diag()))
    };
    let inbound = find(e.peer, e.me, spi_in);
    let outbound = find(e.me, e.peer, spi_out);
    for st in [&inbound, &outbound] {
        assert_eq!(st.reqid, r, "state reqid: {}", diag());
        assert_eq!(st.mode, e.mode, "state mode: {}", diag());
        assert_eq!(st.aead.as_deref(), Some(e.aead), "state AEAD: {}", diag());
        let udp = st
            .encap
            .as_deref()
            .is_some_and(|x| x.starts_with("espinudp"));
        assert_eq!(udp, e.encap, "state encapsulation: {}", diag());
    }
    let dirs: Vec<&str> = snap
        .policies
        .iter()
        .filter(|p| !p.socket && p.reqids().any(|x| x == r))
        .map(|p| p.dir.as_str())
        .collect();
    for d in ["out", "in"] {
        assert!(
            dirs.contains(&d),
            "no '{d}' policy for reqid {r:#x}: {}",
            diag()
        );
    }
    if e.mode == "tunnel" {
        assert!(
            dirs.contains(&"fwd"),
            "no 'fwd' policy for reqid {r:#x}: {}",
            diag()
        );
    }
    (inbound, outbound)
}

/// Every state and SPD policy in `snap` that is vpnd's belongs to one of
/// `reqids`, and nothing is there twice.
pub fn assert_only(snap: &Snapshot, reqids: &[u32]) {
    let stray: Vec<u32> = snap
        .vpnd_counts()
        .into_keys()
        .filter(|r| !reqids.contains(r))
        .collect();
    assert!(
        stray.is_empty(),
        "vpnd objects with reqids {stray:x?} besides {reqids:x?}:\n{}",
        snap.describe()
    );
    let dups = snap.duplicates();
    assert!(dups.is_empty(), "duplicates {dups:?}:\n{}", snap.describe());
}

/// Poll `ns`'s kernel (every 50 ms, at most `timeout`) until `cond` holds;
/// returns the last snapshot and whether it held.
pub fn wait_kernel(
    lab: &Lab,
    ns: &Ns,
    timeout: Duration,
    mut cond: impl FnMut(&Snapshot) -> bool,
) -> (Snapshot, bool) {
    let mut last = Snapshot::default();
    let ok = Lab::wait_until(timeout, || {
        last = Snapshot::take(lab, ns);
        cond(&last)
    });
    (last, ok)
}

/// `ip route show table TABLE` in `ns` (empty when the table is).
pub fn routes(lab: &Lab, ns: &Ns, table: u32) -> String {
    let t = table.to_string();
    let out = lab.try_exec(ns, &["ip", "route", "show", "table", &t]);
    let out6 = lab.try_exec(ns, &["ip", "-6", "route", "show", "table", &t]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out6.stdout)
    )
}

/// True when vpnd's log tells of an ACQUIRE: the kernel's word, or vpnd's
/// "traffic hit the trap of 'CHILD'".
pub fn log_shows_acquire(log: &str) -> bool {
    let l = log.to_lowercase();
    l.contains("acquire") || l.contains("hit the trap")
}
