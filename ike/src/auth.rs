//! IKE_AUTH's proofs of identity (RFC 7296 §2.15): the signed octets, the
//! `Authenticator` seam the exchange uses, and pre-shared keys behind it.
//! Public-key signatures (RFC 7427) are another `Authenticator`.
//!
//! PSK: AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
//! where SignedOctets = RealMessage | Nonce(peer) | prf(SK_p, IDx').
//! Verification compares in constant time.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::PrfAlg;
use crate::wire::{AuthMethod, Authentication, Identification};

/// How one end proves its identity in IKE_AUTH and checks the peer's: the
/// AUTH payload over the signed octets of §2.15.
pub trait Authenticator {
    /// Our AUTH payload over `octets`.
    fn sign(&self, prf: PrfAlg, octets: &[u8]) -> Authentication;
    /// Whether the peer's AUTH payload over `octets` proves its identity.
    fn verify(&self, prf: PrfAlg, octets: &[u8], auth: &Authentication) -> bool;
}

/// Pre-shared key authentication (method 2, Shared Key MIC).
pub struct PskAuthenticator<'a>(pub &'a [u8]);

impl Authenticator for PskAuthenticator<'_> {
    fn sign(&self, prf: PrfAlg, octets: &[u8]) -> Authentication {
        Authentication {
            method: AuthMethod::SHARED_KEY_MIC,
            data: psk_auth(prf, self.0, octets),
        }
    }

    fn verify(&self, prf: PrfAlg, octets: &[u8], auth: &Authentication) -> bool {
        auth.method == AuthMethod::SHARED_KEY_MIC
            && verify_psk_auth(prf, self.0, octets, &auth.data)
    }
}

const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// IDx' : the ID payload body without its generic header (§2.15).
pub fn id_payload_body(id: &Identification) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + id.data.len());
    v.push(id.id_type.0);
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&id.data);
    v
}

/// The octets a side signs or MACs: its first message, the peer's nonce,
/// and prf(SK_px, its ID payload body).
pub fn signed_octets(
    prf: PrfAlg,
    sk_p: &[u8],
    message: &[u8],
    peer_nonce: &[u8],
    id: &Identification,
) -> Vec<u8> {
    let maced_id = prf.prf(sk_p, &[&id_payload_body(id)]);
    [message, peer_nonce, &maced_id].concat()
}

/// The PSK AUTH value for the given signed octets.
pub fn psk_auth(prf: PrfAlg, psk: &[u8], signed_octets: &[u8]) -> Vec<u8> {
    let key = Zeroizing::new(prf.prf(psk, &[KEY_PAD]));
    prf.prf(&key, &[signed_octets])
}

/// Constant-time check of a received PSK AUTH value.
pub fn verify_psk_auth(prf: PrfAlg, psk: &[u8], signed_octets: &[u8], received: &[u8]) -> bool {
    let expected = psk_auth(prf, psk, signed_octets);
    expected.len() == received.len() && bool::from(expected.ct_eq(received))
}
