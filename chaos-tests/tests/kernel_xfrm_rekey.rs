//! vpnd's kernel XFRM dataplane over time, in a UML guest each: CHILD and
//! IKE SA rekeys under a 20/s ping, started by vpnd and by charon, lose at
//! most one echo per rekey; a SIGKILLed vpnd, restarted, removes the
//! states and policies its predecessor left (logging each), installs no
//! duplicates and brings its tunnel back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chaos_tests::configs::{self, End};
use chaos_tests::kernel_lab::{
    self as kl, assert_child_in_kernel, assert_only, assert_ping, wait_kernel, Expect, GUEST_LIMIT,
    UP,
};
use chaos_tests::topology::{self, GW1, GW2, LAN1, LAN1_HOST, LAN2, LAN2_HOST, PSK};
use chaos_tests::traffic;
use chaos_tests::xfrm::Snapshot;
use chaos_tests::{uml, CharonConn, Lab};

const GCM: &str = "rfc4106(gcm(aes))";

fn charon_conn() -> CharonConn {
    let mut c = CharonConn::psk("tun", GW2, GW1, "gw2.test", "gw1.test", PSK);
    c.local_ts = LAN2.into();
    c.remote_ts = LAN1.into();
    c.encap = "no".into();
    c
}

fn expect() -> Expect<'static> {
    Expect {
        me: GW1,
        peer: GW2,
        mode: "tunnel",
        encap: false,
        aead: GCM,
    }
}

#[test]
fn xfrm_rekeys_started_by_vpnd_lose_at_most_one_echo_each() {
    uml::guest_test(GUEST_LIMIT, || rekeys_under_ping(true));
}

#[test]
fn xfrm_rekeys_started_by_charon_lose_at_most_one_echo_each() {
    uml::guest_test(GUEST_LIMIT, || rekeys_under_ping(false));
}

/// CHILD SA rekeys every ~8 s and IKE SA rekeys every ~14 s, by vpnd or
/// by charon (the other end never rekeys), while echoes go out 50 ms apart
/// until 600 are answered. Rekeys are counted from what vpnd's status
/// shows: distinct inbound SPIs of the CHILD SA and distinct IKE SPI pairs.
fn rekeys_under_ping(vpnd_rekeys: bool) {
    let tag = if vpnd_rekeys { "kxrv" } else { "kxrc" };
    let (mut lab, gw1, gw2) = topology::site_to_site(tag);
    let mut c = charon_conn();
    let (conn_extra, child_extra) = if vpnd_rekeys {
        ("rekey_time = \"14s\"", "rekey_time = \"8s\"")
    } else {
        c.child_rekey_time = "8s".into();
        c.ike_rekey_time = "14s".into();
        // Without this charon adds up to 10% jitter below rekey_time
        // (rand_time); keep its default jitter, just no reauthentication.
        c.extra = "reauth_time = 0".into();
        ("rekey_time = \"1h\"", "rekey_time = \"1h\"")
    };
    let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[c], "");
    let conf = configs::xfrm_end(&End {
        conn_extra,
        child_extra,
        retransmit_timeout: "2s",
        ..End::site(1, "start")
    });
    let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &conf, false);
    let first = kl::wait_child(&lab, &v, "tun", UP);
    assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());
    assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 2);

    let count = 600;
    let ping = traffic::ping_start(
        &mut lab,
        &gw1,
        "ping-rekey",
        LAN1_HOST,
        LAN2_HOST,
        Duration::from_millis(50),
        count,
    );
    let mut spis: BTreeSet<u32> = BTreeSet::from([kl::spi(&first, "spi_in")]);
    let mut ike_ids: BTreeSet<String> = BTreeSet::new();
    let mut max_states = 0;
    let end = Instant::now() + Duration::from_millis(50) * count;
    while Instant::now() < end
        || lab
            .wait_exit("ping-rekey", Duration::from_millis(30))
            .is_none()
    {
        let conn = v.conn("tun");
        for ike in conn["ike_sas"].as_array().into_iter().flatten() {
            // An IKE rekey keeps the SA's id but not its SPIs.
            if ike["state"] == "established" {
                ike_ids.insert(format!("{}/{}", ike["spi_i"], ike["spi_r"]));
            }
            for ch in ike["child_sas"].as_array().into_iter().flatten() {
                if ch["state"] == "installed" {
                    if let Some(s) = ch["spi_in"].as_str() {
                        spis.extend(u32::from_str_radix(s, 16).ok());
                    }
                }
            }
        }
        max_states = max_states.max(Snapshot::take(&lab, &gw1).vpnd_states().len());
        std::thread::sleep(Duration::from_millis(400));
    }
    let (tx, rx) = ping.finish(&mut lab);
    let child_rekeys = spis.len() - 1;
    let ike_rekeys = ike_ids.len().saturating_sub(1);
    eprintln!(
        "{} rekeys: {child_rekeys} CHILD, {ike_rekeys} IKE; ping {rx}/{tx}; at most {max_states} vpnd states at once",
        if vpnd_rekeys { "vpnd" } else { "charon" }
    );
    assert!(
        child_rekeys >= 2 && ike_rekeys >= 1,
        "too few rekeys seen (CHILD {spis:x?}, IKE {ike_ids:?}):\n{}",
        lab.log("vpnd-gw1")
    );
    let lost = tx.saturating_sub(rx);
    assert!(
        lost as usize <= child_rekeys + ike_rekeys,
        "{lost} echoes lost over {child_rekeys} CHILD and {ike_rekeys} IKE rekeys ({rx}/{tx})\n{}",
        lab.log("vpnd-gw1")
    );
    // With a deadline ping goes on until `count` echoes are answered.
    assert_eq!(
        rx, count,
        "only {rx} of {count} echoes answered before ping's deadline"
    );

    // Settled: one CHILD SA, its two states and its policies; the replaced
    // SAs' states are gone, nothing twice.
    let child = kl::wait_child(&lab, &v, "tun", UP);
    let r = kl::reqid(&child);
    let (snap, settled) = wait_kernel(&lab, &gw1, Duration::from_secs(5), |s| {
        s.vpnd_states().len() == 2
    });
    assert!(settled, "old states left:\n{}", snap.describe());
    assert_child_in_kernel(&snap, &child, &expect());
    assert_only(&snap, &[r]);
    assert!(
        v.conn("tun")["ike_sas"].as_array().map(|a| a.len()) == Some(1),
        "{}",
        v.conn("tun")
    );
}

#[test]
fn xfrm_sigkill_restart_removes_stale_objects_and_comes_back() {
    uml::guest_test(GUEST_LIMIT, || {
        let (mut lab, gw1, gw2) = topology::site_to_site("kxsk");
        let charon = kl::charon(&mut lab, &gw2, "charon-gw2", &[charon_conn()], "");
        let conf = configs::xfrm_end(&End {
            retransmit_timeout: "2s",
            ..End::site(1, "start")
        });
        let v = kl::vpnd(&mut lab, &gw1, "vpnd-gw1", &conf, false);
        let old = kl::wait_child(&lab, &v, "tun", UP);
        assert!(charon.wait_installed("net", UP), "{}", charon.list_sas());
        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 2);
        let before = Snapshot::take(&lab, &gw1);
        assert_child_in_kernel(&before, &old, &expect());
        let old_spis: Vec<u32> = before.vpnd_states().iter().map(|s| s.spi).collect();
        let old_policies = before.vpnd_policies().len();

        // A crash cleans nothing up: the kernel keeps it all.
        lab.kill("vpnd-gw1");
        let orphaned = Snapshot::take(&lab, &gw1);
        assert_eq!(
            orphaned.vpnd_counts(),
            before.vpnd_counts(),
            "{}",
            orphaned.describe()
        );

        v.launch(&mut lab, &gw1, &[]);
        assert!(
            Lab::wait_until(Duration::from_secs(10), || v.ctl(&["stats", "--json"]).ok()),
            "vpnd did not come back:\n{}",
            lab.log("vpnd-gw1")
        );
        let new = kl::wait_child(&lab, &v, "tun", UP);
        assert!(
            old_spis
                .iter()
                .all(|s| *s != kl::spi(&new, "spi_in") && *s != kl::spi(&new, "spi_out")),
            "new SPIs are the old ones: {new}"
        );
        let (after, clean) = wait_kernel(&lab, &gw1, Duration::from_secs(5), |s| {
            s.vpnd_states().len() == 2
        });
        assert!(clean, "stale states left:\n{}", after.describe());
        assert_child_in_kernel(&after, &new, &expect());
        assert_only(&after, &[kl::reqid(&new)]);
        for spi in &old_spis {
            assert!(
                after.states.iter().all(|s| s.spi != *spi),
                "stale state spi {spi:08x} left:\n{}",
                after.describe()
            );
        }
        // Each removed object is logged, one line each ("removed stale
        // state A -> B spi 0x... reqid N", "removed stale policy ...").
        let log = lab.log("vpnd-gw1");
        let removed: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("removed stale"))
            .collect();
        eprintln!("vpnd's removal lines:\n{}", removed.join("\n"));
        let states_removed = removed.iter().filter(|l| l.contains("stale state")).count();
        let policies_removed = removed
            .iter()
            .filter(|l| l.contains("stale policy"))
            .count();
        assert_eq!(
            (states_removed, policies_removed),
            (old_spis.len(), old_policies),
            "stale objects logged as removed (states, policies):\n{log}"
        );
        for spi in &old_spis {
            let hex = format!("spi 0x{spi:08x}");
            assert!(
                removed.iter().any(|l| l.contains(&hex)),
                "removed state {hex} not in vpnd's log:\n{log}"
            );
        }
        // The tunnel is back on both ends, charon holding only the new SAs.
        assert_ping(&lab, &gw1, LAN1_HOST, LAN2_HOST, 3);
        let (theirs, one_pair) =
            wait_kernel(&lab, &gw2, Duration::from_secs(10), |s| s.states.len() == 2);
        assert!(one_pair, "charon's kernel:\n{}", theirs.describe());
    });
}
