//! IKE_SA_INIT (RFC 7296 §1.2): both halves. The initiator offers its
//! proposals, KE and nonce and follows COOKIE (§2.6) and INVALID_KE_PAYLOAD
//! answers; the responder picks a proposal (preferring the KE group the
//! initiator sent), derives SKEYSEED and answers. NAT detection (§2.23)
//! and the float to port 4500 happen here.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::PeerConfigRef;
use crate::crypto::{DhGroup, DhPrivate};
use crate::keys;
use crate::proposal::{self, DhMode};
use crate::sa::message::MessageLayer;
use crate::sa::natd::{natd_hash, CookieJar};
use crate::sa::payloads::{
    child_payloads, first_error, notify, random_spi, random_vec, requested_group,
    select_preferring_ke,
};
use crate::sa::{
    Accept, DatagramError, Event, IkeSa, PeerMisbehaved, Pending, Provider, Reason, Responder,
    Stage, Task, Timers, Transmit, HALF_OPEN_TIMEOUT, IKE_PORT, MAX_INIT_RETRIES, NATT_PORT,
    NONCE_LEN,
};
use crate::wire::{self, find_notify, ExchangeType, KeyExchange, Message, NotifyType, Payload};

use super::create_child::ChildRequest;

/// IKE_SA_INIT data needed until IKE_AUTH completes.
pub(in crate::sa) struct InitState {
    pub(in crate::sa) ni: Vec<u8>,
    pub(in crate::sa) nr: Vec<u8>,
    pub(in crate::sa) dh: DhPrivate,
    pub(in crate::sa) cookie: Option<Vec<u8>>,
    /// The IKE_SA_INIT messages as sent, for the AUTH payloads (§2.15).
    pub(in crate::sa) msg_i: Vec<u8>,
    pub(in crate::sa) msg_r: Vec<u8>,
    pub(in crate::sa) retries: u8,
    /// Initiator: the CHILD SA to negotiate in IKE_AUTH.
    pub(in crate::sa) child: Option<ChildRequest>,
    /// The hashes of the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4);
    /// empty if it sent none.
    pub(in crate::sa) peer_hashes: Vec<u16>,
    /// The peer sent a CERTREQ (in IKE_SA_INIT or IKE_AUTH).
    pub(in crate::sa) peer_certreq: bool,
}

/// The hash identifiers of a SIGNATURE_HASH_ALGORITHMS notify among
/// `payloads` (empty if none).
fn peer_hashes(payloads: &[Payload]) -> Vec<u16> {
    find_notify(payloads, NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .map(|n| crate::pki::sig::parse_hash_notify(&n.data))
        .unwrap_or_default()
}

/// The SIGNATURE_HASH_ALGORITHMS notify we send.
fn hash_notify() -> Payload {
    notify(
        NotifyType::SIGNATURE_HASH_ALGORITHMS,
        crate::pki::sig::hash_notify_data(),
    )
}

impl IkeSa {
    /// An SA with nothing negotiated yet; `initiate` and `accept` fill in
    /// their role's state.
    fn fresh(
        provider: Box<dyn Provider>,
        local: SocketAddr,
        remote: SocketAddr,
        core: MessageLayer,
        stage: Stage,
    ) -> IkeSa {
        IkeSa {
            name: String::new(),
            config: None,
            candidates: Default::default(),
            provider,
            local,
            remote,
            natt: false,
            nat_local: false,
            nat_remote: false,
            stage,
            core,
            retiring: Vec::new(),
            pending: None,
            tasks: VecDeque::new(),
            children: Vec::new(),
            ike_collision: None,
            proposal: None,
            local_id: None,
            remote_id: None,
            remote_cert: None,
            half_open_deadline: None,
            established_at: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            retransmit_override: None,
            timers: Timers::default(),
            dpd_at: None,
            rekey_at: None,
            frag_stats: Default::default(),
        }
    }

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
        let init = InitState {
            ni,
            nr: Vec::new(),
            dh,
            cookie: None,
            msg_i: Vec::new(),
            msg_r: Vec::new(),
            retries: 0,
            child: None,
            peer_hashes: Vec::new(),
            peer_certreq: false,
        };
        let core = MessageLayer::new(spi_i, 0, true);
        let stage = Stage::InitSent(Box::new(init));
        let mut sa = IkeSa::fresh(provider, local, remote, core, stage);
        sa.name = config.name.clone();
        sa.config = Some(config.clone());
        sa.local_id = Some(config.local_id.clone());
        let mut names = children.iter();
        if let Some(first) = names.next() {
            match sa.child_request(first, None) {
                Ok(req) => {
                    if let Some(init) = sa.stage.init_mut() {
                        init.child = Some(req);
                    }
                }
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
        let msg = match decode_request(data) {
            Ok(m) => m,
            Err(why) => return Accept::Ignore(why),
        };
        let h = &msg.header;
        let stateless = |payloads: Vec<Payload>, why: &'static str| {
            Accept::Reply(
                stateless_reply(params.local, params.remote, h.spi_i, payloads),
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
            if let Some(t) = cookie_challenge(&msg, ni, params.local, params.remote, jar) {
                return Accept::Reply(t, "COOKIE: a cookie is required");
            }
        }
        let ours = params.candidates.proposals();
        // Which candidate IKE_AUTH will pick is not known yet, and it takes
        // the SA only if its own proposals allow the suite: prefer a suite
        // every candidate allows.
        let everyone = |c: &proposal::Chosen| params.candidates.all_allow(c);
        let chosen = ours
            .iter()
            .filter_map(|s| select_preferring_ke(std::slice::from_ref(s), sa, Some(ke.group)))
            .find(everyone)
            .or_else(|| select_preferring_ke(ours, sa, Some(ke.group)));
        let Some(chosen) = chosen else {
            return stateless(
                vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new())],
                "NO_PROPOSAL_CHOSEN: none of the peer's proposals is acceptable",
            );
        };
        let (Some(group), Some(prf)) = (chosen.dh, chosen.prf) else {
            return Accept::Ignore("chosen IKE proposal lacks a DH group or PRF".into());
        };
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
        let seed = keys::skeyseed(prf, &shared, ni, &nr, None);
        let Ok(k) = keys::derive_ike_keys(prf, chosen.encr, &seed, ni, &nr, h.spi_i, spi_r) else {
            return Accept::Ignore("key derivation failed".into());
        };
        let mut core = MessageLayer::new(h.spi_i, spi_r, false);
        core.keys = Some(k);
        let encap_forced = params.candidates.encap();
        let ke_data = dh.public_key().to_vec();
        let init = InitState {
            ni: ni.to_vec(),
            nr: nr.clone(),
            dh,
            cookie: None,
            msg_i: data.to_vec(),
            msg_r: Vec::new(),
            retries: 0,
            child: None,
            peer_hashes: peer_hashes(&msg.payloads),
            peer_certreq: false,
        };
        let stage = Stage::AwaitAuth(Box::new(init));
        let mut sa = IkeSa::fresh(provider, params.local, params.remote, core, stage);
        sa.candidates = params.candidates;
        sa.natt = params.local.port() != IKE_PORT;
        sa.proposal = Some(chosen.clone());
        sa.half_open_deadline = Some(now + HALF_OPEN_TIMEOUT);
        sa.detect_nat(&msg, h.spi_i, 0);
        if encap_forced {
            sa.nat_local = true;
        }
        let mut payloads = vec![
            Payload::Sa(vec![chosen.to_wire(chosen.number, &[])]),
            Payload::Ke(KeyExchange {
                group: group.id(),
                data: ke_data,
            }),
            Payload::Nonce(nr),
        ];
        payloads.extend(sa.natd_payloads(encap_forced));
        // RFC 7383 §2.3: announce fragmentation only to an initiator that
        // did, and only if some connection that may take the SA uses it.
        if find_notify(&msg.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some()
            && sa.candidates.fragmentation()
        {
            sa.core.fragmentation = true;
            payloads.push(notify(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        // RFC 7427 §4 and §3.7: signature hashes and our CAs, if some
        // connection that may take the SA uses certificates.
        if let Some(hashes) = sa.candidates.certificates() {
            payloads.push(hash_notify());
            if !hashes.is_empty() {
                payloads.push(Payload::CertReq(wire::Cert {
                    encoding: crate::pki::CERT_X509_SIGNATURE,
                    data: hashes.to_vec(),
                }));
            }
        }
        let response = sa.core.plain(ExchangeType::IKE_SA_INIT, true, 0, payloads);
        sa.core.answering(data);
        sa.core.answered(0, vec![response.clone()]);
        if let Some(init) = sa.stage.init_mut() {
            init.msg_r = response.clone();
        }
        sa.transmit(response);
        Accept::Created(Box::new(sa))
    }

    /// Send (or send again, after COOKIE or INVALID_KE_PAYLOAD) our
    /// IKE_SA_INIT request. Only an initiator in the handshake has one.
    pub(in crate::sa) fn send_sa_init(&mut self, now: Instant) {
        let (Some(config), Some(init)) = (self.config.clone(), self.stage.init()) else {
            return;
        };
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
        if config.fragment_size != 0 {
            payloads.push(notify(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        if config.pubkey.is_some() {
            payloads.push(hash_notify());
        }
        self.core.spi_r = 0;
        self.core.next_id = 0;
        self.send_request(now, ExchangeType::IKE_SA_INIT, &payloads, Pending::SaInit);
        let sent = self
            .core
            .out
            .as_ref()
            .and_then(|o| o.data.first().cloned())
            .unwrap_or_default();
        if let Some(init) = self.stage.init_mut() {
            init.msg_i = sent;
        }
    }

    pub(in crate::sa) fn handle_sa_init_response(
        &mut self,
        now: Instant,
        msg: Message,
    ) -> Result<(), DatagramError> {
        let config = self.our_config()?;
        let p = &msg.payloads;
        let Some(init) = self.stage.init_mut() else {
            return Err(DatagramError::Unexpected(
                "IKE_SA_INIT response outside the handshake",
            ));
        };
        if let Some(n) = find_notify(p, NotifyType::COOKIE) {
            if init.retries >= MAX_INIT_RETRIES {
                self.close(Reason::Protocol(PeerMisbehaved::TooManyCookies));
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
                PeerMisbehaved::InitResponseIncomplete,
            ));
        };
        if msg.header.spi_r == 0 {
            return Err(DatagramError::Invalid(PeerMisbehaved::ZeroResponderSpi));
        }
        let Some(chosen) = proposal::accept_response(&config.ike_proposals, sa, DhMode::Negotiate)
        else {
            self.close(Reason::Protocol(PeerMisbehaved::UnofferedProposal));
            return Ok(());
        };
        let Some(init) = self.stage.init_mut() else {
            return Err(DatagramError::Unexpected(
                "IKE_SA_INIT response outside the handshake",
            ));
        };
        if chosen.dh != Some(init.dh.group()) || ke.group != init.dh.group().id() {
            self.close(Reason::Protocol(PeerMisbehaved::KeGroupMismatch));
            return Ok(());
        }
        if nr.len() < 16 || nr.len() > 256 {
            return Err(DatagramError::Invalid(PeerMisbehaved::NonceLength));
        }
        let shared = init
            .dh
            .agree(&ke.data)
            .map_err(|e| DatagramError::Invalid(PeerMisbehaved::ResponderKe(e)))?;
        init.nr = nr.to_vec();
        init.peer_hashes = peer_hashes(p);
        init.peer_certreq = p.iter().any(|x| matches!(x, Payload::CertReq(_)));
        let spi_r = msg.header.spi_r;
        let Some(prf) = chosen.prf else {
            return Err(DatagramError::Invalid(PeerMisbehaved::UnofferedProposal));
        };
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
        .map_err(|e| DatagramError::Invalid(PeerMisbehaved::KeyDerivation(e)))?;
        init.msg_r = msg.encode();
        self.core.spi_r = spi_r;
        self.core.keys = Some(k);
        self.core.finish_request();
        self.pending = None;
        self.proposal = Some(chosen);
        self.detect_nat(&msg, self.core.spi_i, spi_r);
        self.core.fragmentation = config.fragment_size != 0
            && find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        if config.encap {
            self.nat_local = true;
        }
        self.float_to_natt();
        self.send_auth(now)
    }

    pub(in crate::sa) fn natd_payloads(&mut self, fake_source: bool) -> Vec<Payload> {
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

    pub(in crate::sa) fn detect_nat(&mut self, msg: &Message, spi_i: u64, spi_r: u64) {
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

    pub(in crate::sa) fn float_to_natt(&mut self) {
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
}

/// What the stateless cookie check (§2.6) makes of a new IKE_SA_INIT
/// request, before any state or key computation.
#[derive(Debug)]
pub enum CookieCheck {
    /// It carries a valid cookie of ours.
    Valid,
    /// It carries none, or a stale or forged one: answer with this COOKIE.
    Challenge {
        reply: Transmit,
        /// A cookie was present but did not verify.
        invalid: bool,
    },
    /// Not an IKE_SA_INIT request that could start an SA.
    Malformed(String),
}

impl IkeSa {
    /// The cookie check alone, for a daemon that decides per request whether
    /// cookies are required (half-open counts): cheap (one decode and one
    /// HMAC), no state kept.
    pub fn check_cookie(
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        jar: &CookieJar,
    ) -> CookieCheck {
        let msg = match decode_request(data) {
            Ok(m) => m,
            Err(why) => return CookieCheck::Malformed(why),
        };
        let Some(ni) = child_payloads(&msg.payloads).nonce else {
            return CookieCheck::Malformed("IKE_SA_INIT without Nonce".into());
        };
        let presented = matches!(msg.payloads.first(),
            Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE);
        match cookie_challenge(&msg, ni, local, remote, jar) {
            None => CookieCheck::Valid,
            Some(reply) => CookieCheck::Challenge {
                reply,
                invalid: presented,
            },
        }
    }
}

/// Decode a datagram that should be a new IKE_SA_INIT request.
fn decode_request(data: &[u8]) -> Result<Message, String> {
    let msg = Message::decode(data).map_err(|e| format!("malformed IKE_SA_INIT: {e}"))?;
    let h = &msg.header;
    if h.exchange != ExchangeType::IKE_SA_INIT
        || h.is_response()
        || !h.is_initiator()
        || h.message_id != 0
        || h.spi_r != 0
        || h.spi_i == 0
    {
        return Err("not an IKE_SA_INIT request".into());
    }
    Ok(msg)
}

/// An unencrypted IKE_SA_INIT response that keeps no state.
fn stateless_reply(
    local: SocketAddr,
    remote: SocketAddr,
    spi_i: u64,
    payloads: Vec<Payload>,
) -> Transmit {
    let core = MessageLayer::new(spi_i, 0, false);
    Transmit {
        local,
        remote,
        non_esp_marker: local.port() != IKE_PORT,
        data: core.plain(ExchangeType::IKE_SA_INIT, true, 0, payloads),
    }
}

/// `None` when the request's first payload is a valid cookie of `jar`;
/// otherwise the COOKIE answer to send (§2.6: the cookie notify comes first).
fn cookie_challenge(
    msg: &Message,
    ni: &[u8],
    local: SocketAddr,
    remote: SocketAddr,
    jar: &CookieJar,
) -> Option<Transmit> {
    let spi_i = msg.header.spi_i;
    let ok = match msg.payloads.first() {
        Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE => {
            jar.verify(&n.data, ni, remote.ip(), spi_i)
        }
        _ => false,
    };
    if ok {
        return None;
    }
    let cookie = jar.make(ni, remote.ip(), spi_i);
    Some(stateless_reply(
        local,
        remote,
        spi_i,
        vec![notify(NotifyType::COOKIE, cookie)],
    ))
}
