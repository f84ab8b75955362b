//! What vpnd has put in the kernel, per connection: the pure bookkeeping
//! behind the XFRM backend. Each CHILD SA's states, each child's policies
//! (an SA's or its trap's), reserved SPIs and inbound SAs kept a moment
//! after a rekey. `remove_owner` reads exactly one connection's objects
//! from here, which is what lets a `kill` leave nothing behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use netlink_packet_xfrm::XfrmMessage;

use super::build::{PolicyKey, StateKey, XfrmOptions};
use crate::{InstalledSa, Trap};

/// One installed SA pair.
#[derive(Clone, Debug)]
pub struct SaEntry {
    pub owner: String,
    pub child: String,
    pub reqid: u32,
    pub spi_in: u32,
    pub spi_out: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub opts: XfrmOptions,
    /// ESP-in-UDP: NAT keepalives go to `remote`.
    pub encap: bool,
    /// The outbound state, waiting until the SA it replaces goes (we
    /// answered the rekey: the peer may not have the new inbound SA yet).
    pub pending_out: Option<XfrmMessage>,
}

impl SaEntry {
    pub fn in_key(&self) -> StateKey {
        StateKey {
            dst: self.local.ip(),
            spi: self.spi_in,
        }
    }

    pub fn out_key(&self) -> StateKey {
        StateKey {
            dst: self.remote.ip(),
            spi: self.spi_out,
        }
    }
}

/// One connection child's policies.
#[derive(Clone, Debug, Default)]
pub struct ChildEntry {
    /// What is in the kernel for it (empty: nothing).
    pub policies: Vec<PolicyKey>,
    /// Whether those are the trap's (no SA yet).
    pub trapped: bool,
    /// Its trap, to put back when its last SA goes.
    pub trap: Option<Trap>,
    /// Its SA pairs, by inbound SPI.
    pub sas: BTreeSet<u32>,
    /// The routes that came with its policies.
    pub routes: Vec<super::routes::Route>,
}

/// An object to delete later or at `remove_owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loose {
    pub key: StateKey,
    pub mark: (u32, u32),
}

#[derive(Default)]
pub struct Tables {
    pub sas: HashMap<u32, SaEntry>,
    pub children: BTreeMap<(String, String), ChildEntry>,
    /// Kernel state (destination, SPI) → the inbound SPI of its pair.
    pub by_state: HashMap<StateKey, u32>,
    /// Kernel reqid → (owner, child), for ACQUIREs.
    pub by_reqid: HashMap<u32, (String, String)>,
    /// SPIs reserved with ALLOCSPI and not installed yet.
    pub larval: HashMap<u32, (String, StateKey)>,
    /// Inbound states of rekeyed SAs, kept a moment for late packets.
    pub lingering: HashMap<u32, (String, Loose)>,
    /// Old inbound SPI → the rekeyed SA whose outbound state waits for it.
    pub successor: HashMap<u32, u32>,
}

impl Tables {
    pub fn child_mut(&mut self, owner: &str, child: &str) -> &mut ChildEntry {
        self.children
            .entry((owner.to_string(), child.to_string()))
            .or_default()
    }

    /// The children of `owner`.
    pub fn owner_children(&self, owner: &str) -> Vec<(String, String)> {
        self.children
            .range((owner.to_string(), String::new())..)
            .take_while(|((o, _), _)| o == owner)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Inbound SPIs of `owner`'s SA pairs, by its children.
    pub fn spis_of(&self, owner: &str) -> Vec<u32> {
        self.children
            .range((owner.to_string(), String::new())..)
            .take_while(|((o, _), _)| o == owner)
            .flat_map(|(_, c)| c.sas.iter().copied())
            .collect()
    }

    pub fn insert_sa(&mut self, sa: SaEntry) {
        self.by_state.insert(sa.in_key(), sa.spi_in);
        self.by_state.insert(sa.out_key(), sa.spi_in);
        self.larval.remove(&sa.spi_in);
        self.child_mut(&sa.owner, &sa.child).sas.insert(sa.spi_in);
        self.sas.insert(sa.spi_in, sa);
    }

    pub fn take_sa(&mut self, spi_in: u32) -> Option<SaEntry> {
        let sa = self.sas.remove(&spi_in)?;
        self.by_state.remove(&sa.in_key());
        self.by_state.remove(&sa.out_key());
        if let Some(c) = self.children.get_mut(&(sa.owner.clone(), sa.child.clone())) {
            c.sas.remove(&spi_in);
        }
        Some(sa)
    }

    /// Forgets an empty child with no trap.
    pub fn prune(&mut self, owner: &str, child: &str) {
        let key = (owner.to_string(), child.to_string());
        if self
            .children
            .get(&key)
            .is_some_and(|c| c.sas.is_empty() && c.trap.is_none() && c.policies.is_empty())
        {
            self.children.remove(&key);
        }
    }

    pub fn installed(&self) -> Vec<InstalledSa> {
        let mut v: Vec<InstalledSa> = self
            .sas
            .values()
            .map(|s| InstalledSa {
                owner: s.owner.clone(),
                child: s.child.clone(),
                reqid: s.reqid,
                spi_in: s.spi_in,
                spi_out: s.spi_out,
            })
            .collect();
        v.sort_by_key(|s| s.spi_in);
        v
    }

    pub fn traps(&self) -> Vec<Trap> {
        self.children
            .values()
            .filter_map(|c| c.trap.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(owner: &str, spi_in: u32) -> SaEntry {
        SaEntry {
            owner: owner.into(),
            child: "net".into(),
            reqid: 1,
            spi_in,
            spi_out: spi_in + 1,
            local: "198.18.0.1:4500".parse().unwrap(),
            remote: "198.18.0.2:4500".parse().unwrap(),
            opts: XfrmOptions::default(),
            encap: true,
            pending_out: None,
        }
    }

    #[test]
    fn sas_are_found_by_either_state_and_by_owner() {
        let mut t = Tables::default();
        t.insert_sa(sa("a", 0x100));
        t.insert_sa(sa("ab", 0x200));
        t.insert_sa(sa("b", 0x300));
        let k = StateKey {
            dst: "198.18.0.2".parse().unwrap(),
            spi: 0x101,
        };
        assert_eq!(t.by_state.get(&k), Some(&0x100));
        // "a" is a prefix of "ab": the owner's range holds only "a".
        assert_eq!(t.owner_children("a"), vec![("a".into(), "net".into())]);
        let gone = t.take_sa(0x100).unwrap();
        assert_eq!(gone.spi_in, 0x100);
        assert!(!t.by_state.contains_key(&k));
        t.prune("a", "net");
        assert!(t.owner_children("a").is_empty());
        assert_eq!(t.installed().len(), 2);
    }
}
