//! IKE fragmentation (RFC 7383) on simulated time: negotiation, large
//! IKE_AUTH messages in fragments both ways over a path that drops IP
//! fragments, loss and retransmission of fragments, and fragments that are
//! garbage, truncated, forged or over the limits.

mod common;

use std::time::Duration;

use common::{established, pair_with, up};
use ike::config::PeerConfig;
use ike::sa::FragmentStats;
use ike::testing::{Dir, Pair};
use ike::wire::{flags, ExchangeType, Header, IdType, Identification, PayloadType};

/// `n` /32 selectors per side: 198.19.1.1.. (initiator) and 198.19.2.1..
/// (responder), enough to make IKE_AUTH far larger than one datagram.
fn many_ts(a: &mut PeerConfig, b: &mut PeerConfig, n: u8) {
    let ts = |net: u8| -> Vec<_> {
        (1..=n)
            .map(|i| ike::ts::parse_ts(&format!("198.19.{net}.{i}/32")).expect("ts"))
            .collect()
    };
    a.children[0].local_ts = ts(1);
    a.children[0].remote_ts = ts(2);
    b.children[0].local_ts = ts(2);
    b.children[0].remote_ts = ts(1);
}

fn stats(p: &Pair, dir: Dir) -> FragmentStats {
    match dir {
        Dir::AtoB => p.a.sa().fragment_stats(),
        Dir::BtoA => p.b.sa().fragment_stats(),
    }
}

/// A 1280-byte IPv4 path that loses IP fragments.
const MTU: usize = 1280;

fn big_pair(f: impl FnOnce(&mut PeerConfig, &mut PeerConfig)) -> Pair {
    let mut p = pair_with(|a, b| {
        many_ts(a, b, 150);
        f(a, b)
    });
    p.path_mtu = Some(MTU);
    p
}

#[test]
fn negotiated_when_both_announce_it_and_small_messages_stay_whole() {
    let mut p = pair_with(|_, _| {});
    up(&mut p);
    assert!(p.a.sa().fragmentation() && p.b.sa().fragmentation());
    assert_eq!(stats(&p, Dir::AtoB), FragmentStats::default());
    assert_eq!(stats(&p, Dir::BtoA), FragmentStats::default());
}

#[test]
fn not_negotiated_when_either_side_turns_it_off() {
    for off_a in [true, false] {
        let mut p = pair_with(|a, b| {
            if off_a {
                a.fragment_size = 0
            } else {
                b.fragment_size = 0
            }
        });
        up(&mut p);
        assert!(!p.a.sa().fragmentation(), "initiator, off_a={off_a}");
        assert!(!p.b.sa().fragmentation(), "responder, off_a={off_a}");
    }
}

#[test]
fn large_ike_auth_goes_in_fragments_both_ways_over_a_path_without_ip_fragments() {
    let mut p = big_pair(|_, _| {});
    up(&mut p);
    assert!(p.children_mirror());
    let child = p.a.children.values().next().expect("child");
    assert_eq!((child.local_ts.len(), child.remote_ts.len()), (150, 150));
    for dir in [Dir::AtoB, Dir::BtoA] {
        let s = stats(&p, dir);
        assert_eq!(s.messages_fragmented, 1, "{dir:?}: {s:?}");
        assert_eq!(s.messages_reassembled, 1, "{dir:?}: {s:?}");
        assert!(s.fragments_sent >= 4, "{dir:?}: {s:?}");
        assert_eq!(s.fragments_dropped, 0, "{dir:?}: {s:?}");
        // Every datagram fits the 1280-byte IP packet with its headers.
        assert!(p.largest[&dir] + 28 <= MTU, "{dir:?}: {}", p.largest[&dir]);
    }
    assert_eq!(
        stats(&p, Dir::AtoB).fragments_sent,
        stats(&p, Dir::BtoA).fragments_received
    );
    assert_eq!(
        stats(&p, Dir::BtoA).fragments_sent,
        stats(&p, Dir::AtoB).fragments_received
    );
    // The SA works after: a CHILD SA of its own and a liveness check.
    p.command(Dir::AtoB, ike::sa::Command::Liveness);
    p.drive();
    assert!(p
        .a
        .events
        .iter()
        .any(|e| matches!(e, ike::sa::Event::Alive)));
}

#[test]
fn without_fragmentation_the_large_ike_auth_is_lost_on_that_path() {
    let mut p = big_pair(|a, _| a.fragment_size = 0);
    p.initiate(&["net"]);
    p.drive();
    assert!(!established(&p));
    assert!(
        p.a.closed_reason().is_some_and(|r| r.contains("IKE_AUTH")),
        "{:?}",
        p.a.closed_reason()
    );
    assert!(p.largest[&Dir::AtoB] + 28 > MTU);
}

#[test]
fn a_smaller_fragment_size_makes_smaller_and_more_fragments() {
    let mut p = big_pair(|a, b| {
        a.fragment_size = 576;
        b.fragment_size = 576;
    });
    up(&mut p);
    for dir in [Dir::AtoB, Dir::BtoA] {
        assert!(p.largest[&dir] + 28 <= 576, "{dir:?}: {}", p.largest[&dir]);
        assert!(stats(&p, dir).fragments_sent >= 10, "{:?}", stats(&p, dir));
    }
}

#[test]
fn a_lost_request_fragment_makes_the_initiator_resend_all_of_them() {
    let mut p = big_pair(|_, _| {});
    p.drop_fragment(Dir::AtoB, ExchangeType::IKE_AUTH, false, 2, 1);
    up(&mut p);
    let a = stats(&p, Dir::AtoB);
    let b = stats(&p, Dir::BtoA);
    // Sent twice, whole; the responder kept the first copies it had and
    // ignored them as duplicates the second time.
    assert_eq!(a.messages_fragmented, 1);
    assert_eq!(a.fragments_sent % 2, 0, "{a:?}");
    let n = a.fragments_sent / 2;
    assert_eq!(b.fragments_received, n, "{b:?}");
    assert_eq!(b.fragments_dropped, n - 1, "duplicates: {b:?}");
    assert_eq!(b.messages_reassembled, 1);
    assert!(p.children_mirror());
}

#[test]
fn a_lost_response_fragment_is_recovered_by_resending_the_cached_response_on_fragment_one() {
    let mut p = big_pair(|_, _| {});
    p.drop_fragment(Dir::BtoA, ExchangeType::IKE_AUTH, true, 3, 1);
    up(&mut p);
    let a = stats(&p, Dir::AtoB);
    let b = stats(&p, Dir::BtoA);
    let requests = a.fragments_sent / 2;
    assert_eq!(a.fragments_sent, 2 * requests, "request sent twice: {a:?}");
    // The response went out twice in full, for fragment 1 of the
    // retransmitted request alone; the request was processed once.
    let responses = b.fragments_sent / 2;
    assert_eq!(b.fragments_sent, 2 * responses, "{b:?}");
    assert_eq!(b.messages_reassembled, 1);
    assert_eq!(
        p.b.rejected
            .iter()
            .filter(|r| r.contains("already answered"))
            .count() as u32,
        requests - 1,
        "{:?}",
        p.b.rejected
    );
    assert_eq!(p.b.children.len(), 1);
    assert_eq!(a.messages_reassembled, 1);
    assert!(p.children_mirror());
}

/// A datagram of the SA `p` is setting up, as the initiator would send it:
/// IKE_AUTH request, message ID `id`, an SKF payload with `body` after the
/// Fragment Number and Total Fragments fields.
fn skf(p: &Pair, id: u32, number: u16, total: u16, body: &[u8]) -> Vec<u8> {
    let len = 28 + 8 + body.len();
    let h = Header {
        spi_i: p.a.sa().spi_i(),
        spi_r: p.a.sa().spi_r(),
        next_payload: PayloadType::SKF,
        version: 0x20,
        exchange: ExchangeType::IKE_AUTH,
        flags: flags::INITIATOR,
        message_id: id,
        length: len as u32,
    };
    let mut out = h.encode().to_vec();
    out.extend([35, 0]);
    out.extend(((8 + body.len()) as u16).to_be_bytes());
    out.extend(number.to_be_bytes());
    out.extend(total.to_be_bytes());
    out.extend(body);
    out
}

#[test]
fn garbage_truncated_and_forged_fragments_are_dropped_and_counted() {
    let mut p = big_pair(|_, _| {});
    // Hold IKE_AUTH back while we feed the responder bad fragments.
    p.drop_next(Dir::AtoB, ExchangeType::IKE_AUTH, false, 1000);
    p.initiate(&["net"]);
    p.drive_for(Duration::from_millis(100));
    assert!(p.b.sa.is_some() && p.a.sa().spi_r() != 0);
    let (local, remote) = (p.b.addr, p.a.addr);
    let now = p.now;
    let bad: Vec<(Vec<u8>, &str)> = vec![
        // Well formed, but not sealed with the SA's key.
        (skf(&p, 1, 1, 3, &[0x5a; 80]), "integrity"),
        // Fragment number above the total, and zero.
        (skf(&p, 1, 4, 3, &[0x5a; 80]), "fragment number 4 of 3"),
        (skf(&p, 1, 0, 3, &[0x5a; 80]), "fragment number 0 of 3"),
        // Truncated: the header's length disagrees with the datagram.
        (skf(&p, 1, 1, 3, &[0x5a; 80])[..60].to_vec(), "length"),
        // Too short for IV and ICV.
        (skf(&p, 1, 1, 3, &[1, 2, 3]), "too short"),
        // Of a message ID other than the expected one (not opened at all).
        (skf(&p, 7, 1, 3, &[0x5a; 80]), "message ID 7"),
    ];
    let n = bad.len() as u32;
    for (data, why) in bad {
        let e =
            p.b.sa_mut()
                .handle_datagram(now, local, remote, &data)
                .expect_err(why)
                .to_string();
        assert!(e.contains(why), "{why}: {e}");
    }
    let s = p.b.sa().fragment_stats();
    assert_eq!((s.fragments_dropped, s.fragments_received), (n, 0), "{s:?}");
    // A fragment of the real message with one bit flipped fails its ICV.
    p.drops.clear();
    p.tamper_next(Dir::AtoB, ExchangeType::IKE_AUTH, false, 1);
    p.drive();
    assert!(
        established(&p),
        "{:?} {:?}",
        p.a.closed_reason(),
        p.b.closed_reason()
    );
    let s = p.b.sa().fragment_stats();
    assert!(s.fragments_dropped > n, "{s:?}");
    assert!(p.b.rejected.iter().any(|r| r.contains("integrity")));
    assert!(p.children_mirror());
}

#[test]
fn fragments_are_refused_when_fragmentation_was_not_negotiated() {
    let mut p = big_pair(|_, b| b.fragment_size = 0);
    p.drop_next(Dir::AtoB, ExchangeType::IKE_AUTH, false, 1000);
    p.initiate(&["net"]);
    p.drive_for(Duration::from_millis(100));
    let (local, remote, now) = (p.b.addr, p.a.addr, p.now);
    let data = skf(&p, 1, 1, 2, &[0; 40]);
    let e = p.b.sa_mut().handle_datagram(now, local, remote, &data);
    assert!(
        e.as_ref()
            .is_err_and(|e| e.to_string().contains("not negotiated")),
        "{e:?}"
    );
}

fn fqdn(len: usize) -> Identification {
    Identification {
        id_type: IdType::ID_FQDN,
        data: vec![b'x'; len],
    }
}

#[test]
fn a_message_of_more_than_max_fragments_is_refused() {
    // 40000 bytes of identity at 576 bytes a fragment: over 80 fragments.
    let mut p = pair_with(|a, b| {
        a.fragment_size = 576;
        a.local_id = fqdn(40_000);
        b.remote_id = Some(fqdn(40_000));
    });
    p.initiate(&["net"]);
    p.drive();
    assert!(!established(&p));
    assert!(
        p.b.rejected
            .iter()
            .any(|r| r.contains("exceed the limit of 64")),
        "{:?}",
        p.b.rejected.first()
    );
    assert_eq!(p.b.sa().fragment_stats().messages_reassembled, 0);
}

#[test]
fn a_message_of_more_than_max_reassembled_len_is_refused() {
    // Two identities of 40000 and 30000 bytes: 59 fragments of 1280, but
    // more than 64 KiB in all.
    let mut p = pair_with(|a, b| {
        a.local_id = fqdn(40_000);
        a.remote_id = Some(fqdn(30_000));
        b.local_id = fqdn(30_000);
        b.remote_id = Some(fqdn(40_000));
    });
    p.initiate(&["net"]);
    p.drive();
    assert!(!established(&p));
    assert!(
        p.b.rejected
            .iter()
            .any(|r| r.contains("exceeds 65536 bytes")),
        "{:?}",
        p.b.rejected.first()
    );
}

#[test]
fn a_partial_message_is_dropped_after_the_reassembly_timeout() {
    let mut p = big_pair(|a, _| {
        // Retransmissions far apart, so the partial message ages.
        a.retransmit = ike::config::Retransmit {
            timeout: Duration::from_secs(40),
            tries: 1,
            max_timeout: Duration::from_secs(40),
        };
    });
    p.drop_fragment(Dir::BtoA, ExchangeType::IKE_AUTH, true, 2, 1);
    p.initiate(&["net"]);
    p.drive_for(Duration::from_secs(1));
    let held = p.a.sa().fragment_stats().fragments_received;
    assert!(held >= 3, "{:?}", p.a.sa().fragment_stats());
    let deadline = p.a.sa().poll_timeout().expect("timer");
    assert!(deadline <= p.now + ike::sa::REASSEMBLY_TIMEOUT);
    p.drive_for(ike::sa::REASSEMBLY_TIMEOUT);
    assert_eq!(p.a.sa().fragment_stats().fragments_dropped, held);
    // The retransmission at 40 s gets the whole response again.
    p.drive();
    assert!(established(&p), "{:?}", p.a.closed_reason());
}

/// The seeds of the `fragments` fuzz target run through its entry point
/// and each reassembles what it was written to.
#[test]
fn fuzz_seeds_reassemble() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/fragments");
    for (name, complete) in [("out_of_order.bin", 1), ("total_changes.bin", 2)] {
        let data = std::fs::read(dir.join(name)).expect("seed");
        assert_eq!(ike::sa::fuzz_reassembly(&data), complete, "{name}");
    }
    // Arbitrary bytes never panic it.
    let mut x = 0x1234_5678u32;
    for _ in 0..200 {
        let data: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        ike::sa::fuzz_reassembly(&data);
    }
}

#[test]
fn only_the_fragment_that_completes_a_message_costs_key_work() {
    use ike::sa::{Cost, KeyWork};
    let mut p = big_pair(|_, _| {});
    p.drop_fragment(Dir::AtoB, ExchangeType::IKE_AUTH, false, 1, 1);
    p.initiate(&["net"]);
    p.drive_for(Duration::from_millis(100));
    let n = stats(&p, Dir::AtoB).fragments_sent as u16;
    assert!(n >= 3, "{n}");
    assert_eq!(stats(&p, Dir::BtoA).fragments_received, u32::from(n) - 1);
    let cost =
        |p: &Pair, id, number, total| p.b.sa().datagram_cost(&skf(p, id, number, total, &[0; 40]));
    assert_eq!(
        cost(&p, 1, 1, n),
        Cost::Keys(KeyWork::Authenticate),
        "the missing one"
    );
    assert_eq!(cost(&p, 1, 2, n), Cost::Cheap, "held already");
    assert_eq!(cost(&p, 1, 1, n + 1), Cost::Cheap, "another total");
    assert_eq!(cost(&p, 2, 1, n), Cost::Cheap, "another message");
    assert_eq!(
        cost(&p, 1, 1, 1),
        Cost::Keys(KeyWork::Authenticate),
        "a lone fragment"
    );
    p.drive();
    assert!(established(&p));
}

#[test]
fn a_forged_fragment_one_of_the_answered_request_brings_no_response() {
    let mut p = big_pair(|_, _| {});
    up(&mut p);
    let sent = stats(&p, Dir::BtoA).fragments_sent;
    let (local, remote, now) = (p.b.addr, p.a.addr, p.now);
    for number in [1, 2] {
        let data = skf(&p, 1, number, 3, &[0x33; 64]);
        let e = p.b.sa_mut().handle_datagram(now, local, remote, &data);
        let e = e.expect_err("dropped").to_string();
        let why = if number == 1 {
            "integrity"
        } else {
            "already answered"
        };
        assert!(e.contains(why), "{number}: {e}");
    }
    assert_eq!(stats(&p, Dir::BtoA).fragments_sent, sent, "nothing resent");
    assert!(p.b.sa_mut().poll_transmit().is_none());
}

#[test]
fn the_rekeyed_ike_sa_keeps_fragmenting_a_large_child_rekey() {
    use ike::sa::Command;
    let mut p = big_pair(|_, _| {});
    up(&mut p);
    p.command(Dir::AtoB, Command::RekeyIke);
    p.drive();
    assert!(
        p.a.events
            .iter()
            .any(|e| matches!(e, ike::sa::Event::IkeRekeyed { .. })),
        "IKE SA not rekeyed"
    );
    assert!(p.a.sa().fragmentation() && p.b.sa().fragmentation());
    let before = stats(&p, Dir::AtoB).messages_fragmented;
    let spi_in = *p.a.children.keys().next().expect("child");
    p.command(Dir::AtoB, Command::RekeyChild { spi_in });
    p.drive();
    assert!(!p.a.children.contains_key(&spi_in), "old child still there");
    assert_eq!(p.a.children.len(), 1);
    assert!(p.children_mirror());
    // Its CREATE_CHILD_SA (150 selectors) crossed the 1280-byte path in
    // fragments, and so did the answer.
    assert!(stats(&p, Dir::AtoB).messages_fragmented > before);
    assert!(stats(&p, Dir::BtoA).messages_fragmented >= 2);
}

#[test]
fn over_ipv6_the_larger_header_counts() {
    let mut p = big_pair(|_, _| {});
    p.a.addr = "[2001:db8::1]:500".parse().unwrap();
    p.b.addr = "[2001:db8::2]:500".parse().unwrap();
    up(&mut p);
    for dir in [Dir::AtoB, Dir::BtoA] {
        // 1280 - 40 (IPv6) - 8 (UDP): the largest datagram is 1232 bytes.
        assert_eq!(p.largest[&dir], 1232, "{dir:?}");
        assert_eq!(stats(&p, dir).messages_fragmented, 1, "{dir:?}");
    }
}
