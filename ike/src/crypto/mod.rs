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
