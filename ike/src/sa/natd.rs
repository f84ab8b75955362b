//! NAT detection (RFC 7296 §2.23): SHA-1(SPIi | SPIr | IP | Port), and the
//! stateless cookie of §2.6.

use std::net::{IpAddr, SocketAddr};

use ring::{digest, hmac};

use crate::crypto::Random;

pub fn natd_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// Stateless cookies (§2.6): `version ‖ HMAC-SHA256(secret, Ni | IPi | SPIi)`
/// truncated to 16 bytes. Rotating the secret keeps the previous one valid.
pub struct CookieJar {
    current: (u8, hmac::Key),
    previous: Option<(u8, hmac::Key)>,
}

impl CookieJar {
    pub fn new(rng: &mut dyn Random) -> CookieJar {
        CookieJar {
            current: (0, Self::key(rng)),
            previous: None,
        }
    }

    fn key(rng: &mut dyn Random) -> hmac::Key {
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill(&mut secret[..]);
        hmac::Key::new(hmac::HMAC_SHA256, &secret[..])
    }

    /// Start a new secret; cookies made with the previous one stay valid
    /// until the next rotation.
    pub fn rotate(&mut self, rng: &mut dyn Random) {
        let version = self.current.0.wrapping_add(1);
        let old = std::mem::replace(&mut self.current, (version, Self::key(rng)));
        self.previous = Some(old);
    }

    fn compute(version: u8, key: &hmac::Key, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(ni);
        match ip {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        let tag = ctx.sign();
        let mut out = vec![version];
        out.extend_from_slice(&tag.as_ref()[..16]);
        out
    }

    pub fn make(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        Self::compute(self.current.0, &self.current.1, ni, ip, spi_i)
    }

    pub fn verify(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        use subtle::ConstantTimeEq;
        let Some(&version) = cookie.first() else {
            return false;
        };
        let key = if version == self.current.0 {
            &self.current.1
        } else {
            match &self.previous {
                Some((v, k)) if *v == version => k,
                _ => return false,
            }
        };
        let expected = Self::compute(version, key, ni, ip, spi_i);
        expected.len() == cookie.len() && bool::from(expected.ct_eq(cookie))
    }
}
