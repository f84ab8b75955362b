//! What an IKE SA takes from its environment: randomness, inbound ESP SPIs
//! and the wall clock, injected so tests are deterministic and the daemon
//! can reserve SPIs in its dataplane.

use crate::crypto::Random;

/// Randomness and SPI allocation, injected so tests are deterministic and the
/// daemon can allocate inbound SPIs from its dataplane.
pub trait Provider: Send {
    fn random(&mut self) -> &mut dyn Random;
    /// A fresh inbound ESP SPI (≥ 256, §3.3.1 reserves lower values).
    fn alloc_child_spi(&mut self) -> u32 {
        random_child_spi(self.random())
    }
    /// Wall-clock time, for certificate validity: the one place the core
    /// reads the system clock; override it to test or to simulate.
    fn unix_time(&mut self) -> rustls_pki_types::UnixTime {
        rustls_pki_types::UnixTime::now()
    }
}

impl<R: Random + 'static> Provider for R {
    fn random(&mut self) -> &mut dyn Random {
        self
    }
}

/// A random inbound ESP SPI from `rng`, ≥ 256 (§3.3.1 reserves lower
/// values): what a provider without a dataplane of its own hands out.
pub fn random_child_spi(rng: &mut dyn Random) -> u32 {
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let spi = u32::from_be_bytes(b);
        if spi >= 0x100 {
            return spi;
        }
    }
}
