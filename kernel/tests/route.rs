//! Routes of the userspace dataplane: range-to-prefix conversion, and route
//! add/replace/delete over rtnetlink.
//!
//! The rtnetlink tests need root (CAP_NET_ADMIN and CAP_SYS_ADMIN): each
//! runs in a thread that unshares its network namespace, so nothing they do
//! is seen by the host. Without root they fail; they do not skip.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use kernel::userspace::route::{ifindex, local_addr_in, range_to_prefixes, MarkRule, Routes};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn prefixes(start: &str, end: &str) -> Vec<String> {
    range_to_prefixes(ip(start), ip(end))
        .into_iter()
        .map(|(a, p)| format!("{a}/{p}"))
        .collect()
}

#[test]
fn range_to_prefixes_v4() {
    assert_eq!(prefixes("198.19.2.0", "198.19.2.255"), ["198.19.2.0/24"]);
    assert_eq!(prefixes("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
    assert_eq!(prefixes("10.1.2.3", "10.1.2.3"), ["10.1.2.3/32"]);
    assert_eq!(prefixes("0.0.0.0", "0.0.0.0"), ["0.0.0.0/32"]);
    assert_eq!(
        prefixes("255.255.255.255", "255.255.255.255"),
        ["255.255.255.255/32"]
    );
    assert_eq!(
        prefixes("10.0.0.1", "10.0.0.6"),
        ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
    );
    assert_eq!(
        prefixes("0.0.0.1", "255.255.255.255")
            .first()
            .map(String::as_str),
        Some("0.0.0.1/32")
    );
    assert_eq!(prefixes("0.0.0.1", "255.255.255.255").len(), 32);
    assert_eq!(prefixes("128.0.0.0", "255.255.255.255"), ["128.0.0.0/1"]);
    assert_eq!(
        prefixes("10.0.0.0", "10.0.2.255"),
        ["10.0.0.0/23", "10.0.2.0/24"]
    );
    // Reversed or mixed ranges are empty.
    assert!(prefixes("10.0.0.2", "10.0.0.1").is_empty());
    assert!(prefixes("10.0.0.1", "::1").is_empty());
}

#[test]
fn range_to_prefixes_v6() {
    assert_eq!(
        prefixes("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ["::/0"]
    );
    assert_eq!(prefixes("2001:db8::1", "2001:db8::1"), ["2001:db8::1/128"]);
    assert_eq!(
        prefixes("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"),
        ["2001:db8::/64"]
    );
    assert_eq!(
        prefixes(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        ),
        ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"]
    );
    assert_eq!(
        prefixes("2001:db8::1", "2001:db8::6"),
        [
            "2001:db8::1/128",
            "2001:db8::2/127",
            "2001:db8::4/127",
            "2001:db8::6/128"
        ]
    );
    assert_eq!(
        prefixes("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").len(),
        128
    );
}

/// Checks that `out` covers exactly `[start, end]` in ascending, disjoint,
/// aligned blocks, with no two sibling blocks that could be merged.
fn check_cover(start: u128, end: u128, bits: u8, out: &[(IpAddr, u8)]) {
    let val = |a: IpAddr| match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mut next = Some(start);
    let mut prev: Option<(u128, u8)> = None;
    for &(addr, len) in out {
        let first = val(addr);
        assert_eq!(Some(first), next, "gap or overlap in {out:?}");
        let host = bits - len;
        let size_m1 = if host == 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        assert_eq!(first & size_m1, 0, "unaligned {addr}/{len}");
        let last = first + size_m1;
        assert!(last <= end);
        if let Some((pfirst, plen)) = prev {
            let mergeable = plen == len
                && len > 0
                && (pfirst >> (bits - len + 1)) == (first >> (bits - len + 1));
            assert!(!mergeable, "{out:?} not minimal");
        }
        prev = Some((first, len));
        next = last.checked_add(1);
    }
    assert_eq!(next, end.checked_add(1), "{out:?} does not reach the end");
}

proptest! {
    #[test]
    fn range_to_prefixes_covers_v4(a: u32, b: u32) {
        let (s, e) = (a.min(b), a.max(b));
        let out = range_to_prefixes(Ipv4Addr::from(s).into(), Ipv4Addr::from(e).into());
        check_cover(s.into(), e.into(), 32, &out);
        prop_assert!(out.len() <= 62);
    }

    #[test]
    fn range_to_prefixes_covers_v6(a: u128, b: u128) {
        let (s, e) = (a.min(b), a.max(b));
        let out = range_to_prefixes(Ipv6Addr::from(s).into(), Ipv6Addr::from(e).into());
        check_cover(s, e, 128, &out);
        prop_assert!(out.len() <= 254);
    }
}

#[test]
fn ifindex_of_missing_device_is_an_error() {
    assert!(ifindex("no-such-dev0").is_err());
    assert!(ifindex("lo").unwrap() > 0);
}

/// Runs `f` on a thread in a fresh network namespace of its own; panics
/// (fails the test) if the namespace cannot be made, e.g. without root.
fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only the calling thread's namespaces.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed ({}); these tests need root",
            std::io::Error::last_os_error()
        );
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Runs `ip <args>` (in the calling thread's namespace) and returns stdout.
fn run_ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip(8)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Our routes on rt0, one `ip route` line each, for `family` "-4" or "-6".
fn static_routes(family: &str) -> Vec<String> {
    run_ip(&[
        family, "route", "show", "table", "main", "proto", "static", "dev", "rt0",
    ])
    .lines()
    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    .collect()
}

/// A TUN device rt0 with 198.18.0.1/24 and 2001:db8:1::1/64, up, in the
/// calling thread's namespace.
fn make_rt0() -> tun_rs::SyncDevice {
    let dev = tun_rs::DeviceBuilder::new()
        .name("rt0")
        .ipv4(Ipv4Addr::new(198, 18, 0, 1), 24, None)
        .enable(true)
        .build_sync()
        .expect("create TUN device rt0");
    run_ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:1::1/64",
        "dev",
        "rt0",
        "nodad",
    ]);
    dev
}

#[test]
fn netns_is_private() {
    in_netns(|| {
        let _dev = make_rt0();
        // A child of this thread sees this namespace: only lo and rt0.
        let links = run_ip(&["-o", "link", "show"]);
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap())
            .collect();
        assert_eq!(names, ["lo", "rt0"], "{links}");
        assert!(ifindex("rt0").is_ok());
    });
    // Neither the host nor this thread sees the device.
    assert!(ifindex("rt0").is_err());
}

#[test]
fn add_replace_delete_v4_v6() {
    in_netns(|| {
        let _dev = make_rt0();
        let idx = ifindex("rt0").unwrap();
        let routes = Routes::new().unwrap();

        routes.add(ip("198.19.2.0"), 24, idx, None).unwrap();
        routes
            .add(ip("198.19.3.0"), 24, idx, Some(ip("198.18.0.1")))
            .unwrap();
        routes.add(ip("2001:db8:2::"), 48, idx, None).unwrap();
        routes
            .add(ip("2001:db8:3::"), 48, idx, Some(ip("2001:db8:1::1")))
            .unwrap();
        // Host bits are cleared, not refused.
        routes.add(ip("198.19.4.77"), 24, idx, None).unwrap();

        assert_eq!(
            static_routes("-4"),
            [
                "198.19.2.0/24 scope link",
                "198.19.3.0/24 scope link src 198.18.0.1",
                "198.19.4.0/24 scope link",
            ]
        );
        let v6 = static_routes("-6");
        assert_eq!(v6.len(), 2, "{v6:?}");
        assert!(v6[0].starts_with("2001:db8:2::/48 metric"), "{v6:?}");
        assert!(
            v6[1].starts_with("2001:db8:3::/48 src 2001:db8:1::1 metric"),
            "{v6:?}"
        );

        // Replace: same route again, then with a source; never duplicated.
        routes.add(ip("198.19.2.0"), 24, idx, None).unwrap();
        routes
            .add(ip("198.19.2.0"), 24, idx, Some(ip("198.18.0.1")))
            .unwrap();
        routes
            .add(ip("2001:db8:2::"), 48, idx, Some(ip("2001:db8:1::1")))
            .unwrap();
        let v4 = static_routes("-4");
        assert_eq!(v4[0], "198.19.2.0/24 scope link src 198.18.0.1");
        assert_eq!(v4.len(), 3);
        let v6 = static_routes("-6");
        assert_eq!(v6.len(), 2, "{v6:?}");
        assert!(
            v6[0].starts_with("2001:db8:2::/48 src 2001:db8:1::1 metric"),
            "{v6:?}"
        );

        // Delete, and delete again.
        for _ in 0..2 {
            routes.del(ip("198.19.2.0"), 24, idx).unwrap();
            routes.del(ip("198.19.3.0"), 24, idx).unwrap();
            routes.del(ip("198.19.4.0"), 24, idx).unwrap();
            routes.del(ip("2001:db8:2::"), 48, idx).unwrap();
            routes.del(ip("2001:db8:3::"), 48, idx).unwrap();
            assert!(static_routes("-4").is_empty());
            assert!(static_routes("-6").is_empty());
        }
        // The kernel's own connected routes are untouched.
        assert!(run_ip(&["-4", "route", "show", "dev", "rt0"]).contains("198.18.0.0/24"));

        // Whole-space routes (no RTA_DST).
        routes.add(ip("0.0.0.0"), 0, idx, None).unwrap();
        routes.add(ip("::"), 0, idx, None).unwrap();
        assert_eq!(static_routes("-4"), ["default scope link"]);
        assert!(static_routes("-6")[0].starts_with("default metric"));
        routes.del(ip("0.0.0.0"), 0, idx).unwrap();
        routes.del(ip("::"), 0, idx).unwrap();
        assert!(static_routes("-4").is_empty());
        assert!(static_routes("-6").is_empty());
    });
}

#[test]
fn kernel_refusals_are_errors() {
    in_netns(|| {
        let _dev = make_rt0();
        let idx = ifindex("rt0").unwrap();
        let routes = Routes::new().unwrap();

        let e = routes.add(ip("198.19.2.0"), 24, 9999, None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
        // A source that is not an address of this host.
        let e = routes
            .add(ip("198.19.2.0"), 24, idx, Some(ip("203.0.113.1")))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        let e = routes
            .add(ip("2001:db8:2::"), 48, idx, Some(ip("2001:db8:9::1")))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        // Caught before the kernel.
        let e = routes.add(ip("198.19.2.0"), 33, idx, None).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let e = routes
            .add(ip("198.19.2.0"), 24, idx, Some(ip("2001:db8:1::1")))
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        // Nothing was left behind, and the socket still works.
        assert!(static_routes("-4").is_empty());
        routes.add(ip("198.19.2.0"), 24, idx, None).unwrap();
        assert_eq!(static_routes("-4"), ["198.19.2.0/24 scope link"]);
    });
}

#[test]
fn routes_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Routes>();
}

#[test]
fn local_addr_in_prefers_non_loopback() {
    in_netns(|| {
        let _dev = make_rt0();
        run_ip(&["link", "set", "lo", "up"]);
        run_ip(&["addr", "add", "198.18.0.9/32", "dev", "lo"]);
        run_ip(&["-6", "addr", "add", "2001:db8:1::9/128", "dev", "lo"]);

        let r = |a: &str, b: &str| local_addr_in(ip(a), ip(b));
        assert_eq!(r("198.18.0.0", "198.18.0.255"), Some(ip("198.18.0.1")));
        assert_eq!(r("198.18.0.5", "198.18.0.10"), Some(ip("198.18.0.9")));
        assert_eq!(r("0.0.0.0", "255.255.255.255"), Some(ip("198.18.0.1")));
        assert_eq!(r("127.0.0.0", "127.255.255.255"), Some(ip("127.0.0.1")));
        assert_eq!(r("203.0.113.0", "203.0.113.255"), None);
        assert_eq!(
            r("2001:db8:1::", "2001:db8:1::ffff"),
            Some(ip("2001:db8:1::1"))
        );
        assert_eq!(
            r("2001:db8:1::5", "2001:db8:1::f"),
            Some(ip("2001:db8:1::9"))
        );
        assert_eq!(r("2001:db8:2::", "2001:db8:2::ffff"), None);
        // Mixed families find nothing.
        assert_eq!(r("0.0.0.0", "2001:db8:1::ffff"), None);
    });
}

#[test]
fn routes_in_a_table_and_the_fwmark_rule() {
    in_netns(|| {
        let _dev = make_rt0();
        let idx = ifindex("rt0").unwrap();
        assert!(Routes::with_table(0).is_err());
        for table in [220u32, 70000] {
            let routes = Routes::with_table(table).unwrap();
            assert_eq!(routes.table(), table);
            let t = table.to_string();
            routes
                .add(ip("198.18.0.2"), 32, idx, Some(ip("198.18.0.1")))
                .unwrap();
            routes.add(ip("2001:db8:9::"), 48, idx, None).unwrap();
            let v4 = run_ip(&["-4", "route", "show", "table", &t]);
            assert_eq!(
                v4.trim(),
                "198.18.0.2 dev rt0 proto static scope link src 198.18.0.1"
            );
            assert!(run_ip(&["-6", "route", "show", "table", &t]).contains("2001:db8:9::/48"));
            // Not in main.
            assert!(static_routes("-4").is_empty());

            let rule = MarkRule {
                priority: 220,
                fwmark: 0x42,
                table,
            };
            // Adding twice leaves one rule per family (a restart after
            // SIGKILL finds its old rule).
            routes.add_rule(rule).unwrap();
            routes.add_rule(rule).unwrap();
            let want = format!("220:\tnot from all fwmark 0x42 lookup {table}");
            for fam in ["-4", "-6"] {
                let rules = run_ip(&[fam, "rule", "show", "priority", "220"]);
                assert_eq!(rules.trim(), want, "{fam}");
            }
            routes.del_rule(rule).unwrap();
            routes.del_rule(rule).unwrap();
            for fam in ["-4", "-6"] {
                assert_eq!(run_ip(&[fam, "rule", "show", "priority", "220"]).trim(), "");
            }
            routes.del(ip("198.18.0.2"), 32, idx).unwrap();
            routes.del(ip("2001:db8:9::"), 48, idx).unwrap();
            assert_eq!(run_ip(&["-4", "route", "show", "table", &t]).trim(), "");
        }
    });
}
