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

use crate::admission::{Admission, AdmissionConfig, Gate, Refusal};
use crate::directory::{Directory, Group};
use crate::report::Expired;
use crate::revival::Revival;
use crate::router::{ActorRouter, Admit, Router, MAX_PENDING_NEW};
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
    /// from without asking the Daemon. The Daemon replaces it whole.
    pub directory: RwLock<Arc<Directory>>,
    /// Installed CHILD SAs by inbound SPI (dataplane lifetime events).
    pub children: DashMap<u32, DerivedActorRef<Expired>>,
    pub monitor: broadcast::Sender<MonitorEvent>,
    pub ike_sas: AtomicU64,
    pub half_open_sas: AtomicU64,
    /// Cookies and half-open caps for new IKE_SA_INIT requests.
    pub admission: Arc<Admission>,
    /// `vpnd --impair`: fault injection allowed.
    pub impair: bool,
    reqids: Mutex<HashMap<(String, String), u32>>,
    next_reqid: AtomicU32,
    /// Runs updown scripts off the actors' path.
    pub updown: Arc<kernel::updown::UpdownRunner>,
    /// Which connections are up, for a restarted daemon (`state_dir`).
    pub revival: Option<Arc<Revival>>,
}

impl Ctx {
    pub fn new(
        dataplane: Arc<dyn Dataplane>,
        scheduler: SchedulerHandle,
        sockets: Sockets,
        impair: bool,
        admission: AdmissionConfig,
        revival: Option<Arc<Revival>>,
    ) -> Ctx {
        Ctx {
            started: runtime::clock::now(),
            dataplane,
            scheduler,
            sockets,
            router: Arc::new(Router::default()),
            directory: RwLock::new(Arc::default()),
            children: DashMap::new(),
            monitor: broadcast::channel(1024).0,
            ike_sas: AtomicU64::new(0),
            half_open_sas: AtomicU64::new(0),
            admission: Admission::new(admission),
            impair,
            reqids: Mutex::new(HashMap::new()),
            next_reqid: AtomicU32::new(1),
            updown: kernel::updown::UpdownRunner::new(kernel::updown::DEFAULT_TIMEOUT),
            revival,
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
        self.to_monitor(conn, kind, message);
    }

    /// Publish a monitor event that is a warning (and log it as one).
    pub fn warn(&self, conn: Option<&str>, kind: &str, message: String) {
        tracing::warn!(conn = conn.unwrap_or("-"), kind, "{message}");
        self.to_monitor(conn, kind, message);
    }

    /// To `vpnctl monitor` clients, if any is listening.
    fn to_monitor(&self, conn: Option<&str>, kind: &str, message: String) {
        if self.monitor.receiver_count() == 0 {
            return;
        }
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

    /// Put the admission gate in front of the responder path.
    pub fn guard_responders(self: &Arc<Self>) {
        self.router
            .set_gate(Arc::new(CtxGate(Arc::downgrade(self))));
    }

    /// The loaded connections admitting `remote` → `local`: the group a
    /// responder SA from that pair weighs (shared, built once per pair).
    pub fn group(&self, local: std::net::IpAddr, remote: std::net::IpAddr) -> Arc<Group> {
        let dir = self.directory.read().expect("directory lock").clone();
        dir.group(local, remote)
    }

    /// Replace the loaded connections.
    pub fn publish(&self, specs: Vec<Arc<ConnSpec>>) {
        *self.directory.write().expect("directory lock") = Arc::new(Directory::new(specs));
    }
}

pub type CtxRef = Arc<Ctx>;

/// The admission gate on the sockets' receive path: refusals cost no actor
/// message, and COOKIE answers are sent from right here.
struct CtxGate(std::sync::Weak<Ctx>);

impl Admit for CtxGate {
    fn admit(
        &self,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(ctx) = self.0.upgrade() else {
            return false;
        };
        let adm = &ctx.admission;
        if ctx.router.pending_new() >= MAX_PENDING_NEW {
            adm.refuse(Refusal::Backlog);
            return false;
        }
        if ctx.group(local.ip(), remote.ip()).candidates.is_empty() {
            adm.refuse(Refusal::Unmatched);
            if adm.may_log() {
                tracing::info!(%remote, %local, "IKE_SA_INIT from a peer no connection accepts");
            }
            return false;
        }
        match adm.gate(local, remote, data) {
            Gate::Pass => true,
            Gate::Challenge(t) => {
                ctx.sockets.try_send(&t);
                false
            }
            Gate::Drop(Refusal::Malformed) => {
                ctx.malformed();
                false
            }
            Gate::Drop(_) => false,
        }
    }

    fn undo(&self, remote: std::net::SocketAddr) {
        if let Some(ctx) = self.0.upgrade() {
            ctx.admission.release(remote.ip());
        }
    }
}
