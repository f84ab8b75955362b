//! Routing a received IKE datagram to its IKE SA: a plain table, no actor
//! on the path. By our SPI once the SA has one; a retransmitted IKE_SA_INIT
//! request by (initiator SPI, peer) while its responder SA is half-open; a
//! new IKE_SA_INIT request to the responder path. Anything else is counted
//! as malformed and dropped, never a panic.
//!
//! The table is generic over where datagrams go (`Deliver`), so it is
//! tested without actors; the daemon fills it with `DerivedActorRef`s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use ike::sa::local_spi_of;
use ike::wire::{ExchangeType, Header};
use ractor::DerivedActorRef;

/// The router the daemon uses: datagrams go to actors.
pub type ActorRouter = Router<DerivedActorRef<Datagram>>;

/// One IKE datagram (non-ESP marker removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// Somewhere a datagram can be delivered; `false` when it is gone.
pub trait Deliver: Clone + Send + Sync {
    fn deliver(&self, d: Datagram) -> bool;
}

impl Deliver for DerivedActorRef<Datagram> {
    fn deliver(&self, d: Datagram) -> bool {
        self.send_message(d).is_ok()
    }
}

/// Decides whether a new IKE_SA_INIT request may reach the responder path
/// (cookies, half-open caps); it answers or counts what it refuses.
pub trait Admit: Send + Sync {
    fn admit(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) -> bool;
    /// A request `admit` passed could not be delivered after all.
    fn undo(&self, remote: SocketAddr);
}

/// New requests handed to the responder path and not yet taken: past this
/// many, new ones are refused until it catches up.
pub const MAX_PENDING_NEW: usize = 1024;

/// Where `route` sent a datagram, or why it did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// To the IKE SA filed under our SPI.
    Sa,
    /// To the half-open responder SA of this initiator SPI and peer.
    HalfOpen,
    /// A new IKE_SA_INIT request, to the responder path.
    New,
    /// A new request the admission gate answered (COOKIE) or dropped.
    Refused,
    /// A NAT keepalive (RFC 3948 §2.3).
    Keepalive,
    /// ESP on port 4500: not ours (a dataplane reads it first).
    Esp,
    /// For an SPI no IKE SA has (counted separately: a peer may still be
    /// sending to an SA we just deleted).
    UnknownSpi,
    /// Not a valid IKE message, or not one that may start an SA.
    Malformed,
    /// Nowhere to deliver it (the responder path is not up yet, or the
    /// target just stopped).
    Undelivered,
}

pub struct Router<T: Deliver> {
    /// Our IKE SPI (initiator: SPIi, responder: SPIr) → its IKE SA.
    spis: DashMap<u64, T>,
    /// Responder IKE SAs by (SPIi, peer) until IKE_SA_INIT is answered, so a
    /// retransmitted request reaches the same SA.
    half_open: DashMap<(u64, SocketAddr), T>,
    /// The responder path for new IKE_SA_INIT requests (replaced if it is
    /// restarted).
    responders: RwLock<Option<T>>,
    gate: RwLock<Option<Arc<dyn Admit>>>,
    /// New requests delivered to the responder path and not yet taken.
    pending_new: AtomicUsize,
    malformed: AtomicU64,
    unknown_spi: AtomicU64,
}

impl<T: Deliver> Default for Router<T> {
    fn default() -> Self {
        Router {
            spis: DashMap::new(),
            half_open: DashMap::new(),
            responders: RwLock::new(None),
            gate: RwLock::new(None),
            pending_new: AtomicUsize::new(0),
            malformed: AtomicU64::new(0),
            unknown_spi: AtomicU64::new(0),
        }
    }
}

impl<T: Deliver> Router<T> {
    pub fn set_responders(&self, t: T) {
        *self.responders.write().expect("router lock") = Some(t);
    }

    /// The admission gate for new requests (none: all pass).
    pub fn set_gate(&self, gate: Arc<dyn Admit>) {
        *self.gate.write().expect("router lock") = Some(gate);
    }

    /// New requests waiting on the responder path.
    pub fn pending_new(&self) -> usize {
        self.pending_new.load(Ordering::Relaxed)
    }

    /// The responder path took one new request.
    pub fn new_taken(&self) {
        let _ = self
            .pending_new
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn insert_spi(&self, spi: u64, t: T) {
        self.spis.insert(spi, t);
    }

    pub fn remove_spi(&self, spi: u64) {
        self.spis.remove(&spi);
    }

    pub fn insert_half_open(&self, spi_i: u64, peer: SocketAddr, t: T) {
        self.half_open.insert((spi_i, peer), t);
    }

    pub fn remove_half_open(&self, spi_i: u64, peer: SocketAddr) {
        self.half_open.remove(&(spi_i, peer));
    }

    /// Count one malformed datagram (also for callers past the router).
    pub fn count_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vpnd_malformed_datagrams_total").increment(1);
    }

    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    pub fn unknown_spi(&self) -> u64 {
        self.unknown_spi.load(Ordering::Relaxed)
    }

    /// Route one datagram received on `local` from `remote`; `natt` when it
    /// came in on port 4500 (non-ESP marker expected).
    pub fn route(&self, local: SocketAddr, remote: SocketAddr, data: &[u8], natt: bool) -> Routed {
        let data = if natt {
            if data == [0xff] {
                return Routed::Keepalive;
            }
            match data.strip_prefix(&[0, 0, 0, 0]) {
                Some(d) => d,
                None => {
                    // ESP-in-UDP: the userspace dataplane takes these; with
                    // kernel dataplanes the kernel consumes them first.
                    if data.len() < 8 {
                        self.count_malformed();
                        return Routed::Malformed;
                    }
                    return Routed::Esp;
                }
            }
        } else {
            data
        };
        let Ok(header) = Header::decode(data) else {
            self.count_malformed();
            return Routed::Malformed;
        };
        if header.length as usize != data.len() {
            self.count_malformed();
            return Routed::Malformed;
        }
        let datagram = || Datagram {
            local,
            remote,
            data: data.to_vec(),
        };
        let sent = |t: Option<T>, how: Routed| match t {
            Some(t) if t.deliver(datagram()) => how,
            _ => Routed::Undelivered,
        };
        if let Some(spi) = local_spi_of(&header) {
            let target = self.spis.get(&spi).map(|t| t.clone());
            if target.is_none() {
                // Also malformed from where we stand: nothing can open it.
                self.count_malformed();
                self.unknown_spi.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(spi = format_args!("{spi:016x}"), %remote, "datagram for unknown IKE SA");
                return Routed::UnknownSpi;
            }
            return sent(target, Routed::Sa);
        }
        if header.exchange != ExchangeType::IKE_SA_INIT || header.is_response() {
            self.count_malformed();
            return Routed::Malformed;
        }
        if let Some(t) = self
            .half_open
            .get(&(header.spi_i, remote))
            .map(|t| t.clone())
        {
            return sent(Some(t), Routed::HalfOpen);
        }
        let gate = self.gate.read().expect("router lock").clone();
        if let Some(gate) = &gate {
            if !gate.admit(local, remote, data) {
                return Routed::Refused;
            }
        }
        let responders = self.responders.read().expect("router lock").clone();
        self.pending_new.fetch_add(1, Ordering::Relaxed);
        match sent(responders, Routed::New) {
            Routed::New => Routed::New,
            other => {
                self.new_taken();
                if let Some(gate) = &gate {
                    gate.undo(remote);
                }
                other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ike::wire::{Message, PayloadType};

    use super::*;

    /// A target that records what it got, by name.
    #[derive(Clone)]
    struct Inbox(&'static str, Arc<Mutex<Vec<(&'static str, Datagram)>>>);

    impl Deliver for Inbox {
        fn deliver(&self, d: Datagram) -> bool {
            self.1.lock().unwrap().push((self.0, d));
            true
        }
    }

    fn message(spi_i: u64, spi_r: u64, exchange: ExchangeType, flags: u8) -> Vec<u8> {
        Message {
            header: Header {
                spi_i,
                spi_r,
                next_payload: PayloadType(0),
                version: 0x20,
                exchange,
                flags,
                message_id: 0,
                length: 0,
            },
            payloads: Vec::new(),
        }
        .encode()
    }

    const INITIATOR: u8 = 0x08;
    const RESPONSE: u8 = 0x20;

    #[test]
    fn datagrams_go_by_spi_half_open_key_or_to_the_responder_path() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let r: Router<Inbox> = Router::default();
        let (local, peer): (SocketAddr, SocketAddr) = (
            "198.18.0.1:500".parse().unwrap(),
            "198.18.0.2:500".parse().unwrap(),
        );
        // Nothing set up yet: a new request has nowhere to go.
        let init = message(7, 0, ExchangeType::IKE_SA_INIT, INITIATOR);
        assert_eq!(r.route(local, peer, &init, false), Routed::Undelivered);
        r.set_responders(Inbox("responders", log.clone()));
        assert_eq!(r.route(local, peer, &init, false), Routed::New);
        // Its retransmission reaches the half-open SA once it is filed.
        r.insert_half_open(7, peer, Inbox("half-open", log.clone()));
        assert_eq!(r.route(local, peer, &init, false), Routed::HalfOpen);
        // Another peer with the same SPI is a new request.
        let other: SocketAddr = "198.18.0.3:500".parse().unwrap();
        assert_eq!(r.route(local, other, &init, false), Routed::New);
        // By our SPI: a responder's SPIr in a request from the initiator, an
        // initiator's SPIi in a response.
        r.insert_spi(99, Inbox("sa", log.clone()));
        let auth = message(7, 99, ExchangeType::IKE_AUTH, INITIATOR);
        assert_eq!(r.route(local, peer, &auth, false), Routed::Sa);
        let resp = message(99, 5, ExchangeType::IKE_SA_INIT, RESPONSE);
        assert_eq!(r.route(local, peer, &resp, false), Routed::Sa);
        r.remove_spi(99);
        assert_eq!(r.route(local, peer, &auth, false), Routed::UnknownSpi);
        assert_eq!(r.unknown_spi(), 1);
        assert_eq!(r.malformed(), 1, "unknown SPIs count as malformed too");
        let got: Vec<&str> = log.lock().unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(got, ["responders", "half-open", "responders", "sa", "sa"]);
        assert_eq!(r.pending_new(), 2, "two new requests not yet taken");
        r.new_taken();
        r.new_taken();
        r.new_taken();
        assert_eq!(r.pending_new(), 0);
    }

    #[test]
    fn port_4500_strips_the_marker_and_drops_the_rest_counted() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let r: Router<Inbox> = Router::default();
        r.set_responders(Inbox("responders", log.clone()));
        let (local, peer): (SocketAddr, SocketAddr) = (
            "198.18.0.1:4500".parse().unwrap(),
            "198.18.0.2:4500".parse().unwrap(),
        );
        let init = message(7, 0, ExchangeType::IKE_SA_INIT, INITIATOR);
        let marked = [&[0u8; 4][..], &init].concat();
        assert_eq!(r.route(local, peer, &marked, true), Routed::New);
        assert_eq!(log.lock().unwrap()[0].1.data, init, "marker removed");
        assert_eq!(r.route(local, peer, &[0xff], true), Routed::Keepalive);
        assert_eq!(
            r.route(local, peer, &[1, 2, 3, 4, 5, 6, 7, 8, 9], true),
            Routed::Esp
        );
        assert_eq!(r.malformed(), 0);
        // Garbage, a truncated message, requests without a responder SPI
        // that cannot start an SA: each counted, none delivered.
        let mut short = init.clone();
        short.pop();
        for bad in [
            vec![0u8, 0, 0, 0, 1, 2, 3],
            [&[0u8; 4][..], &short].concat(),
            [
                &[0u8; 4][..],
                &message(7, 0, ExchangeType::IKE_AUTH, INITIATOR),
            ]
            .concat(),
            [
                &[0u8; 4][..],
                &message(7, 0, ExchangeType::INFORMATIONAL, INITIATOR),
            ]
            .concat(),
            vec![1, 2, 3],
        ] {
            assert_eq!(
                r.route(local, peer, &bad, true),
                Routed::Malformed,
                "{bad:?}"
            );
        }
        assert_eq!(r.malformed(), 5);
        assert_eq!(log.lock().unwrap().len(), 1);
    }
}
