//! CPU per side for a complete IKE_SA_INIT + IKE_AUTH (with the first CHILD
//! SA) using x25519, PRF-HMAC-SHA2-256 and AES-256-GCM-16, authenticated
//! with a PSK, with ECDSA P-256 certificates and with RSA 3072 ones.
//!
//! Run: `cargo bench -p ike --bench handshake`. With certificates each side
//! signs its AUTH payload (RFC 7427, SHA-256) and checks the peer's chain
//! (end entity under a root of the same key type, sent in a CERT payload)
//! and its signature. The RSA keys come from the openssl command. Each side's calls into the
//! state machine are timed separately (`iter_custom`) on the thread's CPU
//! clock, so "initiator" and "responder" are the CPU that side spends on
//! one handshake, even on a busy machine; message passing between them is
//! not counted. Randomness is the OS RNG, as in the
//! daemon.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ike::config::PeerConfig;
use ike::crypto::SystemRandom;
use ike::pki::{self, LocalCert, PubkeyAuth, SendCert, TrustStore};
use ike::sa::{Accept, IkeSa, Responder};
use ike::testing::test_config;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};

/// CPU time of this thread so far.
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What the SA sends now: one message, or its RFC 7383 fragments (a
/// certificate chain makes IKE_AUTH larger than `fragment_size`).
fn all_datagrams(sa: &mut IkeSa) -> Vec<Vec<u8>> {
    let out: Vec<_> = std::iter::from_fn(|| sa.poll_transmit().map(|t| t.data)).collect();
    assert!(!out.is_empty(), "nothing to send");
    out
}

/// One handshake; returns (initiator CPU, responder CPU).
fn handshake(a: &Arc<PeerConfig>, b: &Arc<PeerConfig>) -> (Duration, Duration) {
    let la = "198.18.0.1:500".parse().unwrap();
    let lb = "198.18.0.2:500".parse().unwrap();
    let now = Instant::now();
    let mut ti = Duration::ZERO;
    let mut tr = Duration::ZERO;

    let t = cpu();
    let mut i = IkeSa::initiate(
        now,
        a.clone(),
        la,
        lb,
        Box::new(SystemRandom::new()),
        &["net"],
    );
    let m1 = i.poll_transmit().unwrap();
    ti += cpu() - t;

    let t = cpu();
    let params = Responder {
        local: lb,
        remote: la,
        candidates: ike::sa::Candidates::one(b.clone()),
        require_cookie: None,
    };
    let Accept::Created(mut r) =
        IkeSa::accept(now, params, Box::new(SystemRandom::new()), &m1.data)
    else {
        panic!("responder refused")
    };
    let m2 = r.poll_transmit().unwrap();
    tr += cpu() - t;

    let t = cpu();
    i.handle_datagram(now, la, lb, &m2.data).unwrap();
    let m3 = all_datagrams(&mut i);
    ti += cpu() - t;

    let t = cpu();
    for d in &m3 {
        r.handle_datagram(now, lb, la, d).unwrap();
    }
    let m4 = all_datagrams(&mut r);
    while r.poll_event().is_some() {}
    tr += cpu() - t;

    let t = cpu();
    for d in &m4 {
        i.handle_datagram(now, la, lb, d).unwrap();
    }
    let mut children = 0;
    while let Some(e) = i.poll_event() {
        if matches!(e, ike::sa::Event::ChildReady(_)) {
            children += 1;
        }
    }
    ti += cpu() - t;
    assert_eq!(children, 1);
    (ti, tr)
}

/// A key of the kind `kind` names: "ecdsa" (P-256) or "rsa" (3072 bits).
fn key(kind: &str) -> KeyPair {
    if kind == "ecdsa" {
        return KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    }
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:3072",
        ])
        .output()
        .expect("openssl genpkey (package openssl)");
    assert!(out.status.success(), "openssl genpkey failed");
    KeyPair::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
}

/// a.test and b.test with certificates of `kind` under one root of `kind`.
fn pubkey_configs(kind: &str) -> (Arc<PeerConfig>, Arc<PeerConfig>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Bench Root CA");
    let root = CertifiedIssuer::self_signed(ca, key(kind)).unwrap();
    let trust = Arc::new(TrustStore {
        cas: vec![root.der().clone()],
        ..Default::default()
    });
    let side = |me: &str, peer: &str, initiator: bool| {
        let k = key(kind);
        let cert = CertificateParams::new(vec![me.to_string()])
            .unwrap()
            .signed_by(&k, &root)
            .unwrap();
        let signing = pki::parse_private_key(k.serialize_pem().as_bytes()).unwrap();
        let local = LocalCert::new(vec![cert.der().clone()], Arc::new(signing), "bench.pem");
        let mut c = test_config(me, me, peer, "unused", initiator);
        c.psk = None;
        c.pubkey = Some(Arc::new(PubkeyAuth {
            local: Some(Arc::new(local.unwrap())),
            trust: trust.clone(),
            remote_cacert: None,
            send_cert: SendCert::Always,
            ..Default::default()
        }));
        Arc::new(c)
    };
    (
        side("a.test", "b.test", true),
        side("b.test", "a.test", false),
    )
}

fn bench(c: &mut Criterion) {
    let psk = (
        Arc::new(test_config("a", "a.test", "b.test", "bench-psk", true)),
        Arc::new(test_config("b", "b.test", "a.test", "bench-psk", false)),
    );
    let cases = [
        ("psk", psk),
        ("ecdsa-p256", pubkey_configs("ecdsa")),
        ("rsa3072", pubkey_configs("rsa")),
    ];
    let mut g = c.benchmark_group("ike_sa_init+ike_auth x25519 aes256gcm16");
    for (name, (a, b)) in &cases {
        g.bench_function(format!("{name} initiator"), |bencher| {
            bencher.iter_custom(|iters| (0..iters).map(|_| handshake(a, b).0).sum())
        });
        g.bench_function(format!("{name} responder"), |bencher| {
            bencher.iter_custom(|iters| (0..iters).map(|_| handshake(a, b).1).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
