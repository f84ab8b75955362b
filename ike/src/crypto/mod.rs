//! Cryptographic primitives for IKEv2 and ESP: the PRF (HMAC-SHA2, RFC 4868)
//! and prf+ (RFC 7296 §2.13), the AEAD ciphers (AES-GCM with a 16-byte ICV,
//! RFC 5282 / RFC 4106; ChaCha20-Poly1305, RFC 7634), the Diffie-Hellman
//! groups (Curve25519, RFC 8031; NIST P-256 / P-384, RFC 5903) and a
//! pluggable source of randomness.
//!
//! Everything here is deterministic given the [`Random`] it is handed: no
//! clock, no I/O and no hidden global RNG. Secret material is zeroized on
//! drop and never printed by `Debug`.

pub mod aead;
pub mod dh;
pub mod prf;
pub mod rng;

pub use aead::{AeadAlg, AeadKey};
pub use dh::{DhGroup, DhPrivate};
pub use prf::PrfAlg;
pub use rng::{Random, SeededRandom, SystemRandom};

/// One key computation of the commonest IKE SA (X25519, HMAC-SHA-256),
/// or a little more: two key pairs, the shared secret, SKEYSEED and the
/// seven SK_* keys (RFC 7296 §2.14). A daemon times it to choose its
/// default key-computation rate. Returns the length of the keys made, so
/// the work is not optimised away.
pub fn reference_key_computation(rng: &mut dyn Random) -> Result<usize, CryptoError> {
    let peer = DhPrivate::generate(DhGroup::Curve25519, rng);
    let ours = DhPrivate::generate(DhGroup::Curve25519, rng);
    let shared = ours.agree(peer.public_key())?;
    let prf = PrfAlg::HmacSha256;
    let nonces = [0x5au8; 64];
    let skeyseed = prf.prf(&nonces, &[&shared]);
    Ok(prf.prf_plus(&skeyseed, &nonces, 7 * 32).len())
}

/// Failures of the crypto layer. None of them carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// AEAD decryption failed: the ICV did not verify (wrong key, tampered
    /// ciphertext, ICV or associated data, or a wrong IV).
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// The peer's Diffie-Hellman public value is invalid for the group: wrong
    /// length, not a point on the curve, or (X25519) a low-order point that
    /// gives an all-zero shared secret.
    #[error("invalid public key for DH group {group}")]
    InvalidPublicKey { group: u16 },
    /// A private key given to [`DhPrivate::from_bytes`] is not valid for the
    /// group (wrong length, or an ECP scalar that is zero or not below the
    /// group order).
    #[error("invalid private key for DH group {group}")]
    InvalidPrivateKey { group: u16 },
    /// Key material of the wrong length.
    #[error("wrong key length: expected {expected} bytes, got {got}")]
    WrongKeyLength { expected: usize, got: usize },
}
