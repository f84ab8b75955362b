//! What an `IkeSa` takes and gives: datagrams to send, events for the
//! driver, commands from it, and the reasons and errors it reports.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Mode;
use crate::crypto::DhGroup;
use crate::keys::ChildKeys;
use crate::proposal::Chosen;
use crate::wire::{self, ExchangeType, Identification, NotifyType, TrafficSelector};

use super::error::{ChildError, PeerMisbehaved, RekeyError};
use super::message::OpenError;
use super::natd::CookieJar;
use super::IkeSa;

/// A datagram to send. When `non_esp_marker` is set the SA has moved to the
/// NAT-T port: send it from the 4500 socket with four zero bytes prepended
/// (RFC 3948 §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub non_esp_marker: bool,
    pub data: Vec<u8>,
}

/// A CHILD SA, as a dataplane installs it.
#[derive(Clone, Debug)]
pub struct ChildSa {
    /// The child config's name.
    pub name: String,
    pub spi_in: u32,
    pub spi_out: u32,
    pub mode: Mode,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub proposal: Chosen,
    pub keys: ChildKeys,
    /// ESP-in-UDP (RFC 3948) between `local` and `remote`.
    pub encap: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The inbound SPI of the CHILD SA this one replaces (rekey).
    pub rekey_of: Option<u32>,
    /// We initiated the exchange that created it, so the peer has it
    /// installed already (it answered); as responder we cannot know that
    /// until the peer uses it or deletes the SA it replaces.
    pub initiator: bool,
}

/// Why an IKE SA failed or closed, in words an operator understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("peer rejected our proposals: {0}")]
    PeerRejectedProposals(NotifyType),
    #[error("no acceptable proposal from peer: NO_PROPOSAL_CHOSEN")]
    NoProposalChosen,
    #[error("authentication of '{0}' failed")]
    AuthenticationFailed(String),
    #[error("authentication of '{peer}' failed: {why}")]
    Certificate {
        peer: String,
        why: crate::pki::PkiError,
    },
    #[error("cannot prove our identity '{local}': {why}")]
    LocalCredential {
        local: String,
        why: crate::pki::PkiError,
    },
    #[error("peer rejected our authentication: AUTHENTICATION_FAILED")]
    PeerRejectedAuthentication,
    #[error("peer identity '{got}' does not match the expected '{expected}'")]
    IdentityMismatch { expected: String, got: String },
    #[error("no connection accepts peer identity '{0}'")]
    NoMatchingConfig(String),
    #[error("connection '{conn}' accepts peer identity '{peer}' but not the negotiated IKE proposal {proposal}")]
    ProposalNotAllowed {
        conn: String,
        peer: String,
        proposal: String,
    },
    #[error("no pre-shared key for '{local}' - '{remote}'")]
    NoSecret { local: String, remote: String },
    #[error("peer did not answer {exchange} after {tries} retransmissions")]
    Timeout { exchange: ExchangeType, tries: u32 },
    #[error("peer did not complete IKE_AUTH within {0:?}")]
    HalfOpenTimeout(Duration),
    #[error("peer sent error {0}")]
    PeerError(NotifyType),
    #[error("peer sent an invalid message: {0}")]
    Protocol(PeerMisbehaved),
    #[error("deleted by peer")]
    PeerDeleted,
    #[error("deleted locally")]
    LocalDelete,
    #[error("killed locally")]
    Killed,
}

/// What the core reports to its driver.
#[derive(Clone, Debug)]
pub enum Event {
    /// IKE_AUTH completed: the peer is authenticated.
    Established {
        name: String,
        proposal: Chosen,
        local_id: Identification,
        remote_id: Identification,
        /// The peer sent INITIAL_CONTACT (§2.4): any other IKE SA with it is
        /// stale and should go.
        initial_contact: bool,
    },
    ChildReady(Box<ChildSa>),
    ChildFailed {
        name: String,
        reason: ChildError,
    },
    /// Our rekey of the CHILD SA with inbound SPI `spi_in` failed; the SA
    /// stays in service. `retry` says when and how it is tried again
    /// (`None`: no more tries; the SA lasts until its lifetime ends).
    ChildRekeyFailed {
        name: String,
        spi_in: u32,
        reason: ChildError,
        retry: Option<RekeyRetry>,
    },
    ChildDeleted {
        name: String,
        spi_in: u32,
        spi_out: u32,
        reason: String,
    },
    /// The IKE SA was rekeyed: datagrams for the new SPIs belong here too.
    IkeRekeyed {
        old_spi_i: u64,
        old_spi_r: u64,
        spi_i: u64,
        spi_r: u64,
        proposal: Chosen,
    },
    /// An old IKE SA (after rekey) is gone: its SPIs are free.
    Retired {
        spi_i: u64,
        spi_r: u64,
    },
    /// A request we initiated failed without closing the IKE SA (for
    /// example a rejected rekey); the daemon may retry later.
    ExchangeFailed {
        exchange: ExchangeType,
        reason: RekeyError,
    },
    /// The peer answered a liveness check.
    Alive,
    /// The IKE SA is gone. Every CHILD SA was reported deleted before this.
    Closed {
        reason: Reason,
        was_established: bool,
    },
}

/// When and how a failed CHILD SA rekey is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyRetry {
    /// The retry's number (1 = the first retry).
    pub attempt: u32,
    /// From the failure (zero: at once).
    pub after: Duration,
    /// The KE group the retry carries (PFS), if any.
    pub ke: Option<DhGroup>,
}

/// Requests from the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Negotiate the named CHILD SA of the connection (CREATE_CHILD_SA).
    CreateChild {
        name: String,
    },
    RekeyChild {
        spi_in: u32,
    },
    RekeyIke,
    DeleteChild {
        spi_in: u32,
    },
    /// Delete the IKE SA and all its CHILD SAs, waiting for the answer.
    Delete,
    /// Empty INFORMATIONAL: a liveness check (DPD).
    Liveness,
}

/// Coarse state, for status output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Connecting,
    Established,
    Rekeying,
    Deleting,
    Closed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Connecting => "connecting",
            State::Established => "established",
            State::Rekeying => "rekeying",
            State::Deleting => "deleting",
            State::Closed => "closed",
        })
    }
}

/// Outcome of offering an IKE_SA_INIT request to the responder side.
pub enum Accept {
    /// A new half-open IKE SA; its response is queued in `poll_transmit`.
    Created(Box<IkeSa>),
    /// A stateless answer (COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN,
    /// UNSUPPORTED_CRITICAL_PAYLOAD): send it and keep no state.
    Reply(Transmit, &'static str),
    /// Not an acceptable IKE_SA_INIT request; count and drop.
    Ignore(String),
}

/// Parameters of the responder path for an IKE_SA_INIT request.
pub struct Responder<'a> {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Connections that may serve this peer (chosen by address); the one
    /// used is picked by identity in IKE_AUTH.
    pub candidates: super::CandidatesRef,
    /// When set, demand a valid COOKIE before keeping state (§2.6).
    pub require_cookie: Option<&'a CookieJar>,
}

/// Why a datagram was not accepted. The SA is unchanged in every case; the
/// daemon counts these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    #[error("malformed: {0}")]
    Malformed(wire::DecodeError),
    #[error("cannot open SK payload: {0}")]
    Open(OpenError),
    #[error("unexpected: {0}")]
    Unexpected(&'static str),
    #[error("invalid: {0}")]
    Invalid(PeerMisbehaved),
    /// A fragment (RFC 7383) that was not kept.
    #[error("fragment dropped: {0}")]
    Fragment(super::fragment::FragmentError),
    #[error("unknown SPI")]
    UnknownSpi,
    #[error("IKE SA is closed")]
    Closed,
}

/// The SPI under which a received datagram's IKE SA is filed locally: the
/// responder's SPI if the sender is the original initiator, else the
/// initiator's. `None` for an IKE_SA_INIT request (not yet filed).
pub fn local_spi_of(header: &wire::Header) -> Option<u64> {
    if header.is_initiator() {
        (header.spi_r != 0).then_some(header.spi_r)
    } else {
        Some(header.spi_i)
    }
}
