//! Routes for kernel-ESP tunnels, as strongSwan's `install_routes`: each
//! tunnel-mode child's remote selectors are routed in table 220 (by
//! default) out of the interface that faces the peer, with an address of
//! this host inside the local selectors as the source, and a rule
//! `priority 220 lookup 220` sends traffic there. The kernel's XFRM lookup
//! then moves matching packets into the tunnel; without a route, traffic
//! this gateway originates to a remote LAN would have nowhere to go.
//!
//! Routes are shared: two children with the same remote prefix hold it
//! together, and it goes with the last.

use std::collections::HashMap;
use std::net::{IpAddr, UdpSocket};

use ike::config::Mode;
use ike::wire::TrafficSelector;

use crate::userspace::route::{self, MarkRule, Routes};

/// One route: destination prefix, device, preferred source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix: u8,
    pub ifindex: u32,
    pub src: Option<IpAddr>,
}

/// The address this host sends to `remote` from (no packet is sent).
fn source_towards(remote: IpAddr) -> Option<IpAddr> {
    let any: std::net::SocketAddr = if remote.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect((remote, 500)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// The routes of a child: tunnel mode only; none that would cover the
/// peer's own address (its IKE and ESP must not follow them).
pub fn child_routes(
    local_ts: &[TrafficSelector],
    remote_ts: &[TrafficSelector],
    local: IpAddr,
    remote: IpAddr,
    mode: Mode,
) -> Vec<Route> {
    if mode != Mode::Tunnel || remote.is_unspecified() {
        return Vec::new();
    }
    let local = if local.is_unspecified() {
        match source_towards(remote) {
            Some(l) => l,
            None => return Vec::new(),
        }
    } else {
        local
    };
    let Some(ifindex) = route::ifindex_of_addr(local) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in remote_ts {
        let src = local_ts
            .iter()
            .filter(|l| l.start_addr.is_ipv4() == r.start_addr.is_ipv4())
            .find_map(|l| route::local_addr_in(l.start_addr, l.end_addr));
        for (dst, prefix) in route::range_to_prefixes(r.start_addr, r.end_addr) {
            let covers_peer = dst.is_ipv4() == remote.is_ipv4()
                && crate::xfrm::build::covering_prefix(dst, remote).1 >= prefix;
            if covers_peer {
                tracing::info!(
                    target: "vpnd::xfrm",
                    "no route for {dst}/{prefix}: it covers the peer {remote}"
                );
                continue;
            }
            out.push(Route {
                dst,
                prefix,
                ifindex,
                src,
            });
        }
    }
    out
}

/// The route table, its rule and the shared routes in it.
pub struct RouteTable {
    routes: Routes,
    rule: MarkRule,
    refs: std::sync::Mutex<HashMap<(IpAddr, u8), (Route, usize)>>,
}

impl RouteTable {
    /// Opens the table and installs its rule (replacing one a crashed vpnd
    /// left).
    pub fn open(table: u32) -> std::io::Result<RouteTable> {
        let routes = Routes::with_table(table)?;
        let rule = MarkRule {
            priority: 220,
            fwmark: 0,
            table,
        };
        routes.add_rule(rule)?;
        Ok(RouteTable {
            routes,
            rule,
            refs: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn add(&self, rs: &[Route]) {
        let mut refs = self.refs.lock().unwrap_or_else(|p| p.into_inner());
        for r in rs {
            let e = refs.entry((r.dst, r.prefix)).or_insert((*r, 0));
            e.1 += 1;
            if e.1 == 1 {
                if let Err(e) = self.routes.add(r.dst, r.prefix, r.ifindex, r.src) {
                    tracing::warn!(
                        target: "vpnd::xfrm",
                        "cannot install route {}/{} in table {}: {e}",
                        r.dst,
                        r.prefix,
                        self.routes.table()
                    );
                }
            }
        }
    }

    pub fn remove(&self, rs: &[Route]) {
        let mut refs = self.refs.lock().unwrap_or_else(|p| p.into_inner());
        for r in rs {
            let key = (r.dst, r.prefix);
            let Some(e) = refs.get_mut(&key) else {
                continue;
            };
            e.1 -= 1;
            if e.1 == 0 {
                let (route, _) = refs.remove(&key).expect("present");
                let _ = self.routes.del(route.dst, route.prefix, route.ifindex);
            }
        }
    }
}

impl Drop for RouteTable {
    fn drop(&mut self) {
        let refs = std::mem::take(self.refs.get_mut().unwrap_or_else(|p| p.into_inner()));
        for (_, (r, _)) in refs {
            let _ = self.routes.del(r.dst, r.prefix, r.ifindex);
        }
        let _ = self.routes.del_rule(self.rule);
    }
}
