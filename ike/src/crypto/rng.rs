//! Sources of randomness: the operating system's, and a deterministic
//! seeded stream for tests and simulation.

use ring::hmac;
use zeroize::Zeroize;

/// A source of random bytes. Everything in this crate that needs randomness
/// (nonces, SPIs, IVs, DH private keys) draws it from a `Random` it is
/// handed, so a run is reproducible with [`SeededRandom`].
pub trait Random: Send {
    /// Fills `buf` entirely with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (via `ring::rand::SystemRandom`).
pub struct SystemRandom(ring::rand::SystemRandom);

impl SystemRandom {
    pub fn new() -> SystemRandom {
        SystemRandom(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRandom {
    fn default() -> Self {
        SystemRandom::new()
    }
}

impl std::fmt::Debug for SystemRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemRandom")
    }
}

impl Random for SystemRandom {
    /// # Panics
    /// Only if the operating system's random number generator fails, which
    /// leaves nothing sensible to do.
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        self.0
            .fill(buf)
            .expect("the operating system's random number generator failed");
    }
}

/// A deterministic stream of pseudo-random bytes: block *i* (counting from
/// 0) is HMAC-SHA-256(key = seed as 8 big-endian bytes, data = *i* as 8
/// big-endian bytes), and the blocks are concatenated. The same seed always
/// yields the same stream, however the requests are split up.
///
/// For tests and simulation only: a 64-bit seed is not a secret.
pub struct SeededRandom {
    key: hmac::Key,
    counter: u64,
    block: [u8; 32],
    /// Bytes of `block` already handed out (32 = block exhausted).
    used: usize,
}

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom {
            key: hmac::Key::new(hmac::HMAC_SHA256, &seed.to_be_bytes()),
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn refill(&mut self) {
        let tag = hmac::sign(&self.key, &self.counter.to_be_bytes());
        self.block.copy_from_slice(tag.as_ref());
        self.counter = self.counter.wrapping_add(1);
        self.used = 0;
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        let mut off = 0;
        while off < buf.len() {
            if self.used == self.block.len() {
                self.refill();
            }
            let n = (buf.len() - off).min(self.block.len() - self.used);
            buf[off..off + n].copy_from_slice(&self.block[self.used..self.used + n]);
            self.used += n;
            off += n;
        }
    }
}

impl Drop for SeededRandom {
    fn drop(&mut self) {
        self.block.zeroize();
    }
}

impl std::fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededRandom")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}
