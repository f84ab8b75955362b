//! AEAD ciphers, used both for the IKE SK payload (RFC 5282, RFC 7634) and
//! for ESP (RFC 4106, RFC 7634).
//!
//! Every cipher here has an 8-byte explicit IV carried in the packet and a
//! 4-byte salt taken from the end of the key material, giving the 12-byte
//! nonce `salt ‖ IV`, and a 16-byte ICV.

use super::CryptoError;
use ring::aead;
use zeroize::Zeroize;

/// An AEAD encryption transform (transform type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AeadAlg {
    /// ENCR_AES_GCM_16 with a 128-bit key.
    AesGcm16_128,
    /// ENCR_AES_GCM_16 with a 256-bit key.
    AesGcm16_256,
    /// ENCR_CHACHA20_POLY1305 (256-bit key).
    ChaCha20Poly1305,
}

/// ENCR_AES_GCM_16 (RFC 5282).
const ENCR_AES_GCM_16: u16 = 20;
/// ENCR_CHACHA20_POLY1305 (RFC 7634).
const ENCR_CHACHA20_POLY1305: u16 = 28;
const SALT_LEN: usize = 4;

impl AeadAlg {
    /// Length of the explicit IV carried in each packet.
    pub const IV_LEN: usize = 8;
    /// Length of the integrity check value (authentication tag).
    pub const ICV_LEN: usize = 16;
    /// All supported ciphers.
    pub const ALL: [AeadAlg; 3] = [
        AeadAlg::AesGcm16_128,
        AeadAlg::AesGcm16_256,
        AeadAlg::ChaCha20Poly1305,
    ];

    /// IANA transform id: ENCR_AES_GCM_16 = 20, ENCR_CHACHA20_POLY1305 = 28.
    pub fn transform_id(self) -> u16 {
        match self {
            AeadAlg::AesGcm16_128 | AeadAlg::AesGcm16_256 => ENCR_AES_GCM_16,
            AeadAlg::ChaCha20Poly1305 => ENCR_CHACHA20_POLY1305,
        }
    }

    /// The value of the Key Length attribute (bits) this transform carries:
    /// required for AES-GCM, absent for ChaCha20-Poly1305 (RFC 7634 §2).
    pub fn key_length_attr(self) -> Option<u16> {
        match self {
            AeadAlg::AesGcm16_128 => Some(128),
            AeadAlg::AesGcm16_256 => Some(256),
            AeadAlg::ChaCha20Poly1305 => None,
        }
    }

    /// The cipher for a transform id and Key Length attribute, if we support
    /// that exact combination (AES-GCM needs 128 or 256; 192 is not
    /// supported; ChaCha20-Poly1305 must have no key length).
    pub fn from_transform(id: u16, key_length: Option<u16>) -> Option<Self> {
        match (id, key_length) {
            (ENCR_AES_GCM_16, Some(128)) => Some(AeadAlg::AesGcm16_128),
            (ENCR_AES_GCM_16, Some(256)) => Some(AeadAlg::AesGcm16_256),
            (ENCR_CHACHA20_POLY1305, None) => Some(AeadAlg::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Bytes of keying material taken from prf+ per key: the cipher key plus
    /// the 4-byte salt (RFC 5282 §7.1, RFC 4106 §8.1, RFC 7634 §2).
    pub fn key_material_len(self) -> usize {
        self.key_len() + SALT_LEN
    }

    /// Length of the cipher key alone, without the salt.
    pub fn key_len(self) -> usize {
        match self {
            AeadAlg::AesGcm16_128 => 16,
            AeadAlg::AesGcm16_256 | AeadAlg::ChaCha20Poly1305 => 32,
        }
    }

    /// The strongSwan proposal keyword.
    pub fn name(self) -> &'static str {
        match self {
            AeadAlg::AesGcm16_128 => "aes128gcm16",
            AeadAlg::AesGcm16_256 => "aes256gcm16",
            AeadAlg::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }

    /// The strongSwan log name: "AES_GCM_16_128", "AES_GCM_16_256",
    /// "CHACHA20_POLY1305".
    pub fn iana_name(self) -> &'static str {
        match self {
            AeadAlg::AesGcm16_128 => "AES_GCM_16_128",
            AeadAlg::AesGcm16_256 => "AES_GCM_16_256",
            AeadAlg::ChaCha20Poly1305 => "CHACHA20_POLY1305",
        }
    }

    fn ring_alg(self) -> &'static aead::Algorithm {
        match self {
            AeadAlg::AesGcm16_128 => &aead::AES_128_GCM,
            AeadAlg::AesGcm16_256 => &aead::AES_256_GCM,
            AeadAlg::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

impl std::fmt::Display for AeadAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A keyed AEAD cipher for one direction (e.g. SK_ei, or one ESP SA).
pub struct AeadKey {
    alg: AeadAlg,
    key: aead::LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl AeadKey {
    /// Builds the key from `material` = key ‖ salt(4), exactly
    /// [`AeadAlg::key_material_len`] bytes as taken from prf+.
    pub fn new(alg: AeadAlg, material: &[u8]) -> Result<AeadKey, CryptoError> {
        if material.len() != alg.key_material_len() {
            return Err(CryptoError::WrongKeyLength {
                expected: alg.key_material_len(),
                got: material.len(),
            });
        }
        let (key, salt) = material.split_at(alg.key_len());
        let unbound = aead::UnboundKey::new(alg.ring_alg(), key).map_err(|_| {
            CryptoError::WrongKeyLength {
                expected: alg.key_material_len(),
                got: material.len(),
            }
        })?;
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(salt);
        Ok(AeadKey {
            alg,
            key: aead::LessSafeKey::new(unbound),
            salt: s,
        })
    }

    pub fn alg(&self) -> AeadAlg {
        self.alg
    }

    fn nonce(&self, iv: &[u8; 8]) -> aead::Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(iv);
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `in_out` in place with nonce = salt(4) ‖ `iv`(8) and appends
    /// the 16-byte ICV. The caller must never reuse an IV with the same key.
    ///
    /// # Panics
    /// If the plaintext exceeds the cipher's limit (about 64 GiB for
    /// AES-GCM): far beyond any IKE or ESP packet.
    pub fn seal_in_place(&self, iv: &[u8; 8], aad: &[u8], in_out: &mut Vec<u8>) {
        self.key
            .seal_in_place_append_tag(self.nonce(iv), aead::Aad::from(aad), in_out)
            .expect("AEAD plaintext too long");
    }

    /// Encrypts `in_out` in place and returns the ICV, for callers that
    /// assemble the message in a larger buffer (ESP builds its packet in
    /// the send buffer and appends the ICV itself).
    pub fn seal_in_place_separate_tag(
        &self,
        iv: &[u8; 8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; AeadAlg::ICV_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), aead::Aad::from(aad), in_out)
            .expect("AEAD plaintext too long");
        let mut icv = [0u8; AeadAlg::ICV_LEN];
        icv.copy_from_slice(tag.as_ref());
        icv
    }

    /// Decrypts `in_out` = ciphertext ‖ ICV in place and returns the
    /// plaintext, a prefix of `in_out`. On failure the content of `in_out`
    /// is unspecified and must not be used.
    pub fn open_in_place<'a>(
        &self,
        iv: &[u8; 8],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        if in_out.len() < AeadAlg::ICV_LEN {
            return Err(CryptoError::IntegrityCheckFailed);
        }
        self.key
            .open_in_place(self.nonce(iv), aead::Aad::from(aad), in_out)
            .map_err(|_| CryptoError::IntegrityCheckFailed)
    }
}

impl Drop for AeadKey {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeadKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}
