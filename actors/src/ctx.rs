//! State shared by every actor of one daemon: sockets, the SPI → IKE SA map,
//! the dataplane, the key-computation scheduler, counters and the monitor
//! stream. Everything here is cheap to share (`Arc<Ctx>`) and lock-free on
//! the datagram path (dashmap, atomics).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use kernel::Dataplane;
use ractor::ActorRef;
use runtime::scheduler::SchedulerHandle;
use tokio::sync::broadcast;

use crate::daemon::DaemonMsg;
use crate::ike_sa::IkeMsg;
use crate::socket::Sockets;
use crate::status::MonitorEvent;

pub struct Ctx {
    pub started: Instant,
    pub dataplane: Arc<dyn Dataplane>,
    pub scheduler: SchedulerHandle,
    pub sockets: Sockets,
    /// Our IKE SPI (initiator: SPIi, responder: SPIr) → its IKE SA actor.
    pub spis: DashMap<u64, ActorRef<IkeMsg>>,
    /// Responder IKE SAs by (SPIi, peer) until IKE_SA_INIT is answered, so a
    /// retransmitted request reaches the same actor.
    pub half_open: DashMap<(u64, SocketAddr), ActorRef<IkeMsg>>,
    /// Installed CHILD SAs by inbound SPI (dataplane lifetime events).
    pub children: DashMap<u32, ActorRef<crate::child_sa::ChildMsg>>,
    pub monitor: broadcast::Sender<MonitorEvent>,
    pub malformed: AtomicU64,
    pub ike_sas: AtomicU64,
    pub half_open_sas: AtomicU64,
    /// `vpnd --impair`: fault injection allowed.
    pub impair: bool,
    reqids: Mutex<HashMap<(String, String), u32>>,
    next_reqid: AtomicU32,
    pub daemon: OnceLock<ActorRef<DaemonMsg>>,
    /// Runs updown scripts off the actors' path.
    pub updown: Arc<kernel::updown::UpdownRunner>,
}

impl Ctx {
    pub fn new(
        dataplane: Arc<dyn Dataplane>,
        scheduler: SchedulerHandle,
        sockets: Sockets,
        impair: bool,
    ) -> Ctx {
        Ctx {
            started: runtime::clock::now(),
            dataplane,
            scheduler,
            sockets,
            spis: DashMap::new(),
            half_open: DashMap::new(),
            children: DashMap::new(),
            monitor: broadcast::channel(1024).0,
            malformed: AtomicU64::new(0),
            ike_sas: AtomicU64::new(0),
            half_open_sas: AtomicU64::new(0),
            impair,
            reqids: Mutex::new(HashMap::new()),
            next_reqid: AtomicU32::new(1),
            daemon: OnceLock::new(),
            updown: kernel::updown::UpdownRunner::new(kernel::updown::DEFAULT_TIMEOUT),
        }
    }

    /// The reqid of a connection's child: stable for the daemon's lifetime.
    pub fn reqid(&self, conn: &str, child: &str) -> u32 {
        let mut m = self.reqids.lock().expect("reqid lock");
        *m.entry((conn.to_string(), child.to_string()))
            .or_insert_with(|| self.next_reqid.fetch_add(1, Ordering::Relaxed))
    }

    /// Publish a monitor event (and log it).
    pub fn event(&self, conn: Option<&str>, kind: &str, message: String) {
        tracing::info!(conn = conn.unwrap_or("-"), kind, "{message}");
        let _ = self.monitor.send(MonitorEvent {
            t: self.started.elapsed().as_secs_f64(),
            conn: conn.map(str::to_string),
            kind: kind.to_string(),
            message,
        });
    }

    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vpnd_malformed_datagrams_total").increment(1);
    }
}

pub type CtxRef = Arc<Ctx>;
