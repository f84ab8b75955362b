//! ESP encapsulate/decapsulate throughput, 1400-byte inner packets,
//! AES-256-GCM, caller-owned buffers (no per-packet allocation).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ike::config::Mode;
use ike::crypto::AeadAlg;
use kernel::userspace::{InboundSa, OutboundSa};
use std::time::{Duration, Instant};

const INNER_LEN: usize = 1400;
const SPI: u32 = 0x1234_5678;

fn inner() -> Vec<u8> {
    let mut p = vec![0xa5u8; INNER_LEN];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(INNER_LEN as u16).to_be_bytes());
    p[9] = 17;
    p
}

fn material() -> Vec<u8> {
    (0..AeadAlg::AesGcm16_256.key_material_len())
        .map(|i| i as u8)
        .collect()
}

fn bench_esp(c: &mut Criterion) {
    let alg = AeadAlg::AesGcm16_256;
    let m = material();
    let inner = inner();
    let mut g = c.benchmark_group("esp_aes256gcm_1400");
    g.throughput(Throughput::Bytes(INNER_LEN as u64));

    let mut out = OutboundSa::from_material(SPI, alg, &m, true, Mode::Tunnel).unwrap();
    let mut buf = Vec::with_capacity(OutboundSa::max_output_len(INNER_LEN));
    g.bench_function("encapsulate", |b| {
        b.iter(|| {
            buf.clear();
            let n = out.encapsulate(black_box(&inner), &mut buf).unwrap();
            black_box(n)
        })
    });

    // Decapsulation needs fresh sequence numbers: packets are sealed in
    // chunks outside the timed section, then decapsulated in place by one
    // long-lived SA (so the replay window slides as in real traffic).
    const CHUNK: usize = 256;
    let mut sender = OutboundSa::from_material(SPI, alg, &m, true, Mode::Tunnel).unwrap();
    let mut inb = InboundSa::from_material(SPI, alg, &m, true, Mode::Tunnel).unwrap();
    let mut chunk: Vec<Vec<u8>> = (0..CHUNK)
        .map(|_| Vec::with_capacity(OutboundSa::max_output_len(INNER_LEN)))
        .collect();
    g.bench_function("decapsulate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(CHUNK);
                for p in &mut chunk[..n] {
                    p.clear();
                    sender.encapsulate(&inner, p).unwrap();
                }
                let start = Instant::now();
                for p in &mut chunk[..n] {
                    let d = inb.decapsulate(black_box(p)).unwrap();
                    black_box(d.payload.len());
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench_esp);
criterion_main!(benches);
