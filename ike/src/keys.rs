//! Key derivation (RFC 7296 §2.13, §2.14, §2.17, §2.18).
//!
//! Invariants: every secret buffer is `Zeroizing`; nothing here logs or
//! formats key material (`Debug` impls print only lengths).

use zeroize::Zeroizing;

use crate::crypto::{AeadAlg, AeadKey, CryptoError, PrfAlg};

/// The seven keys of an IKE SA, derived from SKEYSEED (§2.14). With AEAD
/// ciphers SK_ai/SK_ar are empty and therefore not stored.
pub struct IkeKeys {
    pub prf: PrfAlg,
    pub encr: AeadAlg,
    pub sk_d: Zeroizing<Vec<u8>>,
    /// Protects messages sent by the original initiator.
    pub sk_ei: AeadKey,
    /// Protects messages sent by the original responder.
    pub sk_er: AeadKey,
    pub sk_pi: Zeroizing<Vec<u8>>,
    pub sk_pr: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeKeys")
            .field("prf", &self.prf)
            .field("encr", &self.encr)
            .finish_non_exhaustive()
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA (§2.14), or
/// prf(SK_d(old), g^ir(new) | Ni | Nr) when rekeying (§2.18); `old` carries
/// the old SA's PRF and SK_d.
pub fn skeyseed(
    prf: PrfAlg,
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
    old: Option<(PrfAlg, &[u8])>,
) -> Zeroizing<Vec<u8>> {
    match old {
        None => {
            let key = [ni, nr].concat();
            Zeroizing::new(prf.prf(&key, &[shared]))
        }
        Some((old_prf, sk_d)) => Zeroizing::new(old_prf.prf(sk_d, &[shared, ni, nr])),
    }
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
///   = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)          (§2.14)
pub fn derive_ike_keys(
    prf: PrfAlg,
    encr: AeadAlg,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> Result<IkeKeys, CryptoError> {
    let seed = [ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
    let p = prf.output_len();
    let e = encr.key_material_len();
    let material = prf.prf_plus(skeyseed, &seed, 3 * p + 2 * e);
    let (sk_d, rest) = material.split_at(p);
    let (sk_ei, rest) = rest.split_at(e);
    let (sk_er, rest) = rest.split_at(e);
    let (sk_pi, sk_pr) = rest.split_at(p);
    Ok(IkeKeys {
        prf,
        encr,
        sk_d: Zeroizing::new(sk_d.to_vec()),
        sk_ei: AeadKey::new(encr, sk_ei)?,
        sk_er: AeadKey::new(encr, sk_er)?,
        sk_pi: Zeroizing::new(sk_pi.to_vec()),
        sk_pr: Zeroizing::new(sk_pr.to_vec()),
    })
}

/// ESP key material of one CHILD SA, as a dataplane needs it: key ‖ salt
/// for each direction (RFC 5282 §7.1, RFC 7634 §2).
#[derive(Clone)]
pub struct ChildKeys {
    pub encr: AeadAlg,
    /// Key material for packets we receive.
    pub inbound: Zeroizing<Vec<u8>>,
    /// Key material for packets we send.
    pub outbound: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildKeys")
            .field("encr", &self.encr)
            .field("len", &self.inbound.len())
            .finish_non_exhaustive()
    }
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17). Keys for the
/// direction initiator → responder come first; `we_initiated` says whether
/// we were the initiator of the exchange that created this CHILD SA.
pub fn derive_child_keys(
    prf: PrfAlg,
    sk_d: &[u8],
    encr: AeadAlg,
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    we_initiated: bool,
) -> ChildKeys {
    let seed = [shared.unwrap_or(&[]), ni, nr].concat();
    let e = encr.key_material_len();
    let keymat = prf.prf_plus(sk_d, &seed, 2 * e);
    let i_to_r = Zeroizing::new(keymat[..e].to_vec());
    let r_to_i = Zeroizing::new(keymat[e..].to_vec());
    let (inbound, outbound) = if we_initiated {
        (r_to_i, i_to_r)
    } else {
        (i_to_r, r_to_i)
    };
    ChildKeys {
        encr,
        inbound,
        outbound,
    }
}
