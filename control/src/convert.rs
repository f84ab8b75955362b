//! From configuration to what the daemon runs: `ConnectionConfig` →
//! `actors::ConnSpec`.

use std::sync::Arc;

use actors::{Auto, ChildSpec, ConnSpec};
use runtime::retry::RetryPolicy;

use crate::config::{Config, ConnectionConfig, RemoteAddr};
use crate::secrets::Secrets;

/// The daemon's view of a connection; `None` for `auto = "ignore"`.
pub fn to_spec(
    c: &ConnectionConfig,
    secrets: &Secrets,
    jitter_pct: u32,
) -> Result<Option<ConnSpec>, String> {
    // Every key of the table, so that a new one must be placed here.
    let ConnectionConfig {
        name,
        local_addrs,
        remote_addrs,
        auto,
        rekey_time,
        dpd_delay,
        dpd_action,
        keyingtries,
        retry_base,
        retry_max,
        children,
        file,
        line,
        // In `peer`, from `to_peer_config`.
        local_id: _,
        remote_id: _,
        auth: _,
        local_cert: _,
        remote_cacert: _,
        send_cert: _,
        rsa_pss: _,
        proposals: _,
        retransmit_timeout: _,
        retransmit_tries: _,
        encap: _,
        max_child_sas: _,
        fragment_size: _,
    } = c;
    if *auto == Auto::Ignore {
        return Ok(None);
    }
    let peer = c
        .to_peer_config(secrets)
        .map_err(|e| format!("{}:{line}: connections.{name}: {e}", file.display()))?;
    Ok(Some(ConnSpec {
        name: name.clone(),
        peer: Arc::new(peer),
        auto: *auto,
        local_addrs: local_addrs.clone(),
        remote_addrs: remote_addrs
            .iter()
            .map(|r| match r {
                RemoteAddr::Ip(a) => Some(*a),
                RemoteAddr::Any => None,
            })
            .collect(),
        retry: RetryPolicy {
            keyingtries: *keyingtries,
            retry_base: *retry_base,
            retry_max: *retry_max,
            jitter_pct,
        },
        dpd_delay: *dpd_delay,
        dpd_action: *dpd_action,
        rekey_time: *rekey_time,
        children: children
            .iter()
            .map(|ch| ChildSpec {
                name: ch.name.clone(),
                rekey_time: ch.rekey_time,
                updown: ch.updown.clone(),
                lifetime: kernel::Lifetime {
                    soft_bytes: ch.rekey_bytes,
                    hard_bytes: ch.life_bytes,
                    soft_packets: ch.rekey_packets,
                    hard_packets: ch.life_packets,
                    hard_time: ch.life_time,
                },
                xfrm: ch.xfrm,
            })
            .collect(),
        jitter_pct,
    }))
}

/// Every connection of `cfg` the daemon runs.
pub fn specs(cfg: &Config) -> Result<Vec<ConnSpec>, String> {
    let mut out = Vec::new();
    for c in &cfg.connections {
        if let Some(s) = to_spec(c, &cfg.secrets, cfg.scheduler.rekey_jitter_pct)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// The responder's flood settings of `[daemon]`.
pub fn admission(d: &crate::config::DaemonConfig) -> actors::admission::AdmissionConfig {
    actors::admission::AdmissionConfig {
        cookie_threshold: d.cookie_threshold,
        cookie_threshold_ip: d.cookie_threshold_ip,
        block_threshold: d.block_threshold,
        half_open_max: d.half_open_max,
    }
}
