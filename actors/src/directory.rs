//! The loaded connections as the responder path sees them: indexed by the
//! peer's address, and grouped per address pair into the candidate set a
//! new responder SA weighs (`ike::sa::Candidates`).
//!
//! A new IKE_SA_INIT asks "which connections admit this pair?" before it
//! costs an actor (the admission gate), and again when its SA starts. A
//! gateway with thousands of connections to one peer must not answer by
//! scanning them all, nor build a candidate list per request: the answer
//! for a pair is built once, on first use, and shared by every SA from it
//! until the next `publish` replaces the whole directory. Only pairs whose
//! remote address some connection names get their own entry; every other
//! source (a `%any` connection's roadwarriors, or a spoofing flood) shares
//! one entry per local address, so the cache is bounded by the config.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use ike::sa::{Candidates, CandidatesRef};

use crate::spec::ConnSpec;

/// What a responder SA from one address pair gets.
#[derive(Debug)]
pub struct Group {
    /// The first admitting connection in load order: its settings serve
    /// until IKE_AUTH picks the connection.
    pub first: Option<Arc<ConnSpec>>,
    /// Some admitting connection names the peer's address (not `%any`).
    pub named: bool,
    pub candidates: CandidatesRef,
}

/// The loaded connections, in load order, and their index.
#[derive(Debug, Default)]
pub struct Directory {
    specs: Vec<Arc<ConnSpec>>,
    /// Positions of connections naming each remote address.
    by_remote: HashMap<IpAddr, Vec<u32>>,
    /// Positions of `%any` connections.
    any_remote: Vec<u32>,
    groups: DashMap<(IpAddr, Option<IpAddr>), Arc<Group>>,
}

impl Directory {
    pub fn new(specs: Vec<Arc<ConnSpec>>) -> Directory {
        let mut d = Directory::default();
        for (i, s) in specs.iter().enumerate() {
            let i = i as u32;
            if s.remote_addrs.iter().any(Option::is_none) {
                d.any_remote.push(i);
                continue;
            }
            for a in s.remote_addrs.iter().flatten() {
                let at = d.by_remote.entry(*a).or_default();
                if at.last() != Some(&i) {
                    at.push(i);
                }
            }
        }
        d.specs = specs;
        d
    }

    pub fn specs(&self) -> &[Arc<ConnSpec>] {
        &self.specs
    }

    /// The connections admitting `remote` → `local`, as one shared group.
    pub fn group(&self, local: IpAddr, remote: IpAddr) -> Arc<Group> {
        let named = self.by_remote.get(&remote);
        let key = (local, named.map(|_| remote));
        if let Some(g) = self.groups.get(&key) {
            return g.clone();
        }
        let named = named.map_or(&[][..], Vec::as_slice);
        let mut at: Vec<u32> = named.iter().chain(&self.any_remote).copied().collect();
        at.sort_unstable();
        at.dedup();
        let specs: Vec<&Arc<ConnSpec>> = at
            .iter()
            .map(|&i| &self.specs[i as usize])
            .filter(|s| s.local_addrs.is_empty() || s.local_addrs.contains(&local))
            .collect();
        let group = Arc::new(Group {
            first: specs.first().map(|s| Arc::clone(s)),
            named: specs.iter().any(|s| s.remote_addrs.contains(&Some(remote))),
            candidates: Arc::new(Candidates::new(
                specs.iter().map(|s| s.peer.clone()).collect(),
            )),
        });
        self.groups.insert(key, group.clone());
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, local: &[&str], remote: &[Option<&str>]) -> Arc<ConnSpec> {
        let peer = ike::testing::test_config(name, "a.test", "b.test", "k", false);
        Arc::new(ConnSpec {
            name: name.into(),
            peer: Arc::new(peer),
            auto: crate::spec::Auto::Add,
            local_addrs: local.iter().map(|a| a.parse().unwrap()).collect(),
            remote_addrs: remote
                .iter()
                .map(|a| a.map(|a| a.parse().unwrap()))
                .collect(),
            retry: runtime::retry::RetryPolicy::default(),
            dpd_delay: std::time::Duration::ZERO,
            dpd_action: crate::spec::DpdAction::Clear,
            rekey_time: std::time::Duration::ZERO,
            children: Vec::new(),
            jitter_pct: 0,
        })
    }

    fn names(g: &Group) -> Vec<String> {
        g.candidates.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn groups_follow_load_order_and_the_addresses() {
        let d = Directory::new(vec![
            spec("b1", &[], &[Some("192.0.2.2")]),
            spec("any", &[], &[None]),
            spec(
                "b2",
                &["192.0.2.1"],
                &[Some("192.0.2.2"), Some("192.0.2.2")],
            ),
            spec("c", &[], &[Some("192.0.2.3")]),
            spec("other-local", &["192.0.2.9"], &[Some("192.0.2.2")]),
        ]);
        let (l, b, x) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        );
        let g = d.group(l, b);
        assert_eq!(names(&g), ["b1", "any", "b2"]);
        assert!(g.named);
        assert_eq!(g.first.as_ref().unwrap().name, "b1");
        // Shared: the same group again, not a new one.
        assert!(Arc::ptr_eq(&g, &d.group(l, b)));
        let stranger = d.group(l, x);
        assert_eq!(names(&stranger), ["any"]);
        assert!(!stranger.named);
        // Every unnamed source shares one entry per local address.
        let y = "198.51.100.8".parse().unwrap();
        assert!(Arc::ptr_eq(&stranger, &d.group(l, y)));
        assert_eq!(d.groups.len(), 2);
    }

    #[test]
    fn no_admitting_connection_is_an_empty_group() {
        let d = Directory::new(vec![spec("b", &[], &[Some("192.0.2.2")])]);
        let g = d.group("192.0.2.1".parse().unwrap(), "192.0.2.3".parse().unwrap());
        assert!(g.candidates.is_empty() && g.first.is_none() && !g.named);
    }
}
