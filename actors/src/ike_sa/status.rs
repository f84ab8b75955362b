//! The IKE SA actor's status snapshot (`vpnctl status`), refreshed after
//! every step so a status request is answered at once, even while the SA
//! is out computing keys.

use std::net::SocketAddr;

use ike::config::display_identity;

use super::IkeState;
use crate::status::{ChildStatus, IkeStatus};

impl IkeState {
    pub(super) fn refresh_snapshot(&mut self) {
        let Some(sa) = self.sa.as_ref() else { return };
        let now = runtime::clock::now();
        let children = sa
            .child_sas()
            .map(|(c, state)| {
                let counters = self.ctx.dataplane.counters(c.spi_in).unwrap_or_default();
                let installed = self.children.get(&c.spi_in);
                ChildStatus {
                    name: c.name.clone(),
                    state: if installed.is_some() {
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
                    installed_secs: installed
                        .map(|c| now.saturating_duration_since(c.installed).as_secs())
                        .unwrap_or(0),
                    rekey_secs: sa
                        .child_rekey_at(c.spi_in)
                        .map(|t| t.saturating_duration_since(now).as_secs()),
                    bytes_in: counters.bytes_in,
                    bytes_out: counters.bytes_out,
                    packets_in: counters.packets_in,
                    packets_out: counters.packets_out,
                    replay_drops: counters.replay_drops,
                    integrity_failures: counters.integrity_failures,
                }
            })
            .collect();
        let fmt_addr = |a: SocketAddr| format!("{}[{}]", a.ip(), a.port());
        self.snapshot = IkeStatus {
            id: self.id,
            state: sa.state().to_string(),
            local: fmt_addr(sa.local_addr()),
            remote: fmt_addr(sa.remote_addr()),
            local_id: sa.local_id().map(display_identity).unwrap_or_default(),
            remote_id: sa.remote_id().map(display_identity).unwrap_or_default(),
            remote_cert: sa.remote_cert().map(str::to_string),
            proposal: sa.proposal().map(|p| p.describe()).unwrap_or_default(),
            established_secs: sa
                .established_at()
                .map(|t| now.saturating_duration_since(t).as_secs())
                .unwrap_or(0),
            initiator: sa.is_initiator(),
            spi_i: format!("{:016x}", sa.spi_i()),
            spi_r: format!("{:016x}", sa.spi_r()),
            encap: sa.encap(),
            rekey_secs: sa
                .rekey_at()
                .map(|t| t.saturating_duration_since(now).as_secs()),
            child_sas: children,
        };
    }
}
