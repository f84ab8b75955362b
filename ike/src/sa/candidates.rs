//! The connections that may take a responder IKE SA, indexed for the two
//! questions the responder asks of them.
//!
//! At IKE_SA_INIT it needs what they allow together: the IKE proposals
//! (each distinct list once), and whether any forces NAT-T, uses
//! fragmentation or certificates (and which CAs to name in CERTREQ). At
//! IKE_AUTH it needs the few whose remote identity is the peer's. A
//! gateway with thousands of connections on one address pair asks both
//! for every new SA, so both answers are computed once, when the set is
//! built, and the set is shared (`Arc`) by every SA it serves.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::PeerConfigRef;
use crate::proposal::{Chosen, ProposalSpec};
use crate::wire::{IdType, Identification};

/// Candidate connections for a responder SA, in load order.
#[derive(Debug, Default)]
pub struct Candidates {
    all: Vec<PeerConfigRef>,
    /// Each distinct IKE proposal list among them.
    proposal_sets: Vec<Vec<ProposalSpec>>,
    /// Every proposal of every candidate, in order, each once.
    proposals: Vec<ProposalSpec>,
    encap: bool,
    fragmentation: bool,
    pubkey: bool,
    /// Any of them signs with an RSA key ([`crate::config::PeerConfig::signs_slowly`]).
    signs_slowly: bool,
    /// SHA-1 key hashes of their CAs (§3.7), each once.
    certreq: Vec<u8>,
    /// Positions in `all` by exact remote identity.
    by_id: HashMap<Identification, Vec<u32>>,
    /// Positions of those that accept any identity, or a DN (which may
    /// be a pattern, or the same name encoded differently): always tried.
    open: Vec<u32>,
}

/// Shared handle, as SAs hold it.
pub type CandidatesRef = Arc<Candidates>;

impl Candidates {
    pub fn new(all: Vec<PeerConfigRef>) -> Candidates {
        let mut c = Candidates::default();
        for (i, p) in all.iter().enumerate() {
            if !c.proposal_sets.contains(&p.ike_proposals) {
                c.proposal_sets.push(p.ike_proposals.clone());
                for s in &p.ike_proposals {
                    if !c.proposals.contains(s) {
                        c.proposals.push(s.clone());
                    }
                }
            }
            c.encap |= p.encap;
            c.fragmentation |= p.fragment_size != 0;
            c.signs_slowly |= p.signs_slowly();
            if let Some(pk) = &p.pubkey {
                c.pubkey = true;
                for h in pk.certreq().map(|r| r.data).unwrap_or_default().chunks(20) {
                    if !c.certreq.chunks(20).any(|x| x == h) {
                        c.certreq.extend_from_slice(h);
                    }
                }
            }
            let i = i as u32;
            match &p.remote_id {
                Some(id) if id.id_type != IdType::ID_DER_ASN1_DN => {
                    c.by_id.entry(id.clone()).or_default().push(i)
                }
                _ => c.open.push(i),
            }
        }
        c.all = all;
        c
    }

    /// One shared set of a single connection.
    pub fn one(config: PeerConfigRef) -> CandidatesRef {
        Arc::new(Candidates::new(vec![config]))
    }

    pub fn first(&self) -> Option<&PeerConfigRef> {
        self.all.first()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PeerConfigRef> {
        self.all.iter()
    }

    /// Every proposal of every candidate, each once, in load order.
    pub(crate) fn proposals(&self) -> &[ProposalSpec] {
        &self.proposals
    }

    /// Would every candidate allow the suite `c`?
    pub(crate) fn all_allow(&self, c: &Chosen) -> bool {
        self.proposal_sets
            .iter()
            .all(|set| set.iter().any(|s| s.allows(c)))
    }

    /// Some candidate forces UDP encapsulation.
    pub(crate) fn encap(&self) -> bool {
        self.encap
    }

    /// Some candidate signs with an RSA key: the key work of an SA they
    /// may take is not known to be cheap.
    pub fn signs_slowly(&self) -> bool {
        self.signs_slowly
    }

    /// Some candidate uses IKE fragmentation.
    pub(crate) fn fragmentation(&self) -> bool {
        self.fragmentation
    }

    /// Some candidate authenticates with certificates; the CERTREQ data
    /// naming all their CAs (empty if none are configured).
    pub(crate) fn certificates(&self) -> Option<&[u8]> {
        self.pubkey.then_some(self.certreq.as_slice())
    }

    /// The candidates the peer's identity `idi` selects (and, if it named
    /// one, whose local identity is `idr`), in load order.
    pub(crate) fn by_identity<'a>(
        &'a self,
        idi: &'a Identification,
        idr: Option<&'a Identification>,
    ) -> impl Iterator<Item = &'a PeerConfigRef> + 'a {
        let exact = self.by_id.get(idi).map_or(&[][..], Vec::as_slice);
        merged(exact, &self.open)
            .map(|i| &self.all[i as usize])
            .filter(move |c| {
                c.matches_remote(idi) && idr.is_none_or(|r| crate::pki::same_id(r, &c.local_id))
            })
    }
}

/// Two ascending position lists as one ascending sequence.
fn merged<'a>(a: &'a [u32], b: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_identity;
    use crate::testing::test_config;

    fn conf(name: &str, remote: Option<&str>) -> PeerConfigRef {
        let mut c = test_config(name, "gw.test", "x.test", "k", false);
        c.remote_id = remote.map(|r| parse_identity(r).unwrap());
        Arc::new(c)
    }

    #[test]
    fn identity_lookup_keeps_load_order_across_exact_and_open() {
        let set = Candidates::new(vec![
            conf("any", None),
            conf("b", Some("b.test")),
            conf("dn", Some("C=CH, O=strongSwan, CN=*")),
            conf("b2", Some("b.test")),
            conf("c", Some("c.test")),
        ]);
        let names = |id: &str| -> Vec<String> {
            let id = parse_identity(id).unwrap();
            set.by_identity(&id, None).map(|c| c.name.clone()).collect()
        };
        assert_eq!(names("b.test"), ["any", "b", "b2"]);
        assert_eq!(names("c.test"), ["any", "c"]);
        assert_eq!(names("C=CH, O=strongSwan, CN=d.test"), ["any", "dn"]);
        assert_eq!(names("nobody.test"), ["any"]);
        let gw = parse_identity("gw.test").unwrap();
        let other = parse_identity("other.test").unwrap();
        let b = parse_identity("b.test").unwrap();
        assert_eq!(set.by_identity(&b, Some(&gw)).count(), 3);
        assert_eq!(set.by_identity(&b, Some(&other)).count(), 0);
    }

    #[test]
    fn shared_settings_are_computed_once_per_distinct_list() {
        let mut frag = test_config("f", "gw.test", "f.test", "k", false);
        frag.fragment_size = 0;
        let set = Candidates::new(vec![conf("a", Some("a.test")), Arc::new(frag)]);
        assert_eq!(set.proposal_sets.len(), 1);
        assert_eq!(
            set.proposals().len(),
            set.first().unwrap().ike_proposals.len()
        );
        assert!(set.fragmentation(), "one candidate fragments");
        assert!(set.certificates().is_none());
        assert_eq!(set.len(), 2);
    }
}
