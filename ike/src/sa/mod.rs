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
//! DELETE and liveness). Message IDs use a window of one (§2.3). IKE
//! fragmentation (RFC 7383) once both sides announced it in IKE_SA_INIT.
//!
//! Layout: this module is the shell, `IkeSa`'s state, its inputs and
//! outputs, and the dispatch of requests and responses by exchange type;
//! `message` is the message layer (SK payload protection, message IDs,
//! retransmission and the response cache); `exchange` has one module per
//! exchange with both of its halves; `fragment` splitting and bounded
//! reassembly of fragments, `defrag` their use on the SA; `types` the
//! public inputs and outputs;
//! `payloads` the payload helpers the exchanges share; `natd` NAT detection
//! hashes and cookies.
//!
//! Invariants: a `Closed` SA emits nothing further; every CHILD SA reported
//! with `ChildReady` is later reported with `ChildDeleted` (also when the IKE
//! SA closes); keys never appear in `Debug` output or events other than
//! `ChildReady`, which carries them for the dataplane.

mod candidates;
mod defrag;
mod error;
mod exchange;
mod fragment;
mod message;
pub mod natd;
mod payloads;
mod provider;
mod timers;
mod types;
mod view;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use self::exchange::create_child::ChildRequest;
use self::exchange::ike_rekey::{IkeCollision, IkeRekeyRequest};
use self::exchange::sa_init::InitState;
use self::message::{MessageLayer, RequestId};
use self::payloads::notify;
use crate::config::PeerConfigRef;
use crate::proposal::Chosen;
use crate::wire::{
    Delete, ExchangeType, Identification, Message, NotifyType, Payload, PayloadType,
};

pub use self::candidates::{Candidates, CandidatesRef};
pub use self::error::{BadChild, ChildError, PeerMisbehaved, RekeyError};
pub use self::exchange::sa_init::CookieCheck;
#[doc(hidden)]
pub use self::fragment::fuzz_reassembly;
pub use self::fragment::{
    FragmentError, FragmentStats, MAX_FRAGMENTS, MAX_REASSEMBLED_LEN, REASSEMBLY_TIMEOUT,
};
pub use self::message::OpenError;
pub use self::natd::CookieJar;
pub use self::provider::{random_child_spi, Provider};
pub use self::timers::{Cost, KeyWork, Timers, MAX_REKEY_RETRIES};
pub use self::types::{
    local_spi_of, Accept, ChildSa, Command, DatagramError, Event, Reason, RekeyRetry, Responder,
    State, Transmit,
};

/// Nonce length we send: 32 bytes, at least half the largest PRF key (§2.10).
const NONCE_LEN: usize = 32;
/// How long a responder waits for IKE_AUTH after IKE_SA_INIT.
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How many COOKIE / INVALID_KE_PAYLOAD round trips an initiator accepts.
const MAX_INIT_RETRIES: u8 = 3;
const NATT_PORT: u16 = 4500;
const IKE_PORT: u16 = 500;

/// Where the SA is, without the state of each stage (see `Stage`).
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

/// Where the SA is, with the state that exists only there: the IKE_SA_INIT
/// exchange's nonces, DH key and messages live from IKE_SA_INIT until
/// IKE_AUTH completes, and nowhere else.
enum Stage {
    InitSent(Box<InitState>),
    AuthSent(Box<InitState>),
    AwaitAuth(Box<InitState>),
    Established,
    Deleting,
    Closed,
}

impl Stage {
    fn phase(&self) -> Phase {
        match self {
            Stage::InitSent(_) => Phase::InitSent,
            Stage::AuthSent(_) => Phase::AuthSent,
            Stage::AwaitAuth(_) => Phase::AwaitAuth,
            Stage::Established => Phase::Established,
            Stage::Deleting => Phase::Deleting,
            Stage::Closed => Phase::Closed,
        }
    }

    /// The handshake's state, while the SA is in the handshake.
    fn init(&self) -> Option<&InitState> {
        match self {
            Stage::InitSent(i) | Stage::AuthSent(i) | Stage::AwaitAuth(i) => Some(i),
            _ => None,
        }
    }

    fn init_mut(&mut self) -> Option<&mut InitState> {
        match self {
            Stage::InitSent(i) | Stage::AuthSent(i) | Stage::AwaitAuth(i) => Some(i),
            _ => None,
        }
    }

    /// IKE_SA_INIT answered: on to IKE_AUTH (initiator).
    fn auth_sent(self) -> Stage {
        match self {
            Stage::InitSent(i) => Stage::AuthSent(i),
            s => s,
        }
    }

    /// Leave the handshake: its state is returned and dropped from here.
    fn finish_handshake(&mut self, next: Stage) -> Option<Box<InitState>> {
        match std::mem::replace(self, next) {
            Stage::InitSent(i) | Stage::AuthSent(i) | Stage::AwaitAuth(i) => Some(i),
            _ => None,
        }
    }
}

/// What our outstanding request on the current message layer is.
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
    /// When we rekey it (cleared once the rekey starts).
    rekey_at: Option<Instant>,
    /// The interval `rekey_at` was armed with (`Timers::child_rekey`).
    rekey_interval: Duration,
    /// The KE group its rekeys carry when our ESP proposals name none: the
    /// group it was negotiated with, or the one a refused rekey taught us
    /// the peer wants (RFC 7296 §1.3.3 allows PFS on any rekey).
    pfs: Option<crate::crypto::DhGroup>,
    /// The peer refused PFS for it (or its predecessor): rekey without KE.
    pfs_refused: bool,
    /// Our rekeys of it that failed in a row (reset by a new SA).
    rekey_failures: u32,
}

/// One IKE SA, either role.
pub struct IkeSa {
    name: String,
    config: Option<PeerConfigRef>,
    candidates: CandidatesRef,
    provider: Box<dyn Provider>,
    local: SocketAddr,
    remote: SocketAddr,
    natt: bool,
    nat_local: bool,
    nat_remote: bool,
    stage: Stage,
    core: MessageLayer,
    /// Old IKE SAs after a rekey, kept to finish their DELETE exchange.
    retiring: Vec<MessageLayer>,
    pending: Option<Pending>,
    tasks: VecDeque<Task>,
    children: Vec<Child>,
    ike_collision: Option<IkeCollision>,
    proposal: Option<Chosen>,
    local_id: Option<Identification>,
    remote_id: Option<Identification>,
    /// The subject of the certificate the peer authenticated with.
    remote_cert: Option<String>,
    half_open_deadline: Option<Instant>,
    established_at: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    retransmit_override: Option<crate::config::Retransmit>,
    timers: Timers,
    /// The next liveness check, while established.
    dpd_at: Option<Instant>,
    /// The next IKE rekey, while established.
    rekey_at: Option<Instant>,
    frag_stats: FragmentStats,
}

/// The next item of an output queue. A drained queue gives its buffer
/// back: an established SA sits idle between bursts, and 10,000 of them
/// would otherwise each keep a handshake's worth of queue capacity.
fn drain<T>(q: &mut VecDeque<T>) -> Option<T> {
    let next = q.pop_front();
    if next.is_none() && q.capacity() > 0 {
        *q = VecDeque::new();
    }
    next
}

impl fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeSa")
            .field("name", &self.name)
            .field("spi_i", &format_args!("{:016x}", self.core.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.core.spi_r))
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl IkeSa {
    fn phase(&self) -> Phase {
        self.stage.phase()
    }

    /// The handshake's state and the new IKE SA's keys, which IKE_AUTH
    /// needs; a message that arrives outside the handshake has neither.
    fn handshake(&self) -> Result<(&InitState, &crate::keys::IkeKeys), DatagramError> {
        match (self.stage.init(), self.core.keys.as_ref()) {
            (Some(init), Some(keys)) => Ok((init, keys)),
            _ => Err(DatagramError::Unexpected("IKE_AUTH outside the handshake")),
        }
    }

    /// Our connection: the initiator's from the start, the responder's once
    /// IKE_AUTH named it.
    fn our_config(&self) -> Result<PeerConfigRef, DatagramError> {
        self.config
            .clone()
            .ok_or(DatagramError::Unexpected("no connection chosen yet"))
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        drain(&mut self.transmits)
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        drain(&mut self.events)
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase() == Phase::Closed {
            return None;
        }
        let cores = std::iter::once(&self.core).chain(self.retiring.iter());
        cores
            .filter_map(|c| c.out.as_ref().map(|o| o.next))
            .chain(self.half_open_deadline)
            .chain(self.next_periodic())
            .chain(self.core.defrag_request.as_ref().map(|r| r.deadline))
            .chain(self.core.defrag_response.as_ref().map(|r| r.deadline))
            .min()
    }

    /// Act on every deadline that is due: close a half-open SA that waited
    /// too long, start liveness checks and rekeys (see `timers`),
    /// retransmit, and fail exchanges whose tries are exhausted.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase() == Phase::Closed {
            return;
        }
        if let Some(d) = self.half_open_deadline {
            if now >= d && self.phase() == Phase::AwaitAuth {
                self.close(Reason::HalfOpenTimeout(HALF_OPEN_TIMEOUT));
                return;
            }
        }
        self.expire_reassembly(now);
        self.fire_periodic(now);
        self.retransmit_due(now);
        self.run_tasks(now);
    }

    /// Retransmit what is due; fail exchanges whose tries are exhausted.
    fn retransmit_due(&mut self, now: Instant) {
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
                        self.transmit_all(data);
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
                    let reason = if self.phase() == Phase::Deleting {
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
        self.transmit_all(data);
    }

    /// Queue work. Commands that need an established SA wait until then.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        if self.phase() == Phase::Closed {
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
            Command::Delete => match self.phase() {
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
        if self.phase() == Phase::Closed {
            return;
        }
        if matches!(self.phase(), Phase::Established | Phase::Deleting) {
            let id = self.core.next_request_id();
            let payloads = [Payload::Delete(Delete::ike())];
            let data = self
                .core
                .protect(ExchangeType::INFORMATIONAL, false, id, &payloads, None);
            self.transmit_all(data);
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
        if self.phase() == Phase::Closed {
            return Err(DatagramError::Closed);
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                if crate::wire::Header::decode(data)
                    .is_ok_and(|h| h.next_payload == PayloadType::SKF)
                {
                    self.frag_stats.fragments_dropped =
                        self.frag_stats.fragments_dropped.saturating_add(1);
                }
                return Err(DatagramError::Malformed(e));
            }
        };
        let h = &msg.header;
        let current = h.spi_i == self.core.spi_i
            && (h.spi_r == self.core.spi_r
                || (h.spi_r == 0 && h.exchange == ExchangeType::IKE_SA_INIT)
                || (self.phase() == Phase::InitSent && h.is_response()));
        if current {
            if matches!(msg.payloads.last(), Some(Payload::EncryptedFragment(_))) {
                return self.handle_fragment(now, local, remote, data, msg);
            }
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

    fn transmit_all(&mut self, data: Vec<Vec<u8>>) {
        if data.len() > 1 {
            let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
            self.frag_stats.fragments_sent = self.frag_stats.fragments_sent.saturating_add(n);
        }
        for d in data {
            self.transmit(d);
        }
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
            vec![self.core.plain(exchange, false, id, payloads.to_vec())]
        } else {
            self.protect(exchange, false, id, payloads)
        };
        let wait = self.retransmit_policy().wait_after(0);
        self.core.begin_request(now, exchange, data.clone(), wait);
        self.pending = Some(pending);
        self.transmit_all(data);
    }

    fn respond(&mut self, id: u32, exchange: ExchangeType, payloads: &[Payload]) {
        let data = self.protect(exchange, true, id, payloads);
        self.core.answered(id, data.clone());
        self.transmit_all(data);
    }

    fn run_tasks(&mut self, now: Instant) {
        while self.core.out.is_none() && self.phase() == Phase::Established {
            let Some(task) = self.tasks.pop_front() else {
                return;
            };
            self.start_task(now, task);
        }
    }

    /// Start the initiator half of `task`'s exchange.
    fn start_task(&mut self, now: Instant, task: Task) {
        match task {
            Task::CreateChild { name, rekey_of } => self.start_create_child(now, name, rekey_of),
            Task::RekeyIke => self.start_ike_rekey(now),
            Task::DeleteChildren(spis) => self.start_delete_children(now, spis),
            Task::DeleteUnknown(spi) => self.start_delete_unknown(now, spi),
            Task::DeleteIke => self.start_delete_ike(now),
            Task::Liveness => self.start_liveness(now),
        }
    }

    fn close(&mut self, reason: Reason) {
        if self.phase() == Phase::Closed {
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
        self.stage = Stage::Closed;
        self.core.out = None;
        self.core.keys = None;
        self.retiring.clear();
        self.ike_collision = None;
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
        self.process_response(now, payloads)
    }

    /// The opened (or reassembled) response to our outstanding request.
    fn process_response(
        &mut self,
        now: Instant,
        payloads: Vec<Payload>,
    ) -> Result<(), DatagramError> {
        self.core.finish_request();
        let pending = self.pending.take();
        match pending {
            Some(Pending::Auth) => self.handle_auth_response(now, payloads)?,
            Some(Pending::CreateChild(req)) => {
                self.handle_create_child_response(now, req, payloads)
            }
            Some(Pending::RekeyIke(req)) => self.handle_ike_rekey_response(now, req, payloads),
            Some(Pending::DeleteChildren(spis)) => self.handle_delete_children_response(spis),
            Some(Pending::DeleteIke) => self.close(Reason::LocalDelete),
            Some(Pending::Liveness) => self.events.push_back(Event::Alive),
            Some(Pending::Notify) | Some(Pending::SaInit) | None => {}
        }
        self.run_tasks(now);
        Ok(())
    }

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
        match self.core.classify_request(id, data) {
            RequestId::Retransmit(resp) => {
                self.transmit_all(resp);
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
        let critical = msg.unsupported_critical();
        self.process_request(
            now,
            local,
            remote,
            msg.header.exchange,
            id,
            critical,
            payloads,
        )
    }

    /// The opened (or reassembled) request `id` of the peer. `critical`:
    /// the first outer payload we do not understand marked critical.
    #[allow(clippy::too_many_arguments)]
    fn process_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        exchange: ExchangeType,
        id: u32,
        critical: Option<PayloadType>,
        payloads: Vec<Payload>,
    ) -> Result<(), DatagramError> {
        if let Some(t) = critical {
            self.respond(
                id,
                exchange,
                &[notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0])],
            );
            return Ok(());
        }
        // Authenticated: follow a peer that moved behind a NAT (§2.23).
        if self.encap()
            && (remote != self.remote || local != self.local)
            && self.phase() != Phase::AwaitAuth
        {
            self.remote = remote;
            self.local = local;
            self.natt = local.port() != IKE_PORT;
            for c in &mut self.children {
                c.sa.remote = remote;
                c.sa.local = local;
            }
        }
        match (self.phase(), exchange) {
            (Phase::AwaitAuth, ExchangeType::IKE_AUTH) => {
                self.local = local;
                self.remote = remote;
                self.natt = local.port() != IKE_PORT;
                self.handle_auth_request(now, id, payloads)?;
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
                    exchange,
                    &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
                );
            }
        }
        Ok(())
    }
}
