//! An in-memory network between daemons of one process, for tests of the
//! whole actor tree on tokio's paused clock: a datagram one daemon sends
//! goes straight into the router of the daemon that has its destination
//! address. Hosts can be unplugged to make a peer vanish.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

use ike::sa::Transmit;

use crate::router::ActorRouter;

/// Which datagrams a test wants lost.
pub type LossRule = Box<dyn Fn(&Transmit) -> bool + Send>;

#[derive(Default)]
pub struct MemoryNet {
    hosts: Mutex<HashMap<IpAddr, Weak<ActorRouter>>>,
    unplugged: Mutex<HashSet<IpAddr>>,
    lose: Mutex<Option<LossRule>>,
}

impl MemoryNet {
    pub fn new() -> Arc<MemoryNet> {
        Arc::new(MemoryNet::default())
    }

    /// Datagrams to `ip` go to `router`.
    pub fn attach(&self, ip: IpAddr, router: &Arc<ActorRouter>) {
        self.hosts
            .lock()
            .expect("net lock")
            .insert(ip, Arc::downgrade(router));
    }

    /// Datagrams from or to `ip` are lost until `plug`.
    pub fn unplug(&self, ip: IpAddr) {
        self.unplugged.lock().expect("net lock").insert(ip);
    }

    pub fn plug(&self, ip: IpAddr) {
        self.unplugged.lock().expect("net lock").remove(&ip);
    }

    /// Lose every datagram `rule` picks, until `lose(None)`.
    pub fn lose(&self, rule: Option<LossRule>) {
        *self.lose.lock().expect("net lock") = rule;
    }

    /// Put a datagram on the wire as if `t.local` sent it (a test's
    /// spoofed or crafted traffic).
    pub fn inject(&self, t: &Transmit) {
        self.deliver(t);
    }

    pub(crate) fn deliver(&self, t: &Transmit) {
        {
            let off = self.unplugged.lock().expect("net lock");
            if off.contains(&t.local.ip()) || off.contains(&t.remote.ip()) {
                return;
            }
        }
        if self
            .lose
            .lock()
            .expect("net lock")
            .as_ref()
            .is_some_and(|r| r(t))
        {
            return;
        }
        let router = self
            .hosts
            .lock()
            .expect("net lock")
            .get(&t.remote.ip())
            .and_then(Weak::upgrade);
        let Some(router) = router else { return };
        if t.non_esp_marker {
            let data = [&[0u8; 4][..], &t.data].concat();
            router.route(t.remote, t.local, &data, true);
        } else {
            router.route(t.remote, t.local, &t.data, false);
        }
    }
}
