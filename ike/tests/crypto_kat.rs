//! Known-answer tests of the crypto layer against published vectors
//! (RFC 4231, the McGrew-Viega GCM specification, RFC 8439, RFC 7748,
//! RFC 5903), plus prf+ and key derivation checked against an independent
//! computation with ring's HMAC.

use ike::crypto::{
    AeadAlg, AeadKey, CryptoError, DhGroup, DhPrivate, PrfAlg, Random, SeededRandom, SystemRandom,
};
use ring::hmac;

fn h(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("bad hex in test vector")
}

// ---------------------------------------------------------------- HMAC / PRF

/// RFC 4231 test case: (key, data, HMAC-SHA-256, HMAC-SHA-384, HMAC-SHA-512).
type HmacCase = (Vec<u8>, Vec<u8>, &'static str, &'static str, &'static str);

fn rfc4231_cases() -> Vec<HmacCase> {
    vec![
        // Test case 1
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
             faea9ea9076ede7f4af152e8b2fa9cb6",
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ),
        // Test case 2
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        // Test case 3
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b\
             2a5ab39dc13814b94e3ab6e101a34f27",
            "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
             bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
        ),
        // Test case 6: key larger than the block size
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
             0c2ef6ab4030fe8296248df163f44952",
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
             6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        ),
    ]
}

#[test]
fn hmac_sha2_prfs_match_rfc4231() {
    for (i, (key, data, s256, s384, s512)) in rfc4231_cases().into_iter().enumerate() {
        assert_eq!(
            PrfAlg::HmacSha256.prf(&key, &[&data]),
            h(s256),
            "case {i} sha256"
        );
        assert_eq!(
            PrfAlg::HmacSha384.prf(&key, &[&data]),
            h(s384),
            "case {i} sha384"
        );
        assert_eq!(
            PrfAlg::HmacSha512.prf(&key, &[&data]),
            h(s512),
            "case {i} sha512"
        );
    }
}

#[test]
fn prf_over_split_data_equals_prf_over_concatenation() {
    let (key, data, s256, _, _) = rfc4231_cases().remove(1);
    let (a, b) = data.split_at(7);
    assert_eq!(PrfAlg::HmacSha256.prf(&key, &[a, &[], b]), h(s256));
}

#[test]
fn prf_ids_lengths_and_names() {
    for (alg, id, len, name) in [
        (PrfAlg::HmacSha256, 5, 32, "prfsha256"),
        (PrfAlg::HmacSha384, 6, 48, "prfsha384"),
        (PrfAlg::HmacSha512, 7, 64, "prfsha512"),
    ] {
        assert_eq!(alg.transform_id(), id);
        assert_eq!(PrfAlg::from_transform_id(id), Some(alg));
        assert_eq!(alg.output_len(), len);
        assert_eq!(alg.name(), name);
        assert_eq!(alg.prf(b"k", &[b"d"]).len(), len);
    }
    assert_eq!(PrfAlg::from_transform_id(2), None); // PRF_HMAC_SHA1
    assert_eq!(PrfAlg::from_transform_id(0), None);
}

/// prf+ written out by hand with ring's HMAC: T1 = prf(K, S | 0x01),
/// Tn = prf(K, Tn-1 | S | n).
fn independent_prf_plus(alg: hmac::Algorithm, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let k = hmac::Key::new(alg, key);
    let mut out = Vec::new();
    let mut prev: Vec<u8> = Vec::new();
    let mut n: u16 = 1;
    while out.len() < len {
        let mut msg = prev.clone();
        msg.extend_from_slice(seed);
        msg.push(u8::try_from(n).expect("more than 255 blocks"));
        prev = hmac::sign(&k, &msg).as_ref().to_vec();
        out.extend_from_slice(&prev);
        n += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn prf_plus_matches_independent_computation() {
    let key = h("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let seed = b"seed: Ni | Nr | SPIi | SPIr".to_vec();
    for (alg, ring_alg) in [
        (PrfAlg::HmacSha256, hmac::HMAC_SHA256),
        (PrfAlg::HmacSha384, hmac::HMAC_SHA384),
        (PrfAlg::HmacSha512, hmac::HMAC_SHA512),
    ] {
        let max = 255 * alg.output_len();
        for len in [0, 1, 31, 32, 33, 64, 100, 200, 1000, max] {
            let ours = alg.prf_plus(&key, &seed, len);
            assert_eq!(ours.len(), len);
            assert_eq!(
                &ours[..],
                &independent_prf_plus(ring_alg, &key, &seed, len)[..],
                "{alg:?} len {len}"
            );
        }
    }
}

#[test]
fn prf_plus_first_block_is_prf_of_seed_and_one() {
    let out = PrfAlg::HmacSha256.prf_plus(b"key", b"seed", 32);
    assert_eq!(
        &out[..],
        &PrfAlg::HmacSha256.prf(b"key", &[b"seed", &[1]])[..]
    );
}

#[test]
fn prf_plus_shorter_output_is_a_prefix_of_longer() {
    let long = PrfAlg::HmacSha384.prf_plus(b"k", b"s", 500);
    let short = PrfAlg::HmacSha384.prf_plus(b"k", b"s", 77);
    assert_eq!(&long[..77], &short[..]);
}

#[test]
#[should_panic]
fn prf_plus_panics_beyond_255_blocks() {
    let _ = PrfAlg::HmacSha256.prf_plus(b"k", b"s", 255 * 32 + 1);
}

/// RFC 7296 §2.14 key derivation for an AEAD suite, computed with our PRF
/// and independently with ring's HMAC, then split into the seven keys.
#[test]
fn ike_sa_key_derivation_matches_independent_computation() {
    let ni = h("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
    let nr = h("c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf");
    let g_ir = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    let spi_i = h("0011223344556677");
    let spi_r = h("8899aabbccddeeff");
    let prf = PrfAlg::HmacSha256;
    let encr = AeadAlg::AesGcm16_256;

    // SKEYSEED = prf(Ni | Nr, g^ir)
    let skeyseed = prf.prf(&[&ni[..], &nr[..]].concat(), &[&g_ir]);
    let nonce_key = hmac::Key::new(hmac::HMAC_SHA256, &[&ni[..], &nr[..]].concat());
    let expected_skeyseed = hmac::sign(&nonce_key, &g_ir).as_ref().to_vec();
    assert_eq!(skeyseed, expected_skeyseed);

    // {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
    //     = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr); SK_a* are empty for AEAD.
    let (d, a, e, p) = (
        prf.output_len(),
        0,
        encr.key_material_len(),
        prf.output_len(),
    );
    let total = d + 2 * a + 2 * e + 2 * p;
    assert_eq!(total, 32 + 2 * 36 + 2 * 32);
    let seed = [&ni[..], &nr[..], &spi_i[..], &spi_r[..]].concat();
    let keymat = prf.prf_plus(&skeyseed, &seed, total);
    let expected = independent_prf_plus(hmac::HMAC_SHA256, &expected_skeyseed, &seed, total);
    assert_eq!(&keymat[..], &expected[..]);

    let mut rest: &[u8] = &keymat;
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head.to_vec()
    };
    let sk_d = take(d);
    let (sk_ai, sk_ar) = (take(a), take(a));
    let (sk_ei, sk_er) = (take(e), take(e));
    let (sk_pi, sk_pr) = (take(p), take(p));
    assert!(rest.is_empty());
    assert_eq!(sk_d, expected[..32]);
    assert!(sk_ai.is_empty() && sk_ar.is_empty());
    assert_eq!(sk_ei, expected[32..68]);
    assert_eq!(sk_er, expected[68..104]);
    assert_eq!(sk_pi, expected[104..136]);
    assert_eq!(sk_pr, expected[136..168]);

    // The encryption keys work, and each direction's key is distinct.
    let ei = AeadKey::new(encr, &sk_ei).unwrap();
    let er = AeadKey::new(encr, &sk_er).unwrap();
    let mut msg = b"IKE_AUTH payloads".to_vec();
    ei.seal_in_place(&[0; 8], b"hdr", &mut msg);
    assert!(er.open_in_place(&[0; 8], b"hdr", &mut msg.clone()).is_err());
    assert_eq!(
        ei.open_in_place(&[0; 8], b"hdr", &mut msg).unwrap(),
        b"IKE_AUTH payloads"
    );

    // Child SA keys: KEYMAT = prf+(SK_d, Ni | Nr).
    let child = prf.prf_plus(&sk_d, &[&ni[..], &nr[..]].concat(), 2 * e);
    let expected_child = independent_prf_plus(
        hmac::HMAC_SHA256,
        &sk_d,
        &[&ni[..], &nr[..]].concat(),
        2 * e,
    );
    assert_eq!(&child[..], &expected_child[..]);
}

// ---------------------------------------------------------------- AEAD

/// Checks one AEAD known answer: seal gives ciphertext ‖ tag, open gives the
/// plaintext back, and flipping a bit anywhere (ciphertext, tag, AAD, IV)
/// makes open fail.
#[allow(clippy::too_many_arguments)] // one argument per field of the published vector
fn check_aead_vector(
    alg: AeadAlg,
    key: &[u8],
    salt: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) {
    let material = [key, salt].concat();
    assert_eq!(material.len(), alg.key_material_len());
    let k = AeadKey::new(alg, &material).unwrap();
    assert_eq!(k.alg(), alg);
    let iv: [u8; 8] = iv.try_into().unwrap();

    let mut buf = plaintext.to_vec();
    k.seal_in_place(&iv, aad, &mut buf);
    assert_eq!(buf.len(), plaintext.len() + AeadAlg::ICV_LEN);
    assert_eq!(&buf[..plaintext.len()], ciphertext, "ciphertext");
    assert_eq!(&buf[plaintext.len()..], tag, "tag");

    let sealed = buf.clone();
    let opened = k.open_in_place(&iv, aad, &mut buf).unwrap();
    assert_eq!(opened, plaintext);

    // Tampered ciphertext.
    let mut t = sealed.clone();
    t[0] ^= 0x01;
    assert_eq!(
        k.open_in_place(&iv, aad, &mut t),
        Err(CryptoError::IntegrityCheckFailed)
    );
    // Tampered tag.
    let mut t = sealed.clone();
    *t.last_mut().unwrap() ^= 0x80;
    assert_eq!(
        k.open_in_place(&iv, aad, &mut t),
        Err(CryptoError::IntegrityCheckFailed)
    );
    // Tampered AAD.
    let mut bad_aad = aad.to_vec();
    bad_aad[0] ^= 0x01;
    let mut t = sealed.clone();
    assert_eq!(
        k.open_in_place(&iv, &bad_aad, &mut t),
        Err(CryptoError::IntegrityCheckFailed)
    );
    // Missing AAD.
    let mut t = sealed.clone();
    assert!(k.open_in_place(&iv, &[], &mut t).is_err());
    // Wrong IV.
    let mut bad_iv = iv;
    bad_iv[7] ^= 0x01;
    let mut t = sealed.clone();
    assert!(k.open_in_place(&bad_iv, aad, &mut t).is_err());
    // Truncated.
    let mut t = sealed[..sealed.len() - 1].to_vec();
    assert!(k.open_in_place(&iv, aad, &mut t).is_err());
    let mut t = sealed[..10].to_vec();
    assert!(k.open_in_place(&iv, aad, &mut t).is_err());
}

const GCM_P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                     1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
const GCM_A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

/// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 4:
/// 96-bit IV cafebabe facedbad decaf888 = salt ‖ IV.
#[test]
fn aes128_gcm_matches_gcm_spec_test_case_4() {
    check_aead_vector(
        AeadAlg::AesGcm16_128,
        &h("feffe9928665731c6d6a8f9467308308"),
        &h("cafebabe"),
        &h("facedbaddecaf888"),
        &h(GCM_A),
        &h(GCM_P),
        &h(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
            21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        ),
        &h("5bc94fbc3221a5db94fae95ae7121a47"),
    );
}

/// GCM specification test case 16 (AES-256, same plaintext, AAD and IV).
#[test]
fn aes256_gcm_matches_gcm_spec_test_case_16() {
    check_aead_vector(
        AeadAlg::AesGcm16_256,
        &h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
        &h("cafebabe"),
        &h("facedbaddecaf888"),
        &h(GCM_A),
        &h(GCM_P),
        &h(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
            8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        ),
        &h("76fc6ece0f4e1768cddf8853bb2d551b"),
    );
}

/// RFC 8439 §2.8.2: nonce 07000000 ‖ 4041424344454647 = salt ‖ IV.
#[test]
fn chacha20_poly1305_matches_rfc8439_aead_vector() {
    let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";
    check_aead_vector(
        AeadAlg::ChaCha20Poly1305,
        &h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
        &h("07000000"),
        &h("4041424344454647"),
        &h("50515253c0c1c2c3c4c5c6c7"),
        plaintext,
        &h(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
            3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36\
            92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc\
            3ff4def08e4b7a9de576d26586cec64b6116",
        ),
        &h("1ae10b594f09e26a7e902ecbd0600691"),
    );
}

#[test]
fn aead_ids_lengths_and_names() {
    for (alg, id, kl, mat, name) in [
        (AeadAlg::AesGcm16_128, 20, Some(128), 20, "aes128gcm16"),
        (AeadAlg::AesGcm16_256, 20, Some(256), 36, "aes256gcm16"),
        (AeadAlg::ChaCha20Poly1305, 28, None, 36, "chacha20poly1305"),
    ] {
        assert_eq!(alg.transform_id(), id);
        assert_eq!(alg.key_length_attr(), kl);
        assert_eq!(AeadAlg::from_transform(id, kl), Some(alg));
        assert_eq!(alg.key_material_len(), mat);
        assert_eq!(alg.name(), name);
    }
    assert_eq!(AeadAlg::IV_LEN, 8);
    assert_eq!(AeadAlg::ICV_LEN, 16);
    assert_eq!(AeadAlg::from_transform(20, Some(192)), None);
    assert_eq!(AeadAlg::from_transform(20, None), None);
    assert_eq!(AeadAlg::from_transform(28, Some(256)), None);
    assert_eq!(AeadAlg::from_transform(12, Some(256)), None); // AES-CBC
    assert_eq!(AeadAlg::from_transform(18, Some(128)), None); // GCM with 8-byte ICV
}

#[test]
fn aead_key_rejects_wrong_material_length() {
    for alg in [
        AeadAlg::AesGcm16_128,
        AeadAlg::AesGcm16_256,
        AeadAlg::ChaCha20Poly1305,
    ] {
        let n = alg.key_material_len();
        for len in [0, n - 4, n - 1, n + 1] {
            assert_eq!(
                AeadKey::new(alg, &vec![7; len]).unwrap_err(),
                CryptoError::WrongKeyLength {
                    expected: n,
                    got: len
                }
            );
        }
        assert!(AeadKey::new(alg, &vec![7; n]).is_ok());
    }
}

#[test]
fn aead_round_trips_empty_plaintext_and_empty_aad() {
    for alg in [
        AeadAlg::AesGcm16_128,
        AeadAlg::AesGcm16_256,
        AeadAlg::ChaCha20Poly1305,
    ] {
        let k = AeadKey::new(alg, &vec![0x42; alg.key_material_len()]).unwrap();
        let mut buf = Vec::new();
        k.seal_in_place(&[1; 8], &[], &mut buf);
        assert_eq!(buf.len(), AeadAlg::ICV_LEN);
        assert_eq!(k.open_in_place(&[1; 8], &[], &mut buf).unwrap(), b"");
    }
}

#[test]
fn aead_salt_is_part_of_the_nonce() {
    let mut m1 = vec![0x11; 36];
    let k1 = AeadKey::new(AeadAlg::AesGcm16_256, &m1).unwrap();
    m1[35] ^= 1;
    let k2 = AeadKey::new(AeadAlg::AesGcm16_256, &m1).unwrap();
    let mut buf = b"payload".to_vec();
    k1.seal_in_place(&[9; 8], b"", &mut buf);
    assert!(k2.open_in_place(&[9; 8], b"", &mut buf.clone()).is_err());
    assert!(k1.open_in_place(&[9; 8], b"", &mut buf).is_ok());
}

#[test]
fn aead_key_debug_does_not_print_key_material() {
    let material = h("feffe9928665731c6d6a8f9467308308cafebabe");
    let k = AeadKey::new(AeadAlg::AesGcm16_128, &material).unwrap();
    let dbg = format!("{k:?}").to_lowercase();
    assert!(dbg.contains("aesgcm16_128"), "{dbg}");
    assert!(
        !dbg.contains("feffe9") && !dbg.contains("cafebabe") && !dbg.contains("254"),
        "{dbg}"
    );
}

// ---------------------------------------------------------------- DH

/// RFC 7748 §6.1.
#[test]
fn x25519_matches_rfc7748_section_6_1() {
    let alice = DhPrivate::from_bytes(
        DhGroup::Curve25519,
        &h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
    )
    .unwrap();
    let bob = DhPrivate::from_bytes(
        DhGroup::Curve25519,
        &h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
    )
    .unwrap();
    assert_eq!(
        alice.public_key(),
        h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        bob.public_key(),
        h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(&alice.agree(bob.public_key()).unwrap()[..], &shared[..]);
    assert_eq!(&bob.agree(alice.public_key()).unwrap()[..], &shared[..]);
}

/// RFC 5903 §8.1, 256-bit random ECP group.
#[test]
fn ecp256_matches_rfc5903_section_8_1() {
    let i = DhPrivate::from_bytes(
        DhGroup::Ecp256,
        &h("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433"),
    )
    .unwrap();
    let r = DhPrivate::from_bytes(
        DhGroup::Ecp256,
        &h("C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53"),
    )
    .unwrap();
    let gi = h(
        "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180
                5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
    );
    let gr = h(
        "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63
                56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
    );
    let girx = h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE");
    assert_eq!(i.public_key(), gi);
    assert_eq!(r.public_key(), gr);
    assert_eq!(&i.agree(&gr).unwrap()[..], &girx[..]);
    assert_eq!(&r.agree(&gi).unwrap()[..], &girx[..]);
}

/// RFC 5903 §8.2, 384-bit random ECP group.
#[test]
fn ecp384_matches_rfc5903_section_8_2() {
    let i = DhPrivate::from_bytes(
        DhGroup::Ecp384,
        &h(
            "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655
            E35B5380 41E649EE 3FAEF896 783AB194",
        ),
    )
    .unwrap();
    let r = DhPrivate::from_bytes(
        DhGroup::Ecp384,
        &h(
            "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942
            E0308312 916B8ED2 960E4BD5 5A7448FC",
        ),
    )
    .unwrap();
    let gi = h(
        "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6
                DE3AC808 ACB4BDB4 C88732AE E95F41AA
                9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E
                EB9FCFF3 C2C947DA E69B4C63 4573A81C",
    );
    let gr = h(
        "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D
                0D1AC43A 0336DEF9 6FDA41D0 774A3571
                DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF
                F83FA401 42209DFF 5EAAD96D B9E6386C",
    );
    let girx = h(
        "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4
                  D6031355 69B9E9D0 9CF5D4A2 70F59746",
    );
    assert_eq!(i.public_key(), gi);
    assert_eq!(r.public_key(), gr);
    assert_eq!(&i.agree(&gr).unwrap()[..], &girx[..]);
    assert_eq!(&r.agree(&gi).unwrap()[..], &girx[..]);
}

#[test]
fn dh_group_ids_lengths_and_names() {
    for (g, id, len, name) in [
        (DhGroup::Curve25519, 31, 32, "x25519"),
        (DhGroup::Ecp256, 19, 64, "ecp256"),
        (DhGroup::Ecp384, 20, 96, "ecp384"),
    ] {
        assert_eq!(g.id(), id);
        assert_eq!(DhGroup::from_id(id), Some(g));
        assert_eq!(g.public_len(), len);
        assert_eq!(g.name(), name);
    }
    assert_eq!(DhGroup::from_id(14), None); // MODP 2048
    assert_eq!(DhGroup::from_id(0), None);
}

#[test]
fn dh_rejects_peer_values_of_wrong_length() {
    let mut rng = SeededRandom::new(1);
    for g in [DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Ecp384] {
        let ours = DhPrivate::generate(g, &mut rng);
        let peer = DhPrivate::generate(g, &mut rng);
        let good = peer.public_key().to_vec();
        assert!(ours.agree(&good).is_ok());
        let invalid = Err(CryptoError::InvalidPublicKey { group: g.id() });
        assert_eq!(ours.agree(&good[..good.len() - 1]), invalid);
        assert_eq!(ours.agree(&[good.clone(), vec![0]].concat()), invalid);
        assert_eq!(ours.agree(&[]), invalid);
        // SEC1 forms are not KE payload data.
        if g != DhGroup::Curve25519 {
            assert_eq!(ours.agree(&[&[0x04][..], &good[..]].concat()), invalid);
            assert_eq!(ours.agree(&good[..g.public_len() / 2]), invalid);
        }
    }
}

#[test]
fn ecp_rejects_points_not_on_the_curve() {
    let mut rng = SeededRandom::new(2);
    for g in [DhGroup::Ecp256, DhGroup::Ecp384] {
        let ours = DhPrivate::generate(g, &mut rng);
        let peer = DhPrivate::generate(g, &mut rng);
        let invalid = Err(CryptoError::InvalidPublicKey { group: g.id() });
        let mut bad = peer.public_key().to_vec();
        *bad.last_mut().unwrap() ^= 0x01; // y changed: off the curve
        assert_eq!(ours.agree(&bad), invalid);
        // The point at infinity has no affine encoding; all zeros is (0, 0),
        // which is not on either curve.
        assert_eq!(ours.agree(&vec![0; g.public_len()]), invalid);
        // Coordinates not below the field prime.
        assert_eq!(ours.agree(&vec![0xff; g.public_len()]), invalid);
    }
}

#[test]
fn x25519_rejects_low_order_points() {
    let ours = DhPrivate::generate(DhGroup::Curve25519, &mut SeededRandom::new(3));
    let invalid = Err(CryptoError::InvalidPublicKey { group: 31 });
    // u = 0 and u = 1 (orders 4 and 1), and a point of order 8
    // (RFC 7748 §6.1's advice; list from the libsodium blacklist).
    let mut one = [0u8; 32];
    one[0] = 1;
    let order8 = h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    assert_eq!(ours.agree(&[0; 32]), invalid);
    assert_eq!(ours.agree(&one), invalid);
    assert_eq!(ours.agree(&order8), invalid);
}

#[test]
fn dh_from_bytes_rejects_invalid_private_values() {
    assert_eq!(
        DhPrivate::from_bytes(DhGroup::Curve25519, &[1; 31]).unwrap_err(),
        CryptoError::InvalidPrivateKey { group: 31 }
    );
    assert_eq!(
        DhPrivate::from_bytes(DhGroup::Ecp256, &[0; 32]).unwrap_err(),
        CryptoError::InvalidPrivateKey { group: 19 }
    );
    // 0xff.. is above the group order.
    assert_eq!(
        DhPrivate::from_bytes(DhGroup::Ecp384, &[0xff; 48]).unwrap_err(),
        CryptoError::InvalidPrivateKey { group: 20 }
    );
    assert!(DhPrivate::from_bytes(DhGroup::Ecp256, &[1; 33]).is_err());
}

#[test]
fn dh_generate_is_deterministic_with_seeded_random() {
    for g in [DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Ecp384] {
        let a = DhPrivate::generate(g, &mut SeededRandom::new(42));
        let b = DhPrivate::generate(g, &mut SeededRandom::new(42));
        let c = DhPrivate::generate(g, &mut SeededRandom::new(43));
        assert_eq!(a.group(), g);
        assert_eq!(a.public_key().len(), g.public_len());
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        let s1 = a.agree(c.public_key()).unwrap();
        let s2 = c.agree(a.public_key()).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(s1.len(), if g == DhGroup::Ecp384 { 48 } else { 32 });
    }
}

/// An RNG whose first outputs are invalid P-256 scalars (zero, then all
/// ones, which is above the order): generate must skip them.
struct BadThenSeeded {
    bad_left: usize,
    inner: SeededRandom,
}

impl Random for BadThenSeeded {
    fn fill(&mut self, buf: &mut [u8]) {
        if self.bad_left > 0 {
            let byte = if self.bad_left & 1 == 0 { 0x00 } else { 0xff };
            buf.fill(byte);
            self.bad_left -= 1;
        } else {
            self.inner.fill(buf);
        }
    }
}

#[test]
fn ecp_generate_skips_invalid_scalars() {
    for g in [DhGroup::Ecp256, DhGroup::Ecp384] {
        let mut rng = BadThenSeeded {
            bad_left: 2,
            inner: SeededRandom::new(5),
        };
        let k = DhPrivate::generate(g, &mut rng);
        let expected = DhPrivate::generate(g, &mut SeededRandom::new(5));
        assert_eq!(k.public_key(), expected.public_key());
    }
}

#[test]
fn dh_private_debug_shows_no_secret() {
    let k = DhPrivate::from_bytes(
        DhGroup::Curve25519,
        &h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
    )
    .unwrap();
    let dbg = format!("{k:?}");
    assert!(dbg.contains("Curve25519"), "{dbg}");
    assert!(
        !dbg.to_lowercase().contains("77076d") && !dbg.contains("119"),
        "{dbg}"
    );
}

// ---------------------------------------------------------------- RNG

#[test]
fn seeded_random_is_deterministic() {
    let mut a = SeededRandom::new(7);
    let mut b = SeededRandom::new(7);
    let mut x = [0u8; 100];
    let mut y = [0u8; 100];
    a.fill(&mut x);
    b.fill(&mut y);
    assert_eq!(x, y);
    assert_ne!(x, [0u8; 100]);
}

#[test]
fn seeded_random_differs_between_seeds() {
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    SeededRandom::new(0).fill(&mut x);
    SeededRandom::new(1).fill(&mut y);
    assert_ne!(x, y);
}

#[test]
fn seeded_random_stream_is_independent_of_request_sizes() {
    let mut whole = vec![0u8; 200];
    SeededRandom::new(99).fill(&mut whole);
    let mut r = SeededRandom::new(99);
    let mut pieces = Vec::new();
    for n in [1, 0, 31, 32, 33, 7, 96] {
        let mut buf = vec![0u8; n];
        r.fill(&mut buf);
        pieces.extend_from_slice(&buf);
    }
    assert_eq!(pieces, whole);
}

/// The documented construction: block i = HMAC-SHA-256(seed_be, i_be).
#[test]
fn seeded_random_matches_its_documented_construction() {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &12345u64.to_be_bytes());
    let expected = [
        hmac::sign(&key, &0u64.to_be_bytes()).as_ref().to_vec(),
        hmac::sign(&key, &1u64.to_be_bytes()).as_ref().to_vec(),
    ]
    .concat();
    let mut got = [0u8; 64];
    SeededRandom::new(12345).fill(&mut got);
    assert_eq!(&got[..], &expected[..]);
}

#[test]
fn system_random_fills_and_varies() {
    let mut r = SystemRandom::default();
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    r.fill(&mut x);
    r.fill(&mut y);
    assert_ne!(x, y);
    // Usable as a trait object, which is how the crate takes it.
    let dynr: &mut dyn Random = &mut r;
    let k = DhPrivate::generate(DhGroup::Ecp256, dynr);
    assert_eq!(k.public_key().len(), 64);
}
