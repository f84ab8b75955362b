//! The IKE SA's status (`vpnctl status`), published after every step to a
//! view its connection reads without asking the actor: a status request
//! costs no message and never waits behind an SA that is out computing
//! keys. The strings are rebuilt only when the SA's shape changes (state,
//! addresses, SPIs, CHILD SAs); the times and counters are filled in when
//! the view is read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ike::config::display_identity;
use ike::sa::State;
use kernel::Dataplane;

use super::IkeState;
use crate::status::{ChildStatus, IkeStatus};

/// What `status` shows of one IKE SA, as last published.
pub struct IkeView {
    status: IkeStatus,
    established_at: Option<Instant>,
    rekey_at: Option<Instant>,
    /// For each of `status.child_sas`, in order.
    children: Vec<ChildTimes>,
}

struct ChildTimes {
    spi_in: u32,
    installed: Option<Instant>,
    rekey_at: Option<Instant>,
}

/// Shared by an IKE SA actor (which writes) and its connection (which
/// reads).
pub type IkeViewRef = Arc<Mutex<IkeView>>;

impl IkeView {
    /// An SA that has not started: "connecting", nothing known yet.
    pub fn new_ref() -> IkeViewRef {
        Arc::new(Mutex::new(IkeView {
            status: IkeStatus {
                id: 0,
                state: "connecting".into(),
                local: String::new(),
                remote: String::new(),
                local_id: String::new(),
                remote_id: String::new(),
                remote_cert: None,
                proposal: String::new(),
                established_secs: 0,
                initiator: true,
                spi_i: String::new(),
                spi_r: String::new(),
                encap: false,
                rekey_secs: None,
                child_sas: Vec::new(),
            },
            established_at: None,
            rekey_at: None,
            children: Vec::new(),
        }))
    }

    /// The status as of `now`, with the CHILD SAs' counters from
    /// `dataplane`.
    pub fn read(&self, dataplane: &dyn Dataplane, now: Instant) -> IkeStatus {
        let secs_since =
            |t: Option<Instant>| t.map_or(0, |t| now.saturating_duration_since(t).as_secs());
        let secs_until = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
        let mut s = self.status.clone();
        s.established_secs = secs_since(self.established_at);
        s.rekey_secs = secs_until(self.rekey_at);
        for (c, t) in s.child_sas.iter_mut().zip(&self.children) {
            let n = dataplane.counters(t.spi_in).unwrap_or_default();
            c.installed_secs = secs_since(t.installed);
            c.rekey_secs = secs_until(t.rekey_at);
            (c.bytes_in, c.bytes_out) = (n.bytes_in, n.bytes_out);
            (c.packets_in, c.packets_out) = (n.packets_in, n.packets_out);
            (c.replay_drops, c.integrity_failures) = (n.replay_drops, n.integrity_failures);
        }
        s
    }
}

/// What the published strings depend on: when it is unchanged, only the
/// instants are updated.
#[derive(Clone, PartialEq, Default)]
pub(super) struct Shape {
    state: Option<State>,
    addrs: Option<(SocketAddr, SocketAddr)>,
    spis: (u64, u64),
    ids: (bool, bool, bool),
    proposal: bool,
    encap: bool,
    /// Each CHILD SA's inbound SPI, state and whether its actor runs.
    children: Vec<(u32, &'static str, bool)>,
}

impl IkeState {
    /// Name the view's SA (its id is chosen when the actor starts).
    pub(super) fn init_view(&self) {
        self.view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status
            .id = self.id;
    }

    pub(super) fn publish_status(&mut self) {
        let Some(sa) = self.sa.as_ref() else { return };
        let shape = Shape {
            state: Some(sa.state()),
            addrs: Some((sa.local_addr(), sa.remote_addr())),
            spis: (sa.spi_i(), sa.spi_r()),
            ids: (
                sa.local_id().is_some(),
                sa.remote_id().is_some(),
                sa.remote_cert().is_some(),
            ),
            proposal: sa.proposal().is_some(),
            encap: sa.encap(),
            children: sa
                .child_sas()
                .map(|(c, state)| (c.spi_in, state, self.children.contains_key(&c.spi_in)))
                .collect(),
        };
        let children: Vec<ChildTimes> = sa
            .child_sas()
            .map(|(c, _)| ChildTimes {
                spi_in: c.spi_in,
                installed: self.children.get(&c.spi_in).map(|a| a.installed),
                rekey_at: sa.child_rekey_at(c.spi_in),
            })
            .collect();
        let rebuilt = (shape != self.shape).then(|| self.status_strings());
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = rebuilt {
            view.status = status;
            self.shape = shape;
        }
        view.established_at = sa.established_at();
        view.rekey_at = sa.rekey_at();
        view.children = children;
    }

    /// The status strings of the SA as it is now (times and counters are
    /// the view's to fill in).
    fn status_strings(&self) -> IkeStatus {
        let sa = self.sa.as_ref().expect("an SA to describe");
        let child_sas = sa
            .child_sas()
            .map(|(c, state)| ChildStatus {
                name: c.name.clone(),
                state: if self.children.contains_key(&c.spi_in) {
                    state.to_string()
                } else {
                    "installing".into()
                },
                reqid: self.ctx.reqid(&self.spec.name, &c.name),
                spi_in: format!("{:08x}", c.spi_in),
                spi_out: format!("{:08x}", c.spi_out),
                local_ts: c
                    .local_ts
                    .iter()
                    .map(|t| ike::ts::Display(t).to_string())
                    .collect(),
                remote_ts: c
                    .remote_ts
                    .iter()
                    .map(|t| ike::ts::Display(t).to_string())
                    .collect(),
                proposal: c.proposal.describe(),
                mode: format!("{:?}", c.mode).to_uppercase(),
                installed_secs: 0,
                rekey_secs: None,
                bytes_in: 0,
                bytes_out: 0,
                packets_in: 0,
                packets_out: 0,
                replay_drops: 0,
                integrity_failures: 0,
            })
            .collect();
        let fmt_addr = |a: SocketAddr| format!("{}[{}]", a.ip(), a.port());
        IkeStatus {
            id: self.id,
            state: sa.state().to_string(),
            local: fmt_addr(sa.local_addr()),
            remote: fmt_addr(sa.remote_addr()),
            local_id: sa.local_id().map(display_identity).unwrap_or_default(),
            remote_id: sa.remote_id().map(display_identity).unwrap_or_default(),
            remote_cert: sa.remote_cert().map(str::to_string),
            proposal: sa.proposal().map(|p| p.describe()).unwrap_or_default(),
            established_secs: 0,
            initiator: sa.is_initiator(),
            spi_i: format!("{:016x}", sa.spi_i()),
            spi_r: format!("{:016x}", sa.spi_r()),
            encap: sa.encap(),
            rekey_secs: None,
            child_sas,
        }
    }
}
