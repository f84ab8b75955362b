//! What the daemon knows of a connection: the `ike` view plus the policies
//! the actors apply (auto, retry, DPD, rekey, updown). Built by `control`
//! from the configuration.

use std::collections::HashMap;
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
    /// CHILD SA rekey interval per child name (0 = never).
    pub child_rekey: HashMap<String, Duration>,
    pub updown: HashMap<String, PathBuf>,
    /// Dataplane lifetimes per child name (volume limits; the hard time
    /// limit defaults to 110% of the rekey time, as in strongSwan).
    pub child_lifetime: HashMap<String, kernel::Lifetime>,
    /// Rekey jitter, percent.
    pub jitter_pct: u32,
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
}
