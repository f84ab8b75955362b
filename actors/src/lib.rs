//! vpnd's actors: Daemon → Connection → IKE SA → CHILD SA, the UDP socket
//! layer and the shared context. They wrap the sans-IO `ike` state machines
//! and run under ractor supervision with explicit restart policies.
//!
//! `DaemonHandle` is the API the control layer drives.

pub mod admission;
pub mod child_retry;
pub mod child_sa;
pub mod connection;
pub mod ctx;
pub mod daemon;
pub mod directory;
pub mod ike_sa;
pub mod memnet;
pub mod report;
pub mod responders;
pub mod revival;
pub mod router;
pub mod socket;
pub mod spec;
pub mod spis;
pub mod status;
pub mod uniqueness;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kernel::Dataplane;
use ractor::{Actor, ActorRef};
use runtime::scheduler::{SchedulerConfig, SchedulerHandle};
use tokio::sync::broadcast;

pub use daemon::{Api, ApiReply};
pub use spec::{Auto, ChildSpec, ConnSpec, DpdAction};

use crate::ctx::{Ctx, CtxRef};
use crate::daemon::{DaemonActor, DaemonArgs, DaemonMsg};
use crate::revival::Revival;
use crate::socket::Sockets;
use crate::status::MonitorEvent;

/// Daemon-wide settings.
pub struct DaemonSettings {
    pub listen: Vec<IpAddr>,
    pub dataplane: Arc<dyn Dataplane>,
    pub scheduler: SchedulerConfig,
    /// `vpnd --impair`.
    pub impair: bool,
    /// Cookies and half-open caps (`[daemon]` flood settings).
    pub admission: admission::AdmissionConfig,
    /// `[daemon] state_dir`: where the revival state lives; `None` turns
    /// revival off.
    pub state_dir: Option<std::path::PathBuf>,
}

/// A running daemon.
pub struct DaemonHandle {
    actor: ActorRef<DaemonMsg>,
    ctx: CtxRef,
    join: tokio::task::JoinHandle<()>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    revival_writer: Option<tokio::task::JoinHandle<()>>,
}

impl DaemonHandle {
    /// Bind the sockets, start the scheduler and the actor tree, load `conns`.
    pub async fn start(
        settings: DaemonSettings,
        conns: Vec<ConnSpec>,
    ) -> Result<DaemonHandle, String> {
        let sockets = Sockets::bind(&settings.listen, &settings.dataplane)
            .await
            .map_err(|e| e.to_string())?;
        Self::start_on(settings, conns, sockets).await
    }

    /// `start` on sockets of the caller's (an in-memory network in tests,
    /// `Sockets::memory`: then key computations run inline too, so tokio's
    /// paused clock sees all the work).
    pub async fn start_on(
        settings: DaemonSettings,
        conns: Vec<ConnSpec>,
        sockets: Sockets,
    ) -> Result<DaemonHandle, String> {
        let in_memory = sockets.is_memory();
        let (scheduler, _) = SchedulerHandle::spawn(settings.scheduler, None)
            .await
            .map_err(|e| format!("scheduler: {e}"))?;
        scheduler.set_inline(in_memory);
        let (revival, revive) = match settings.state_dir {
            Some(dir) => {
                let shown = dir.display().to_string();
                let (r, names) = tokio::task::spawn_blocking(move || Revival::open(&dir))
                    .await
                    .map_err(|e| format!("revival state: {e}"))?;
                match r {
                    Ok(r) => (Some(r), names),
                    Err(e) => {
                        tracing::warn!("revival is off: state_dir {shown} cannot be used: {e}");
                        (None, Vec::new())
                    }
                }
            }
            None => (None, Vec::new()),
        };
        let revival_writer = revival.as_ref().map(Revival::spawn_writer);
        let ctx = Arc::new(Ctx::new(
            settings.dataplane,
            scheduler.clone(),
            sockets,
            settings.impair,
            settings.admission,
            revival,
        ));
        ctx.guard_responders();
        tokio::spawn(admission::watch(Arc::downgrade(&ctx)));
        let (actor, join) = Actor::spawn(
            // Registered by name once per process; daemons on an in-memory
            // network share one process.
            (!in_memory).then(|| "vpnd".to_string()),
            DaemonActor,
            DaemonArgs {
                ctx: ctx.clone(),
                conns,
                revive,
            },
        )
        .await
        .map_err(|e| format!("daemon: {e}"))?;
        let readers = ctx.sockets.spawn_readers(ctx.router.clone());
        let mut pressure = scheduler.subscribe_pressure();
        let ctx2 = ctx.clone();
        tokio::spawn(async move {
            while let Ok(s) = pressure.recv().await {
                ctx2.event(
                    None,
                    "scheduler",
                    format!(
                        "key computations: {} queued, {} in flight",
                        s.queued, s.in_flight
                    ),
                );
            }
        });
        Ok(DaemonHandle {
            actor,
            ctx,
            join,
            readers,
            revival_writer,
        })
    }

    /// Ask the daemon something; waits at most `timeout`.
    pub async fn api(&self, api: Api, timeout: Duration) -> ApiReply {
        match self
            .actor
            .call(|p| DaemonMsg::Api(api, p), Some(timeout))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(r)) => r,
            Ok(ractor::rpc::CallResult::Timeout) => {
                ApiReply::Err("the daemon did not answer in time".into())
            }
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
                ApiReply::Err("the daemon is not running".into())
            }
        }
    }

    /// The monitor stream (state changes, retries, kills, scheduler pressure).
    pub fn monitor(&self) -> broadcast::Receiver<MonitorEvent> {
        self.ctx.monitor.subscribe()
    }

    /// New flood settings (reload); admitted half-open SAs stay.
    pub fn set_admission(&self, cfg: admission::AdmissionConfig) {
        self.ctx.admission.set_config(cfg);
    }

    /// CHILD SA actors reachable by SPI (for the dataplane's lifetime
    /// events). Each leaves this table however it ends: a test checks
    /// that none outlives its actor.
    pub fn registered_children(&self) -> usize {
        self.ctx.children.len()
    }

    pub fn dataplane(&self) -> &Arc<dyn Dataplane> {
        &self.ctx.dataplane
    }

    /// Stop everything: connections are killed (best-effort DELETEs). The
    /// revival state keeps what was up before: a restarted daemon brings it
    /// back.
    pub async fn shutdown(self) {
        if let Some(r) = &self.ctx.revival {
            r.freeze();
            r.flush().await;
        }
        if let Some(w) = &self.revival_writer {
            w.abort();
        }
        if let ApiReply::Names(names) = self.api(Api::Names, Duration::from_secs(2)).await {
            for n in names {
                let _ = self.api(Api::Kill(n), Duration::from_secs(2)).await;
            }
        }
        // Let down scripts of the killed CHILD SAs finish (bounded).
        self.ctx.updown.idle(Duration::from_secs(12)).await;
        self.actor.stop(None);
        let _ = self.join.await;
        for r in self.readers {
            r.abort();
        }
    }
}
