//! Typed failures of the exchanges. Where we answer a peer, the error picks
//! the notify that goes on the wire (`notify`), so the reason an operator
//! reads and what the peer is told cannot drift apart.

use crate::config::Mode;
use crate::crypto::{CryptoError, DhGroup};
use crate::wire::NotifyType;

/// A message from the peer that breaks the protocol badly enough to end the
/// exchange it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerMisbehaved {
    #[error("IKE_SA_INIT response without SA, KE or Nonce")]
    InitResponseIncomplete,
    #[error("IKE_SA_INIT response with zero responder SPI")]
    ZeroResponderSpi,
    #[error("nonce length out of range")]
    NonceLength,
    #[error("responder chose a proposal we did not offer")]
    UnofferedProposal,
    #[error("responder's KE does not match our group")]
    KeGroupMismatch,
    #[error("responder KE: {0}")]
    ResponderKe(CryptoError),
    #[error("key derivation: {0}")]
    KeyDerivation(CryptoError),
    #[error("too many COOKIE requests")]
    TooManyCookies,
    #[error("IKE_AUTH response without IDr or AUTH")]
    AuthResponseIncomplete,
    #[error("IKE_AUTH request without IDi or AUTH")]
    AuthRequestIncomplete,
}

impl PeerMisbehaved {
    /// The notify a responder answers such a request with.
    pub fn notify(&self) -> NotifyType {
        NotifyType::INVALID_SYNTAX
    }
}

/// Why a CHILD SA was not created, in either role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChildError {
    // ----- as responder: what we refuse, and tell the peer (`notify`) -----
    #[error("traffic selectors {tsi} === {tsr} unacceptable")]
    TsUnacceptable { tsi: String, tsr: String },
    #[error("CHILD_SA '{child}' requires transport mode")]
    TransportRequired { child: String },
    #[error("no acceptable ESP proposal for CHILD_SA '{child}': NO_PROPOSAL_CHOSEN")]
    NoProposal { child: String },
    #[error("peer's KE is not {}", .0.name())]
    WrongKeGroup(DhGroup),
    #[error("invalid ESP SPI")]
    InvalidSpi,
    #[error("the IKE SA already holds its limit of {limit} CHILD SAs: NO_ADDITIONAL_SAS")]
    TooManyChildSas { limit: u32 },

    // ----- as initiator ----------------------------------------------------
    #[error("no connection config")]
    NoConfig,
    #[error("connection '{conn}' has no child '{child}'")]
    UnknownChild { conn: String, child: String },
    #[error("peer rejected CHILD_SA '{child}': {notify}")]
    PeerRejected { child: String, notify: NotifyType },
    #[error("peer sent no CHILD_SA '{child}'")]
    NotOffered { child: String },
    #[error("CHILD_SA '{child}' failed: {problem}")]
    BadResponse { child: String, problem: BadChild },
    #[error("responder KE: {0}")]
    ResponderKe(CryptoError),
    #[error("CREATE_CHILD_SA response without a nonce")]
    NoNonce,
    #[error("responder did not answer our PFS key exchange")]
    NoPfsAnswer,
    #[error("the IKE SA has no keys yet")]
    NoKeys,
}

impl ChildError {
    /// The notify (type and data) a responder answers a refused CHILD SA
    /// request with.
    pub fn notify(&self) -> (NotifyType, Vec<u8>) {
        match self {
            ChildError::TsUnacceptable { .. } => (NotifyType::TS_UNACCEPTABLE, Vec::new()),
            ChildError::TransportRequired { .. } | ChildError::NoProposal { .. } => {
                (NotifyType::NO_PROPOSAL_CHOSEN, Vec::new())
            }
            ChildError::TooManyChildSas { .. } => (NotifyType::NO_ADDITIONAL_SAS, Vec::new()),
            ChildError::WrongKeGroup(g) => (
                NotifyType::INVALID_KE_PAYLOAD,
                g.id().to_be_bytes().to_vec(),
            ),
            _ => (NotifyType::INVALID_SYNTAX, Vec::new()),
        }
    }
}

/// What was wrong with a responder's answer to our CHILD SA request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadChild {
    #[error("responder chose an ESP proposal we did not offer")]
    UnofferedProposal,
    #[error("responder sent an invalid SPI")]
    InvalidSpi,
    #[error("responder's traffic selectors are not within ours")]
    TsNotWithin,
    #[error("responder did not accept {} mode", mode_name(*.0))]
    ModeRefused(Mode),
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Transport => "transport",
        Mode::Tunnel => "tunnel",
    }
}

/// Why our IKE rekey failed (the IKE SA stays as it was).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RekeyError {
    #[error("peer refused IKE rekey: {0}")]
    Refused(NotifyType),
    #[error("IKE rekey response without SA, Nonce or KE")]
    Incomplete,
    #[error("responder chose an IKE proposal we did not offer")]
    UnofferedProposal,
    #[error("responder sent an invalid IKE SPI")]
    InvalidSpi,
    #[error("responder's KE does not match our group")]
    KeGroupMismatch,
    #[error("{0}")]
    Crypto(CryptoError),
    #[error("no keys")]
    NoKeys,
    #[error("IKE proposal without PRF")]
    NoPrf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_child_picks_its_notify() {
        let ts = ChildError::TsUnacceptable {
            tsi: "10.0.0.0/8".into(),
            tsr: "10.1.0.0/16".into(),
        };
        assert_eq!(ts.notify(), (NotifyType::TS_UNACCEPTABLE, Vec::new()));
        assert_eq!(
            ts.to_string(),
            "traffic selectors 10.0.0.0/8 === 10.1.0.0/16 unacceptable"
        );
        let ke = ChildError::WrongKeGroup(DhGroup::Curve25519);
        assert_eq!(
            ke.notify(),
            (NotifyType::INVALID_KE_PAYLOAD, 31u16.to_be_bytes().to_vec())
        );
        let np = ChildError::NoProposal {
            child: "net".into(),
        };
        assert_eq!(np.notify().0, NotifyType::NO_PROPOSAL_CHOSEN);
        assert_eq!(
            ChildError::InvalidSpi.notify().0,
            NotifyType::INVALID_SYNTAX
        );
        assert_eq!(
            PeerMisbehaved::AuthRequestIncomplete.notify(),
            NotifyType::INVALID_SYNTAX
        );
    }

    #[test]
    fn a_bad_answer_names_the_child_and_the_problem() {
        let e = ChildError::BadResponse {
            child: "net".into(),
            problem: BadChild::ModeRefused(Mode::Transport),
        };
        assert_eq!(
            e.to_string(),
            "CHILD_SA 'net' failed: responder did not accept transport mode"
        );
    }
}
