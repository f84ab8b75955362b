//! Userspace ESP dataplane: ESP encapsulation (RFC 4303/4106/7634), the
//! anti-replay window, the SPD and 5-tuple parsing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ike::config::Mode;
use ike::crypto::AeadAlg;
use ike::ts::parse_ts;
use kernel::userspace::esp::{self, classify_udp4500, Udp4500, MIN_PACKET_LEN};
use kernel::userspace::{
    parse_five_tuple, Action, EspError, InboundSa, OutboundSa, Policy, ReplayError, ReplayWindow,
    Spd,
};
use proptest::prelude::*;
use ring::aead;

const SPI: u32 = 0xc0ffee01;

fn material(alg: AeadAlg, seed: u8) -> Vec<u8> {
    (0..alg.key_material_len())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn pair(alg: AeadAlg, esn: bool, mode: Mode) -> (OutboundSa, InboundSa) {
    let m = material(alg, 7);
    (
        OutboundSa::from_material(SPI, alg, &m, esn, mode).unwrap(),
        InboundSa::from_material(SPI, alg, &m, esn, mode).unwrap(),
    )
}

fn ipv4_packet(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    let total = (20 + l4.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&[10, 1, 2, 3]);
    p[16..20].copy_from_slice(&[192, 168, 1, 9]);
    p.extend_from_slice(l4);
    p
}

fn ipv6_packet(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&"2001:db8:1::5".parse::<Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(&"2001:db8:2::9".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(rest);
    p
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

fn enc(out: &mut OutboundSa, inner: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let n = out.encapsulate(inner, &mut buf).unwrap();
    assert_eq!(n, buf.len());
    buf
}

fn ring_alg(alg: AeadAlg) -> &'static aead::Algorithm {
    match alg {
        AeadAlg::AesGcm16_128 => &aead::AES_128_GCM,
        AeadAlg::AesGcm16_256 => &aead::AES_256_GCM,
        AeadAlg::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
    }
}

fn ring_key(alg: AeadAlg, m: &[u8]) -> (aead::LessSafeKey, [u8; 4]) {
    let k =
        aead::LessSafeKey::new(aead::UnboundKey::new(ring_alg(alg), &m[..alg.key_len()]).unwrap());
    let mut salt = [0u8; 4];
    salt.copy_from_slice(&m[alg.key_len()..]);
    (k, salt)
}

fn ring_aad(spi: u32, seq: u64, esn: bool) -> Vec<u8> {
    let mut a = spi.to_be_bytes().to_vec();
    if esn {
        a.extend_from_slice(&((seq >> 32) as u32).to_be_bytes());
    }
    a.extend_from_slice(&(seq as u32).to_be_bytes());
    a
}

/// Independent ESP sealer (ring directly): SPI ‖ seq ‖ IV=seq ‖ E(plaintext) ‖ ICV.
fn ring_seal(alg: AeadAlg, m: &[u8], seq: u64, esn: bool, plaintext: &[u8]) -> Vec<u8> {
    let (k, salt) = ring_key(alg, m);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&salt);
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    let mut body = plaintext.to_vec();
    k.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(ring_aad(SPI, seq, esn)),
        &mut body,
    )
    .unwrap();
    let mut p = SPI.to_be_bytes().to_vec();
    p.extend_from_slice(&(seq as u32).to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&body);
    p
}

fn dec_seq(inb: &mut InboundSa, pkt: &[u8]) -> Result<u64, EspError> {
    let mut b = pkt.to_vec();
    inb.decapsulate(&mut b).map(|d| d.seq)
}

// ---------------------------------------------------------------- ESP

#[test]
fn esp_round_trip_every_aead_esn_and_family() {
    let v4 = ipv4_packet(17, &udp(1234, 53, b"hello tunnel"));
    let v6 = ipv6_packet(17, &udp(1234, 53, b"hello v6 tunnel!"));
    for alg in AeadAlg::ALL {
        for esn in [false, true] {
            let (mut out, mut inb) = pair(alg, esn, Mode::Tunnel);
            for (i, inner) in [&v4, &v6, &v4, &v6].into_iter().enumerate() {
                let mut pkt = enc(&mut out, inner);
                assert_eq!(pkt.len() % 4, 0, "{alg} esn={esn}");
                let d = inb.decapsulate(&mut pkt).unwrap();
                assert_eq!(d.seq, i as u64 + 1);
                assert_eq!(d.next_header, if inner[0] >> 4 == 4 { 4 } else { 41 });
                assert_eq!(&d.payload[..], &inner[..]);
                assert!(!d.is_dummy());
            }
            assert_eq!(inb.stats().packets, 4);
            assert_eq!(out.counters().0, 4);
        }
    }
}

#[test]
fn esp_round_trip_every_inner_length_alignment() {
    let (mut out, mut inb) = pair(AeadAlg::AesGcm16_256, false, Mode::Tunnel);
    for extra in 0..16 {
        let inner = ipv4_packet(17, &vec![0xab; extra]);
        let mut pkt = enc(&mut out, &inner);
        assert!(pkt.len() <= OutboundSa::max_output_len(inner.len()));
        let d = inb.decapsulate(&mut pkt).unwrap();
        assert_eq!(&d.payload[..], &inner[..]);
    }
}

#[test]
fn esp_encapsulate_appends_after_existing_bytes() {
    let (mut out, mut inb) = pair(AeadAlg::ChaCha20Poly1305, false, Mode::Tunnel);
    let inner = ipv4_packet(6, &[1; 30]);
    let mut buf = vec![0xee; 8]; // e.g. room for a UDP header
    let n = out.encapsulate(&inner, &mut buf).unwrap();
    assert_eq!(buf.len(), 8 + n);
    assert_eq!(&buf[..8], &[0xee; 8]);
    let d = inb.decapsulate(&mut buf[8..]).unwrap();
    assert_eq!(&d.payload[..], &inner[..]);
}

#[test]
fn esp_transport_mode_carries_upper_layer() {
    for alg in AeadAlg::ALL {
        let (mut out, mut inb) = pair(alg, false, Mode::Transport);
        let seg = udp(500, 4500, b"transport");
        let mut pkt = enc(&mut out, &ipv4_packet(17, &seg));
        let d = inb.decapsulate(&mut pkt).unwrap();
        assert_eq!(d.next_header, 17);
        assert_eq!(&d.payload[..], &seg[..]);
        let mut pkt = enc(&mut out, &ipv6_packet(6, &[9; 20]));
        let d = inb.decapsulate(&mut pkt).unwrap();
        assert_eq!(d.next_header, 6);
        assert_eq!(&d.payload[..], &[9; 20]);
    }
}

#[test]
fn esp_encapsulate_non_ip_is_refused_without_using_a_sequence_number() {
    let (mut out, _) = pair(AeadAlg::AesGcm16_128, false, Mode::Tunnel);
    let mut buf = Vec::new();
    for bad in [&[][..], &[0x45; 10][..], &[0x12; 60][..], &[0x60; 39][..]] {
        assert_eq!(
            out.encapsulate(bad, &mut buf),
            Err(EspError::BadInnerPacket)
        );
    }
    assert!(buf.is_empty());
    assert_eq!(out.seq(), 0);
}

/// The layout is exactly RFC 4303 §2 / RFC 4106 §3, checked by opening the
/// packet with ring directly.
#[test]
fn esp_layout_known_answer_with_ring() {
    for alg in AeadAlg::ALL {
        for esn in [false, true] {
            let m = material(alg, 7);
            let start = if esn { 0x1_0000_0004 } else { 4 };
            let mut out = OutboundSa::from_material(SPI, alg, &m, esn, Mode::Tunnel)
                .unwrap()
                .with_last_seq(start);
            // 23 bytes: 23 + 2 = 25 → 3 bytes of padding.
            let inner = ipv4_packet(17, &[0x5a; 3]);
            assert_eq!(inner.len(), 23);
            let pkt = enc(&mut out, &inner);
            let seq: u64 = start + 1;
            assert_eq!(pkt.len(), 4 + 4 + 8 + 23 + 3 + 2 + 16);
            assert_eq!(&pkt[0..4], &SPI.to_be_bytes(), "SPI at offset 0");
            assert_eq!(&pkt[4..8], &(seq as u32).to_be_bytes(), "low seq at 4");
            assert_eq!(&pkt[8..16], &seq.to_be_bytes(), "IV = 64-bit seq at 8");

            let (k, salt) = ring_key(alg, &m);
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&salt);
            nonce[4..].copy_from_slice(&pkt[8..16]);
            let mut body = pkt[16..].to_vec();
            let pt = k
                .open_in_place(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(ring_aad(SPI, seq, esn)),
                    &mut body,
                )
                .expect("ring opens our packet with RFC 4106 AAD/nonce");
            let mut want = inner.clone();
            want.extend_from_slice(&[1, 2, 3, 3, 4]);
            assert_eq!(pt, &want[..]);
        }
    }
}

/// The other direction: packets sealed by ring open with InboundSa.
#[test]
fn esp_decapsulates_independently_sealed_packet() {
    for alg in AeadAlg::ALL {
        for esn in [false, true] {
            let m = material(alg, 9);
            let mut inb = InboundSa::from_material(SPI, alg, &m, esn, Mode::Tunnel).unwrap();
            let inner = ipv6_packet(59, &[]);
            let mut pt = inner.clone();
            pt.extend_from_slice(&[1, 2, 2, 41]);
            let mut pkt = ring_seal(alg, &m, 1, esn, &pt);
            let d = inb.decapsulate(&mut pkt).unwrap();
            assert_eq!(d.next_header, 41);
            assert_eq!(&d.payload[..], &inner[..]);
        }
    }
}

#[test]
fn esp_bad_padding_is_rejected() {
    let alg = AeadAlg::AesGcm16_128;
    let m = material(alg, 3);
    let inner = ipv4_packet(17, &[0; 2]);
    for trailer in [
        &[1, 3, 2, 4][..], // pad bytes not monotonic
        &[0, 0, 2, 4][..], // pad bytes zero
        &[200, 4][..],     // pad length beyond plaintext (of the trailer alone)
    ] {
        let mut inb = InboundSa::from_material(SPI, alg, &m, false, Mode::Tunnel).unwrap();
        let mut pt = if trailer.len() == 2 {
            Vec::new()
        } else {
            inner.clone()
        };
        pt.extend_from_slice(trailer);
        let mut pkt = ring_seal(alg, &m, 1, false, &pt);
        assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::BadPadding));
        assert_eq!(inb.stats().bad_padding, 1);
        // Authentic packet: its sequence number is consumed.
        assert_eq!(inb.replay_window().top(), 1);
    }
}

#[test]
fn esp_next_header_checked_in_tunnel_mode() {
    let alg = AeadAlg::ChaCha20Poly1305;
    let m = material(alg, 1);
    let mut inb = InboundSa::from_material(SPI, alg, &m, false, Mode::Tunnel).unwrap();
    let inner = ipv4_packet(6, &[0; 2]);
    // Next header 17 in tunnel mode.
    let mut pt = inner.clone();
    pt.extend_from_slice(&[0, 17]);
    let mut pkt = ring_seal(alg, &m, 1, false, &pt);
    assert_eq!(
        inb.decapsulate(&mut pkt),
        Err(EspError::UnknownNextHeader(17))
    );
    // Next header 41 but an IPv4 packet inside.
    let mut pt = inner.clone();
    pt.extend_from_slice(&[0, 41]);
    let mut pkt = ring_seal(alg, &m, 2, false, &pt);
    assert_eq!(
        inb.decapsulate(&mut pkt),
        Err(EspError::UnknownNextHeader(41))
    );
    // Next header 59: a dummy packet, verified and empty.
    let mut pt = vec![0xde; 6];
    pt.extend_from_slice(&[0, 59]);
    let mut pkt = ring_seal(alg, &m, 3, false, &pt);
    let d = inb.decapsulate(&mut pkt).unwrap();
    assert!(d.is_dummy());
    assert!(d.payload.is_empty());
}

#[test]
fn esp_replayed_packet_is_counted_as_replay_not_integrity() {
    let (mut out, mut inb) = pair(AeadAlg::AesGcm16_256, false, Mode::Tunnel);
    let pkt = enc(&mut out, &ipv4_packet(1, &[8, 0, 0, 0]));
    inb.decapsulate(&mut pkt.clone()).unwrap();
    assert_eq!(
        inb.decapsulate(&mut pkt.clone()),
        Err(EspError::Replayed(1))
    );
    let s = inb.stats();
    assert_eq!((s.replayed, s.integrity, s.packets), (1, 0, 1));
}

#[test]
fn esp_tampered_byte_anywhere_fails_and_leaves_window() {
    for alg in AeadAlg::ALL {
        for esn in [false, true] {
            let (mut out, mut inb) = pair(alg, esn, Mode::Tunnel);
            let pkt = enc(&mut out, &ipv4_packet(17, &udp(1, 2, b"tamper me")));
            for i in 0..pkt.len() {
                let mut bad = pkt.clone();
                bad[i] ^= 0x80;
                let r = inb.decapsulate(&mut bad);
                if i < 4 {
                    assert_eq!(r, Err(EspError::WrongSpi(SPI ^ (0x80 << (8 * (3 - i))))));
                } else {
                    assert_eq!(r, Err(EspError::Integrity), "{alg} esn={esn} byte {i}");
                }
                assert_eq!(inb.replay_window().top(), 0, "window moved at byte {i}");
            }
            assert_eq!(inb.stats().integrity, pkt.len() as u64 - 4);
            // The genuine packet with the same sequence number still passes.
            assert_eq!(dec_seq(&mut inb, &pkt), Ok(1));
        }
    }
}

#[test]
fn esp_wrong_key_is_integrity_error() {
    let alg = AeadAlg::AesGcm16_128;
    let (mut out, _) = pair(alg, false, Mode::Tunnel);
    let mut inb =
        InboundSa::from_material(SPI, alg, &material(alg, 8), false, Mode::Tunnel).unwrap();
    let mut pkt = enc(&mut out, &ipv4_packet(17, &[]));
    assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::Integrity));
}

#[test]
fn esp_truncated_inputs_of_every_length_are_errors() {
    for alg in AeadAlg::ALL {
        for esn in [false, true] {
            let (mut out, mut inb) = pair(alg, esn, Mode::Tunnel);
            let pkt = enc(&mut out, &ipv4_packet(17, &[]));
            for len in 0..pkt.len() {
                let mut p = pkt[..len].to_vec();
                let r = inb.decapsulate(&mut p);
                if len < MIN_PACKET_LEN {
                    assert_eq!(r, Err(EspError::Truncated(len)));
                } else {
                    assert_eq!(r, Err(EspError::Integrity));
                }
            }
            assert!(inb.decapsulate(&mut pkt.clone()).is_ok());
        }
    }
}

#[test]
fn esp_sequence_overflow_is_an_error_not_a_wrap() {
    let alg = AeadAlg::AesGcm16_256;
    let m = material(alg, 2);
    let inner = ipv4_packet(17, &[]);
    for (esn, last) in [(false, u64::from(u32::MAX) - 1), (true, u64::MAX - 1)] {
        let mut out = OutboundSa::from_material(SPI, alg, &m, esn, Mode::Tunnel)
            .unwrap()
            .with_last_seq(last);
        let mut buf = Vec::new();
        out.encapsulate(&inner, &mut buf).unwrap();
        assert_eq!(&buf[4..8], &[0xff; 4]);
        let len = buf.len();
        for _ in 0..3 {
            assert_eq!(
                out.encapsulate(&inner, &mut buf),
                Err(EspError::SequenceOverflow)
            );
        }
        assert_eq!(buf.len(), len);
        assert_eq!(out.seq(), last + 1);
    }
}

#[test]
fn esp_esn_crosses_the_32_bit_boundary() {
    let alg = AeadAlg::ChaCha20Poly1305;
    let m = material(alg, 4);
    let mut out = OutboundSa::from_material(SPI, alg, &m, true, Mode::Tunnel)
        .unwrap()
        .with_last_seq(0xffff_f000);
    let mut inb = InboundSa::from_material(SPI, alg, &m, true, Mode::Tunnel).unwrap();
    let inner = ipv4_packet(17, &[]);
    let mut first = enc(&mut out, &inner);
    assert_eq!(inb.decapsulate(&mut first).unwrap().seq, 0xffff_f001);
    let mut out = out.with_last_seq(0xffff_fffd);
    let late = enc(&mut out, &inner); // 0xffff_fffe, delivered late
    let mut wire = Vec::new();
    for _ in 0..6 {
        wire.push(enc(&mut out, &inner)); // 0xffff_ffff, 1_0000_0000 ..
    }
    for (i, p) in wire.iter_mut().enumerate() {
        let d = inb.decapsulate(p).unwrap();
        assert_eq!(d.seq, 0xffff_ffff + i as u64);
    }
    assert_eq!(inb.replay_window().top(), 0x1_0000_0004);
    // Late packet from the previous 2^32 subspace: high bits inferred as 0.
    assert_eq!(dec_seq(&mut inb, &late), Ok(0xffff_fffe));
    assert_eq!(
        inb.decapsulate(&mut late.clone()),
        Err(EspError::Replayed(0xffff_fffe))
    );
}

#[test]
fn esp_out_of_order_and_window_edges() {
    let (mut out, mut inb) = pair(AeadAlg::AesGcm16_128, false, Mode::Tunnel);
    let inner = ipv4_packet(17, &[]);
    let pkts: Vec<Vec<u8>> = (0..3000).map(|_| enc(&mut out, &inner)).collect();
    let size = inb.replay_window().size() as usize;
    assert!(size >= 1024);
    // Reordered inside the window.
    for i in [4usize, 1, 3, 0, 2] {
        assert_eq!(
            inb.decapsulate(&mut pkts[i].clone()).unwrap().seq,
            i as u64 + 1
        );
    }
    // Far ahead jump to 3000.
    inb.decapsulate(&mut pkts[2999].clone()).unwrap();
    // Just outside: 3000 - size; just inside: 3000 - size + 1.
    let outside = 3000 - size;
    assert_eq!(
        inb.decapsulate(&mut pkts[outside - 1].clone()),
        Err(EspError::TooOld(outside as u64))
    );
    assert_eq!(
        inb.decapsulate(&mut pkts[outside].clone()).unwrap().seq,
        outside as u64 + 1
    );
    assert_eq!(
        inb.decapsulate(&mut pkts[0].clone()),
        Err(EspError::TooOld(1))
    );
    let s = inb.stats();
    assert_eq!((s.too_old, s.integrity, s.replayed), (2, 0, 0));
}

#[test]
fn esp_sequence_zero_is_rejected() {
    let alg = AeadAlg::AesGcm16_128;
    let m = material(alg, 5);
    for esn in [false, true] {
        let mut inb = InboundSa::from_material(SPI, alg, &m, esn, Mode::Tunnel).unwrap();
        let mut pt = ipv4_packet(17, &[0; 2]);
        pt.extend_from_slice(&[0, 4]);
        let mut pkt = ring_seal(alg, &m, 0, esn, &pt);
        assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::TooOld(0)));
    }
}

#[test]
fn esp_sa_pair_from_install_and_udp4500_demux() {
    use ike::keys::ChildKeys;
    let alg = AeadAlg::AesGcm16_256;
    let keys = ChildKeys {
        encr: alg,
        inbound: material(alg, 1).into(),
        outbound: material(alg, 2).into(),
    };
    let install = kernel::SaInstall {
        owner: "c".into(),
        child: "c".into(),
        reqid: 1,
        spi_in: 0x1000,
        spi_out: 0x2000,
        local: "192.0.2.1:4500".parse().unwrap(),
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: true,
        mode: Mode::Tunnel,
        local_ts: vec![],
        remote_ts: vec![],
        encr: alg,
        esn: false,
        keys: keys.clone(),
        rekey_of: None,
        initiator: true,
        lifetime: Default::default(),
        opts: Default::default(),
    };
    let (_, mut out) = esp::sa_pair(&install).unwrap();
    // The peer's view: its inbound is our outbound.
    let mut peer_in =
        InboundSa::from_material(0x2000, alg, &keys.outbound, false, Mode::Tunnel).unwrap();
    let pkt = enc(&mut out, &ipv4_packet(17, &[]));
    assert_eq!(classify_udp4500(&pkt), Udp4500::Esp(0x2000));
    assert_eq!(esp::peek_spi(&pkt), Some(0x2000));
    assert!(peer_in.decapsulate(&mut pkt.clone()).is_ok());
    assert_eq!(classify_udp4500(&[0xff]), Udp4500::Keepalive);
    assert_eq!(classify_udp4500(&[0, 0, 0, 0, 1]), Udp4500::Ike);
    assert_eq!(classify_udp4500(&[0, 0, 1, 0]), Udp4500::Invalid);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn esp_decapsulate_random_bytes_never_panics(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
        esn in any::<bool>(),
        own_spi in any::<bool>(),
    ) {
        let (_, mut inb) = pair(AeadAlg::AesGcm16_128, esn, Mode::Tunnel);
        if own_spi && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(&SPI.to_be_bytes());
        }
        let r = inb.decapsulate(&mut bytes);
        prop_assert!(r.is_err());
        prop_assert_eq!(inb.replay_window().top(), 0);
    }

    #[test]
    fn esp_round_trip_random_payloads(
        data in proptest::collection::vec(any::<u8>(), 0..1500),
        alg in prop::sample::select(AeadAlg::ALL.to_vec()),
        esn in any::<bool>(),
    ) {
        let (mut out, mut inb) = pair(alg, esn, Mode::Tunnel);
        let inner = ipv4_packet(17, &data);
        let mut pkt = enc(&mut out, &inner);
        let d = inb.decapsulate(&mut pkt).unwrap();
        prop_assert_eq!(&d.payload[..], &inner[..]);
    }

    #[test]
    fn five_tuple_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = parse_five_tuple(&bytes);
    }

    /// The window agrees with a naive model (set of seen numbers).
    #[test]
    fn replay_window_matches_model(ops in proptest::collection::vec(0u64..6000, 1..300)) {
        let mut w = ReplayWindow::new(1024);
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        for s in ops {
            let want = if s == 0 || (s <= top && top - s >= 1024) {
                Err(ReplayError::TooOld(s))
            } else if seen.contains(&s) {
                Err(ReplayError::Replayed(s))
            } else {
                Ok(())
            };
            prop_assert_eq!(w.check(s), want);
            if want.is_ok() {
                w.update(s);
                seen.insert(s);
                top = top.max(s);
            }
        }
    }
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_window_edges() {
    let mut w = ReplayWindow::default();
    let size = w.size();
    assert!(size >= 2048);
    assert_eq!(w.check(0), Err(ReplayError::TooOld(0)));
    w.update(0); // refused silently
    assert_eq!(w.top(), 0);
    assert_eq!(w.check(1), Ok(()));
    // check does not mutate.
    assert_eq!(w.check(1), Ok(()));
    w.update(1);
    assert_eq!(w.check(1), Err(ReplayError::Replayed(1)));
    // Far-ahead jump (much larger than the window) clears everything.
    let far = 1_000_000;
    w.update(far);
    assert_eq!(w.top(), far);
    assert_eq!(w.check(far), Err(ReplayError::Replayed(far)));
    assert_eq!(w.check(far - size + 1), Ok(()), "just inside");
    assert_eq!(
        w.check(far - size),
        Err(ReplayError::TooOld(far - size)),
        "just outside"
    );
    assert_eq!(w.check(1), Err(ReplayError::TooOld(1)));
    // Out of order within the window.
    for s in [far - 5, far - 100, far - 1, far - size + 1] {
        w.check_and_update(s).unwrap();
        assert_eq!(w.check(s), Err(ReplayError::Replayed(s)));
    }
    assert_eq!(w.check(far - 2), Ok(()));
    assert_eq!(w.top(), far);
    // A jump of less than the window keeps what is still inside.
    w.update(far + 1000);
    assert_eq!(w.check(far - 5), Err(ReplayError::Replayed(far - 5)));
    assert_eq!(w.check(far - 2), Ok(()));
    assert_eq!(w.check(far - 100), Err(ReplayError::Replayed(far - 100)));
    // Slightly more than a window ahead: everything old is too old.
    w.update(far + 1000 + size);
    assert_eq!(w.check(far + 1000), Err(ReplayError::TooOld(far + 1000)));
    assert_eq!(w.check(far + 1001), Ok(()));
    // Near the top of the 64-bit space.
    let mut w = ReplayWindow::new(1024);
    w.update(u64::MAX);
    assert_eq!(w.check(u64::MAX), Err(ReplayError::Replayed(u64::MAX)));
    assert_eq!(w.check(u64::MAX - 1), Ok(()));
    assert_eq!(
        w.check(u64::MAX - 1024),
        Err(ReplayError::TooOld(u64::MAX - 1024))
    );
}

// ---------------------------------------------------------------- SPD

fn ts(s: &str) -> ike::wire::TrafficSelector {
    parse_ts(s).unwrap()
}

fn policy(local: &str, remote: &str, action: Action) -> Policy {
    Policy {
        local: ts(local),
        remote: ts(remote),
        action,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn protect(reqid: u32) -> Action {
    Action::Protect { reqid }
}

#[test]
fn spd_most_specific_first_regardless_of_insert_order() {
    let policies = [
        policy("0.0.0.0/0", "0.0.0.0/0", Action::Discard),
        policy("10.0.0.0/8", "192.168.0.0/16", protect(1)),
        policy("10.1.0.0/16", "192.168.1.0/24", protect(2)),
        policy("10.1.0.0/16", "192.168.1.0/24[tcp/443]", protect(3)),
        policy(
            "10.1.0.0/16",
            "192.168.1.7",
            Action::Trap {
                owner: "conn".into(),
                child: "host".into(),
            },
        ),
    ];
    for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]] {
        let mut spd = Spd::new();
        for i in order {
            spd.insert(policies[i].clone());
        }
        let act = |src: &str, dst: &str, proto: u8, dport: u16| {
            spd.lookup(ip(src), ip(dst), proto, 40000, dport)
                .map(|p| p.action.clone())
        };
        assert_eq!(act("10.1.2.3", "192.168.1.9", 6, 443), Some(protect(3)));
        assert_eq!(act("10.1.2.3", "192.168.1.9", 6, 80), Some(protect(2)));
        assert_eq!(act("10.1.2.3", "192.168.1.9", 17, 443), Some(protect(2)));
        assert_eq!(act("10.2.2.3", "192.168.1.9", 6, 443), Some(protect(1)));
        assert_eq!(act("10.1.2.3", "192.168.2.1", 6, 443), Some(protect(1)));
        assert_eq!(
            act("172.16.0.1", "192.168.1.9", 6, 443),
            Some(Action::Discard)
        );
        assert!(matches!(
            act("10.1.0.1", "192.168.1.7", 6, 443),
            Some(Action::Trap { .. })
        ));
        // IPv6 traffic matches no IPv4 policy.
        assert_eq!(act("2001:db8::1", "2001:db8::2", 6, 443), None);
    }
}

#[test]
fn spd_ipv6_and_remove() {
    let mut spd = Spd::new();
    let wide = spd.insert(policy("2001:db8:1::/48", "2001:db8::/32", protect(1)));
    let narrow = spd.insert(policy(
        "2001:db8:1::/48",
        "2001:db8:2::/64[udp/53]",
        protect(2),
    ));
    spd.insert(policy("0.0.0.0/0", "0.0.0.0/0", Action::Bypass));
    assert_eq!(spd.len(), 3);
    let l = |spd: &Spd, dport| {
        spd.lookup(ip("2001:db8:1::5"), ip("2001:db8:2::9"), 17, 5353, dport)
            .map(|p| p.action.clone())
    };
    assert_eq!(l(&spd, 53), Some(protect(2)));
    assert_eq!(l(&spd, 54), Some(protect(1)));
    assert_eq!(
        spd.lookup(ip("10.0.0.1"), ip("10.0.0.2"), 17, 1, 53)
            .map(|p| &p.action),
        Some(&Action::Bypass)
    );
    assert!(spd.remove(narrow).is_some());
    assert!(spd.remove(narrow).is_none());
    assert_eq!(l(&spd, 53), Some(protect(1)));
    spd.remove(wide);
    assert_eq!(l(&spd, 53), None);
    spd.retain(|p| p.action != Action::Bypass);
    assert!(spd.is_empty());
}

#[test]
fn spd_lookup_from_packets_ports_and_fragments() {
    let mut spd = Spd::new();
    spd.insert(policy("10.1.2.3", "192.168.1.0/24[udp/53]", protect(53)));
    spd.insert(policy("10.0.0.0/8", "192.168.0.0/16", protect(1)));
    let pkt = ipv4_packet(17, &udp(40000, 53, b"q"));
    let t = parse_five_tuple(&pkt).unwrap();
    assert_eq!(spd.lookup_tuple(&t).map(|p| &p.action), Some(&protect(53)));
    // A non-initial fragment carries no ports: only port-agnostic policies.
    let mut frag = pkt.clone();
    frag[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    let t = parse_five_tuple(&frag).unwrap();
    assert_eq!(t.ports, None);
    assert_eq!(spd.lookup_tuple(&t).map(|p| &p.action), Some(&protect(1)));
    // The reply, checked inbound after decapsulation (src/dst swapped).
    let mut reply = ipv4_packet(17, &udp(53, 40000, b"a"));
    reply[12..16].copy_from_slice(&[192, 168, 1, 9]);
    reply[16..20].copy_from_slice(&[10, 1, 2, 3]);
    let t = parse_five_tuple(&reply).unwrap();
    assert_eq!(
        spd.lookup_inbound(&t).map(|p| &p.action),
        Some(&protect(53))
    );
}

// ---------------------------------------------------------------- 5-tuple

#[test]
fn five_tuple_ipv4_tcp_udp_icmp() {
    let mut tcp = vec![0u8; 20];
    tcp[..4].copy_from_slice(&[0x1f, 0x90, 0x01, 0xbb]);
    let t = parse_five_tuple(&ipv4_packet(6, &tcp)).unwrap();
    assert_eq!(t.src, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    assert_eq!(t.dst, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9)));
    assert_eq!(
        (t.proto, t.ports, t.fragment),
        (6, Some((8080, 443)), false)
    );

    let t = parse_five_tuple(&ipv4_packet(17, &udp(5000, 53, &[]))).unwrap();
    assert_eq!((t.proto, t.ports), (17, Some((5000, 53))));

    let t = parse_five_tuple(&ipv4_packet(1, &[8, 0, 0xf7, 0xff])).unwrap();
    assert_eq!((t.proto, t.ports), (1, Some((0x0800, 0x0800))));

    // Options: IHL 6.
    let mut p = ipv4_packet(17, &[1, 1, 1, 1, 0, 53, 0, 0]);
    p[0] = 0x46;
    let t = parse_five_tuple(&p).unwrap();
    assert_eq!(t.ports, Some((53, 0)));

    // GRE has no ports; a truncated UDP header has none either.
    assert_eq!(
        parse_five_tuple(&ipv4_packet(47, &[0; 8])).unwrap().ports,
        None
    );
    assert_eq!(
        parse_five_tuple(&ipv4_packet(17, &[0; 3])).unwrap().ports,
        None
    );
}

#[test]
fn five_tuple_ipv4_fragments() {
    let mut first = ipv4_packet(17, &udp(1, 2, &[0; 16]));
    first[6] = 0x20; // MF, offset 0
    let t = parse_five_tuple(&first).unwrap();
    assert!(t.fragment);
    assert_eq!(t.ports, Some((1, 2)), "initial fragment carries the ports");
    let mut later = first.clone();
    later[6..8].copy_from_slice(&(0x2000u16 | 3).to_be_bytes());
    let t = parse_five_tuple(&later).unwrap();
    assert!(t.fragment);
    assert_eq!(t.ports, None);
    let mut last = first.clone();
    last[6..8].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(parse_five_tuple(&last).unwrap().ports, None);
}

#[test]
fn five_tuple_ipv6_with_extension_headers_and_fragments() {
    let t = parse_five_tuple(&ipv6_packet(17, &udp(546, 547, &[]))).unwrap();
    assert_eq!(t.src, ip("2001:db8:1::5"));
    assert_eq!(t.dst, ip("2001:db8:2::9"));
    assert_eq!(
        (t.proto, t.ports, t.fragment),
        (17, Some((546, 547)), false)
    );

    let t = parse_five_tuple(&ipv6_packet(58, &[128, 0, 0, 0])).unwrap();
    assert_eq!((t.proto, t.ports), (58, Some((0x8000, 0x8000))));

    // Hop-by-hop (8 bytes) then TCP.
    let mut rest = vec![6, 0, 1, 4, 0, 0, 0, 0];
    rest.extend_from_slice(&[0x00, 0x50, 0xc3, 0x50]);
    rest.extend_from_slice(&[0; 16]);
    let t = parse_five_tuple(&ipv6_packet(0, &rest)).unwrap();
    assert_eq!((t.proto, t.ports), (6, Some((80, 50000))));

    // Hop-by-hop, fragment header (initial) then UDP.
    let mut rest = vec![44, 0, 1, 4, 0, 0, 0, 0];
    rest.extend_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0, 7]);
    rest.extend_from_slice(&udp(7, 9, &[0; 8]));
    let t = parse_five_tuple(&ipv6_packet(0, &rest)).unwrap();
    assert_eq!((t.proto, t.ports, t.fragment), (17, Some((7, 9)), true));

    // Non-initial fragment: offset 8 (in 8-octet units: 1).
    let mut rest = vec![17, 0, 0x00, 0x08, 0, 0, 0, 7];
    rest.extend_from_slice(&[0; 16]);
    let t = parse_five_tuple(&ipv6_packet(44, &rest)).unwrap();
    assert_eq!((t.proto, t.ports, t.fragment), (17, None, true));
}

#[test]
fn five_tuple_malformed() {
    use kernel::userspace::spd::TupleError;
    assert_eq!(parse_five_tuple(&[]), Err(TupleError::Truncated));
    assert_eq!(parse_five_tuple(&[0x45; 19]), Err(TupleError::Truncated));
    assert_eq!(parse_five_tuple(&[0x65; 39]), Err(TupleError::Truncated));
    assert_eq!(parse_five_tuple(&[0x55; 60]), Err(TupleError::BadVersion));
    let mut p = ipv4_packet(6, &[]);
    p[0] = 0x44;
    assert_eq!(parse_five_tuple(&p), Err(TupleError::BadHeader));
    p[0] = 0x4f;
    assert_eq!(parse_five_tuple(&p), Err(TupleError::Truncated));
    // Extension header running past the end.
    assert_eq!(
        parse_five_tuple(&ipv6_packet(0, &[6, 200])),
        Err(TupleError::Truncated)
    );
}

/// Reference ones' complement sum of 16-bit big-endian words.
fn ref_sum(data: &[u8]) -> u32 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        s += w;
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

fn ref_l4_ok(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> bool {
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(seg.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!(),
    }
    // Sum the two parts as one stream (the pseudo header is even-sized).
    pseudo.extend_from_slice(seg);
    ref_sum(&pseudo) == 0xffff
}

proptest! {
    /// A rebuilt transport-mode packet has a valid IPv4 header checksum
    /// and a valid TCP/UDP/ICMPv6 checksum for its new addresses, whatever
    /// the sender's checksum was (a NAT changed the addresses it covered).
    #[test]
    fn transport_rebuild_makes_valid_checksums(
        v4 in any::<bool>(),
        proto in prop::sample::select(vec![6u8, 17, 58, 1, 50]),
        body in prop::collection::vec(any::<u8>(), 20..1500),
        a in any::<[u8; 16]>(),
        b in any::<[u8; 16]>(),
    ) {
        let (src, dst) = if v4 {
            (
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            )
        } else {
            (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
        };
        let mut out = vec![0xee; 3];
        prop_assert!(esp::transport_rebuild(&mut out, src, dst, proto, &body));
        let pkt = &out[3..];
        let hl = if v4 { 20 } else { 40 };
        prop_assert_eq!(pkt.len(), hl + body.len());
        let t = parse_five_tuple(pkt).unwrap();
        prop_assert_eq!((t.src, t.dst, t.proto), (src, dst, proto));
        if v4 {
            prop_assert_eq!(ref_sum(&pkt[..20]), 0xffff);
            prop_assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]) as usize, pkt.len());
        } else {
            prop_assert_eq!(u16::from_be_bytes([pkt[4], pkt[5]]) as usize, body.len());
        }
        let seg = &pkt[hl..];
        let udp_none = v4 && proto == 17 && body[6] == 0 && body[7] == 0;
        let checked = match proto {
            6 | 17 => !udp_none,
            58 => !v4,
            _ => false,
        };
        if checked {
            prop_assert!(ref_l4_ok(src, dst, proto, seg));
        } else {
            // Other protocols (and UDP without checksum) pass unchanged.
            prop_assert_eq!(seg, &body[..]);
        }
    }
}

#[test]
fn transport_rebuild_refuses_mixed_families() {
    let mut out = Vec::new();
    assert!(!esp::transport_rebuild(
        &mut out,
        "198.18.0.1".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        6,
        &[0; 20]
    ));
    assert!(out.is_empty());
}

#[test]
fn transport_mode_refuses_fragments_without_using_a_sequence_number() {
    let (mut out, _) = pair(AeadAlg::AesGcm16_128, false, Mode::Transport);
    let mut buf = Vec::new();
    // More fragments, and a non-zero offset.
    for flags in [0x2000u16, 0x0010] {
        let mut p = ipv4_packet(17, &udp(1, 2, b"frag"));
        p[6..8].copy_from_slice(&flags.to_be_bytes());
        assert_eq!(
            out.encapsulate(&p, &mut buf),
            Err(EspError::TransportFragment)
        );
    }
    // Don't-fragment alone is fine.
    let mut p = ipv4_packet(17, &udp(1, 2, b"df"));
    p[6] = 0x40;
    assert!(out.encapsulate(&p, &mut buf).is_ok());
    assert_eq!(out.seq(), 1);
    let v6 = ipv6_packet(44, &[17, 0, 0, 1, 0, 0, 0, 7]);
    assert_eq!(
        out.encapsulate(&v6, &mut buf),
        Err(EspError::TransportFragment)
    );
    assert_eq!(out.seq(), 1);
}
