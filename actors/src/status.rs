//! What `vpnctl status --json` and `vpnctl stats --json` print. These
//! shapes are an interface: scripts and tests read them, so keep them stable.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub connections: Vec<ConnStatus>,
    /// With `vpnctl status --kernel`: the dataplane's objects (XFRM states
    /// and policies) that vpnd did not install, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_unknown: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConnStatus {
    pub name: String,
    pub auto: String,
    pub routed: bool,
    /// Effective retry settings (what `set` changes).
    pub keyingtries: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub retransmit_timeout_ms: u64,
    pub retransmit_tries: u32,
    pub dpd_delay_ms: u64,
    /// Failed attempts since the last success, and the next retry, if any.
    pub failed_attempts: u32,
    pub next_retry_secs: Option<f64>,
    pub last_error: Option<String>,
    /// Set when the connection used up its restarts (its IKE SA actor
    /// failed too often in the window): it stays down until `up`.
    #[serde(default)]
    pub gave_up: Option<String>,
    pub ike_sas: Vec<IkeStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IkeStatus {
    pub id: u64,
    /// connecting | established | rekeying | deleting
    pub state: String,
    pub local: String,
    pub remote: String,
    pub local_id: String,
    pub remote_id: String,
    /// The subject of the peer's certificate (`auth = pubkey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cert: Option<String>,
    pub proposal: String,
    pub established_secs: u64,
    pub initiator: bool,
    pub spi_i: String,
    pub spi_r: String,
    pub encap: bool,
    /// Seconds until the IKE SA rekeys, if it will.
    pub rekey_secs: Option<u64>,
    pub child_sas: Vec<ChildStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChildStatus {
    pub name: String,
    /// installing | installed | rekeying | deleting
    pub state: String,
    pub reqid: u32,
    pub spi_in: String,
    pub spi_out: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub proposal: String,
    pub mode: String,
    pub installed_secs: u64,
    /// Seconds until this CHILD SA rekeys, if it will.
    pub rekey_secs: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// Inbound ESP dropped as replays or left of the window.
    #[serde(default)]
    pub replay_drops: u64,
    /// Inbound ESP whose integrity check failed.
    #[serde(default)]
    pub integrity_failures: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SchedulerReport {
    pub key_computations_total: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub rate_limit_per_sec: u64,
    /// Strangers' key computations shed (queue full).
    #[serde(default)]
    pub shed_total: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsReport {
    pub actors: u64,
    pub restarts_total: u64,
    pub ike_sas: u64,
    pub child_sas: u64,
    pub half_open: u64,
    pub rss_bytes: u64,
    pub scheduler: SchedulerReport,
    pub malformed_datagrams_total: u64,
    pub connections: u64,
    pub dataplane: String,
    /// Trap policies installed (routed connections).
    pub traps: u64,
    pub updown_runs_total: u64,
    pub updown_failures_total: u64,
    /// Backend counters of the dataplane (packets, drops by cause, traps).
    #[serde(default)]
    pub dataplane_counters: std::collections::BTreeMap<String, u64>,
    /// New IKE_SA_INIT requests: cookies, caps and refusals.
    #[serde(default)]
    pub admission: crate::admission::AdmissionStats,
    /// IKE datagrams for IKE SPIs we do not have (also in
    /// `malformed_datagrams_total`).
    #[serde(default)]
    pub unknown_spi_total: u64,
}

/// One line of `vpnctl monitor`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MonitorEvent {
    /// Seconds since the daemon started.
    pub t: f64,
    pub conn: Option<String>,
    /// state | retry | kill | scheduler | child | error
    pub kind: String,
    pub message: String,
}
