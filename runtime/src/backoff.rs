//! Exponential backoff with jitter.

use std::cell::Cell;
use std::time::Duration;

/// Exponential backoff: `base * 2^(n-1)` capped at `max`, then ± `jitter_pct` %.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter_pct: u32,
}

impl Backoff {
    /// Delay before attempt `n` (n = 1 is the first retry; n = 0 is treated as 1):
    /// `base * 2^(n-1)` capped at `max`, then ± `jitter_pct` % uniformly
    /// (never above `max * (1 + jitter)`, never negative). `rand01` in [0, 1)
    /// is supplied by the caller (use [`rand01()`] in production): 0.0 gives
    /// the lowest delay, values towards 1.0 the highest.
    pub fn delay(&self, n: u32, rand01: f64) -> Duration {
        jitter(self.undithered(n), self.jitter_pct, rand01)
    }

    /// The delay before jitter: `base * 2^(n-1)` capped at `max`.
    pub fn undithered(&self, n: u32) -> Duration {
        let exp = n.max(1) - 1;
        let base = self.base.as_nanos();
        let max = self.max.as_nanos();
        let raw = if base == 0 {
            0
        } else if exp >= 100 {
            max
        } else {
            base.saturating_mul(1u128 << exp)
        };
        nanos_to_duration(raw.min(max))
    }
}

fn nanos_to_duration(n: u128) -> Duration {
    let secs = n / 1_000_000_000;
    if secs > u64::MAX as u128 {
        return Duration::MAX;
    }
    Duration::new(secs as u64, (n % 1_000_000_000) as u32)
}

/// `d` ± `pct` % uniformly: `rand01` = 0.0 gives `d * (1 - pct/100)` (floored
/// at zero), `rand01` → 1.0 gives `d * (1 + pct/100)`. `rand01` is clamped to
/// [0, 1]. Used for rekey jitter and by [`Backoff::delay`].
pub fn jitter(d: Duration, pct: u32, rand01: f64) -> Duration {
    if pct == 0 || d.is_zero() {
        return d;
    }
    let r = if rand01.is_nan() {
        0.5
    } else {
        rand01.clamp(0.0, 1.0)
    };
    let factor = 1.0 + (pct as f64 / 100.0) * (2.0 * r - 1.0);
    if factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState's keys come from the OS RNG (once per thread, then incremented).
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    let s = h.finish();
    if s == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        s
    }
}

/// A uniformly distributed `f64` in [0, 1) from a thread-local xorshift64*
/// generator seeded from the OS. Fast, not cryptographic: for jitter only.
pub fn rand01() -> f64 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.set(x);
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    })
}
