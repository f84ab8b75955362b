//! Diffie-Hellman groups: Curve25519 (RFC 8031) and the NIST curves P-256
//! and P-384 (RFC 5903).
//!
//! All key generation draws from a [`Random`], so it is deterministic given
//! the RNG (ring's ECDH cannot be driven by our RNG, hence the RustCrypto
//! `p256` / `p384` crates for the NIST curves).

use super::{CryptoError, Random};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::Zeroizing;

/// A Diffie-Hellman group (transform type 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// Group 31, Curve25519 (RFC 8031).
    Curve25519,
    /// Group 19, 256-bit random ECP group (RFC 5903).
    Ecp256,
    /// Group 20, 384-bit random ECP group (RFC 5903).
    Ecp384,
}

impl DhGroup {
    /// All supported groups.
    pub const ALL: [DhGroup; 3] = [DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Ecp384];

    /// IANA transform id / KE payload group number: 31, 19, 20.
    pub fn id(self) -> u16 {
        match self {
            DhGroup::Curve25519 => 31,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            31 => Some(DhGroup::Curve25519),
            19 => Some(DhGroup::Ecp256),
            20 => Some(DhGroup::Ecp384),
            _ => None,
        }
    }

    /// Length of the KE payload's key exchange data: 32 for Curve25519
    /// (RFC 8031 §3.1); x ‖ y without the 0x04 prefix for ECP (RFC 5903 §7):
    /// 64 and 96.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Curve25519 => 32,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
        }
    }

    /// Length of the shared secret g^ir: 32, 32, 48.
    pub fn shared_len(self) -> usize {
        match self {
            DhGroup::Curve25519 | DhGroup::Ecp256 => 32,
            DhGroup::Ecp384 => 48,
        }
    }

    /// Length of the private key / scalar: 32, 32, 48.
    pub fn private_len(self) -> usize {
        self.shared_len()
    }

    /// The strongSwan proposal keyword: "x25519" (strongSwan also accepts
    /// "curve25519"), "ecp256", "ecp384".
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Curve25519 => "x25519",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
        }
    }

    /// The strongSwan log name: "CURVE_25519", "ECP_256", "ECP_384".
    pub fn iana_name(self) -> &'static str {
        match self {
            DhGroup::Curve25519 => "CURVE_25519",
            DhGroup::Ecp256 => "ECP_256",
            DhGroup::Ecp384 => "ECP_384",
        }
    }
}

impl std::fmt::Display for DhGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

enum Secret {
    // All three types zeroize themselves on drop.
    X25519(x25519_dalek::StaticSecret),
    Ecp256(p256::SecretKey),
    Ecp384(p384::SecretKey),
}

/// Our private Diffie-Hellman value with its public value. The private part
/// is zeroized on drop.
pub struct DhPrivate {
    group: DhGroup,
    secret: Secret,
    public: Vec<u8>,
}

impl DhPrivate {
    /// Generates a key pair, drawing the private value from `rng`: the same
    /// RNG state gives the same key. For the ECP groups, candidate scalars
    /// that are zero or not below the group order are discarded and another
    /// is drawn.
    pub fn generate(group: DhGroup, rng: &mut dyn Random) -> DhPrivate {
        let mut buf = Zeroizing::new(vec![0u8; group.private_len()]);
        loop {
            rng.fill(&mut buf);
            if let Ok(key) = DhPrivate::from_bytes(group, &buf) {
                return key;
            }
        }
    }

    /// Builds a key pair from a given private value: 32 bytes for
    /// Curve25519 (clamped as RFC 7748 prescribes), or the big-endian scalar
    /// (32 / 48 bytes, nonzero and below the group order) for ECP.
    ///
    /// Meant for known-answer tests and reproducing recorded exchanges;
    /// normal code uses [`DhPrivate::generate`].
    pub fn from_bytes(group: DhGroup, private: &[u8]) -> Result<DhPrivate, CryptoError> {
        let invalid = CryptoError::InvalidPrivateKey { group: group.id() };
        if private.len() != group.private_len() {
            return Err(invalid);
        }
        let (secret, public) = match group {
            DhGroup::Curve25519 => {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(private);
                let s = x25519_dalek::StaticSecret::from(*k);
                let p = x25519_dalek::PublicKey::from(&s).as_bytes().to_vec();
                (Secret::X25519(s), p)
            }
            DhGroup::Ecp256 => {
                let s = p256::SecretKey::from_slice(private).map_err(|_| invalid)?;
                let p = s.public_key().to_encoded_point(false).as_bytes()[1..].to_vec();
                (Secret::Ecp256(s), p)
            }
            DhGroup::Ecp384 => {
                let s = p384::SecretKey::from_slice(private).map_err(|_| invalid)?;
                let p = s.public_key().to_encoded_point(false).as_bytes()[1..].to_vec();
                (Secret::Ecp384(s), p)
            }
        };
        debug_assert_eq!(public.len(), group.public_len());
        Ok(DhPrivate {
            group,
            secret,
            public,
        })
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public value as carried in the KE payload.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Computes the shared secret g^ir with the peer's KE data, after
    /// validating it: its length must be [`DhGroup::public_len`]; an ECP
    /// value must be a point on the curve (RFC 5903 §7 / RFC 7296 §2.12);
    /// an X25519 value must not give the all-zero output (RFC 7748 §6.1,
    /// RFC 8031 §2.3).
    ///
    /// Returns 32 bytes for X25519, and the x coordinate of the shared point
    /// for ECP (RFC 5903 §7): 32 or 48 bytes.
    pub fn agree(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let invalid = CryptoError::InvalidPublicKey {
            group: self.group.id(),
        };
        if peer_public.len() != self.group.public_len() {
            return Err(invalid);
        }
        match &self.secret {
            Secret::X25519(s) => {
                let mut p = [0u8; 32];
                p.copy_from_slice(peer_public);
                let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(p));
                if !shared.was_contributory() {
                    return Err(invalid);
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
            Secret::Ecp256(s) => {
                let mut sec1 = Vec::with_capacity(1 + peer_public.len());
                sec1.push(0x04);
                sec1.extend_from_slice(peer_public);
                let peer = p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| invalid)?;
                let shared = p256::ecdh::diffie_hellman(s.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            Secret::Ecp384(s) => {
                let mut sec1 = Vec::with_capacity(1 + peer_public.len());
                sec1.push(0x04);
                sec1.extend_from_slice(peer_public);
                let peer = p384::PublicKey::from_sec1_bytes(&sec1).map_err(|_| invalid)?;
                let shared = p384::ecdh::diffie_hellman(s.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
        }
    }
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
