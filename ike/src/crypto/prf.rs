//! Pseudo-random functions (RFC 4868: PRF_HMAC_SHA2_*) and prf+ (RFC 7296
//! §2.13).

use ring::hmac;
use zeroize::Zeroizing;

/// An IKEv2 PRF transform (transform type 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl PrfAlg {
    /// All supported PRFs, strongest last.
    pub const ALL: [PrfAlg; 3] = [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512];

    /// IANA transform id: PRF_HMAC_SHA2_256 = 5, _384 = 6, _512 = 7.
    pub fn transform_id(self) -> u16 {
        match self {
            PrfAlg::HmacSha256 => 5,
            PrfAlg::HmacSha384 => 6,
            PrfAlg::HmacSha512 => 7,
        }
    }

    pub fn from_transform_id(id: u16) -> Option<Self> {
        match id {
            5 => Some(PrfAlg::HmacSha256),
            6 => Some(PrfAlg::HmacSha384),
            7 => Some(PrfAlg::HmacSha512),
            _ => None,
        }
    }

    /// Output length in bytes (32, 48, 64). RFC 4868 §2.1 makes this also
    /// the preferred key length (e.g. of SK_d, SK_pi and SK_pr).
    pub fn output_len(self) -> usize {
        match self {
            PrfAlg::HmacSha256 => 32,
            PrfAlg::HmacSha384 => 48,
            PrfAlg::HmacSha512 => 64,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            PrfAlg::HmacSha256 => hmac::HMAC_SHA256,
            PrfAlg::HmacSha384 => hmac::HMAC_SHA384,
            PrfAlg::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// HMAC of the concatenation of `data` under `key` (any key length).
    pub fn prf(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_alg(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in data {
            ctx.update(part);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// prf+ (RFC 7296 §2.13): `T1 = prf(K, S | 0x01)`,
    /// `Tn = prf(K, Tn-1 | S | n)`, output `T1 | T2 | ...` cut to `len`.
    ///
    /// # Panics
    /// If `len > 255 * output_len()`: the counter is one octet, so asking for
    /// more is a bug in the caller.
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let out_len = self.output_len();
        assert!(
            len <= 255 * out_len,
            "prf+ can produce at most {} bytes with {}, {} requested",
            255 * out_len,
            self.name(),
            len
        );
        let key = hmac::Key::new(self.hmac_alg(), key);
        let mut out = Zeroizing::new(Vec::with_capacity(len + out_len));
        let mut counter: u8 = 1;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&key);
            if counter > 1 {
                ctx.update(&out[out.len() - out_len..]);
            }
            ctx.update(seed);
            ctx.update(&[counter]);
            out.extend_from_slice(ctx.sign().as_ref());
            counter = counter.wrapping_add(1);
        }
        out.truncate(len);
        out
    }

    /// The strongSwan proposal keyword: "prfsha256", "prfsha384", "prfsha512".
    pub fn name(self) -> &'static str {
        match self {
            PrfAlg::HmacSha256 => "prfsha256",
            PrfAlg::HmacSha384 => "prfsha384",
            PrfAlg::HmacSha512 => "prfsha512",
        }
    }

    /// The IANA / strongSwan log name: "PRF_HMAC_SHA2_256" etc.
    pub fn iana_name(self) -> &'static str {
        match self {
            PrfAlg::HmacSha256 => "PRF_HMAC_SHA2_256",
            PrfAlg::HmacSha384 => "PRF_HMAC_SHA2_384",
            PrfAlg::HmacSha512 => "PRF_HMAC_SHA2_512",
        }
    }
}

impl std::fmt::Display for PrfAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
