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
    if c.auto == Auto::Ignore {
        return Ok(None);
    }
    let peer = c.to_peer_config(secrets).map_err(|e| {
        format!(
            "{}:{}: connections.{}: {e}",
            c.file.display(),
            c.line,
            c.name
        )
    })?;
    Ok(Some(ConnSpec {
        name: c.name.clone(),
        peer: Arc::new(peer),
        auto: c.auto,
        local_addrs: c.local_addrs.clone(),
        remote_addrs: c
            .remote_addrs
            .iter()
            .map(|r| match r {
                RemoteAddr::Ip(a) => Some(*a),
                RemoteAddr::Any => None,
            })
            .collect(),
        retry: RetryPolicy {
            keyingtries: c.keyingtries,
            retry_base: c.retry_base,
            retry_max: c.retry_max,
            jitter_pct,
        },
        dpd_delay: c.dpd_delay,
        dpd_action: c.dpd_action,
        rekey_time: c.rekey_time,
        children: c
            .children
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
