//! The seeds of the `certs` fuzz target (`ike/fuzz`): `chain-ecdsa` is a
//! chain the target's fixed anchor accepts, so the fuzzer starts from the
//! accepting path; `chain-truncated` is refused. Both decode as the target
//! reads them.

use std::sync::Arc;
use std::time::Duration;

use ike::pki::{PubkeyAuth, SendCert, TrustStore};
use ike::wire::{decode_payloads, Payload, PayloadType};
use rustls_pki_types::{CertificateDer, UnixTime};

const OCTETS: &[u8] = b"vpnd fuzz: the signed octets";

fn verify(seed: &str) -> Result<(), ike::pki::PkiError> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let ca = std::fs::read(root.join("data/ca.der")).unwrap();
    let data = std::fs::read(root.join("seeds/certs").join(seed)).unwrap();
    let payloads = decode_payloads(PayloadType(data[0]), &data[1..]).expect("seed decodes");
    let (mut certs, mut id, mut sig) = (Vec::new(), None, None);
    for p in payloads {
        match p {
            Payload::Cert(c) => certs.push(c),
            Payload::IdI(i) => id = Some(i),
            Payload::Auth(a) => sig = Some(a),
            _ => {}
        }
    }
    let auth = PubkeyAuth {
        local: None,
        trust: Arc::new(TrustStore {
            cas: vec![CertificateDer::from(ca)],
            ..Default::default()
        }),
        remote_cacert: None,
        send_cert: SendCert::IfAsked,
        ..Default::default()
    };
    let now = UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000));
    auth.verify(&certs, &id.unwrap(), OCTETS, &sig.unwrap(), now)
}

#[test]
fn valid_seed_is_accepted() {
    verify("chain-ecdsa").expect("the valid seed must verify");
}

#[test]
fn truncated_seed_is_refused() {
    let e = verify("chain-truncated").unwrap_err();
    assert!(
        matches!(e, ike::pki::PkiError::BadPeerCertificate { .. }),
        "{e}"
    );
}
