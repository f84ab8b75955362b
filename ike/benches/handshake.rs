//! CPU per side for a complete IKE_SA_INIT + IKE_AUTH (with the first CHILD
//! SA) using x25519, PRF-HMAC-SHA2-256 and AES-256-GCM-16.
//!
//! Run: `cargo bench -p ike --bench handshake`. Each side's calls into the
//! state machine are timed separately (`iter_custom`), so "initiator" and
//! "responder" are the CPU that side spends on one handshake; message
//! passing between them is not counted. Randomness is the OS RNG, as in the
//! daemon.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ike::crypto::SystemRandom;
use ike::sa::{Accept, IkeSa, Responder};
use ike::testing::test_config;

/// One handshake; returns (initiator CPU, responder CPU).
fn handshake(
    a: &Arc<ike::config::PeerConfig>,
    b: &Arc<ike::config::PeerConfig>,
) -> (Duration, Duration) {
    let la = "198.18.0.1:500".parse().unwrap();
    let lb = "198.18.0.2:500".parse().unwrap();
    let now = Instant::now();
    let mut ti = Duration::ZERO;
    let mut tr = Duration::ZERO;

    let t = Instant::now();
    let mut i = IkeSa::initiate(
        now,
        a.clone(),
        la,
        lb,
        Box::new(SystemRandom::new()),
        &["net"],
    );
    let m1 = i.poll_transmit().unwrap();
    ti += t.elapsed();

    let t = Instant::now();
    let params = Responder {
        local: lb,
        remote: la,
        candidates: vec![b.clone()],
        require_cookie: None,
    };
    let Accept::Created(mut r) =
        IkeSa::accept(now, params, Box::new(SystemRandom::new()), &m1.data)
    else {
        panic!("responder refused")
    };
    let m2 = r.poll_transmit().unwrap();
    tr += t.elapsed();

    let t = Instant::now();
    i.handle_datagram(now, la, lb, &m2.data).unwrap();
    let m3 = i.poll_transmit().unwrap();
    ti += t.elapsed();

    let t = Instant::now();
    r.handle_datagram(now, lb, la, &m3.data).unwrap();
    let m4 = r.poll_transmit().unwrap();
    while r.poll_event().is_some() {}
    tr += t.elapsed();

    let t = Instant::now();
    i.handle_datagram(now, la, lb, &m4.data).unwrap();
    let mut children = 0;
    while let Some(e) = i.poll_event() {
        if matches!(e, ike::sa::Event::ChildReady(_)) {
            children += 1;
        }
    }
    ti += t.elapsed();
    assert_eq!(children, 1);
    (ti, tr)
}

fn bench(c: &mut Criterion) {
    let a = Arc::new(test_config("a", "a.test", "b.test", "bench-psk", true));
    let b = Arc::new(test_config("b", "b.test", "a.test", "bench-psk", false));
    let mut g = c.benchmark_group("ike_sa_init+ike_auth x25519 aes256gcm16");
    g.bench_function("initiator", |bencher| {
        bencher.iter_custom(|iters| (0..iters).map(|_| handshake(&a, &b).0).sum())
    });
    g.bench_function("responder", |bencher| {
        bencher.iter_custom(|iters| (0..iters).map(|_| handshake(&a, &b).1).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
