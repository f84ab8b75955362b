//! `Pair`: an initiator and a responder in one process, with simulated time
//! and seeded impairments (loss, duplication, reordering, tampering, and
//! scripted drops of particular messages).
//!
//! Everything is deterministic for a given seed: the endpoints draw their
//! randomness from [`SeededRandom`], and so do the impairments. A failing
//! test prints its seed (see [`Pair::seed`]) so it can be replayed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ChildConfig, Mode, PeerConfig, Psk, Retransmit};
use crate::crypto::{Random, SeededRandom};
use crate::proposal::ProposalSpec;
use crate::sa::natd::CookieJar;
use crate::sa::{
    Accept, ChildSa, Command, DatagramError, Event, IkeSa, Responder, Timers, Transmit,
};
use crate::wire::{ExchangeType, Header};

/// Direction of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Initiator → responder.
    AtoB,
    /// Responder → initiator.
    BtoA,
}

/// A rule that drops matching datagrams, `count` times.
#[derive(Clone, Debug)]
pub struct DropRule {
    pub dir: Dir,
    pub exchange: ExchangeType,
    pub response: bool,
    pub count: u32,
    /// Flip a bit in the last byte (inside the ICV or the last payload)
    /// instead of dropping.
    pub tamper: bool,
    /// Match only the fragment (RFC 7383 SKF payload) with this number.
    pub fragment: Option<u16>,
}

/// Random impairments, each a probability in percent, per datagram.
#[derive(Clone, Copy, Debug, Default)]
pub struct Impairments {
    pub loss_pct: u32,
    pub duplicate_pct: u32,
    /// Deliver with extra delay up to `reorder_window`, so later datagrams
    /// may overtake.
    pub reorder_pct: u32,
    pub reorder_window: Duration,
    /// Flip one random bit.
    pub tamper_pct: u32,
}

/// One endpoint.
pub struct Side {
    pub addr: SocketAddr,
    pub config: Arc<PeerConfig>,
    pub sa: Option<IkeSa>,
    /// Every event in order.
    pub events: Vec<Event>,
    /// CHILD SAs reported ready and not yet deleted, by inbound SPI.
    pub children: HashMap<u32, ChildSa>,
    /// Datagrams this side refused (`handle_datagram` errors, ignored
    /// IKE_SA_INIT requests).
    pub rejected: Vec<String>,
    /// Stateless replies sent by the responder path.
    pub stateless_replies: Vec<&'static str>,
    /// Timer settings given to this side's SA when it is created.
    pub timers: Timers,
}

impl Side {
    fn new(addr: SocketAddr, config: Arc<PeerConfig>) -> Side {
        Side {
            addr,
            config,
            sa: None,
            events: Vec::new(),
            children: HashMap::new(),
            rejected: Vec::new(),
            stateless_replies: Vec::new(),
            timers: Timers::default(),
        }
    }

    pub fn sa(&self) -> &IkeSa {
        self.sa.as_ref().expect("side has no IKE SA")
    }

    pub fn sa_mut(&mut self) -> &mut IkeSa {
        self.sa.as_mut().expect("side has no IKE SA")
    }

    pub fn is_established(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Established { .. }))
            && self.sa.as_ref().is_some_and(|s| !s.is_closed())
    }

    pub fn closed_reason(&self) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { reason, .. } => Some(reason.to_string()),
            _ => None,
        })
    }

    pub fn child_failures(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ChildFailed { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .collect()
    }

    fn record(&mut self, e: Event) {
        match &e {
            Event::ChildReady(c) => {
                self.children.insert(c.spi_in, (**c).clone());
            }
            Event::ChildDeleted { spi_in, .. } => {
                self.children.remove(spi_in);
            }
            _ => {}
        }
        self.events.push(e);
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    dir: Dir,
    t: Transmit,
}

/// Initiator (`a`) and responder (`b`) connected by a simulated network.
pub struct Pair {
    pub now: Instant,
    pub a: Side,
    pub b: Side,
    pub latency: Duration,
    pub impair: Impairments,
    pub drops: Vec<DropRule>,
    /// Demand cookies on the responder (§2.6).
    pub cookies: Option<CookieJar>,
    /// Other connections of the responder on the same address pair,
    /// weighed before `b.config` (as if loaded first).
    pub b_others: Vec<crate::config::PeerConfigRef>,
    /// Datagrams delivered, per direction.
    pub delivered: HashMap<Dir, u32>,
    /// Datagrams dropped by impairments or rules, per direction.
    pub dropped: HashMap<Dir, u32>,
    /// Drop datagrams whose IP packet (IP header of 20 bytes for IPv4, 40
    /// for IPv6, the 8-byte UDP header and the non-ESP marker included) is
    /// longer than this: a path that loses IP fragments.
    pub path_mtu: Option<usize>,
    /// The longest datagram (UDP payload) sent, per direction.
    pub largest: HashMap<Dir, usize>,
    seed: u64,
    rng: SeededRandom,
    in_flight: Vec<InFlight>,
    seq: u64,
    providers: u64,
}

/// A connection config for tests: `aes256gcm16-prfsha256-x25519`, ESP
/// `aes256gcm16`, one child `net` 198.19.1.0/24 === 198.19.2.0/24.
pub fn test_config(
    name: &str,
    local_id: &str,
    remote_id: &str,
    psk: &str,
    initiator: bool,
) -> PeerConfig {
    let (l, r) = if initiator {
        ("198.19.1.0/24", "198.19.2.0/24")
    } else {
        ("198.19.2.0/24", "198.19.1.0/24")
    };
    PeerConfig {
        name: name.into(),
        local_id: crate::config::parse_identity(local_id).expect("id"),
        remote_id: Some(crate::config::parse_identity(remote_id).expect("id")),
        psk: Some(Psk::new(psk.as_bytes().to_vec())),
        pubkey: None,
        ike_proposals: vec![
            ProposalSpec::parse_ike("aes256gcm16-prfsha256-x25519").expect("proposal")
        ],
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![crate::ts::parse_ts(l).expect("ts")],
            remote_ts: vec![crate::ts::parse_ts(r).expect("ts")],
            esp_proposals: vec![ProposalSpec::parse_esp("aes256gcm16").expect("proposal")],
            mode: Mode::Tunnel,
            pfs_required: false,
        }],
        encap: false,
        retransmit: Retransmit {
            timeout: Duration::from_secs(1),
            tries: 4,
            max_timeout: Duration::from_secs(10),
        },
        initial_contact: true,
        max_child_sas: crate::config::DEFAULT_MAX_CHILD_SAS,
        fragment_size: crate::config::DEFAULT_FRAGMENT_SIZE,
    }
}

impl Pair {
    /// Two endpoints at 198.18.0.1 (initiator) and 198.18.0.2 (responder).
    /// Nothing is sent until [`Pair::initiate`].
    pub fn new(seed: u64, a: PeerConfig, b: PeerConfig) -> Pair {
        Pair {
            now: Instant::now(),
            a: Side::new("198.18.0.1:500".parse().expect("addr"), Arc::new(a)),
            b: Side::new("198.18.0.2:500".parse().expect("addr"), Arc::new(b)),
            latency: Duration::from_millis(10),
            impair: Impairments::default(),
            drops: Vec::new(),
            cookies: None,
            b_others: Vec::new(),
            delivered: HashMap::new(),
            dropped: HashMap::new(),
            path_mtu: None,
            largest: HashMap::new(),
            seed,
            rng: SeededRandom::new(seed ^ 0x005e_ed0f_1ab0),
            in_flight: Vec::new(),
            seq: 0,
            providers: 0,
        }
    }

    /// The default pair: `test_config` on both sides with the same PSK.
    pub fn default_with_seed(seed: u64) -> Pair {
        Pair::new(
            seed,
            test_config(
                "a-to-b",
                "a.test",
                "b.test",
                "correct horse battery staple",
                true,
            ),
            test_config(
                "b-from-a",
                "b.test",
                "a.test",
                "correct horse battery staple",
                false,
            ),
        )
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn provider(&mut self) -> Box<dyn crate::sa::Provider> {
        self.providers += 1;
        Box::new(SeededRandom::new(
            self.seed
                .wrapping_mul(1_000_003)
                .wrapping_add(self.providers),
        ))
    }

    /// Start the initiator with the given children (first in IKE_AUTH).
    pub fn initiate(&mut self, children: &[&str]) {
        let provider = self.provider();
        let sa = IkeSa::initiate(
            self.now,
            self.a.config.clone(),
            self.a.addr,
            self.b.addr,
            provider,
            children,
        );
        self.a.sa = Some(sa);
        let timers = self.a.timers.clone();
        self.a.sa_mut().set_timers(self.now, &timers);
        self.collect();
    }

    /// Give a command to one side and let it queue its messages.
    pub fn command(&mut self, side: Dir, cmd: Command) {
        let now = self.now;
        let s = match side {
            Dir::AtoB => &mut self.a,
            Dir::BtoA => &mut self.b,
        };
        s.sa_mut().handle_command(now, cmd);
        self.collect();
    }

    /// Drop the next `count` datagrams matching.
    pub fn drop_next(&mut self, dir: Dir, exchange: ExchangeType, response: bool, count: u32) {
        self.drops.push(DropRule {
            dir,
            exchange,
            response,
            count,
            tamper: false,
            fragment: None,
        });
    }

    /// Drop the next `count` datagrams matching that carry fragment number
    /// `number`.
    pub fn drop_fragment(
        &mut self,
        dir: Dir,
        exchange: ExchangeType,
        response: bool,
        number: u16,
        count: u32,
    ) {
        self.drops.push(DropRule {
            dir,
            exchange,
            response,
            count,
            tamper: false,
            fragment: Some(number),
        });
    }

    /// Corrupt the next `count` datagrams matching (one bit of the last byte).
    pub fn tamper_next(&mut self, dir: Dir, exchange: ExchangeType, response: bool, count: u32) {
        self.drops.push(DropRule {
            dir,
            exchange,
            response,
            count,
            tamper: true,
            fragment: None,
        });
    }

    fn roll(&mut self, pct: u32) -> bool {
        if pct == 0 {
            return false;
        }
        let mut b = [0u8; 4];
        self.rng.fill(&mut b);
        u32::from_be_bytes(b) % 100 < pct
    }

    fn rand_below(&mut self, n: u64) -> u64 {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        if n == 0 {
            0
        } else {
            u64::from_be_bytes(b) % n
        }
    }

    /// Move outputs of both sides into the network, applying impairments,
    /// and collect their events.
    fn collect(&mut self) {
        for dir in [Dir::AtoB, Dir::BtoA] {
            loop {
                let side = match dir {
                    Dir::AtoB => &mut self.a,
                    Dir::BtoA => &mut self.b,
                };
                let Some(sa) = side.sa.as_mut() else { break };
                let mut evs = Vec::new();
                while let Some(e) = sa.poll_event() {
                    evs.push(e);
                }
                let t = sa.poll_transmit();
                for e in evs {
                    side.record(e);
                }
                let Some(t) = t else { break };
                self.send(dir, t);
            }
        }
    }

    fn send(&mut self, dir: Dir, mut t: Transmit) {
        let largest = self.largest.entry(dir).or_default();
        *largest = (*largest).max(t.data.len());
        let marker = if t.non_esp_marker { 4 } else { 0 };
        let headers = if t.remote.is_ipv4() { 28 } else { 48 };
        if self
            .path_mtu
            .is_some_and(|mtu| t.data.len() + marker + headers > mtu)
        {
            *self.dropped.entry(dir).or_default() += 1;
            return;
        }
        if let Ok(h) = Header::decode(&t.data) {
            let fragment = (h.next_payload == crate::wire::PayloadType::SKF)
                .then(|| t.data.get(32..34))
                .flatten()
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            if let Some(rule) = self.drops.iter_mut().find(|r| {
                r.count > 0
                    && r.dir == dir
                    && r.exchange == h.exchange
                    && r.response == h.is_response()
                    && r.fragment.is_none_or(|n| fragment == Some(n))
            }) {
                rule.count -= 1;
                if rule.tamper {
                    if let Some(b) = t.data.last_mut() {
                        *b ^= 0x01;
                    }
                } else {
                    *self.dropped.entry(dir).or_default() += 1;
                    return;
                }
            }
        }
        if self.roll(self.impair.loss_pct) {
            *self.dropped.entry(dir).or_default() += 1;
            return;
        }
        let copies = if self.roll(self.impair.duplicate_pct) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut t = t.clone();
            if self.roll(self.impair.tamper_pct) && !t.data.is_empty() {
                let bit = self.rand_below(t.data.len() as u64 * 8);
                t.data[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            let mut at = self.now + self.latency;
            if self.roll(self.impair.reorder_pct) {
                let extra = self.rand_below(self.impair.reorder_window.as_micros() as u64 + 1);
                at += Duration::from_micros(extra);
            }
            self.seq += 1;
            self.in_flight.push(InFlight {
                at,
                seq: self.seq,
                dir,
                t,
            });
        }
    }

    fn deliver(&mut self, f: InFlight) {
        *self.delivered.entry(f.dir).or_default() += 1;
        let now = self.now;
        // The receiver sees the datagram on the address it was sent to.
        let (local, remote) = (f.t.remote, f.t.local);
        let side = match f.dir {
            Dir::AtoB => &mut self.b,
            Dir::BtoA => &mut self.a,
        };
        let result = match side.sa.as_mut() {
            Some(sa) if !sa.is_closed() => sa.handle_datagram(now, local, remote, &f.t.data),
            _ => Err(DatagramError::UnknownSpi),
        };
        match result {
            Ok(()) => {}
            Err(DatagramError::UnknownSpi) | Err(DatagramError::Closed) if f.dir == Dir::AtoB => {
                let params = Responder {
                    local,
                    remote,
                    candidates: Arc::new(crate::sa::Candidates::new(
                        self.b_others
                            .iter()
                            .chain([&self.b.config])
                            .cloned()
                            .collect(),
                    )),
                    require_cookie: self.cookies.as_ref(),
                };
                self.providers += 1;
                let provider = Box::new(SeededRandom::new(
                    self.seed
                        .wrapping_mul(1_000_003)
                        .wrapping_add(self.providers),
                ));
                match IkeSa::accept(now, params, provider, &f.t.data) {
                    Accept::Created(mut sa) => {
                        sa.set_timers(now, &self.b.timers);
                        self.b.sa = Some(*sa);
                    }
                    Accept::Reply(t, why) => {
                        self.b.stateless_replies.push(why);
                        self.send(Dir::BtoA, t);
                    }
                    Accept::Ignore(why) => self.b.rejected.push(why),
                }
            }
            Err(e) => side.rejected.push(e.to_string()),
        }
        self.collect();
    }

    /// Run until nothing is in flight and no timer is due before `limit`
    /// from now. Returns the simulated time that passed.
    pub fn drive_for(&mut self, limit: Duration) -> Duration {
        let start = self.now;
        let end = start + limit;
        for _ in 0..100_000 {
            self.collect();
            let next_flight = self.in_flight.iter().map(|f| (f.at, f.seq)).min();
            let ta = self.a.sa.as_ref().and_then(|s| s.poll_timeout());
            let tb = self.b.sa.as_ref().and_then(|s| s.poll_timeout());
            let next_timer = ta.into_iter().chain(tb).min();
            let next = match (next_flight, next_timer) {
                (Some((f, _)), Some(t)) => f.min(t),
                (Some((f, _)), None) => f,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if let Some((at, seq)) = next_flight.filter(|(at, _)| *at <= self.now) {
                let i = self
                    .in_flight
                    .iter()
                    .position(|f| f.at == at && f.seq == seq)
                    .expect("in flight");
                let f = self.in_flight.remove(i);
                self.deliver(f);
                continue;
            }
            let now = self.now;
            for s in [&mut self.a, &mut self.b] {
                if let Some(sa) = s.sa.as_mut() {
                    if sa.poll_timeout().is_some_and(|t| t <= now) {
                        sa.handle_timeout(now);
                    }
                }
            }
        }
        self.collect();
        self.now - start
    }

    /// Drive with a generous default limit (10 simulated minutes).
    pub fn drive(&mut self) -> Duration {
        self.drive_for(Duration::from_secs(600))
    }

    /// Let simulated time pass without traffic beyond what timers cause.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        self.drive_for(d);
        self.now = self.now.max(target);
    }

    /// Both sides hold the same CHILD SAs, mirrored: each side's inbound SPI
    /// and key are the other's outbound ones, selectors swapped.
    pub fn children_mirror(&self) -> bool {
        self.a.children.len() == self.b.children.len()
            && self.a.children.values().all(|ca| {
                self.b.children.values().any(|cb| {
                    ca.spi_in == cb.spi_out
                        && ca.spi_out == cb.spi_in
                        && ca.keys.inbound[..] == cb.keys.outbound[..]
                        && ca.keys.outbound[..] == cb.keys.inbound[..]
                        && ca.local_ts == cb.remote_ts
                        && ca.remote_ts == cb.local_ts
                        && ca.mode == cb.mode
                        && ca.proposal.encr == cb.proposal.encr
                })
            })
    }
}
