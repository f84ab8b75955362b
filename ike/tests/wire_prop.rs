//! Property tests of the IKEv2 wire codec: round trips of arbitrary
//! well-formed messages, and robustness (no panic; decode ∘ encode is the
//! identity on whatever decodes) on random and mutated input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ike::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Strategies for well-formed values

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        (0u16..0x8000, any::<u16>())
            .prop_map(|(attr_type, value)| Attribute::Tv { attr_type, value }),
        (0u16..0x8000, bytes(8)).prop_map(|(attr_type, value)| Attribute::Tlv { attr_type, value }),
    ]
}

fn transform() -> impl Strategy<Value = Transform> {
    (any::<u8>(), any::<u16>(), vec(attribute(), 0..3)).prop_map(|(t, id, attributes)| Transform {
        transform_type: TransformType(t),
        id,
        attributes,
    })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u8>(), any::<u8>(), bytes(8), vec(transform(), 0..5)).prop_map(
        |(number, protocol, spi, transforms)| Proposal {
            number,
            protocol: ProtocolId(protocol),
            spi,
            transforms,
        },
    )
}

fn ip_range() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<u128>(), any::<u128>())
            .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
    ]
}

fn selector() -> impl Strategy<Value = TrafficSelector> {
    (any::<u8>(), any::<u16>(), any::<u16>(), ip_range()).prop_map(
        |(ip_proto, start_port, end_port, (start_addr, end_addr))| TrafficSelector {
            ip_proto,
            start_port,
            end_port,
            start_addr,
            end_addr,
        },
    )
}

fn identification() -> impl Strategy<Value = Identification> {
    prop_oneof![
        any::<u32>().prop_map(|a| Identification::ip(IpAddr::V4(Ipv4Addr::from(a)))),
        any::<u128>().prop_map(|a| Identification::ip(IpAddr::V6(Ipv6Addr::from(a)))),
        "[a-z]{1,10}(\\.[a-z]{1,5}){0,2}".prop_map(|s| Identification::fqdn(&s)),
        // Any other type, including unknown ones: opaque data.
        (any::<u8>(), bytes(12))
            .prop_filter("address types have fixed lengths", |(t, _)| {
                *t != IdType::ID_IPV4_ADDR.0 && *t != IdType::ID_IPV6_ADDR.0
            })
            .prop_map(|(t, data)| Identification {
                id_type: IdType(t),
                data
            }),
    ]
}

fn delete() -> impl Strategy<Value = Delete> {
    prop_oneof![
        any::<u8>().prop_map(|p| Delete {
            protocol: ProtocolId(p),
            spi_size: 0,
            spis: vec![],
        }),
        (any::<u8>(), 1u8..=8, 0usize..4).prop_flat_map(|(p, size, n)| {
            vec(vec(any::<u8>(), usize::from(size)), n).prop_map(move |spis| Delete {
                protocol: ProtocolId(p),
                spi_size: size,
                spis,
            })
        }),
    ]
}

/// Payload types decoded as `Payload::Unknown` (everything but the ones with
/// their own variant, SK and SKF).
fn unknown_type() -> impl Strategy<Value = PayloadType> {
    any::<u8>()
        .prop_filter("must not be a decoded type", |t| {
            !matches!(*t, 0 | 33..=45 | 46 | 47 | 53)
        })
        .prop_map(PayloadType)
}

/// Any payload except SK, with valid field shapes.
fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(proposal(), 1..3).prop_map(Payload::Sa),
        (any::<u16>(), bytes(40))
            .prop_map(|(group, data)| Payload::Ke(KeyExchange { group, data })),
        bytes(40).prop_map(Payload::Nonce),
        (any::<u8>(), bytes(8), any::<u16>(), bytes(24)).prop_map(|(p, spi, t, data)| {
            Payload::Notify(Notify {
                protocol: ProtocolId(p),
                spi,
                notify_type: NotifyType(t),
                data,
            })
        }),
        delete().prop_map(Payload::Delete),
        bytes(20).prop_map(Payload::VendorId),
        identification().prop_map(Payload::IdI),
        identification().prop_map(Payload::IdR),
        (any::<u8>(), bytes(40)).prop_map(|(m, data)| Payload::Auth(Authentication {
            method: AuthMethod(m),
            data
        })),
        vec(selector(), 0..4).prop_map(Payload::TsI),
        vec(selector(), 0..4).prop_map(Payload::TsR),
        (any::<u8>(), bytes(30))
            .prop_map(|(encoding, data)| Payload::Cert(Cert { encoding, data })),
        (any::<u8>(), bytes(30))
            .prop_map(|(encoding, data)| Payload::CertReq(Cert { encoding, data })),
        (
            any::<u8>(),
            vec(
                (0u16..0x8000, bytes(16))
                    .prop_map(|(attr_type, value)| ConfigAttribute { attr_type, value }),
                0..4
            )
        )
            .prop_map(|(cfg_type, attributes)| Payload::Cp(ConfigPayload {
                cfg_type,
                attributes
            })),
        (unknown_type(), any::<bool>(), bytes(20)).prop_map(|(payload_type, critical, body)| {
            Payload::Unknown {
                payload_type,
                critical,
                body,
            }
        }),
    ]
}

fn encrypted() -> impl Strategy<Value = Payload> {
    (any::<u8>(), bytes(64)).prop_map(|(next, body)| {
        Payload::Encrypted(Encrypted {
            next_payload: PayloadType(next),
            body,
        })
    })
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<u64>(),
        0u8..16,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(spi_i, spi_r, minor, exchange, flags, message_id)| Header {
                spi_i,
                spi_r,
                next_payload: PayloadType::NONE,
                version: 0x20 | minor,
                exchange: ExchangeType(exchange),
                flags,
                message_id,
                length: 0,
            },
        )
}

/// A message whose header's computed fields are already correct, so that
/// `decode(encode(m)) == m` is exact equality.
fn message() -> impl Strategy<Value = Message> {
    (
        header(),
        vec(payload(), 0..6),
        proptest::option::of(encrypted()),
    )
        .prop_map(|(header, mut payloads, sk)| {
            payloads.extend(sk);
            let mut m = Message { header, payloads };
            let len = m.encode().len();
            m.header.length = len as u32;
            m.header.next_payload = m
                .payloads
                .first()
                .map_or(PayloadType::NONE, Payload::payload_type);
            m
        })
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let len = buf.len();
    match *m {
        Mutation::FlipBit(i, b) if len > 0 => buf[i % len] ^= 1 << b,
        Mutation::SetByte(i, v) if len > 0 => buf[i % len] = v,
        Mutation::Truncate(i) => buf.truncate(i % (len + 1)),
        Mutation::Insert(i, v) => buf.insert(i % (len + 1), v),
        Mutation::Remove(i) if len > 0 => {
            buf.remove(i % len);
        }
        _ => {}
    }
}

/// Whatever decodes must re-encode to the same size and decode to the same value.
fn check_stable(buf: &[u8]) {
    if let Ok(m) = Message::decode(buf) {
        let re = m.encode();
        assert_eq!(
            re.len(),
            buf.len(),
            "decoded message re-encodes to the same size"
        );
        assert_eq!(Message::decode(&re).as_ref(), Ok(&m));
    }
    if buf.len() >= HEADER_LEN {
        let chain = &buf[HEADER_LEN..];
        let first = PayloadType(buf[16]);
        if let Ok(ps) = decode_payloads(first, chain) {
            let (f, re) = encode_payloads(&ps);
            assert_eq!(re.len(), chain.len());
            if !ps.is_empty() {
                assert_eq!(f, first);
            }
            assert_eq!(decode_payloads(f, &re).as_ref(), Ok(&ps));
        }
    }
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_message_round_trips(m in message()) {
        let bytes = m.encode();
        prop_assert_eq!(m.try_encode(), Ok(bytes.clone()));
        let d = Message::decode(&bytes);
        prop_assert_eq!(d.as_ref(), Ok(&m));
        prop_assert_eq!(d.unwrap().encode(), bytes);
    }

    #[test]
    fn arbitrary_payload_chain_round_trips(ps in vec(payload(), 0..6)) {
        let (first, bytes) = encode_payloads(&ps);
        prop_assert_eq!(decode_payloads(first, &bytes), Ok(ps));
    }

    #[test]
    fn random_bytes_never_panic(buf in bytes(300), first in any::<u8>()) {
        let _ = Message::decode(&buf);
        let _ = decode_payloads(PayloadType(first), &buf);
        check_stable(&buf);
    }

    /// Random payload bytes behind a valid header, so that decoding gets
    /// past the header and length checks.
    #[test]
    fn random_payload_chain_behind_valid_header_never_panics(
        h in header(),
        first in prop_oneof![33u8..=48, any::<u8>()],
        chain in bytes(300),
    ) {
        let mut h = h;
        h.next_payload = PayloadType(first);
        h.length = (HEADER_LEN + chain.len()) as u32;
        let mut buf = h.encode().to_vec();
        buf.extend_from_slice(&chain);
        let _ = Message::decode(&buf);
        check_stable(&buf);
    }

    #[test]
    fn mutated_messages_never_panic_and_stay_stable(
        m in message(),
        mutations in vec(mutation(), 1..4),
        fix_length in any::<bool>(),
    ) {
        let mut buf = m.encode();
        for mu in &mutations {
            apply(&mut buf, mu);
        }
        if fix_length && buf.len() >= HEADER_LEN {
            let len = (buf.len() as u32).to_be_bytes();
            buf[24..28].copy_from_slice(&len);
        }
        check_stable(&buf);
    }
}
