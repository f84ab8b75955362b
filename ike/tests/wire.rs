//! Integration tests of the IKEv2 wire codec (`ike::wire`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ike::wire::*;

// ---------------------------------------------------------------------------
// Helpers

fn header() -> Header {
    Header {
        spi_i: 0x0102_0304_0506_0708,
        spi_r: 0x1112_1314_1516_1718,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange: ExchangeType::IKE_AUTH,
        flags: flags::INITIATOR,
        message_id: 1,
        length: 0,
    }
}

fn message(payloads: Vec<Payload>) -> Message {
    Message {
        header: header(),
        payloads,
    }
}

/// Encodes, decodes, and checks that the result equals the input (with the
/// header's computed fields filled in), both as a message and as a bare chain.
fn assert_round_trip(payloads: Vec<Payload>) {
    let m = message(payloads.clone());
    let bytes = m.encode();
    let d = Message::decode(&bytes).expect("decode of encoded message");
    assert_eq!(d.payloads, m.payloads);
    assert_eq!(d.header.length as usize, bytes.len());
    assert_eq!(
        d.header.next_payload,
        payloads
            .first()
            .map_or(PayloadType::NONE, Payload::payload_type)
    );
    assert_eq!(d.encode(), bytes, "re-encoding is byte-identical");
    assert!(m.try_encode().is_ok());

    if !payloads.iter().any(|p| matches!(p, Payload::Encrypted(_))) {
        let (first, chain) = encode_payloads(&payloads);
        assert_eq!(decode_payloads(first, &chain).unwrap(), payloads);
        assert_eq!(&bytes[HEADER_LEN..], &chain[..]);
    }
}

/// Wraps raw payload bytes (a chain starting with `first`) in a header with
/// a correct length field.
fn raw_message(first: u8, chain: &[u8]) -> Vec<u8> {
    let mut h = header();
    h.next_payload = PayloadType(first);
    h.length = (HEADER_LEN + chain.len()) as u32;
    let mut v = h.encode().to_vec();
    v.extend_from_slice(chain);
    v
}

/// A generic payload header followed by `body`.
fn raw_payload(next: u8, critical: bool, body: &[u8]) -> Vec<u8> {
    let mut v = vec![next, if critical { 0x80 } else { 0 }];
    v.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn h(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).unwrap()
}

const STRONGSWAN_VID: &str = "882fe56d6fd20dbc2251613b2ebe5beb";

/// A realistic IKE_SA_INIT request: SA (one IKE proposal: ENCR_AES_GCM_16
/// with 256-bit keys, PRF_HMAC_SHA2_256, Curve25519), KE, Nonce, two NAT-D
/// notifies and a Vendor ID.
fn ike_sa_init_request() -> Vec<u8> {
    let ke = "11".repeat(32);
    let nonce = "22".repeat(32);
    let natd_src = "33".repeat(20);
    let natd_dst = "44".repeat(20);
    h(&format!(
        "
        0102030405060708 0000000000000000 21 20 22 08 00000000 000000dc
        22 00 0028
           00 00 0024 01 01 00 03
              03 00 000c 01 00 0014 800e 0100
              03 00 0008 02 00 0005
              00 00 0008 04 00 001f
        28 00 0028 001f 0000 {ke}
        29 00 0024 {nonce}
        29 00 001c 00 00 4004 {natd_src}
        2b 00 001c 00 00 4005 {natd_dst}
        00 00 0014 {STRONGSWAN_VID}
        "
    ))
}

fn sample_sa() -> Vec<Proposal> {
    vec![
        Proposal {
            number: 1,
            protocol: ProtocolId::ESP,
            spi: vec![0xde, 0xad, 0xbe, 0xef],
            transforms: vec![
                Transform::with_key_length(TransformType::ENCR, 20, 128),
                Transform::new(TransformType::ESN, 0),
            ],
        },
        Proposal {
            number: 2,
            protocol: ProtocolId::ESP,
            spi: vec![0xde, 0xad, 0xbe, 0xef],
            transforms: vec![
                Transform::with_key_length(TransformType::ENCR, 12, 256),
                Transform::new(TransformType::INTEG, 12),
                Transform {
                    transform_type: TransformType(200),
                    id: 0xffff,
                    attributes: vec![
                        Attribute::Tlv {
                            attr_type: 0x1234,
                            value: vec![1, 2, 3],
                        },
                        Attribute::Tlv {
                            attr_type: 7,
                            value: vec![],
                        },
                        Attribute::Tv {
                            attr_type: 0x7fff,
                            value: 0xffff,
                        },
                    ],
                },
            ],
        },
    ]
}

// ---------------------------------------------------------------------------
// Header

#[test]
fn header_encode_decode_round_trip() {
    let mut hd = header();
    hd.next_payload = PayloadType::SK;
    hd.length = 0xdead_beef;
    let bytes = hd.encode();
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(&bytes[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(bytes[16], 46);
    assert_eq!(bytes[17], 0x20);
    assert_eq!(bytes[18], 35);
    assert_eq!(bytes[19], 0x08);
    assert_eq!(&bytes[20..24], &[0, 0, 0, 1]);
    assert_eq!(&bytes[24..28], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(Header::decode(&bytes).unwrap(), hd);
}

#[test]
fn header_decode_ignores_extra_bytes_and_length_field() {
    let mut v = header().encode().to_vec();
    v.extend_from_slice(&[0xff; 10]);
    assert_eq!(Header::decode(&v).unwrap(), header());
}

#[test]
fn decode_truncated_header_is_error() {
    let bytes = header().encode();
    for n in 0..HEADER_LEN {
        assert_eq!(
            Header::decode(&bytes[..n]),
            Err(DecodeError::Truncated {
                what: "IKE header",
                need: HEADER_LEN,
                have: n
            })
        );
        assert!(Message::decode(&bytes[..n]).is_err());
    }
}

#[test]
fn decode_wrong_major_version_is_error() {
    let mut bytes = message(vec![]).encode();
    bytes[17] = 0x10;
    assert_eq!(
        Header::decode(&bytes),
        Err(DecodeError::UnsupportedVersion(1))
    );
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::UnsupportedVersion(1))
    );
    bytes[17] = 0x30;
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::UnsupportedVersion(3))
    );
    // A higher minor version is accepted (§2.5).
    bytes[17] = 0x21;
    assert_eq!(Message::decode(&bytes).unwrap().header.version, 0x21);
}

#[test]
fn header_flag_accessors() {
    let mut hd = header();
    assert!(hd.is_initiator());
    assert!(!hd.is_response());
    hd.flags = flags::RESPONSE;
    assert!(!hd.is_initiator());
    assert!(hd.is_response());
    assert_eq!(hd.major_version(), 2);
}

#[test]
fn encode_computes_header_next_payload_and_length() {
    let mut m = message(vec![Payload::Nonce(vec![7; 16])]);
    m.header.next_payload = PayloadType::SA; // wrong on purpose
    m.header.length = 5; // wrong on purpose
    let bytes = m.encode();
    assert_eq!(bytes.len(), HEADER_LEN + 4 + 16);
    assert_eq!(bytes[16], PayloadType::NONCE.0);
    assert_eq!(&bytes[24..28], &(bytes.len() as u32).to_be_bytes());
}

#[test]
fn empty_message_round_trips() {
    let bytes = message(vec![]).encode();
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(bytes[16], 0);
    assert!(Message::decode(&bytes).unwrap().payloads.is_empty());
}

#[test]
fn wrong_header_length_field_is_error() {
    let good = ike_sa_init_request();
    for field in [
        0u32,
        27,
        28,
        good.len() as u32 - 1,
        good.len() as u32 + 1,
        u32::MAX,
    ] {
        let mut bad = good.clone();
        bad[24..28].copy_from_slice(&field.to_be_bytes());
        assert_eq!(
            Message::decode(&bad),
            Err(DecodeError::HeaderLength {
                field,
                actual: good.len()
            })
        );
    }
    // Extra bytes after a correctly-described message.
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        Message::decode(&longer),
        Err(DecodeError::HeaderLength { .. })
    ));
}

// ---------------------------------------------------------------------------
// The hand-written IKE_SA_INIT request

#[test]
fn decode_ike_sa_init_request_checks_every_field() {
    let bytes = ike_sa_init_request();
    assert_eq!(bytes.len(), 220);
    let m = Message::decode(&bytes).unwrap();

    assert_eq!(m.header.spi_i, 0x0102_0304_0506_0708);
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(m.header.next_payload, PayloadType::SA);
    assert_eq!(m.header.version, 0x20);
    assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
    assert!(m.header.is_initiator());
    assert!(!m.header.is_response());
    assert_eq!(m.header.message_id, 0);
    assert_eq!(m.header.length, 220);
    assert_eq!(m.payloads.len(), 6);

    let Payload::Sa(proposals) = &m.payloads[0] else {
        panic!("first payload is not SA: {:?}", m.payloads[0]);
    };
    assert_eq!(proposals.len(), 1);
    let p = &proposals[0];
    assert_eq!(p.number, 1);
    assert_eq!(p.protocol, ProtocolId::IKE);
    assert!(p.spi.is_empty());
    assert_eq!(
        p.transforms,
        vec![
            Transform {
                transform_type: TransformType::ENCR,
                id: 20,
                attributes: vec![Attribute::Tv {
                    attr_type: ATTR_KEY_LENGTH,
                    value: 256
                }],
            },
            Transform::new(TransformType::PRF, 5),
            Transform::new(TransformType::DH, 31),
        ]
    );
    assert_eq!(p.transforms[0].key_length(), Some(256));
    assert_eq!(p.transforms[1].key_length(), None);

    assert_eq!(
        m.payloads[1],
        Payload::Ke(KeyExchange {
            group: 31,
            data: vec![0x11; 32]
        })
    );
    assert_eq!(m.payloads[2], Payload::Nonce(vec![0x22; 32]));
    assert_eq!(
        m.payloads[3],
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            vec![0x33; 20]
        ))
    );
    assert_eq!(
        m.payloads[4],
        Payload::Notify(Notify {
            protocol: ProtocolId(0),
            spi: vec![],
            notify_type: NotifyType::NAT_DETECTION_DESTINATION_IP,
            data: vec![0x44; 20],
        })
    );
    assert_eq!(m.payloads[5], Payload::VendorId(h(STRONGSWAN_VID)));

    assert_eq!(m.unsupported_critical(), None);
    assert_eq!(m.notifies().count(), 2);
    assert_eq!(
        m.find_notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
            .map(|n| n.data.clone()),
        Some(vec![0x44; 20])
    );
    assert!(m.find_notify(NotifyType::COOKIE).is_none());
    assert!(m.encrypted().is_none());
}

#[test]
fn ike_sa_init_request_reencodes_byte_identical() {
    let bytes = ike_sa_init_request();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.encode(), bytes);
}

#[test]
fn ike_sa_init_request_built_from_values_matches_hand_written_bytes() {
    let m = Message {
        header: Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 0,
        },
        payloads: vec![
            Payload::Sa(vec![Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: vec![
                    Transform::with_key_length(TransformType::ENCR, 20, 256),
                    Transform::new(TransformType::PRF, 5),
                    Transform::new(TransformType::DH, 31),
                ],
            }]),
            Payload::Ke(KeyExchange {
                group: 31,
                data: vec![0x11; 32],
            }),
            Payload::Nonce(vec![0x22; 32]),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                vec![0x33; 20],
            )),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                vec![0x44; 20],
            )),
            Payload::VendorId(h(STRONGSWAN_VID)),
        ],
    };
    assert_eq!(m.encode(), ike_sa_init_request());
}

#[test]
fn ike_sa_init_truncated_at_every_offset_is_error() {
    let bytes = ike_sa_init_request();
    for n in 0..bytes.len() {
        let cut = &bytes[..n];
        assert!(Message::decode(cut).is_err(), "prefix of {n} bytes decoded");
        // Also with the header length field matching the truncated size, so
        // that the payload chain itself has to detect the truncation.
        if n >= HEADER_LEN {
            let mut patched = cut.to_vec();
            patched[24..28].copy_from_slice(&(n as u32).to_be_bytes());
            assert!(
                Message::decode(&patched).is_err(),
                "prefix of {n} bytes with patched length decoded"
            );
            assert!(decode_payloads(PayloadType::SA, &patched[HEADER_LEN..]).is_err());
        }
    }
}

#[test]
fn truncated_sa_payload_reports_where() {
    let bytes = ike_sa_init_request();
    // Keep the header and 20 bytes of the 40-byte SA payload.
    assert_eq!(
        decode_payloads(PayloadType::SA, &bytes[HEADER_LEN..HEADER_LEN + 20]),
        Err(DecodeError::Truncated {
            what: "SA payload",
            need: 40,
            have: 20
        })
    );
}

// ---------------------------------------------------------------------------
// Round trips, one per payload type

#[test]
fn sa_payload_round_trips() {
    assert_round_trip(vec![Payload::Sa(sample_sa())]);
    // A proposal without transforms is structurally valid.
    assert_round_trip(vec![Payload::Sa(vec![Proposal {
        number: 1,
        protocol: ProtocolId::IKE,
        spi: vec![1; 8],
        transforms: vec![],
    }])]);
}

#[test]
fn ke_payload_round_trips() {
    assert_round_trip(vec![Payload::Ke(KeyExchange {
        group: 19,
        data: (0..64).collect(),
    })]);
    assert_round_trip(vec![Payload::Ke(KeyExchange {
        group: 0xffff,
        data: vec![],
    })]);
}

#[test]
fn nonce_payload_round_trips() {
    assert_round_trip(vec![Payload::Nonce(vec![0xab; 256])]);
    assert_round_trip(vec![Payload::Nonce(vec![])]);
}

#[test]
fn notify_payload_round_trips() {
    assert_round_trip(vec![
        Payload::Notify(Notify::new(NotifyType::COOKIE, vec![9; 64])),
        Payload::Notify(Notify::with_spi(
            ProtocolId::ESP,
            vec![1, 2, 3, 4],
            NotifyType::REKEY_SA,
            vec![],
        )),
        Payload::Notify(Notify::new(NotifyType(40000), vec![1])),
    ]);
}

#[test]
fn delete_payload_round_trips() {
    assert_round_trip(vec![Payload::Delete(Delete::ike())]);
    assert_round_trip(vec![Payload::Delete(Delete::esp(&[1, 0xdead_beef, 7]))]);
    assert_round_trip(vec![Payload::Delete(Delete {
        protocol: ProtocolId::AH,
        spi_size: 4,
        spis: vec![],
    })]);
}

#[test]
fn vendor_id_payload_round_trips() {
    assert_round_trip(vec![Payload::VendorId(h(STRONGSWAN_VID))]);
}

#[test]
fn id_payloads_round_trip() {
    assert_round_trip(vec![
        Payload::IdI(Identification::fqdn("moon.strongswan.org")),
        Payload::IdR(Identification::rfc822("carol@strongswan.org")),
        Payload::IdI(Identification::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
        Payload::IdR(Identification::ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
        Payload::IdI(Identification::key_id(&[])),
        Payload::IdR(Identification::der_dn(&[0x30, 0x00])),
    ]);
}

#[test]
fn auth_payload_round_trips() {
    assert_round_trip(vec![Payload::Auth(Authentication {
        method: AuthMethod::SHARED_KEY_MIC,
        data: vec![0x5a; 32],
    })]);
    assert_round_trip(vec![Payload::Auth(Authentication {
        method: AuthMethod(201),
        data: vec![],
    })]);
}

#[test]
fn ts_payloads_round_trip() {
    let v4 = TrafficSelector {
        ip_proto: 6,
        start_port: 80,
        end_port: 443,
        start_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
        end_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 255, 255)),
    };
    assert_round_trip(vec![
        Payload::TsI(vec![v4.clone(), TrafficSelector::ipv6_any()]),
        Payload::TsR(vec![TrafficSelector::ipv4_any()]),
        Payload::TsI(vec![]),
    ]);
}

#[test]
fn cert_and_certreq_payloads_round_trip() {
    assert_round_trip(vec![
        Payload::Cert(Cert {
            encoding: 4,
            data: vec![0x30, 0x82, 0x01, 0x00],
        }),
        Payload::CertReq(Cert {
            encoding: 4,
            data: vec![0xcc; 40],
        }),
        Payload::CertReq(Cert {
            encoding: 4,
            data: vec![],
        }),
    ]);
}

#[test]
fn cp_payload_round_trips() {
    assert_round_trip(vec![Payload::Cp(ConfigPayload {
        cfg_type: 1,
        attributes: vec![
            ConfigAttribute {
                attr_type: 1,
                value: vec![],
            },
            ConfigAttribute {
                attr_type: 1,
                value: vec![10, 1, 0, 2],
            },
            ConfigAttribute {
                attr_type: 0x7fff,
                value: vec![0; 17],
            },
        ],
    })]);
}

#[test]
fn encrypted_payload_round_trips_as_last_payload() {
    assert_round_trip(vec![Payload::Encrypted(Encrypted {
        next_payload: PayloadType::IDI,
        body: (0..=255).collect(),
    })]);
    assert_round_trip(vec![
        Payload::Notify(Notify::new(NotifyType::COOKIE, vec![1; 8])),
        Payload::Encrypted(Encrypted {
            next_payload: PayloadType::NONE,
            body: vec![],
        }),
    ]);
}

#[test]
fn unknown_payloads_round_trip() {
    assert_round_trip(vec![
        Payload::Unknown {
            payload_type: PayloadType(128),
            critical: false,
            body: vec![1, 2, 3],
        },
        Payload::Unknown {
            payload_type: PayloadType::EAP,
            critical: true,
            body: vec![],
        },
    ]);
}

#[test]
fn all_payload_types_in_one_message_round_trip() {
    assert_round_trip(vec![
        Payload::IdI(Identification::fqdn("a.test")),
        Payload::Cert(Cert {
            encoding: 4,
            data: vec![1],
        }),
        Payload::CertReq(Cert {
            encoding: 4,
            data: vec![2],
        }),
        Payload::IdR(Identification::fqdn("b.test")),
        Payload::Auth(Authentication {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: vec![3; 10],
        }),
        Payload::Cp(ConfigPayload {
            cfg_type: 2,
            attributes: vec![],
        }),
        Payload::Sa(sample_sa()),
        Payload::TsI(vec![TrafficSelector::ipv4_any()]),
        Payload::TsR(vec![TrafficSelector::ipv4_any()]),
        Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
        Payload::Delete(Delete::esp(&[5])),
        Payload::Ke(KeyExchange {
            group: 31,
            data: vec![4; 32],
        }),
        Payload::Nonce(vec![5; 32]),
        Payload::VendorId(vec![6; 16]),
        Payload::Unknown {
            payload_type: PayloadType(99),
            critical: false,
            body: vec![7],
        },
        Payload::Encrypted(Encrypted {
            next_payload: PayloadType::IDI,
            body: vec![8; 48],
        }),
    ]);
}

#[test]
fn encode_payloads_of_empty_chain_is_none() {
    assert_eq!(encode_payloads(&[]), (PayloadType::NONE, vec![]));
    assert_eq!(decode_payloads(PayloadType::NONE, &[]), Ok(vec![]));
}

// ---------------------------------------------------------------------------
// Unknown and critical payloads

#[test]
fn unknown_noncritical_payload_is_kept_and_reencoded_verbatim() {
    let mut chain = raw_payload(200, false, &[0x40; 4]);
    chain.extend(raw_payload(0x28, false, &[0xfe, 0xed, 0xfa, 0xce, 0x99]));
    chain.extend(raw_payload(0, false, &[0x11; 16]));
    let bytes = raw_message(PayloadType::NONCE.0, &chain);
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(
        m.payloads,
        vec![
            Payload::Nonce(vec![0x40; 4]),
            Payload::Unknown {
                payload_type: PayloadType(200),
                critical: false,
                body: vec![0xfe, 0xed, 0xfa, 0xce, 0x99],
            },
            Payload::Nonce(vec![0x11; 16]),
        ]
    );
    assert_eq!(m.unsupported_critical(), None);
    assert_eq!(m.encode(), bytes);
}

#[test]
fn unknown_critical_payload_is_reported_by_unsupported_critical() {
    let mut chain = raw_payload(201, false, &[1; 8]);
    chain.extend(raw_payload(202, true, &[2, 3]));
    chain.extend(raw_payload(0, true, &[]));
    let bytes = raw_message(PayloadType::NONCE.0, &chain);
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.unsupported_critical(), Some(PayloadType(201)));
    assert_eq!(
        m.payloads[1],
        Payload::Unknown {
            payload_type: PayloadType(201),
            critical: true,
            body: vec![2, 3],
        }
    );
    assert_eq!(m.encode(), bytes, "critical bit preserved on re-encode");
    assert_eq!(
        first_unsupported_critical(&m.payloads[2..]),
        Some(PayloadType(202))
    );
}

#[test]
fn critical_bit_on_known_payload_is_ignored_and_cleared() {
    let bytes = raw_message(PayloadType::NONCE.0, &raw_payload(0, true, &[7; 16]));
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.payloads, vec![Payload::Nonce(vec![7; 16])]);
    assert_eq!(m.unsupported_critical(), None);
    let re = m.encode();
    assert_eq!(re[HEADER_LEN + 1], 0);
}

#[test]
fn reserved_fields_are_ignored_on_receipt() {
    // ID payload with non-zero reserved bytes.
    let bytes = raw_message(
        PayloadType::IDI.0,
        &raw_payload(0, false, &[2, 0xff, 0xff, 0xff, b'a', b'.', b't']),
    );
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.payloads, vec![Payload::IdI(Identification::fqdn("a.t"))]);
    // CP attribute type's reserved top bit.
    let bytes = raw_message(
        PayloadType::CP.0,
        &raw_payload(0, false, &[1, 0, 0, 0, 0x80, 0x01, 0x00, 0x00]),
    );
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::Cp(ConfigPayload {
            cfg_type: 1,
            attributes: vec![ConfigAttribute {
                attr_type: 1,
                value: vec![]
            }],
        })]
    );
}

// ---------------------------------------------------------------------------
// IANA number spaces

#[test]
fn unknown_iana_values_print_as_numbers() {
    assert_eq!(format!("{}", NotifyType(40000)), "40000");
    assert_eq!(NotifyType::COOKIE.to_string(), "COOKIE");
    assert_eq!(format!("{:?}", NotifyType(40000)), "40000");
    assert_eq!(format!("{:?}", NotifyType::COOKIE), "COOKIE");
    assert_eq!(PayloadType(200).to_string(), "200");
    assert_eq!(PayloadType::SK.to_string(), "SK");
    assert_eq!(ExchangeType(99).to_string(), "99");
    assert_eq!(ExchangeType::IKE_SA_INIT.to_string(), "IKE_SA_INIT");
    assert_eq!(TransformType(6).to_string(), "6");
    assert_eq!(IdType::ID_FQDN.to_string(), "ID_FQDN");
    assert_eq!(AuthMethod(0).to_string(), "0");
    assert_eq!(TsType(9).to_string(), "9");
    assert_eq!(NotifyType(40000).name(), None);
    assert!(NotifyType::NO_PROPOSAL_CHOSEN.is_error());
    assert!(!NotifyType::COOKIE.is_error());
}

#[test]
fn identification_display() {
    assert_eq!(Identification::fqdn("a.test").to_string(), "a.test");
    assert_eq!(Identification::rfc822("x@y.test").to_string(), "x@y.test");
    assert_eq!(
        Identification::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))).to_string(),
        "192.0.2.7"
    );
    assert_eq!(
        Identification::ip("2001:db8::1".parse().unwrap()).to_string(),
        "2001:db8::1"
    );
    assert_eq!(Identification::key_id(&[0xde, 0xad]).to_string(), "dead");
    assert_eq!(Identification::der_dn(&[0x30, 0x0a]).to_string(), "300a");
    // Control characters in a peer's identity cannot forge log lines.
    assert_eq!(Identification::fqdn("a\nb").to_string(), "a\\nb");
    assert_eq!(
        Identification::ip(IpAddr::V4(Ipv4Addr::LOCALHOST)).as_ip(),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
    assert_eq!(Identification::fqdn("x").as_ip(), None);
}

#[test]
fn traffic_selector_display() {
    assert_eq!(
        TrafficSelector::ipv4_any().to_string(),
        "0.0.0.0-255.255.255.255"
    );
    let ts = TrafficSelector {
        ip_proto: 17,
        start_port: 500,
        end_port: 500,
        ..TrafficSelector::host(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    };
    assert_eq!(ts.to_string(), "10.0.0.1-10.0.0.1 proto 17 port 500-500");
    assert_eq!(ts.ts_type(), TsType::TS_IPV4_ADDR_RANGE);
    assert_eq!(
        TrafficSelector::ipv6_any().ts_type(),
        TsType::TS_IPV6_ADDR_RANGE
    );
}

// ---------------------------------------------------------------------------
// SK placement

#[test]
fn sk_next_payload_is_first_inner_type_and_ends_chain() {
    // The SK payload's next-payload field is IDi (35); the chain stops there.
    let bytes = raw_message(PayloadType::SK.0, &raw_payload(35, false, &[0xaa; 32]));
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::Encrypted(Encrypted {
            next_payload: PayloadType::IDI,
            body: vec![0xaa; 32],
        })]
    );
    assert_eq!(m.encrypted().unwrap().next_payload, PayloadType::IDI);
    assert_eq!(m.encode(), bytes);
}

#[test]
fn sk_must_be_last() {
    let mut chain = raw_payload(35, false, &[0xaa; 32]);
    chain.extend(raw_payload(0, false, &[0x11; 16]));
    let bytes = raw_message(PayloadType::SK.0, &chain);
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::EncryptedNotLast { extra: 20 })
    );
    let m = message(vec![
        Payload::Encrypted(Encrypted {
            next_payload: PayloadType::NONE,
            body: vec![],
        }),
        Payload::Nonce(vec![1; 16]),
    ]);
    assert_eq!(m.try_encode(), Err(EncodeError::EncryptedNotLast));
    assert!(Message::decode(&m.encode()).is_err());
}

#[test]
fn skf_fragment_decodes_with_its_numbers_and_must_be_last() {
    let body = [0, 1, 0, 2, 9, 9, 9, 9];
    let bytes = raw_message(PayloadType::SKF.0, &raw_payload(35, false, &body));
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::EncryptedFragment(EncryptedFragment {
            next_payload: PayloadType::IDI,
            number: 1,
            total: 2,
            body: vec![9; 4],
        })]
    );
    assert_eq!(m.encode(), bytes);
    // A later fragment's next-payload field is ignored (read as 0).
    let later = raw_message(
        PayloadType::SKF.0,
        &raw_payload(35, false, &[0, 2, 0, 2, 1]),
    );
    match &Message::decode(&later).unwrap().payloads[..] {
        [Payload::EncryptedFragment(f)] => {
            assert_eq!(
                (f.next_payload, f.number, f.total),
                (PayloadType::NONE, 2, 2)
            )
        }
        other => panic!("not one fragment: {other:?}"),
    }
    let mut chain = raw_payload(0, false, &body);
    chain.extend(raw_payload(0, false, &[]));
    assert!(matches!(
        Message::decode(&raw_message(PayloadType::SKF.0, &chain)),
        Err(DecodeError::EncryptedNotLast { .. })
    ));
}

#[test]
fn skf_fragment_numbers_are_checked() {
    for (number, total) in [(0u16, 1u16), (3, 2), (1, 0), (0, 0)] {
        let mut body = number.to_be_bytes().to_vec();
        body.extend(total.to_be_bytes());
        body.extend([7; 20]);
        assert_eq!(
            Message::decode(&raw_message(
                PayloadType::SKF.0,
                &raw_payload(0, false, &body)
            )),
            Err(DecodeError::BadFragmentNumber { number, total }),
            "{number}/{total}"
        );
    }
    // Shorter than the two number fields.
    assert!(matches!(
        Message::decode(&raw_message(
            PayloadType::SKF.0,
            &raw_payload(0, false, &[0, 1, 0])
        )),
        Err(DecodeError::Truncated { .. })
    ));
    let bad = message(vec![Payload::EncryptedFragment(EncryptedFragment {
        next_payload: PayloadType::NONE,
        number: 3,
        total: 2,
        body: vec![],
    })]);
    assert_eq!(
        bad.try_encode(),
        Err(EncodeError::BadFragmentNumber {
            number: 3,
            total: 2
        })
    );
}

#[test]
fn decode_payloads_rejects_nested_sk() {
    let chain = raw_payload(35, false, &[0; 16]);
    assert_eq!(
        decode_payloads(PayloadType::SK, &chain),
        Err(DecodeError::NestedEncrypted(PayloadType::SK))
    );
    let mut chain = raw_payload(PayloadType::SK.0, false, &[0; 16]);
    chain.extend(raw_payload(0, false, &[0; 16]));
    assert_eq!(
        decode_payloads(PayloadType::NONCE, &chain),
        Err(DecodeError::NestedEncrypted(PayloadType::SK))
    );
}

#[test]
fn decode_payloads_must_consume_buffer_exactly() {
    let mut chain = raw_payload(0, false, &[1; 16]);
    chain.push(0);
    assert_eq!(
        decode_payloads(PayloadType::NONCE, &chain),
        Err(DecodeError::TrailingData {
            what: "last payload",
            extra: 1
        })
    );
    assert!(matches!(
        decode_payloads(PayloadType::NONE, &[0]),
        Err(DecodeError::TrailingData { .. })
    ));
    // The same in a whole message.
    assert!(matches!(
        Message::decode(&raw_message(PayloadType::NONCE.0, &chain)),
        Err(DecodeError::TrailingData { .. })
    ));
}

// ---------------------------------------------------------------------------
// Malformed payloads

#[test]
fn payload_length_below_header_size_is_error() {
    for len in 0u16..4 {
        let mut chain = vec![0, 0];
        chain.extend_from_slice(&len.to_be_bytes());
        assert_eq!(
            decode_payloads(PayloadType::NONCE, &chain),
            Err(DecodeError::BadLength {
                what: "Nonce payload",
                len: len as usize
            })
        );
    }
}

#[test]
fn payload_length_beyond_buffer_is_error() {
    let mut chain = raw_payload(0, false, &[1; 16]);
    chain[3] += 1;
    assert_eq!(
        decode_payloads(PayloadType::NONCE, &chain),
        Err(DecodeError::Truncated {
            what: "Nonce payload",
            need: 21,
            have: 20
        })
    );
}

#[test]
fn ts_with_type_9_is_unknown_ts_type() {
    let mut body = vec![1, 0, 0, 0];
    body.extend_from_slice(&[
        9, 0, 0, 16, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 255, 255, 255, 255,
    ]);
    let bytes = raw_message(PayloadType::TSI.0, &raw_payload(0, false, &body));
    assert_eq!(Message::decode(&bytes), Err(DecodeError::UnknownTsType(9)));
}

#[test]
fn ts_with_wrong_selector_length_is_error() {
    // An IPv4 range claiming the IPv6 length.
    let mut body = vec![1, 0, 0, 0, 7, 0, 0, 40];
    body.extend_from_slice(&[0; 36]);
    assert_eq!(
        decode_payloads(PayloadType::TSR, &raw_payload(0, false, &body)),
        Err(DecodeError::BadLength {
            what: "TS_IPV4_ADDR_RANGE selector",
            len: 40
        })
    );
}

#[test]
fn ts_count_mismatch_is_error() {
    let (first, mut chain) = encode_payloads(&[Payload::TsI(vec![
        TrafficSelector::ipv4_any(),
        TrafficSelector::ipv4_any(),
    ])]);
    chain[4] = 3;
    assert_eq!(
        decode_payloads(first, &chain),
        Err(DecodeError::CountMismatch {
            what: "TS payload selectors",
            declared: 3,
            found: 2
        })
    );
}

#[test]
fn sa_transform_count_mismatch_is_error() {
    let mut bytes = ike_sa_init_request();
    bytes[HEADER_LEN + 4 + 7] = 4; // num transforms: 3 -> 4
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::CountMismatch {
            what: "SA proposal transforms",
            declared: 4,
            found: 3
        })
    );
}

#[test]
fn sa_last_markers_are_checked() {
    let good = ike_sa_init_request();
    let proposal = HEADER_LEN + 4;
    let transform0 = proposal + 8;
    let transform2 = transform0 + 12 + 8;

    let mut bad = good.clone();
    bad[proposal] = 2; // "more proposals", but it is the only one
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::LastMarkerMismatch {
            what: "SA proposal",
            index: 0,
            marked_last: false
        })
    );

    let mut bad = good.clone();
    bad[proposal] = 3; // transform marker in a proposal
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::BadLastMarker {
            what: "SA proposal",
            value: 3
        })
    );

    let mut bad = good.clone();
    bad[transform0] = 0; // first transform claims to be the last
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::LastMarkerMismatch {
            what: "SA transform",
            index: 0,
            marked_last: true
        })
    );

    let mut bad = good.clone();
    bad[transform2] = 3; // last transform claims more follow
    assert_eq!(
        Message::decode(&bad),
        Err(DecodeError::LastMarkerMismatch {
            what: "SA transform",
            index: 2,
            marked_last: false
        })
    );
}

#[test]
fn sa_inner_length_inconsistencies_are_errors() {
    let good = ike_sa_init_request();
    let proposal = HEADER_LEN + 4;
    // Proposal length 1 byte longer than the SA payload holds.
    let mut bad = good.clone();
    bad[proposal + 3] += 1;
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::Truncated {
            what: "SA proposal",
            ..
        })
    ));
    // Transform length shorter than its header.
    let mut bad = good.clone();
    bad[proposal + 8 + 3] = 4;
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::BadLength {
            what: "SA transform",
            len: 4
        })
    ));
    // SPI size larger than the proposal.
    let mut bad = good.clone();
    bad[proposal + 6] = 200;
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::Truncated {
            what: "SA proposal SPI",
            ..
        })
    ));
    // A TLV attribute running past its transform.
    let mut bad = good.clone();
    bad[proposal + 8 + 8] = 0x00; // key length attribute: TV -> TLV, length 0x0100
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::Truncated {
            what: "transform attribute",
            ..
        })
    ));
}

#[test]
fn empty_sa_payload_is_error() {
    assert_eq!(
        decode_payloads(PayloadType::SA, &raw_payload(0, false, &[])),
        Err(DecodeError::Empty { what: "SA payload" })
    );
}

#[test]
fn id_address_of_wrong_length_is_error() {
    let chain = raw_payload(0, false, &[1, 0, 0, 0, 10, 0, 0]);
    assert_eq!(
        decode_payloads(PayloadType::IDI, &chain),
        Err(DecodeError::BadLength {
            what: "ID_IPV4_ADDR identification data",
            len: 3
        })
    );
    let chain = raw_payload(0, false, &[5, 0, 0, 0, 1, 2, 3, 4]);
    assert!(matches!(
        decode_payloads(PayloadType::IDR, &chain),
        Err(DecodeError::BadLength { len: 4, .. })
    ));
}

#[test]
fn delete_spi_inconsistencies_are_errors() {
    // Two 4-byte SPIs announced, one present.
    let chain = raw_payload(0, false, &[3, 4, 0, 2, 1, 2, 3, 4]);
    assert!(matches!(
        decode_payloads(PayloadType::DELETE, &chain),
        Err(DecodeError::Truncated {
            what: "Delete SPIs",
            need: 8,
            have: 4
        })
    ));
    // One SPI announced, two present.
    let chain = raw_payload(0, false, &[3, 4, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(matches!(
        decode_payloads(PayloadType::DELETE, &chain),
        Err(DecodeError::TrailingData {
            what: "Delete payload",
            extra: 4
        })
    ));
    // SPI size 0 but SPIs announced.
    let chain = raw_payload(0, false, &[1, 0, 0, 1]);
    assert!(matches!(
        decode_payloads(PayloadType::DELETE, &chain),
        Err(DecodeError::CountMismatch { .. })
    ));
}

#[test]
fn notify_spi_beyond_payload_is_error() {
    let chain = raw_payload(0, false, &[3, 4, 0x40, 0x09, 1, 2]);
    assert_eq!(
        decode_payloads(PayloadType::NOTIFY, &chain),
        Err(DecodeError::Truncated {
            what: "Notify SPI",
            need: 4,
            have: 2
        })
    );
}

#[test]
fn short_fixed_payload_bodies_are_errors() {
    for (ty, min) in [
        (PayloadType::KE, 4),
        (PayloadType::NOTIFY, 4),
        (PayloadType::DELETE, 4),
        (PayloadType::IDI, 4),
        (PayloadType::IDR, 4),
        (PayloadType::AUTH, 4),
        (PayloadType::TSI, 4),
        (PayloadType::TSR, 4),
        (PayloadType::CERT, 1),
        (PayloadType::CERTREQ, 1),
        (PayloadType::CP, 4),
    ] {
        for n in 0..min {
            let chain = raw_payload(0, false, &vec![0; n]);
            assert!(
                matches!(
                    decode_payloads(ty, &chain),
                    Err(DecodeError::Truncated { .. })
                ),
                "{ty} with {n}-byte body"
            );
        }
    }
}

#[test]
fn decode_errors_display_context() {
    let e = DecodeError::Truncated {
        what: "SA proposal",
        need: 36,
        have: 20,
    };
    assert_eq!(
        e.to_string(),
        "truncated SA proposal: need 36 bytes, have 20"
    );
    assert_eq!(
        DecodeError::UnknownTsType(9).to_string(),
        "unknown traffic selector type 9"
    );
}

// ---------------------------------------------------------------------------
// try_encode

#[test]
fn try_encode_rejects_unrepresentable_values() {
    let too_long = message(vec![Payload::Nonce(vec![0; 65532])]);
    assert_eq!(
        too_long.try_encode(),
        Err(EncodeError::TooLong {
            what: "Nonce payload",
            len: 65536,
            max: 65535
        })
    );
    assert!(message(vec![Payload::Nonce(vec![0; 65531])])
        .try_encode()
        .is_ok());

    let mixed = message(vec![Payload::TsI(vec![TrafficSelector {
        end_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        ..TrafficSelector::ipv4_any()
    }])]);
    assert_eq!(mixed.try_encode(), Err(EncodeError::MixedTsFamilies));

    let bad_delete = message(vec![Payload::Delete(Delete {
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![vec![1, 2, 3]],
    })]);
    assert_eq!(
        bad_delete.try_encode(),
        Err(EncodeError::DeleteSpiSize {
            spi_size: 4,
            len: 3
        })
    );

    let bad_attr = message(vec![Payload::Cp(ConfigPayload {
        cfg_type: 1,
        attributes: vec![ConfigAttribute {
            attr_type: 0x8001,
            value: vec![],
        }],
    })]);
    assert!(matches!(
        bad_attr.try_encode(),
        Err(EncodeError::AttributeType { .. })
    ));
    for ty in [
        PayloadType::NONE,
        PayloadType::SA,
        PayloadType::SK,
        PayloadType::CP,
        PayloadType::SKF,
    ] {
        let m = message(vec![Payload::Unknown {
            payload_type: ty,
            critical: false,
            body: vec![],
        }]);
        assert_eq!(m.try_encode(), Err(EncodeError::UnknownWithKnownType(ty)));
    }
    let skf_not_last = message(vec![
        Payload::EncryptedFragment(EncryptedFragment {
            next_payload: PayloadType::NONE,
            number: 1,
            total: 1,
            body: vec![],
        }),
        Payload::Nonce(vec![]),
    ]);
    assert_eq!(
        skf_not_last.try_encode(),
        Err(EncodeError::EncryptedNotLast)
    );
    assert!(try_encode_payloads(&too_long.payloads).is_err());
    assert!(try_encode_payloads(&[Payload::Nonce(vec![1])]).is_ok());
}

// ---------------------------------------------------------------------------
// Fuzz seeds

/// The fuzzing seeds under `ike/fuzz/seeds/decode` are valid messages that
/// re-encode byte for byte (so the fuzzer starts from deep coverage).
#[test]
fn fuzz_seeds_decode_and_reencode_verbatim() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decode");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let m = Message::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(m.encode(), bytes, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "expected at least 3 seeds in {}", dir.display());

    let all = Message::decode(&std::fs::read(dir.join("all_payloads.bin")).unwrap()).unwrap();
    assert_eq!(all.payloads.len(), 15);
    assert_eq!(all.unsupported_critical(), None);
    let auth =
        Message::decode(&std::fs::read(dir.join("ike_auth_request_sk.bin")).unwrap()).unwrap();
    assert_eq!(auth.encrypted().unwrap().next_payload, PayloadType::IDI);
    assert_eq!(
        std::fs::read(dir.join("ike_sa_init_request.bin")).unwrap(),
        ike_sa_init_request()
    );
}
