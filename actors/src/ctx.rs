//! State shared by every actor of one daemon: sockets, the datagram router,
//! the directory of loaded connections, the dataplane, the key-computation
//! scheduler, counters and the monitor stream. Everything here is cheap to
//! share (`Arc<Ctx>`) and lock-free on the datagram path (dashmap, atomics).
//! It names no actor's message type: actors are reached through the narrow
//! types of `router` and `report`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use dashmap::DashMap;
use kernel::Dataplane;
use ractor::DerivedActorRef;
use runtime::scheduler::SchedulerHandle;
use tokio::sync::broadcast;

use crate::report::Expired;
use crate::router::{ActorRouter, Router};
use crate::socket::Sockets;
use crate::spec::ConnSpec;
use crate::status::MonitorEvent;

pub struct Ctx {
    pub started: Instant,
    pub dataplane: Arc<dyn Dataplane>,
    pub scheduler: SchedulerHandle,
    pub sockets: Sockets,
    /// Received datagram → IKE SA (by SPI, half-open key, or new).
    pub router: Arc<ActorRouter>,
    /// The loaded connections, for the responder path to pick candidates
    /// from without asking the Daemon. The Daemon keeps it current.
    pub directory: RwLock<Vec<Arc<ConnSpec>>>,
    /// Installed CHILD SAs by inbound SPI (dataplane lifetime events).
    pub children: DashMap<u32, DerivedActorRef<Expired>>,
    pub monitor: broadcast::Sender<MonitorEvent>,
    pub ike_sas: AtomicU64,
    pub half_open_sas: AtomicU64,
    /// `vpnd --impair`: fault injection allowed.
    pub impair: bool,
    reqids: Mutex<HashMap<(String, String), u32>>,
    next_reqid: AtomicU32,
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
            router: Arc::new(Router::default()),
            directory: RwLock::new(Vec::new()),
            children: DashMap::new(),
            monitor: broadcast::channel(1024).0,
            ike_sas: AtomicU64::new(0),
            half_open_sas: AtomicU64::new(0),
            impair,
            reqids: Mutex::new(HashMap::new()),
            next_reqid: AtomicU32::new(1),
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
            t: runtime::clock::now()
                .saturating_duration_since(self.started)
                .as_secs_f64(),
            conn: conn.map(str::to_string),
            kind: kind.to_string(),
            message,
        });
    }

    /// Publish a monitor event that is a warning (and log it as one).
    pub fn warn(&self, conn: Option<&str>, kind: &str, message: String) {
        tracing::warn!(conn = conn.unwrap_or("-"), kind, "{message}");
        let _ = self.monitor.send(MonitorEvent {
            t: runtime::clock::now()
                .saturating_duration_since(self.started)
                .as_secs_f64(),
            conn: conn.map(str::to_string),
            kind: kind.to_string(),
            message,
        });
    }

    pub fn malformed(&self) {
        self.router.count_malformed();
    }

    /// The loaded connections whose addresses admit a datagram from
    /// `remote` to `local`, in load order.
    pub fn candidates(
        &self,
        local: std::net::IpAddr,
        remote: std::net::IpAddr,
    ) -> Vec<Arc<ConnSpec>> {
        self.directory
            .read()
            .expect("directory lock")
            .iter()
            .filter(|c| c.matches_addrs(local, remote))
            .cloned()
            .collect()
    }
}

pub type CtxRef = Arc<Ctx>;
