//! What the daemon knows of a connection: the `ike` view plus the policies
//! the actors apply (auto, retry, DPD, rekey, updown). Built by `control`
//! from the configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ike::config::PeerConfig;
use runtime::retry::RetryPolicy;

/// What the daemon does with a connection once it is loaded (`auto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auto {
    /// Initiate at once.
    Start,
    /// Install trap policies; initiate on the first matching packet.
    Route,
    /// Load only: wait for the peer or `vpnctl up`.
    Add,
    /// Validated but not loaded: `control` never hands such a connection
    /// to the daemon.
    Ignore,
}

impl Auto {
    pub fn as_str(self) -> &'static str {
        match self {
            Auto::Start => "start",
            Auto::Route => "route",
            Auto::Add => "add",
            Auto::Ignore => "ignore",
        }
    }
}

/// What happens when dead peer detection declares the peer gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpdAction {
    Clear,
    Hold,
    Restart,
}

impl DpdAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DpdAction::Clear => "clear",
            DpdAction::Hold => "hold",
            DpdAction::Restart => "restart",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnSpec {
    pub name: String,
    pub peer: Arc<PeerConfig>,
    pub auto: Auto,
    pub local_addrs: Vec<IpAddr>,
    /// `None` stands for `%any` (responder only).
    pub remote_addrs: Vec<Option<IpAddr>>,
    pub retry: RetryPolicy,
    pub dpd_delay: Duration,
    pub dpd_action: DpdAction,
    /// IKE SA rekey interval (0 = never).
    pub rekey_time: Duration,
    /// The actors' settings of each child of `peer`, in the same order.
    pub children: Vec<ChildSpec>,
    /// Rekey jitter, percent.
    pub jitter_pct: u32,
}

/// One child's settings beyond the `ike` view.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    pub name: String,
    /// CHILD SA rekey interval (0 = never).
    pub rekey_time: Duration,
    /// Script run when the child comes up and goes down.
    pub updown: Option<PathBuf>,
    /// Dataplane lifetimes (volume limits; the hard time limit defaults to
    /// 110% of the rekey time, as in strongSwan).
    pub lifetime: kernel::Lifetime,
    /// Marks and XFRM interface ids (`mark_in`, `mark_out`, `if_id_in`,
    /// `if_id_out`).
    pub xfrm: kernel::XfrmOptions,
}

impl ConnSpec {
    /// Does a datagram from `remote` to `local` belong to this connection?
    pub fn matches_addrs(&self, local: IpAddr, remote: IpAddr) -> bool {
        (self.local_addrs.is_empty() || self.local_addrs.contains(&local))
            && self
                .remote_addrs
                .iter()
                .any(|r| r.is_none_or(|a| a == remote))
    }

    /// The peer address we initiate to.
    pub fn initiate_to(&self) -> Option<IpAddr> {
        self.remote_addrs.iter().flatten().next().copied()
    }

    /// The settings of the child named `name`.
    pub fn child(&self, name: &str) -> Option<&ChildSpec> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// What `status` says of a connection with no state of its own: its
/// settings, no SAs, no attempts.
pub(crate) fn idle_status(spec: &ConnSpec) -> crate::status::ConnStatus {
    let r = &spec.peer.retransmit;
    crate::status::ConnStatus {
        name: spec.name.clone(),
        auto: spec.auto.as_str().into(),
        routed: false,
        keyingtries: spec.retry.keyingtries,
        retry_base_ms: spec.retry.retry_base.as_millis() as u64,
        retry_max_ms: spec.retry.retry_max.as_millis() as u64,
        retransmit_timeout_ms: r.timeout.as_millis() as u64,
        retransmit_tries: r.tries,
        dpd_delay_ms: spec.dpd_delay.as_millis() as u64,
        failed_attempts: 0,
        next_retry_secs: None,
        last_error: None,
        gave_up: None,
        ike_sas: Vec::new(),
    }
}
