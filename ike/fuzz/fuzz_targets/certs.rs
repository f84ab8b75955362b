//! Fuzz target for the certificate path of IKE_AUTH: CERT and CERTREQ
//! payloads, the peer's identity and its AUTH signature.
//!
//! From `ike/fuzz` (stable toolchain, as for `decode`):
//!
//! ```sh
//! cargo fuzz run certs -s none corpus/certs seeds/certs
//! ```
//!
//! The input is `[first payload type]` and a payload chain, as `decode`
//! reads it. Its ID, CERT, CERTREQ and AUTH payloads go where IKE_AUTH
//! sends them: the chain to `PubkeyAuth::verify` against a fixed trust
//! anchor (`data/ca.der`, an ECDSA P-256 root valid until 2126) at a fixed
//! time, a CERTREQ to the choice of what to send, every
//! CERT to the subject, key-hash and identity helpers. The same bytes are
//! also read as a PEM/DER certificate file and as a private key file.
//! The seeds are a valid chain with a valid signature over `OCTETS`
//! (`seeds/certs/chain-ecdsa`) and a truncated one.
//! Properties: nothing panics, and only a valid chain to the anchor with a
//! matching identity and signature is accepted.

#![no_main]

use std::sync::{Arc, OnceLock};

use ike::pki::{self, PubkeyAuth, SendCert, TrustStore};
use ike::wire::{decode_payloads, Payload, PayloadType};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::{CertificateDer, UnixTime};

const OCTETS: &[u8] = b"vpnd fuzz: the signed octets";
const CA: &[u8] = include_bytes!("../data/ca.der");

fn auth() -> &'static PubkeyAuth {
    static AUTH: OnceLock<PubkeyAuth> = OnceLock::new();
    AUTH.get_or_init(|| PubkeyAuth {
        local: None,
        trust: Arc::new(TrustStore {
            cas: vec![CertificateDer::from(CA.to_vec())],
            ..Default::default()
        }),
        remote_cacert: None,
        send_cert: SendCert::IfAsked,
        ..Default::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = pki::parse_certificates(data);
    let _ = pki::parse_private_key(data);
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(payloads) = decode_payloads(PayloadType(first), rest) else {
        return;
    };
    let (mut certs, mut id, mut sig, mut asked) = (Vec::new(), None, None, false);
    for p in payloads {
        match p {
            Payload::Cert(c) => certs.push(c),
            Payload::CertReq(_) => asked = true,
            Payload::IdI(i) | Payload::IdR(i) => id = Some(i),
            Payload::Auth(a) => sig = Some(a),
            _ => {}
        }
    }
    let _ = auth().cert_payloads(asked);
    for c in &certs {
        let _ = pki::subject_string(&c.data);
        let _ = pki::spki_sha1(&c.data);
        let _ = pki::cert_public_key(&c.data);
        if let Some(id) = &id {
            let _ = pki::cert_has_identity(&c.data, id);
        }
    }
    if let (Some(id), Some(sig)) = (id, sig) {
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
        if auth().verify(&certs, &id, OCTETS, &sig, now).is_ok() {
            // Accepted: the end entity must chain to the anchor and hold the identity.
            let ee = certs.iter().find(|c| c.encoding == pki::CERT_X509_SIGNATURE);
            assert!(ee.is_some_and(|c| pki::cert_has_identity(&c.data, &id)));
        }
    }
});
