//! The IKE SA: every exchange of RFC 7296 in both roles, as a sans-IO state
//! machine.
//!
//! Inputs are `handle_datagram`, `handle_timeout` and `handle_command`, each
//! taking `now`; outputs are pulled with `poll_transmit`, `poll_timeout` and
//! `poll_event`. Nothing here opens a socket, reads a clock or spawns a task.
//!
//! Exchanges: IKE_SA_INIT (§1.2; COOKIE §2.6 and INVALID_KE_PAYLOAD §1.2
//! retries; NAT detection §2.23), IKE_AUTH with the first CHILD SA (§1.2,
//! PSK §2.15, narrowing §2.9), CREATE_CHILD_SA (new CHILD SA §1.3.1, CHILD
//! rekey §1.3.3, IKE rekey §1.3.2, collisions §2.8.1), INFORMATIONAL (§1.4:
//! DELETE and liveness). Message IDs use a window of one (§2.3).
//!
//! Invariants: a `Closed` SA emits nothing further; every CHILD SA reported
//! with `ChildReady` is later reported with `ChildDeleted` (also when the IKE
//! SA closes); keys never appear in `Debug` output or events other than
//! `ChildReady`, which carries them for the dataplane.

mod core;
pub mod natd;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use self::core::{Core, RequestId};
use self::natd::{natd_hash, CookieJar};
use crate::auth;
use crate::config::{display_identity, Mode, PeerConfigRef};
use crate::crypto::{DhGroup, DhPrivate, Random};
use crate::keys::{self, ChildKeys};
use crate::proposal::{self, Chosen, DhMode, ProposalSpec};
use crate::ts;
use crate::wire::{
    self, AuthMethod, Authentication, Delete, ExchangeType, Identification, KeyExchange, Message,
    Notify, NotifyType, Payload, ProtocolId, TrafficSelector,
};

pub use self::core::OpenError;

/// Nonce length we send: 32 bytes, at least half the largest PRF key (§2.10).
const NONCE_LEN: usize = 32;
/// How long a responder waits for IKE_AUTH after IKE_SA_INIT.
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How many COOKIE / INVALID_KE_PAYLOAD round trips an initiator accepts.
const MAX_INIT_RETRIES: u8 = 3;
const NATT_PORT: u16 = 4500;
const IKE_PORT: u16 = 500;

/// Randomness and SPI allocation, injected so tests are deterministic and the
/// daemon can allocate inbound SPIs from its dataplane.
pub trait Provider: Send {
    fn random(&mut self) -> &mut dyn Random;
    /// A fresh inbound ESP SPI (≥ 256, §3.3.1 reserves lower values).
    fn alloc_child_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.random().fill(&mut b);
            let spi = u32::from_be_bytes(b);
            if spi >= 0x100 {
                return spi;
            }
        }
    }
}

impl<R: Random + 'static> Provider for R {
    fn random(&mut self) -> &mut dyn Random {
        self
    }
}

fn random_vec(p: &mut dyn Provider, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    p.random().fill(&mut v);
    v
}

fn random_spi(p: &mut dyn Provider) -> u64 {
    loop {
        let mut b = [0u8; 8];
        p.random().fill(&mut b);
        let spi = u64::from_be_bytes(b);
        if spi != 0 {
            return spi;
        }
    }
}

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
    #[error("peer rejected our authentication: AUTHENTICATION_FAILED")]
    PeerRejectedAuthentication,
    #[error("peer identity '{got}' does not match the expected '{expected}'")]
    IdentityMismatch { expected: String, got: String },
    #[error("no connection accepts peer identity '{0}'")]
    NoMatchingConfig(String),
    #[error("no pre-shared key for '{local}' - '{remote}'")]
    NoSecret { local: String, remote: String },
    #[error("peer did not answer {exchange} after {tries} retransmissions")]
    Timeout { exchange: ExchangeType, tries: u32 },
    #[error("peer did not complete IKE_AUTH within {0:?}")]
    HalfOpenTimeout(Duration),
    #[error("peer sent error {0}")]
    PeerError(NotifyType),
    #[error("peer sent an invalid message: {0}")]
    Protocol(String),
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
        reason: String,
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
        reason: String,
    },
    /// The peer answered a liveness check.
    Alive,
    /// The IKE SA is gone. Every CHILD SA was reported deleted before this.
    Closed {
        reason: Reason,
        was_established: bool,
    },
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    AwaitAuth,
    Established,
    /// Our DELETE of the IKE SA is outstanding.
    Deleting,
    Closed,
}

/// IKE_SA_INIT data needed until IKE_AUTH completes.
struct InitState {
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: DhPrivate,
    cookie: Option<Vec<u8>>,
    /// The IKE_SA_INIT messages as sent, for the AUTH payloads (§2.15).
    msg_i: Vec<u8>,
    msg_r: Vec<u8>,
    retries: u8,
    /// Initiator: the CHILD SA to negotiate in IKE_AUTH.
    child: Option<ChildRequest>,
}

/// A CHILD SA we asked for (IKE_AUTH or CREATE_CHILD_SA).
struct ChildRequest {
    name: String,
    spi_in: u32,
    ni: Vec<u8>,
    dh: Option<DhPrivate>,
    rekey_of: Option<u32>,
    ts_i: Vec<TrafficSelector>,
    ts_r: Vec<TrafficSelector>,
    mode: Mode,
    proposals: Vec<ProposalSpec>,
    ke_retries: u8,
}

/// An IKE rekey we asked for.
struct IkeRekeyRequest {
    spi_i: u64,
    ni: Vec<u8>,
    dh: DhPrivate,
    ke_retries: u8,
}

/// What our outstanding request on the current core is.
enum Pending {
    SaInit,
    Auth,
    CreateChild(ChildRequest),
    RekeyIke(IkeRekeyRequest),
    DeleteChildren(Vec<u32>),
    DeleteIke,
    Liveness,
    /// An INFORMATIONAL carrying an error notify (after a failed AUTH).
    Notify,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Task {
    CreateChild {
        name: String,
        rekey_of: Option<u32>,
    },
    RekeyIke,
    DeleteChildren(Vec<u32>),
    /// Delete an SA the peer installed but we refused.
    DeleteUnknown(u32),
    DeleteIke,
    Liveness,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChildState {
    Installed,
    /// Our rekey of it is outstanding.
    Rekeying,
    /// A newer CHILD SA replaces it; deletion follows.
    Rekeyed,
    Deleting,
}

struct Child {
    sa: ChildSa,
    state: ChildState,
    /// Replaced by a rekey: its deletion is reported as "rekeyed".
    rekeyed: bool,
    /// Responded to a peer's rekey of this child while ours was
    /// outstanding: the peer's new SA (inbound SPI) and its lowest nonce.
    collision: Option<(u32, Vec<u8>)>,
}

/// A peer's IKE rekey that we answered while our own was outstanding.
struct IkeCollision {
    core: Core,
    min_nonce: Vec<u8>,
    proposal: Chosen,
}

/// One IKE SA, either role.
pub struct IkeSa {
    name: String,
    config: Option<PeerConfigRef>,
    candidates: Vec<PeerConfigRef>,
    provider: Box<dyn Provider>,
    local: SocketAddr,
    remote: SocketAddr,
    natt: bool,
    nat_local: bool,
    nat_remote: bool,
    phase: Phase,
    core: Core,
    /// Old IKE SAs after a rekey, kept to finish their DELETE exchange.
    retiring: Vec<Core>,
    init: Option<InitState>,
    pending: Option<Pending>,
    tasks: VecDeque<Task>,
    children: Vec<Child>,
    ike_collision: Option<IkeCollision>,
    proposal: Option<Chosen>,
    local_id: Option<Identification>,
    remote_id: Option<Identification>,
    half_open_deadline: Option<Instant>,
    established_at: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    retransmit_override: Option<crate::config::Retransmit>,
}

impl fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeSa")
            .field("name", &self.name)
            .field("spi_i", &format_args!("{:016x}", self.core.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.core.spi_r))
            .field("phase", &self.phase)
            .finish_non_exhaustive()
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
    pub candidates: Vec<PeerConfigRef>,
    /// When set, demand a valid COOKIE before keeping state (§2.6).
    pub require_cookie: Option<&'a CookieJar>,
}

fn notify(t: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol: ProtocolId(0),
        spi: Vec::new(),
        notify_type: t,
        data,
    })
}

/// A Delete payload for the IKE SA itself (§3.11).
fn ike_delete() -> Payload {
    Payload::Delete(Delete {
        protocol: ProtocolId::IKE,
        spi_size: 0,
        spis: Vec::new(),
    })
}

fn find_notify(payloads: &[Payload], t: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == t => Some(n),
        _ => None,
    })
}

/// The DH group an INVALID_KE_PAYLOAD notify asks for (§1.2: two bytes),
/// if it is one we offered.
fn requested_group(n: &Notify, offered: &[ProposalSpec]) -> Option<DhGroup> {
    let b = n.data.get(..2)?;
    let g = DhGroup::from_id(u16::from_be_bytes([b[0], b[1]]))?;
    offered.iter().any(|s| s.dh.contains(&g)).then_some(g)
}

fn first_error(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
        _ => None,
    })
}

/// The parts of a CREATE_CHILD_SA / IKE_AUTH message about one CHILD SA.
#[derive(Default)]
struct ChildPayloads<'a> {
    sa: Option<&'a [wire::Proposal]>,
    nonce: Option<&'a [u8]>,
    ke: Option<&'a KeyExchange>,
    tsi: Option<&'a [TrafficSelector]>,
    tsr: Option<&'a [TrafficSelector]>,
    transport: bool,
    rekey: Option<&'a Notify>,
}

fn child_payloads(payloads: &[Payload]) -> ChildPayloads<'_> {
    let mut c = ChildPayloads::default();
    for p in payloads {
        match p {
            Payload::Sa(s) => c.sa = Some(s),
            Payload::Nonce(n) => c.nonce = Some(n),
            Payload::Ke(k) => c.ke = Some(k),
            Payload::TsI(t) => c.tsi = Some(t),
            Payload::TsR(t) => c.tsr = Some(t),
            Payload::Notify(n) if n.notify_type == NotifyType::USE_TRANSPORT_MODE => {
                c.transport = true
            }
            Payload::Notify(n) if n.notify_type == NotifyType::REKEY_SA => c.rekey = Some(n),
            _ => {}
        }
    }
    c
}

fn min_nonce(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.min(b).to_vec()
}

fn spi_bytes(spi: u32) -> Vec<u8> {
    spi.to_be_bytes().to_vec()
}

fn spi_from(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn id_string(id: &Identification) -> String {
    display_identity(id)
}

impl IkeSa {
    /// Start an IKE SA as initiator; IKE_SA_INIT is queued at once. The first
    /// of `children` is negotiated in IKE_AUTH, the others with
    /// CREATE_CHILD_SA once established.
    pub fn initiate(
        now: Instant,
        config: PeerConfigRef,
        local: SocketAddr,
        remote: SocketAddr,
        mut provider: Box<dyn Provider>,
        children: &[&str],
    ) -> IkeSa {
        let spi_i = random_spi(provider.as_mut());
        let spec = config.ike_proposals.first();
        let group = spec
            .and_then(|s| s.dh.first().copied())
            .unwrap_or(DhGroup::Curve25519);
        let dh = DhPrivate::generate(group, provider.random());
        let ni = random_vec(provider.as_mut(), NONCE_LEN);
        let mut sa = IkeSa {
            name: config.name.clone(),
            config: Some(config.clone()),
            candidates: Vec::new(),
            provider,
            local,
            remote,
            natt: false,
            nat_local: false,
            nat_remote: false,
            phase: Phase::InitSent,
            core: Core::new(spi_i, 0, true),
            retiring: Vec::new(),
            init: Some(InitState {
                ni,
                nr: Vec::new(),
                dh,
                cookie: None,
                msg_i: Vec::new(),
                msg_r: Vec::new(),
                retries: 0,
                child: None,
            }),
            pending: None,
            tasks: VecDeque::new(),
            children: Vec::new(),
            ike_collision: None,
            proposal: None,
            local_id: Some(config.local_id.clone()),
            remote_id: None,
            half_open_deadline: None,
            established_at: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            retransmit_override: None,
        };
        let mut names = children.iter();
        if let Some(first) = names.next() {
            match sa.child_request(first, None) {
                Ok(req) => sa.init.as_mut().expect("init").child = Some(req),
                Err(reason) => sa.events.push_back(Event::ChildFailed {
                    name: first.to_string(),
                    reason,
                }),
            }
        }
        for name in names {
            sa.tasks.push_back(Task::CreateChild {
                name: name.to_string(),
                rekey_of: None,
            });
        }
        sa.send_sa_init(now);
        sa
    }

    /// Responder path for a datagram that is not for a known SA: accept an
    /// IKE_SA_INIT request, answer it statelessly, or refuse it.
    pub fn accept(
        now: Instant,
        params: Responder<'_>,
        mut provider: Box<dyn Provider>,
        data: &[u8],
    ) -> Accept {
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => return Accept::Ignore(format!("malformed IKE_SA_INIT: {e}")),
        };
        let h = &msg.header;
        if h.exchange != ExchangeType::IKE_SA_INIT
            || h.is_response()
            || !h.is_initiator()
            || h.message_id != 0
            || h.spi_r != 0
            || h.spi_i == 0
        {
            return Accept::Ignore("not an IKE_SA_INIT request".into());
        }
        let stateless = |payloads: Vec<Payload>, why: &'static str| {
            let core = Core::new(msg.header.spi_i, 0, false);
            Accept::Reply(
                Transmit {
                    local: params.local,
                    remote: params.remote,
                    non_esp_marker: params.local.port() != IKE_PORT,
                    data: core.plain(ExchangeType::IKE_SA_INIT, true, 0, payloads),
                },
                why,
            )
        };
        if let Some(t) = msg.unsupported_critical() {
            return stateless(
                vec![notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0])],
                "UNSUPPORTED_CRITICAL_PAYLOAD",
            );
        }
        let c = child_payloads(&msg.payloads);
        let (Some(sa), Some(ni), Some(ke)) = (c.sa, c.nonce, c.ke) else {
            return Accept::Ignore("IKE_SA_INIT without SA, KE or Nonce".into());
        };
        if ni.len() < 16 || ni.len() > 256 {
            return Accept::Ignore("IKE_SA_INIT nonce length out of range".into());
        }
        if let Some(jar) = params.require_cookie {
            let ok = match msg.payloads.first() {
                Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE => {
                    jar.verify(&n.data, ni, params.remote.ip(), h.spi_i)
                }
                _ => false,
            };
            if !ok {
                let cookie = jar.make(ni, params.remote.ip(), h.spi_i);
                return stateless(
                    vec![notify(NotifyType::COOKIE, cookie)],
                    "COOKIE: a cookie is required",
                );
            }
        }
        let ours: Vec<ProposalSpec> = params
            .candidates
            .iter()
            .flat_map(|c| c.ike_proposals.iter().cloned())
            .collect();
        let Some(chosen) = select_preferring_ke(&ours, sa, Some(ke.group)) else {
            return stateless(
                vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new())],
                "NO_PROPOSAL_CHOSEN: none of the peer's proposals is acceptable",
            );
        };
        let group = chosen.dh.expect("IKE proposal has a DH group");
        if ke.group != group.id() {
            return stateless(
                vec![notify(
                    NotifyType::INVALID_KE_PAYLOAD,
                    group.id().to_be_bytes().to_vec(),
                )],
                "INVALID_KE_PAYLOAD: the peer's KE group is not the one we chose",
            );
        }
        let dh = DhPrivate::generate(group, provider.random());
        let Ok(shared) = dh.agree(&ke.data) else {
            return Accept::Ignore("invalid KE value".into());
        };
        let spi_r = random_spi(provider.as_mut());
        let nr = random_vec(provider.as_mut(), NONCE_LEN);
        let prf = chosen.prf.expect("IKE proposal has a PRF");
        let seed = keys::skeyseed(prf, &shared, ni, &nr, None);
        let Ok(k) = keys::derive_ike_keys(prf, chosen.encr, &seed, ni, &nr, h.spi_i, spi_r) else {
            return Accept::Ignore("key derivation failed".into());
        };
        let mut core = Core::new(h.spi_i, spi_r, false);
        core.keys = Some(k);
        let encap_forced = params.candidates.iter().any(|c| c.encap);
        let mut sa = IkeSa {
            name: String::new(),
            config: None,
            candidates: params.candidates,
            provider,
            local: params.local,
            remote: params.remote,
            natt: params.local.port() != IKE_PORT,
            nat_local: false,
            nat_remote: false,
            phase: Phase::AwaitAuth,
            core,
            retiring: Vec::new(),
            init: None,
            pending: None,
            tasks: VecDeque::new(),
            children: Vec::new(),
            ike_collision: None,
            proposal: Some(chosen.clone()),
            local_id: None,
            remote_id: None,
            half_open_deadline: Some(now + HALF_OPEN_TIMEOUT),
            established_at: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            retransmit_override: None,
        };
        sa.detect_nat(&msg, h.spi_i, 0);
        if encap_forced {
            sa.nat_local = true;
        }
        let mut payloads = vec![
            Payload::Sa(vec![chosen.to_wire(chosen.number, &[])]),
            Payload::Ke(KeyExchange {
                group: group.id(),
                data: dh.public_key().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
        ];
        payloads.extend(sa.natd_payloads(encap_forced));
        let response = sa.core.plain(ExchangeType::IKE_SA_INIT, true, 0, payloads);
        sa.core.answered(0, response.clone());
        sa.init = Some(InitState {
            ni: ni.to_vec(),
            nr,
            dh,
            cookie: None,
            msg_i: data.to_vec(),
            msg_r: response.clone(),
            retries: 0,
            child: None,
        });
        sa.transmit(response);
        Accept::Created(Box::new(sa))
    }

    // ----- accessors -------------------------------------------------------

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn spi_i(&self) -> u64 {
        self.core.spi_i
    }
    pub fn spi_r(&self) -> u64 {
        self.core.spi_r
    }
    /// Our SPI of the current IKE SA: the key the daemon demultiplexes on.
    pub fn local_spi(&self) -> u64 {
        if self.core.initiator {
            self.core.spi_i
        } else {
            self.core.spi_r
        }
    }
    pub fn is_initiator(&self) -> bool {
        self.core.initiator
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }
    pub fn local_id(&self) -> Option<&Identification> {
        self.local_id.as_ref()
    }
    pub fn remote_id(&self) -> Option<&Identification> {
        self.remote_id.as_ref()
    }
    pub fn proposal(&self) -> Option<&Chosen> {
        self.proposal.as_ref()
    }
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }
    /// UDP encapsulation in use (a NAT was detected or forced).
    pub fn encap(&self) -> bool {
        self.nat_local || self.nat_remote
    }
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }
    pub fn state(&self) -> State {
        match self.phase {
            Phase::InitSent | Phase::AuthSent | Phase::AwaitAuth => State::Connecting,
            Phase::Established => {
                if matches!(self.pending, Some(Pending::RekeyIke(_))) {
                    State::Rekeying
                } else {
                    State::Established
                }
            }
            Phase::Deleting => State::Deleting,
            Phase::Closed => State::Closed,
        }
    }
    /// CHILD SAs currently held, with their state.
    pub fn child_sas(&self) -> impl Iterator<Item = (&ChildSa, &'static str)> {
        self.children.iter().map(|c| {
            let s = match c.state {
                ChildState::Installed => "installed",
                ChildState::Rekeying => "rekeying",
                ChildState::Rekeyed | ChildState::Deleting => "deleting",
            };
            (&c.sa, s)
        })
    }
    /// The SPI pairs (spi_i, spi_r) this SA answers to, current first.
    pub fn spi_pairs(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(self.core.spi_i, self.core.spi_r)];
        v.extend(self.retiring.iter().map(|c| (c.spi_i, c.spi_r)));
        v
    }

    // ----- polled outputs --------------------------------------------------

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let cores = std::iter::once(&self.core).chain(self.retiring.iter());
        cores
            .filter_map(|c| c.out.as_ref().map(|o| o.next))
            .chain(self.half_open_deadline)
            .min()
    }

    // ----- inputs ----------------------------------------------------------

    /// Retransmit what is due; fail exchanges whose tries are exhausted.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(d) = self.half_open_deadline {
            if now >= d && self.phase == Phase::AwaitAuth {
                self.close(Reason::HalfOpenTimeout(HALF_OPEN_TIMEOUT));
                return;
            }
        }
        let policy = self.retransmit_policy();
        // Retiring cores: retransmit their DELETE, give up silently.
        let mut i = 0;
        while i < self.retiring.len() {
            let core = &mut self.retiring[i];
            let mut drop_it = false;
            if let Some(out) = core.out.as_mut() {
                if now >= out.next {
                    if out.sent > policy.tries {
                        drop_it = true;
                    } else {
                        out.next = now + policy.wait_after(out.sent);
                        out.sent += 1;
                        let data = out.data.clone();
                        self.transmit(data);
                    }
                }
            }
            if drop_it {
                let c = self.retiring.remove(i);
                self.events.push_back(Event::Retired {
                    spi_i: c.spi_i,
                    spi_r: c.spi_r,
                });
            } else {
                i += 1;
            }
        }
        let Some(out) = self.core.out.as_mut() else {
            return;
        };
        if now < out.next {
            return;
        }
        if out.sent > policy.tries {
            let exchange = out.exchange;
            let tries = out.sent - 1;
            match self.pending {
                Some(Pending::DeleteIke) | Some(Pending::Notify) => {
                    let reason = if self.phase == Phase::Deleting {
                        Reason::LocalDelete
                    } else {
                        Reason::Timeout { exchange, tries }
                    };
                    self.close(reason)
                }
                _ => self.close(Reason::Timeout { exchange, tries }),
            }
            return;
        }
        out.next = now + policy.wait_after(out.sent);
        out.sent += 1;
        let data = out.data.clone();
        self.transmit(data);
    }

    /// Queue work. Commands that need an established SA wait until then.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        if self.phase == Phase::Closed {
            return;
        }
        match cmd {
            Command::CreateChild { name } => self.tasks.push_back(Task::CreateChild {
                name,
                rekey_of: None,
            }),
            Command::RekeyChild { spi_in } => {
                if let Some(c) = self.children.iter().find(|c| c.sa.spi_in == spi_in) {
                    let name = c.sa.name.clone();
                    self.tasks.push_back(Task::CreateChild {
                        name,
                        rekey_of: Some(spi_in),
                    });
                }
            }
            Command::RekeyIke => self.tasks.push_back(Task::RekeyIke),
            Command::DeleteChild { spi_in } => {
                self.tasks.push_back(Task::DeleteChildren(vec![spi_in]))
            }
            Command::Liveness => self.tasks.push_back(Task::Liveness),
            Command::Delete => match self.phase {
                Phase::Established => {
                    self.tasks.clear();
                    self.tasks.push_back(Task::DeleteIke);
                }
                Phase::Deleting => {}
                _ => {
                    // Not authenticated yet: nothing to tell the peer (§1.4).
                    self.close(Reason::LocalDelete);
                    return;
                }
            },
        }
        self.run_tasks(now);
    }

    /// Tear down at once: send one DELETE (best effort, not retransmitted)
    /// when the SA is authenticated, then close.
    pub fn kill(&mut self, _now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if matches!(self.phase, Phase::Established | Phase::Deleting) {
            let id = self.core.next_request_id();
            let payloads = [ike_delete()];
            let data = self
                .core
                .protect(ExchangeType::INFORMATIONAL, false, id, &payloads);
            self.transmit(data);
        }
        self.close(Reason::Killed);
    }

    /// A datagram for this SA (the non-ESP marker already removed). `local`
    /// and `remote` are the addresses it was received on and from.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), DatagramError> {
        if self.phase == Phase::Closed {
            return Err(DatagramError::Closed);
        }
        let msg = Message::decode(data).map_err(DatagramError::Malformed)?;
        let h = &msg.header;
        let current = h.spi_i == self.core.spi_i
            && (h.spi_r == self.core.spi_r
                || (h.spi_r == 0 && h.exchange == ExchangeType::IKE_SA_INIT)
                || (self.phase == Phase::InitSent && h.is_response()));
        if current {
            if h.is_response() {
                self.handle_response(now, local, remote, data, msg)
            } else {
                self.handle_request(now, local, remote, data, msg)
            }
        } else if let Some(i) = self
            .retiring
            .iter()
            .position(|c| c.spi_i == h.spi_i && c.spi_r == h.spi_r)
        {
            self.handle_retiring(i, data, msg)
        } else if self
            .ike_collision
            .as_ref()
            .is_some_and(|c| c.core.spi_i == h.spi_i && c.core.spi_r == h.spi_r)
        {
            // The peer resolved the collision first; it retransmits.
            Err(DatagramError::Unexpected(
                "message for a colliding IKE SA before resolution",
            ))
        } else {
            Err(DatagramError::UnknownSpi)
        }
    }

    // ----- internals: sending ---------------------------------------------

    /// Use `r` for retransmissions from now on (runtime tuning); the
    /// request in flight keeps its current wait.
    pub fn set_retransmit(&mut self, r: crate::config::Retransmit) {
        self.retransmit_override = Some(r);
    }

    fn retransmit_policy(&self) -> crate::config::Retransmit {
        if let Some(r) = self.retransmit_override {
            return r;
        }
        self.config
            .as_ref()
            .or_else(|| self.candidates.first())
            .map(|c| c.retransmit)
            .unwrap_or_default()
    }

    fn transmit(&mut self, data: Vec<u8>) {
        self.transmits.push_back(Transmit {
            local: self.local,
            remote: self.remote,
            non_esp_marker: self.natt,
            data,
        });
    }

    fn send_request(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        payloads: &[Payload],
        pending: Pending,
    ) {
        let id = self.core.next_request_id();
        let data = if exchange == ExchangeType::IKE_SA_INIT {
            self.core.plain(exchange, false, id, payloads.to_vec())
        } else {
            self.core.protect(exchange, false, id, payloads)
        };
        let wait = self.retransmit_policy().wait_after(0);
        self.core.begin_request(now, exchange, data.clone(), wait);
        self.pending = Some(pending);
        self.transmit(data);
    }

    fn respond(&mut self, id: u32, exchange: ExchangeType, payloads: &[Payload]) {
        let data = self.core.protect(exchange, true, id, payloads);
        self.core.answered(id, data.clone());
        self.transmit(data);
    }

    fn natd_payloads(&mut self, fake_source: bool) -> Vec<Payload> {
        let (si, sr) = (self.core.spi_i, self.core.spi_r);
        let src = if fake_source {
            // strongSwan's encap=yes: a source hash that cannot match makes
            // the peer believe we are behind a NAT (RFC 7296 §2.23).
            random_vec(self.provider.as_mut(), 20)
        } else {
            natd_hash(si, sr, self.local)
        };
        vec![
            notify(NotifyType::NAT_DETECTION_SOURCE_IP, src),
            notify(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                natd_hash(si, sr, self.remote),
            ),
        ]
    }

    fn detect_nat(&mut self, msg: &Message, spi_i: u64, spi_r: u64) {
        let mut saw_src = false;
        let mut src_match = false;
        let mut dst = None;
        for p in &msg.payloads {
            if let Payload::Notify(n) = p {
                if n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP {
                    saw_src = true;
                    src_match |= n.data == natd_hash(spi_i, spi_r, self.remote);
                } else if n.notify_type == NotifyType::NAT_DETECTION_DESTINATION_IP {
                    dst = Some(n.data == natd_hash(spi_i, spi_r, self.local));
                }
            }
        }
        if saw_src && !src_match {
            self.nat_remote = true;
        }
        if dst == Some(false) {
            self.nat_local = true;
        }
    }

    fn send_sa_init(&mut self, now: Instant) {
        let config = self.config.clone().expect("initiator has a config");
        let init = self.init.as_ref().expect("init state");
        let mut payloads = Vec::new();
        if let Some(c) = &init.cookie {
            payloads.push(notify(NotifyType::COOKIE, c.clone()));
        }
        let sa: Vec<wire::Proposal> = config
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i as u8 + 1, &[], true))
            .collect();
        payloads.push(Payload::Sa(sa));
        payloads.push(Payload::Ke(KeyExchange {
            group: init.dh.group().id(),
            data: init.dh.public_key().to_vec(),
        }));
        payloads.push(Payload::Nonce(init.ni.clone()));
        payloads.extend(self.natd_payloads(config.encap));
        self.core.spi_r = 0;
        self.core.next_id = 0;
        self.send_request(now, ExchangeType::IKE_SA_INIT, &payloads, Pending::SaInit);
        let sent = self
            .core
            .out
            .as_ref()
            .map(|o| o.data.clone())
            .unwrap_or_default();
        self.init.as_mut().expect("init").msg_i = sent;
    }

    /// Build a request for CHILD SA `name` from the connection config.
    fn child_request(&mut self, name: &str, rekey_of: Option<u32>) -> Result<ChildRequest, String> {
        let config = self.config.clone().ok_or("no connection config")?;
        let child = config
            .child(name)
            .ok_or_else(|| format!("connection '{}' has no child '{name}'", config.name))?;
        let (ts_i, ts_r) =
            match rekey_of.and_then(|s| self.children.iter().find(|c| c.sa.spi_in == s)) {
                // A rekey proposes the selectors the old SA has (§2.9.2).
                Some(old) => (old.sa.local_ts.clone(), old.sa.remote_ts.clone()),
                None => (child.local_ts.clone(), child.remote_ts.clone()),
            };
        Ok(ChildRequest {
            name: name.to_string(),
            spi_in: self.provider.alloc_child_spi(),
            ni: random_vec(self.provider.as_mut(), NONCE_LEN),
            dh: None,
            rekey_of,
            ts_i,
            ts_r,
            mode: child.mode,
            proposals: child.esp_proposals.clone(),
            ke_retries: 0,
        })
    }

    fn child_sa_payloads(req: &ChildRequest, include_dh: bool) -> Vec<Payload> {
        let mut v = Vec::new();
        if req.mode == Mode::Transport {
            v.push(notify(NotifyType::USE_TRANSPORT_MODE, Vec::new()));
        }
        v.push(Payload::Sa(
            req.proposals
                .iter()
                .enumerate()
                .map(|(i, p)| p.to_wire(i as u8 + 1, &spi_bytes(req.spi_in), include_dh))
                .collect(),
        ));
        v
    }

    fn send_auth(&mut self, now: Instant) {
        let config = self.config.clone().expect("initiator config");
        let init = self.init.as_ref().expect("init");
        let keys = self.core.keys.as_ref().expect("keys");
        let prf = keys.prf;
        let octets = auth::signed_octets(prf, &keys.sk_pi, &init.msg_i, &init.nr, &config.local_id);
        let auth_value = match &config.psk {
            Some(psk) => auth::psk_auth(prf, &psk.0, &octets),
            None => {
                let reason = Reason::NoSecret {
                    local: id_string(&config.local_id),
                    remote: config
                        .remote_id
                        .as_ref()
                        .map(id_string)
                        .unwrap_or_else(|| "%any".into()),
                };
                self.close(reason);
                return;
            }
        };
        let mut payloads = vec![Payload::IdI(config.local_id.clone())];
        if config.initial_contact {
            payloads.push(notify(NotifyType::INITIAL_CONTACT, Vec::new()));
        }
        if let Some(r) = &config.remote_id {
            payloads.push(Payload::IdR(r.clone()));
        }
        payloads.push(Payload::Auth(Authentication {
            method: AuthMethod::SHARED_KEY_MIC,
            data: auth_value,
        }));
        if let Some(req) = &init.child {
            payloads.extend(Self::child_sa_payloads(req, false));
            payloads.push(Payload::TsI(req.ts_i.clone()));
            payloads.push(Payload::TsR(req.ts_r.clone()));
            payloads.push(notify(
                NotifyType::ESP_TFC_PADDING_NOT_SUPPORTED,
                Vec::new(),
            ));
        }
        self.phase = Phase::AuthSent;
        self.send_request(now, ExchangeType::IKE_AUTH, &payloads, Pending::Auth);
    }

    fn run_tasks(&mut self, now: Instant) {
        while self.core.out.is_none() && self.phase == Phase::Established {
            let Some(task) = self.tasks.pop_front() else {
                return;
            };
            self.start_task(now, task);
        }
    }

    fn start_task(&mut self, now: Instant, task: Task) {
        match task {
            Task::CreateChild { name, rekey_of } => {
                if let Some(old) = rekey_of {
                    match self.children.iter_mut().find(|c| c.sa.spi_in == old) {
                        Some(c) if c.state == ChildState::Installed => {
                            c.state = ChildState::Rekeying
                        }
                        _ => return, // gone or already being replaced
                    }
                }
                match self.child_request(&name, rekey_of) {
                    Ok(req) => self.send_create_child(now, req),
                    Err(reason) => self.events.push_back(Event::ChildFailed { name, reason }),
                }
            }
            Task::RekeyIke => {
                let Some(config) = self.config.clone() else {
                    return;
                };
                let group = self
                    .proposal
                    .as_ref()
                    .and_then(|p| p.dh)
                    .or_else(|| {
                        config
                            .ike_proposals
                            .first()
                            .and_then(|s| s.dh.first().copied())
                    })
                    .unwrap_or(DhGroup::Curve25519);
                let req = IkeRekeyRequest {
                    spi_i: random_spi(self.provider.as_mut()),
                    ni: random_vec(self.provider.as_mut(), NONCE_LEN),
                    dh: DhPrivate::generate(group, self.provider.random()),
                    ke_retries: 0,
                };
                let payloads = Self::ike_rekey_payloads(&config.ike_proposals, &req);
                self.send_request(
                    now,
                    ExchangeType::CREATE_CHILD_SA,
                    &payloads,
                    Pending::RekeyIke(req),
                );
            }
            Task::DeleteChildren(spis) => {
                let spis: Vec<u32> = spis
                    .into_iter()
                    .filter(|s| {
                        self.children
                            .iter()
                            .any(|c| c.sa.spi_in == *s && c.state != ChildState::Deleting)
                    })
                    .collect();
                if spis.is_empty() {
                    return;
                }
                for c in self
                    .children
                    .iter_mut()
                    .filter(|c| spis.contains(&c.sa.spi_in))
                {
                    c.state = ChildState::Deleting;
                }
                let payloads = [Payload::Delete(Delete {
                    protocol: ProtocolId::ESP,
                    spi_size: 4,
                    spis: spis.iter().map(|s| spi_bytes(*s)).collect(),
                })];
                self.send_request(
                    now,
                    ExchangeType::INFORMATIONAL,
                    &payloads,
                    Pending::DeleteChildren(spis),
                );
            }
            Task::DeleteUnknown(spi) => {
                let payloads = [Payload::Delete(Delete {
                    protocol: ProtocolId::ESP,
                    spi_size: 4,
                    spis: vec![spi_bytes(spi)],
                })];
                self.send_request(
                    now,
                    ExchangeType::INFORMATIONAL,
                    &payloads,
                    Pending::DeleteChildren(Vec::new()),
                );
            }
            Task::DeleteIke => {
                self.phase = Phase::Deleting;
                let payloads = [ike_delete()];
                self.send_request(
                    now,
                    ExchangeType::INFORMATIONAL,
                    &payloads,
                    Pending::DeleteIke,
                );
            }
            Task::Liveness => {
                self.send_request(now, ExchangeType::INFORMATIONAL, &[], Pending::Liveness);
            }
        }
    }

    fn ike_rekey_payloads(specs: &[ProposalSpec], req: &IkeRekeyRequest) -> Vec<Payload> {
        vec![
            Payload::Sa(
                specs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| p.to_wire(i as u8 + 1, &req.spi_i.to_be_bytes(), true))
                    .collect(),
            ),
            Payload::Nonce(req.ni.clone()),
            Payload::Ke(KeyExchange {
                group: req.dh.group().id(),
                data: req.dh.public_key().to_vec(),
            }),
        ]
    }

    fn send_create_child(&mut self, now: Instant, mut req: ChildRequest) {
        let pfs = req.proposals.first().and_then(|p| p.dh.first().copied());
        if req
            .dh
            .as_ref()
            .map(|d| Some(d.group()) != pfs)
            .unwrap_or(pfs.is_some())
        {
            req.dh = pfs.map(|g| DhPrivate::generate(g, self.provider.random()));
        }
        let mut payloads = Vec::new();
        if let Some(old) = req.rekey_of {
            payloads.push(Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: spi_bytes(old),
                notify_type: NotifyType::REKEY_SA,
                data: Vec::new(),
            }));
        }
        payloads.extend(Self::child_sa_payloads(&req, true));
        payloads.push(Payload::Nonce(req.ni.clone()));
        if let Some(dh) = &req.dh {
            payloads.push(Payload::Ke(KeyExchange {
                group: dh.group().id(),
                data: dh.public_key().to_vec(),
            }));
        }
        payloads.push(Payload::TsI(req.ts_i.clone()));
        payloads.push(Payload::TsR(req.ts_r.clone()));
        self.send_request(
            now,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Pending::CreateChild(req),
        );
    }

    // ----- internals: closing ---------------------------------------------

    fn close(&mut self, reason: Reason) {
        if self.phase == Phase::Closed {
            return;
        }
        let was_established = self.established_at.is_some();
        for c in std::mem::take(&mut self.children) {
            self.events.push_back(Event::ChildDeleted {
                name: c.sa.name,
                spi_in: c.sa.spi_in,
                spi_out: c.sa.spi_out,
                reason: reason.to_string(),
            });
        }
        self.phase = Phase::Closed;
        self.core.out = None;
        self.core.keys = None;
        self.retiring.clear();
        self.ike_collision = None;
        self.init = None;
        self.pending = None;
        self.tasks.clear();
        self.half_open_deadline = None;
        self.events.push_back(Event::Closed {
            reason,
            was_established,
        });
    }

    fn child_deleted(&mut self, spi_in: u32, reason: &str) {
        if let Some(i) = self.children.iter().position(|c| c.sa.spi_in == spi_in) {
            let c = self.children.remove(i);
            self.events.push_back(Event::ChildDeleted {
                name: c.sa.name,
                spi_in: c.sa.spi_in,
                spi_out: c.sa.spi_out,
                reason: reason.to_string(),
            });
        }
    }

    /// Send an INFORMATIONAL with an error notify (best effort) and close.
    fn fail_with_notify(&mut self, now: Instant, t: NotifyType, reason: Reason) {
        if self.core.keys.is_some() {
            self.send_request(
                now,
                ExchangeType::INFORMATIONAL,
                &[notify(t, Vec::new())],
                Pending::Notify,
            );
        }
        self.close(reason);
    }

    fn float_to_natt(&mut self) {
        if self.encap() && !self.natt {
            self.natt = true;
            if self.local.port() == IKE_PORT {
                self.local.set_port(NATT_PORT);
            }
            if self.remote.port() == IKE_PORT {
                self.remote.set_port(NATT_PORT);
            }
        }
    }

    // ----- internals: responses -------------------------------------------

    fn handle_response(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        _remote: SocketAddr,
        data: &[u8],
        msg: Message,
    ) -> Result<(), DatagramError> {
        let Some(out) = self.core.out.as_ref() else {
            return Err(DatagramError::Unexpected("response without a request"));
        };
        if msg.header.message_id != out.id || msg.header.exchange != out.exchange {
            return Err(DatagramError::Unexpected(
                "response to no outstanding request",
            ));
        }
        if msg.header.is_initiator() == self.core.initiator {
            return Err(DatagramError::Unexpected(
                "response with our own initiator flag",
            ));
        }
        if msg.header.exchange == ExchangeType::IKE_SA_INIT {
            return self.handle_sa_init_response(now, msg);
        }
        let payloads = self.core.open(data, &msg).map_err(DatagramError::Open)?;
        self.core.finish_request();
        let pending = self.pending.take();
        match pending {
            Some(Pending::Auth) => self.handle_auth_response(now, payloads),
            Some(Pending::CreateChild(req)) => {
                self.handle_create_child_response(now, req, payloads)
            }
            Some(Pending::RekeyIke(req)) => self.handle_ike_rekey_response(now, req, payloads),
            Some(Pending::DeleteChildren(spis)) => {
                for s in spis {
                    let rekeyed = self.children.iter().any(|c| c.sa.spi_in == s && c.rekeyed);
                    let reason = if rekeyed { "rekeyed" } else { "deleted" };
                    self.child_deleted(s, reason);
                }
            }
            Some(Pending::DeleteIke) => self.close(Reason::LocalDelete),
            Some(Pending::Liveness) => self.events.push_back(Event::Alive),
            Some(Pending::Notify) | Some(Pending::SaInit) | None => {}
        }
        self.run_tasks(now);
        Ok(())
    }

    fn handle_sa_init_response(&mut self, now: Instant, msg: Message) -> Result<(), DatagramError> {
        let config = self.config.clone().expect("initiator config");
        let p = &msg.payloads;
        if let Some(n) = find_notify(p, NotifyType::COOKIE) {
            let init = self.init.as_mut().expect("init");
            if init.retries >= MAX_INIT_RETRIES {
                self.close(Reason::Protocol("too many COOKIE requests".into()));
                return Ok(());
            }
            init.retries += 1;
            init.cookie = Some(n.data.clone());
            self.core.out = None;
            self.send_sa_init(now);
            return Ok(());
        }
        if let Some(n) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD) {
            let group = requested_group(n, &config.ike_proposals);
            let init = self.init.as_mut().expect("init");
            match group {
                Some(g) if init.retries < MAX_INIT_RETRIES && g != init.dh.group() => {
                    init.retries += 1;
                    init.dh = DhPrivate::generate(g, self.provider.random());
                    self.core.out = None;
                    self.send_sa_init(now);
                }
                _ => self.close(Reason::PeerRejectedProposals(
                    NotifyType::INVALID_KE_PAYLOAD,
                )),
            }
            return Ok(());
        }
        if let Some(e) = first_error(p) {
            let reason = if e == NotifyType::NO_PROPOSAL_CHOSEN {
                Reason::PeerRejectedProposals(e)
            } else {
                Reason::PeerError(e)
            };
            self.close(reason);
            return Ok(());
        }
        let c = child_payloads(p);
        let (Some(sa), Some(nr), Some(ke)) = (c.sa, c.nonce, c.ke) else {
            return Err(DatagramError::Invalid(
                "IKE_SA_INIT response without SA, KE or Nonce".into(),
            ));
        };
        if msg.header.spi_r == 0 {
            return Err(DatagramError::Invalid(
                "IKE_SA_INIT response with zero responder SPI".into(),
            ));
        }
        let Some(chosen) = proposal::accept_response(&config.ike_proposals, sa, DhMode::Negotiate)
        else {
            self.close(Reason::Protocol(
                "responder chose a proposal we did not offer".into(),
            ));
            return Ok(());
        };
        let init = self.init.as_mut().expect("init");
        if chosen.dh != Some(init.dh.group()) || ke.group != init.dh.group().id() {
            self.close(Reason::Protocol(
                "responder's KE does not match our group".into(),
            ));
            return Ok(());
        }
        if nr.len() < 16 || nr.len() > 256 {
            return Err(DatagramError::Invalid("nonce length out of range".into()));
        }
        let shared = init
            .dh
            .agree(&ke.data)
            .map_err(|e| DatagramError::Invalid(format!("responder KE: {e}")))?;
        init.nr = nr.to_vec();
        let spi_r = msg.header.spi_r;
        let prf = chosen.prf.expect("IKE PRF");
        let seed = keys::skeyseed(prf, &shared, &init.ni, nr, None);
        let k = keys::derive_ike_keys(
            prf,
            chosen.encr,
            &seed,
            &init.ni,
            nr,
            self.core.spi_i,
            spi_r,
        )
        .map_err(|e| DatagramError::Invalid(format!("key derivation: {e}")))?;
        init.msg_r = msg.encode();
        self.core.spi_r = spi_r;
        self.core.keys = Some(k);
        self.core.finish_request();
        self.pending = None;
        self.proposal = Some(chosen);
        self.detect_nat(&msg, self.core.spi_i, spi_r);
        if config.encap {
            self.nat_local = true;
        }
        self.float_to_natt();
        self.send_auth(now);
        Ok(())
    }

    fn handle_auth_response(&mut self, now: Instant, payloads: Vec<Payload>) {
        let config = self.config.clone().expect("initiator config");
        if find_notify(&payloads, NotifyType::AUTHENTICATION_FAILED).is_some() {
            self.close(Reason::PeerRejectedAuthentication);
            return;
        }
        let idr = payloads.iter().find_map(|p| match p {
            Payload::IdR(i) => Some(i.clone()),
            _ => None,
        });
        let auth_p = payloads.iter().find_map(|p| match p {
            Payload::Auth(a) => Some(a.clone()),
            _ => None,
        });
        let (Some(idr), Some(auth_p)) = (idr, auth_p) else {
            let reason = match first_error(&payloads) {
                Some(e) => Reason::PeerError(e),
                None => Reason::Protocol("IKE_AUTH response without IDr or AUTH".into()),
            };
            self.close(reason);
            return;
        };
        if !config.matches_remote(&idr) {
            let expected = config.remote_id.as_ref().map(id_string).unwrap_or_default();
            self.fail_with_notify(
                now,
                NotifyType::AUTHENTICATION_FAILED,
                Reason::IdentityMismatch {
                    expected,
                    got: id_string(&idr),
                },
            );
            return;
        }
        let init = self.init.as_ref().expect("init");
        let keys = self.core.keys.as_ref().expect("keys");
        let octets = auth::signed_octets(keys.prf, &keys.sk_pr, &init.msg_r, &init.ni, &idr);
        let ok = auth_p.method == AuthMethod::SHARED_KEY_MIC
            && config
                .psk
                .as_ref()
                .is_some_and(|psk| auth::verify_psk_auth(keys.prf, &psk.0, &octets, &auth_p.data));
        if !ok {
            self.fail_with_notify(
                now,
                NotifyType::AUTHENTICATION_FAILED,
                Reason::AuthenticationFailed(id_string(&idr)),
            );
            return;
        }
        self.remote_id = Some(idr.clone());
        self.phase = Phase::Established;
        self.established_at = Some(now);
        self.half_open_deadline = None;
        self.events.push_back(Event::Established {
            name: config.name.clone(),
            proposal: self.proposal.clone().expect("proposal"),
            local_id: config.local_id.clone(),
            remote_id: idr,
            initial_contact: find_notify(&payloads, NotifyType::INITIAL_CONTACT).is_some(),
        });
        let mut init = self.init.take().expect("init");
        if let Some(req) = init.child.take() {
            let ni = std::mem::take(&mut init.ni);
            let nr = std::mem::take(&mut init.nr);
            self.finish_initiated_child(now, req, &payloads, &ni, &nr, None);
        }
    }

    /// Complete a CHILD SA we asked for, from the response payloads.
    /// `shared` is the PFS secret, if any.
    fn finish_initiated_child(
        &mut self,
        now: Instant,
        req: ChildRequest,
        payloads: &[Payload],
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
    ) {
        let c = child_payloads(payloads);
        let fail = |sa: &mut IkeSa, reason: String| {
            sa.restore_rekeying(req.rekey_of);
            sa.events.push_back(Event::ChildFailed {
                name: req.name.clone(),
                reason,
            });
        };
        let (Some(sa_p), Some(tsi), Some(tsr)) = (c.sa, c.tsi, c.tsr) else {
            let reason = match first_error(payloads) {
                Some(e) => format!("peer rejected CHILD_SA '{}': {e}", req.name),
                None => format!("peer sent no CHILD_SA '{}'", req.name),
            };
            fail(self, reason);
            return;
        };
        let dh_mode = if shared.is_some() || req.dh.is_some() {
            DhMode::Negotiate
        } else {
            DhMode::Ignore
        };
        let chosen = proposal::accept_response(&req.proposals, sa_p, dh_mode);
        let spi_out = chosen.as_ref().and_then(|ch| spi_from(&ch.spi));
        let problem = match (&chosen, spi_out) {
            (None, _) => Some("responder chose an ESP proposal we did not offer".to_string()),
            (_, None) => Some("responder sent an invalid SPI".to_string()),
            _ if !ts::all_within(tsi, &req.ts_i) || !ts::all_within(tsr, &req.ts_r) => {
                Some("responder's traffic selectors are not within ours".to_string())
            }
            _ if c.transport != (req.mode == Mode::Transport) => Some(format!(
                "responder did not accept {} mode",
                if req.mode == Mode::Transport {
                    "transport"
                } else {
                    "tunnel"
                }
            )),
            _ => None,
        };
        if let Some(p) = problem {
            fail(self, format!("CHILD_SA '{}' failed: {p}", req.name));
            if spi_out.is_some() {
                // The peer installed its half: ask it to remove it (§1.4.1).
                self.tasks.push_front(Task::DeleteUnknown(req.spi_in));
            }
            let _ = now;
            return;
        }
        let chosen = chosen.expect("checked");
        let keys = self.core.keys.as_ref().expect("keys");
        let child_keys =
            keys::derive_child_keys(keys.prf, &keys.sk_d, chosen.encr, shared, ni, nr, true);
        let sa = ChildSa {
            name: req.name.clone(),
            spi_in: req.spi_in,
            spi_out: spi_out.expect("checked"),
            mode: req.mode,
            local_ts: tsi.to_vec(),
            remote_ts: tsr.to_vec(),
            proposal: chosen,
            keys: child_keys,
            encap: self.encap(),
            local: self.local,
            remote: self.remote,
            rekey_of: req.rekey_of,
            initiator: true,
        };
        let mine = min_nonce(ni, nr);
        self.children.push(Child {
            sa: sa.clone(),
            state: ChildState::Installed,
            rekeyed: false,
            collision: None,
        });
        self.events.push_back(Event::ChildReady(Box::new(sa)));
        if let Some(old) = req.rekey_of {
            self.resolve_child_rekey(old, req.spi_in, mine);
        }
    }

    /// A rekey of `old` failed: it stays in service.
    fn restore_rekeying(&mut self, old: Option<u32>) {
        if let Some(ch) = old.and_then(|o| self.children.iter_mut().find(|c| c.sa.spi_in == o)) {
            if ch.state == ChildState::Rekeying {
                ch.state = ChildState::Installed;
                ch.collision = None;
            }
        }
    }

    /// Our rekey of `old` produced `new`. Decide, per §2.8.1, which SA to
    /// delete.
    fn resolve_child_rekey(&mut self, old: u32, new: u32, new_min: Vec<u8>) {
        let Some(o) = self.children.iter_mut().find(|c| c.sa.spi_in == old) else {
            // The old SA vanished meanwhile (peer deleted it): keep the new.
            return;
        };
        match o.collision.take() {
            Some((_, peer_min)) if new_min < peer_min => {
                // Ours has the lowest nonce: it is redundant, we delete it;
                // the peer, whose SA survives, deletes the old one.
                o.state = ChildState::Rekeyed;
                o.rekeyed = true;
                if let Some(n) = self.children.iter_mut().find(|c| c.sa.spi_in == new) {
                    n.rekeyed = true;
                }
                self.tasks.push_back(Task::DeleteChildren(vec![new]));
            }
            collision => {
                o.state = ChildState::Rekeyed;
                o.rekeyed = true;
                self.tasks.push_back(Task::DeleteChildren(vec![old]));
                // The peer's SA from the collision is redundant; the peer
                // deletes it, and that deletion is part of the rekey.
                if let Some((peer_new, _)) = collision {
                    if let Some(n) = self.children.iter_mut().find(|c| c.sa.spi_in == peer_new) {
                        n.rekeyed = true;
                    }
                }
            }
        }
    }

    fn handle_create_child_response(
        &mut self,
        now: Instant,
        mut req: ChildRequest,
        payloads: Vec<Payload>,
    ) {
        if let Some(n) = find_notify(&payloads, NotifyType::INVALID_KE_PAYLOAD) {
            let g = requested_group(n, &req.proposals);
            if let (Some(g), true) = (g, req.ke_retries < MAX_INIT_RETRIES) {
                req.ke_retries += 1;
                req.dh = Some(DhPrivate::generate(g, self.provider.random()));
                // Put the wanted group first so it goes in KE.
                for p in &mut req.proposals {
                    if let Some(i) = p.dh.iter().position(|x| *x == g) {
                        p.dh.swap(0, i);
                    }
                }
                req.proposals.sort_by_key(|p| p.dh.first() != Some(&g));
                self.send_create_child(now, req);
                return;
            }
        }
        let c = child_payloads(&payloads);
        let shared = match (&req.dh, c.ke) {
            (Some(dh), Some(ke)) if ke.group == dh.group().id() => match dh.agree(&ke.data) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.events.push_back(Event::ChildFailed {
                        name: req.name.clone(),
                        reason: format!("responder KE: {e}"),
                    });
                    self.restore_rekeying(req.rekey_of);
                    return;
                }
            },
            _ => None,
        };
        if c.sa.is_none() {
            // An error answer: reported by finish_initiated_child.
            let ni = req.ni.clone();
            self.finish_initiated_child(now, req, &payloads, &ni, &[], None);
            return;
        }
        let Some(nr) = c.nonce.map(<[u8]>::to_vec) else {
            self.events.push_back(Event::ChildFailed {
                name: req.name.clone(),
                reason: "CREATE_CHILD_SA response without a nonce".into(),
            });
            self.restore_rekeying(req.rekey_of);
            return;
        };
        if req.dh.is_some() && shared.is_none() {
            self.events.push_back(Event::ChildFailed {
                name: req.name.clone(),
                reason: "responder did not answer our PFS key exchange".into(),
            });
            self.restore_rekeying(req.rekey_of);
            return;
        }
        let ni = req.ni.clone();
        let shared: Option<Zeroizing<Vec<u8>>> = shared;
        self.finish_initiated_child(
            now,
            req,
            &payloads,
            &ni,
            &nr,
            shared.as_ref().map(|s| &s[..]),
        );
    }

    fn handle_ike_rekey_response(
        &mut self,
        now: Instant,
        mut req: IkeRekeyRequest,
        payloads: Vec<Payload>,
    ) {
        let config = self.config.clone().expect("config");
        if let Some(n) = find_notify(&payloads, NotifyType::INVALID_KE_PAYLOAD) {
            if let Some(g) = requested_group(n, &config.ike_proposals) {
                if req.ke_retries < MAX_INIT_RETRIES {
                    req.ke_retries += 1;
                    req.dh = DhPrivate::generate(g, self.provider.random());
                    let payloads = Self::ike_rekey_payloads(&config.ike_proposals, &req);
                    self.send_request(
                        now,
                        ExchangeType::CREATE_CHILD_SA,
                        &payloads,
                        Pending::RekeyIke(req),
                    );
                    return;
                }
            }
        }
        let c = child_payloads(&payloads);
        let result = (|| {
            let (Some(sa), Some(nr), Some(ke)) = (c.sa, c.nonce, c.ke) else {
                return Err(match first_error(&payloads) {
                    Some(e) => format!("peer refused IKE rekey: {e}"),
                    None => "IKE rekey response without SA, Nonce or KE".to_string(),
                });
            };
            let chosen = proposal::accept_response(&config.ike_proposals, sa, DhMode::Negotiate)
                .ok_or("responder chose an IKE proposal we did not offer")?;
            let spi_r = <[u8; 8]>::try_from(&chosen.spi[..])
                .map(u64::from_be_bytes)
                .map_err(|_| "responder sent an invalid IKE SPI")?;
            if ke.group != req.dh.group().id() || chosen.dh != Some(req.dh.group()) {
                return Err("responder's KE does not match our group".into());
            }
            let shared = req.dh.agree(&ke.data).map_err(|e| e.to_string())?;
            let new =
                self.derive_rekeyed_core(&chosen, &shared, &req.ni, nr, req.spi_i, spi_r, true)?;
            Ok((new, chosen, min_nonce(&req.ni, nr)))
        })();
        let (new, chosen, ours_min) = match result {
            Ok(x) => x,
            Err(reason) => {
                self.events.push_back(Event::ExchangeFailed {
                    exchange: ExchangeType::CREATE_CHILD_SA,
                    reason,
                });
                // A collision we answered now wins outright.
                if let Some(col) = self.ike_collision.take() {
                    self.switch_core(now, col.core, col.proposal, false);
                }
                return;
            }
        };
        match self.ike_collision.take() {
            Some(col) if ours_min < col.min_nonce => {
                // Our new SA is redundant (§2.8.1): delete it; the peer's
                // survives and the peer deletes the old one.
                let mut redundant = new;
                self.send_ike_delete_on(now, &mut redundant);
                self.switch_core(now, col.core, col.proposal, false);
                self.retiring.push(redundant);
            }
            Some(col) => {
                // The peer's is redundant; it deletes it. Keep it around to
                // answer that DELETE.
                self.switch_core(now, new, chosen, true);
                self.retiring.push(col.core);
            }
            None => self.switch_core(now, new, chosen, true),
        }
    }

    /// Start a DELETE of the IKE SA `core` (an old or redundant one after a
    /// rekey), retransmitted like any request of ours.
    fn send_ike_delete_on(&mut self, now: Instant, core: &mut Core) {
        let id = core.next_request_id();
        let data = core.protect(ExchangeType::INFORMATIONAL, false, id, &[ike_delete()]);
        let wait = self.retransmit_policy().wait_after(0);
        core.begin_request(now, ExchangeType::INFORMATIONAL, data.clone(), wait);
        self.transmit(data);
    }

    /// Keys for a rekeyed IKE SA (§2.18).
    #[allow(clippy::too_many_arguments)]
    fn derive_rekeyed_core(
        &self,
        chosen: &Chosen,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        initiator: bool,
    ) -> Result<Core, String> {
        let old = self.core.keys.as_ref().ok_or("no keys")?;
        let prf = chosen.prf.ok_or("IKE proposal without PRF")?;
        let seed = keys::skeyseed(prf, shared, ni, nr, Some((old.prf, &old.sk_d)));
        let k = keys::derive_ike_keys(prf, chosen.encr, &seed, ni, nr, spi_i, spi_r)
            .map_err(|e| e.to_string())?;
        let mut core = Core::new(spi_i, spi_r, initiator);
        core.keys = Some(k);
        Ok(core)
    }

    /// Make `new` the current IKE SA. If `delete_old`, we initiated the
    /// surviving rekey and delete the old SA; otherwise the peer will, and
    /// the old one stays to answer.
    fn switch_core(&mut self, now: Instant, new: Core, proposal: Chosen, delete_old: bool) {
        let mut old = std::mem::replace(&mut self.core, new);
        self.proposal = Some(proposal.clone());
        self.events.push_back(Event::IkeRekeyed {
            old_spi_i: old.spi_i,
            old_spi_r: old.spi_r,
            spi_i: self.core.spi_i,
            spi_r: self.core.spi_r,
            proposal,
        });
        if delete_old && old.out.is_none() {
            self.send_ike_delete_on(now, &mut old);
        }
        self.retiring.push(old);
        self.run_tasks(now);
    }

    // ----- internals: requests --------------------------------------------

    fn handle_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: Message,
    ) -> Result<(), DatagramError> {
        if msg.header.is_initiator() == self.core.initiator {
            return Err(DatagramError::Unexpected(
                "request with our own initiator flag",
            ));
        }
        let id = msg.header.message_id;
        match self.core.classify_request(id) {
            RequestId::Retransmit(resp) => {
                self.transmit(resp);
                return Ok(());
            }
            RequestId::Drop => {
                return Err(DatagramError::Unexpected(
                    "request with an unexpected message ID",
                ))
            }
            RequestId::New => {}
        }
        if msg.header.exchange == ExchangeType::IKE_SA_INIT {
            return Err(DatagramError::Unexpected("IKE_SA_INIT on an existing SA"));
        }
        let payloads = self.core.open(data, &msg).map_err(DatagramError::Open)?;
        if let Some(t) = msg.unsupported_critical() {
            self.respond(
                id,
                msg.header.exchange,
                &[notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0])],
            );
            return Ok(());
        }
        // Authenticated: follow a peer that moved behind a NAT (§2.23).
        if self.encap()
            && (remote != self.remote || local != self.local)
            && self.phase != Phase::AwaitAuth
        {
            self.remote = remote;
            self.local = local;
            self.natt = local.port() != IKE_PORT;
            for c in &mut self.children {
                c.sa.remote = remote;
                c.sa.local = local;
            }
        }
        match (self.phase, msg.header.exchange) {
            (Phase::AwaitAuth, ExchangeType::IKE_AUTH) => {
                self.local = local;
                self.remote = remote;
                self.natt = local.port() != IKE_PORT;
                self.handle_auth_request(now, id, payloads);
            }
            (Phase::AwaitAuth, _) => {
                return Err(DatagramError::Unexpected("request before IKE_AUTH"))
            }
            (_, ExchangeType::CREATE_CHILD_SA) => {
                self.handle_create_child_request(now, id, payloads)
            }
            (_, ExchangeType::INFORMATIONAL) => {
                self.handle_informational_request(now, id, payloads)
            }
            _ => {
                self.respond(
                    id,
                    msg.header.exchange,
                    &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
                );
            }
        }
        Ok(())
    }

    fn handle_auth_request(&mut self, now: Instant, id: u32, payloads: Vec<Payload>) {
        let idi = payloads.iter().find_map(|p| match p {
            Payload::IdI(i) => Some(i.clone()),
            _ => None,
        });
        let idr = payloads.iter().find_map(|p| match p {
            Payload::IdR(i) => Some(i.clone()),
            _ => None,
        });
        let auth_p = payloads.iter().find_map(|p| match p {
            Payload::Auth(a) => Some(a.clone()),
            _ => None,
        });
        let (Some(idi), Some(auth_p)) = (idi, auth_p) else {
            self.respond(
                id,
                ExchangeType::IKE_AUTH,
                &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
            );
            self.close(Reason::Protocol(
                "IKE_AUTH request without IDi or AUTH".into(),
            ));
            return;
        };
        let auth_failed = |sa: &mut IkeSa, reason: Reason| {
            sa.respond(
                id,
                ExchangeType::IKE_AUTH,
                &[notify(NotifyType::AUTHENTICATION_FAILED, Vec::new())],
            );
            sa.close(reason);
        };
        let Some(config) = self
            .candidates
            .iter()
            .find(|c| c.matches_remote(&idi) && idr.as_ref().is_none_or(|r| *r == c.local_id))
            .cloned()
        else {
            auth_failed(self, Reason::NoMatchingConfig(id_string(&idi)));
            return;
        };
        self.name = config.name.clone();
        let init = self.init.as_ref().expect("init");
        let keys = self.core.keys.as_ref().expect("keys");
        let prf = keys.prf;
        let octets = auth::signed_octets(prf, &keys.sk_pi, &init.msg_i, &init.nr, &idi);
        let my_octets =
            auth::signed_octets(prf, &keys.sk_pr, &init.msg_r, &init.ni, &config.local_id);
        let (ni, nr) = (init.ni.clone(), init.nr.clone());
        let Some(psk) = config.psk.clone() else {
            auth_failed(
                self,
                Reason::NoSecret {
                    local: id_string(&config.local_id),
                    remote: id_string(&idi),
                },
            );
            return;
        };
        if auth_p.method != AuthMethod::SHARED_KEY_MIC
            || !auth::verify_psk_auth(prf, &psk.0, &octets, &auth_p.data)
        {
            auth_failed(self, Reason::AuthenticationFailed(id_string(&idi)));
            return;
        }
        let my_auth = auth::psk_auth(prf, &psk.0, &my_octets);
        self.config = Some(config.clone());
        self.local_id = Some(config.local_id.clone());
        self.remote_id = Some(idi.clone());
        let mut response = vec![
            Payload::IdR(config.local_id.clone()),
            Payload::Auth(Authentication {
                method: AuthMethod::SHARED_KEY_MIC,
                data: my_auth,
            }),
        ];
        let c = child_payloads(&payloads);
        let child = match (c.sa, c.tsi, c.tsr) {
            (Some(sa), Some(tsi), Some(tsr)) => {
                match self.negotiate_child(sa, tsi, tsr, c.transport, None, DhMode::Ignore, None) {
                    Ok(n) => Some(n),
                    Err((t, data, reason)) => {
                        response.push(notify(t, data));
                        self.events.push_back(Event::ChildFailed {
                            name: config
                                .children
                                .first()
                                .map(|c| c.name.clone())
                                .unwrap_or_default(),
                            reason,
                        });
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(n) = &child {
            response.extend(n.response_payloads());
        }
        self.respond(id, ExchangeType::IKE_AUTH, &response);
        self.phase = Phase::Established;
        self.established_at = Some(now);
        self.half_open_deadline = None;
        self.init = None;
        self.events.push_back(Event::Established {
            name: config.name.clone(),
            proposal: self.proposal.clone().expect("proposal"),
            local_id: config.local_id.clone(),
            remote_id: idi,
            initial_contact: find_notify(&payloads, NotifyType::INITIAL_CONTACT).is_some(),
        });
        if let Some(n) = child {
            self.install_child(n, &ni, &nr, None, None);
        }
        self.run_tasks(now);
    }

    /// Responder side of a CHILD SA negotiation: pick a child config whose
    /// selectors overlap, narrow, select a proposal.
    #[allow(clippy::too_many_arguments)]
    fn negotiate_child(
        &mut self,
        sa: &[wire::Proposal],
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        transport: bool,
        ke_group: Option<u16>,
        dh_mode: DhMode,
        only: Option<&str>,
    ) -> Result<Negotiated, (NotifyType, Vec<u8>, String)> {
        let config = self.config.clone().expect("config");
        let mut error = (
            NotifyType::TS_UNACCEPTABLE,
            Vec::new(),
            format!(
                "traffic selectors {} === {} unacceptable",
                fmt_ts(tsi),
                fmt_ts(tsr)
            ),
        );
        for child in config
            .children
            .iter()
            .filter(|c| only.is_none_or(|n| n == c.name))
        {
            // The initiator's TSi is our remote side.
            let n_tsi = ts::narrow(tsi, &child.remote_ts);
            let n_tsr = ts::narrow(tsr, &child.local_ts);
            if n_tsi.is_empty() || n_tsr.is_empty() {
                continue;
            }
            if transport != (child.mode == Mode::Transport) && child.mode == Mode::Transport {
                error = (
                    NotifyType::NO_PROPOSAL_CHOSEN,
                    Vec::new(),
                    format!("CHILD_SA '{}' requires transport mode", child.name),
                );
                continue;
            }
            let chosen = match dh_mode {
                DhMode::Negotiate => select_preferring_ke(&child.esp_proposals, sa, ke_group),
                DhMode::Ignore => proposal::select(&child.esp_proposals, sa, DhMode::Ignore),
            };
            let Some(chosen) = chosen else {
                error = (
                    NotifyType::NO_PROPOSAL_CHOSEN,
                    Vec::new(),
                    format!(
                        "no acceptable ESP proposal for CHILD_SA '{}': NO_PROPOSAL_CHOSEN",
                        child.name
                    ),
                );
                continue;
            };
            if let (Some(g), DhMode::Negotiate) = (chosen.dh, &dh_mode) {
                if ke_group != Some(g.id()) {
                    return Err((
                        NotifyType::INVALID_KE_PAYLOAD,
                        g.id().to_be_bytes().to_vec(),
                        format!("peer's KE is not {}", g.name()),
                    ));
                }
            }
            let Some(spi_out) = spi_from(&chosen.spi) else {
                return Err((
                    NotifyType::INVALID_SYNTAX,
                    Vec::new(),
                    "invalid ESP SPI".into(),
                ));
            };
            let mode = if transport && child.mode == Mode::Transport {
                Mode::Transport
            } else {
                Mode::Tunnel
            };
            return Ok(Negotiated {
                name: child.name.clone(),
                spi_in: self.provider.alloc_child_spi(),
                spi_out,
                chosen,
                tsi: n_tsi,
                tsr: n_tsr,
                mode,
                dh: None,
            });
        }
        Err(error)
    }

    fn install_child(
        &mut self,
        n: Negotiated,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        rekey_of: Option<u32>,
    ) -> u32 {
        let keys = self.core.keys.as_ref().expect("keys");
        let child_keys =
            keys::derive_child_keys(keys.prf, &keys.sk_d, n.chosen.encr, shared, ni, nr, false);
        let sa = ChildSa {
            name: n.name,
            spi_in: n.spi_in,
            spi_out: n.spi_out,
            mode: n.mode,
            // Our local side is the initiator's TSr.
            local_ts: n.tsr,
            remote_ts: n.tsi,
            proposal: n.chosen,
            keys: child_keys,
            encap: self.encap(),
            local: self.local,
            remote: self.remote,
            rekey_of,
            initiator: false,
        };
        self.children.push(Child {
            sa: sa.clone(),
            state: ChildState::Installed,
            rekeyed: false,
            collision: None,
        });
        self.events.push_back(Event::ChildReady(Box::new(sa)));
        n.spi_in
    }

    fn handle_create_child_request(&mut self, now: Instant, id: u32, payloads: Vec<Payload>) {
        if self.phase == Phase::Deleting {
            self.respond(
                id,
                ExchangeType::CREATE_CHILD_SA,
                &[notify(NotifyType::TEMPORARY_FAILURE, Vec::new())],
            );
            return;
        }
        let c = child_payloads(&payloads);
        let (Some(sa), Some(ni)) = (c.sa, c.nonce) else {
            self.respond(
                id,
                ExchangeType::CREATE_CHILD_SA,
                &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        if sa.first().is_some_and(|p| p.protocol == ProtocolId::IKE) {
            self.handle_ike_rekey_request(now, id, sa, ni, c.ke);
            return;
        }
        let Some((tsi, tsr)) = c.tsi.zip(c.tsr) else {
            self.respond(
                id,
                ExchangeType::CREATE_CHILD_SA,
                &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        // CHILD rekey: the notify's SPI is the initiator's inbound SPI, i.e.
        // our outbound SPI of the old SA (§1.3.3).
        let rekey = match c.rekey {
            Some(n) => {
                let old =
                    spi_from(&n.spi).and_then(|s| self.children.iter().find(|c| c.sa.spi_out == s));
                match old {
                    Some(o) if matches!(o.state, ChildState::Installed | ChildState::Rekeying) => {
                        Some((
                            o.sa.spi_in,
                            o.sa.name.clone(),
                            o.state == ChildState::Rekeying,
                        ))
                    }
                    Some(_) => {
                        self.respond(
                            id,
                            ExchangeType::CREATE_CHILD_SA,
                            &[notify(NotifyType::TEMPORARY_FAILURE, Vec::new())],
                        );
                        return;
                    }
                    None => {
                        let mut n = n.clone();
                        n.notify_type = NotifyType::CHILD_SA_NOT_FOUND;
                        self.respond(id, ExchangeType::CREATE_CHILD_SA, &[Payload::Notify(n)]);
                        return;
                    }
                }
            }
            None => None,
        };
        let only = rekey.as_ref().map(|r| r.1.clone());
        let negotiated = self.negotiate_child(
            sa,
            tsi,
            tsr,
            c.transport,
            c.ke.map(|k| k.group),
            DhMode::Negotiate,
            only.as_deref(),
        );
        let mut n = match negotiated {
            Ok(n) => n,
            Err((t, data, reason)) => {
                self.respond(id, ExchangeType::CREATE_CHILD_SA, &[notify(t, data)]);
                if t != NotifyType::INVALID_KE_PAYLOAD {
                    self.events.push_back(Event::ChildFailed {
                        name: only.unwrap_or_default(),
                        reason,
                    });
                }
                return;
            }
        };
        let nr = random_vec(self.provider.as_mut(), NONCE_LEN);
        let mut shared = None;
        if let (Some(g), Some(ke)) = (n.chosen.dh, c.ke) {
            let dh = DhPrivate::generate(g, self.provider.random());
            match dh.agree(&ke.data) {
                Ok(s) => shared = Some(s),
                Err(_) => {
                    self.respond(
                        id,
                        ExchangeType::CREATE_CHILD_SA,
                        &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
                    );
                    return;
                }
            }
            n.dh = Some(dh);
        }
        let mut response = Vec::new();
        if n.mode == Mode::Transport {
            response.push(notify(NotifyType::USE_TRANSPORT_MODE, Vec::new()));
        }
        response.push(Payload::Sa(vec![n
            .chosen
            .to_wire(n.chosen.number, &spi_bytes(n.spi_in))]));
        response.push(Payload::Nonce(nr.clone()));
        if let Some(dh) = &n.dh {
            response.push(Payload::Ke(KeyExchange {
                group: dh.group().id(),
                data: dh.public_key().to_vec(),
            }));
        }
        response.push(Payload::TsI(n.tsi.clone()));
        response.push(Payload::TsR(n.tsr.clone()));
        self.respond(id, ExchangeType::CREATE_CHILD_SA, &response);
        let rekey_of = rekey.as_ref().map(|r| r.0);
        let new_spi = self.install_child(n, ni, &nr, shared.as_ref().map(|s| &s[..]), rekey_of);
        if let Some((old, _, colliding)) = rekey {
            let peer_min = min_nonce(ni, &nr);
            if let Some(o) = self.children.iter_mut().find(|c| c.sa.spi_in == old) {
                if colliding {
                    o.collision = Some((new_spi, peer_min));
                } else {
                    // The peer initiated the rekey; it deletes the old SA.
                    o.state = ChildState::Rekeyed;
                    o.rekeyed = true;
                }
            }
        }
        self.run_tasks(now);
    }

    fn handle_ike_rekey_request(
        &mut self,
        now: Instant,
        id: u32,
        sa: &[wire::Proposal],
        ni: &[u8],
        ke: Option<&KeyExchange>,
    ) {
        let config = self.config.clone().expect("config");
        let reply_err = |s: &mut IkeSa, t: NotifyType, data: Vec<u8>| {
            s.respond(id, ExchangeType::CREATE_CHILD_SA, &[notify(t, data)]);
        };
        if self
            .children
            .iter()
            .any(|c| c.state == ChildState::Rekeying)
            || matches!(
                self.pending,
                Some(Pending::CreateChild(_)) | Some(Pending::DeleteChildren(_))
            )
        {
            // §2.25: an IKE rekey while we create or delete CHILD SAs.
            reply_err(self, NotifyType::TEMPORARY_FAILURE, Vec::new());
            return;
        }
        let Some(chosen) = select_preferring_ke(&config.ike_proposals, sa, ke.map(|k| k.group))
        else {
            reply_err(self, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
            return;
        };
        let g = chosen.dh.expect("IKE DH");
        let Some(ke) = ke.filter(|k| k.group == g.id()) else {
            reply_err(
                self,
                NotifyType::INVALID_KE_PAYLOAD,
                g.id().to_be_bytes().to_vec(),
            );
            return;
        };
        let Ok(spi_i) = <[u8; 8]>::try_from(&chosen.spi[..]).map(u64::from_be_bytes) else {
            reply_err(self, NotifyType::INVALID_SYNTAX, Vec::new());
            return;
        };
        let dh = DhPrivate::generate(g, self.provider.random());
        let Ok(shared) = dh.agree(&ke.data) else {
            reply_err(self, NotifyType::INVALID_SYNTAX, Vec::new());
            return;
        };
        let spi_r = random_spi(self.provider.as_mut());
        let nr = random_vec(self.provider.as_mut(), NONCE_LEN);
        let new = match self.derive_rekeyed_core(&chosen, &shared, ni, &nr, spi_i, spi_r, false) {
            Ok(c) => c,
            Err(_) => {
                reply_err(self, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
                return;
            }
        };
        let response = [
            Payload::Sa(vec![chosen.to_wire(chosen.number, &spi_r.to_be_bytes())]),
            Payload::Nonce(nr.clone()),
            Payload::Ke(KeyExchange {
                group: g.id(),
                data: dh.public_key().to_vec(),
            }),
        ];
        self.respond(id, ExchangeType::CREATE_CHILD_SA, &response);
        if matches!(self.pending, Some(Pending::RekeyIke(_))) {
            // Collision (§2.8.1): decide when our own rekey completes.
            self.ike_collision = Some(IkeCollision {
                core: new,
                min_nonce: min_nonce(ni, &nr),
                proposal: chosen,
            });
        } else {
            // The peer initiated; it will delete the old SA.
            self.switch_core(now, new, chosen, false);
        }
    }

    fn handle_informational_request(&mut self, now: Instant, id: u32, payloads: Vec<Payload>) {
        let deletes: Vec<&Delete> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Delete(d) => Some(d),
                _ => None,
            })
            .collect();
        if deletes.iter().any(|d| d.protocol == ProtocolId::IKE) {
            self.respond(id, ExchangeType::INFORMATIONAL, &[]);
            self.close(Reason::PeerDeleted);
            return;
        }
        let mut ours = Vec::new();
        for d in deletes.iter().filter(|d| d.protocol == ProtocolId::ESP) {
            for spi in d.spis.iter().filter_map(|s| spi_from(s)) {
                let Some(c) = self.children.iter().find(|c| c.sa.spi_out == spi) else {
                    continue;
                };
                let spi_in = c.sa.spi_in;
                let reason = if c.rekeyed {
                    "rekeyed"
                } else {
                    "deleted by peer"
                };
                // §1.4.1: if we are deleting it too, answer without it.
                if c.state != ChildState::Deleting {
                    ours.push(spi_in);
                }
                self.child_deleted(spi_in, reason);
            }
        }
        let response: Vec<Payload> = if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: ours.iter().map(|s| spi_bytes(*s)).collect(),
            })]
        };
        self.respond(id, ExchangeType::INFORMATIONAL, &response);
        if let Some(e) = first_error(&payloads) {
            if e == NotifyType::AUTHENTICATION_FAILED && self.established_at.is_some() {
                // The initiator refused our AUTH after we considered it done.
                self.close(Reason::PeerRejectedAuthentication);
                return;
            }
        }
        self.run_tasks(now);
    }

    /// A datagram for an old IKE SA after a rekey: answer its DELETE, finish
    /// our DELETE, refuse anything else.
    fn handle_retiring(
        &mut self,
        i: usize,
        data: &[u8],
        msg: Message,
    ) -> Result<(), DatagramError> {
        let core = &mut self.retiring[i];
        let payloads = core.open(data, &msg).map_err(DatagramError::Open)?;
        let id = msg.header.message_id;
        if msg.header.is_response() {
            if core.out.as_ref().is_some_and(|o| o.id == id) {
                let c = self.retiring.remove(i);
                self.events.push_back(Event::Retired {
                    spi_i: c.spi_i,
                    spi_r: c.spi_r,
                });
            }
            return Ok(());
        }
        match core.classify_request(id) {
            RequestId::Retransmit(r) => {
                self.transmit(r);
                return Ok(());
            }
            RequestId::Drop => {
                return Err(DatagramError::Unexpected("old SA: unexpected message ID"))
            }
            RequestId::New => {}
        }
        let is_delete = payloads
            .iter()
            .any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::IKE));
        let answer = if is_delete {
            Vec::new()
        } else {
            vec![notify(NotifyType::TEMPORARY_FAILURE, Vec::new())]
        };
        let resp = core.protect(msg.header.exchange, true, id, &answer);
        core.answered(id, resp.clone());
        self.transmit(resp);
        if is_delete {
            let c = self.retiring.remove(i);
            self.events.push_back(Event::Retired {
                spi_i: c.spi_i,
                spi_r: c.spi_r,
            });
        }
        Ok(())
    }
}

/// Select with `DhMode::Negotiate`, preferring the group the peer already
/// sent a KE payload for, so an acceptable KE never costs an
/// INVALID_KE_PAYLOAD round trip.
fn select_preferring_ke(
    ours: &[ProposalSpec],
    theirs: &[wire::Proposal],
    ke_group: Option<u16>,
) -> Option<Chosen> {
    if let Some(g) = ke_group.and_then(DhGroup::from_id) {
        let only_g: Vec<ProposalSpec> = ours
            .iter()
            .filter(|s| s.dh.contains(&g))
            .map(|s| ProposalSpec {
                dh: vec![g],
                ..s.clone()
            })
            .collect();
        if let Some(c) = proposal::select(&only_g, theirs, DhMode::Negotiate) {
            return Some(c);
        }
    }
    proposal::select(ours, theirs, DhMode::Negotiate)
}

/// A CHILD SA the responder agreed to.
struct Negotiated {
    name: String,
    spi_in: u32,
    spi_out: u32,
    chosen: Chosen,
    tsi: Vec<TrafficSelector>,
    tsr: Vec<TrafficSelector>,
    mode: Mode,
    dh: Option<DhPrivate>,
}

impl Negotiated {
    fn response_payloads(&self) -> Vec<Payload> {
        let mut v = Vec::new();
        if self.mode == Mode::Transport {
            v.push(notify(NotifyType::USE_TRANSPORT_MODE, Vec::new()));
        }
        v.push(Payload::Sa(vec![self
            .chosen
            .to_wire(self.chosen.number, &spi_bytes(self.spi_in))]));
        v.push(Payload::TsI(self.tsi.clone()));
        v.push(Payload::TsR(self.tsr.clone()));
        v
    }
}

fn fmt_ts(list: &[TrafficSelector]) -> String {
    list.iter()
        .map(|t| ts::Display(t).to_string())
        .collect::<Vec<_>>()
        .join(" ")
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
    Invalid(String),
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
