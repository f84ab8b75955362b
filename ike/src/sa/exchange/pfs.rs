//! The PFS groups of CHILD SA proposals (RFC 7296 §1.3.1): adding the
//! group a peer wants, or removing groups for a peer that refuses PFS.
//! Pure functions of the configured proposals.

use crate::crypto::DhGroup;
use crate::proposal::ProposalSpec;

/// `proposals` without PFS groups (for a peer that refuses PFS).
pub(in crate::sa) fn without_groups(proposals: &[ProposalSpec]) -> Vec<ProposalSpec> {
    proposals
        .iter()
        .map(|p| ProposalSpec {
            dh: Vec::new(),
            ..p.clone()
        })
        .collect()
}

/// `proposals` with PFS group `g` (and `extra` as alternatives): a
/// proposal that names no group gets `g` and `extra`, one that names `g`
/// among others puts it first, and the proposals that carry `g` go first
/// (so it is the group of the KE payload).
pub(in crate::sa) fn proposals_with_group(
    proposals: &[ProposalSpec],
    g: DhGroup,
    extra: &[DhGroup],
) -> Vec<ProposalSpec> {
    let mut groups = vec![g];
    for x in extra {
        if !groups.contains(x) {
            groups.push(*x);
        }
    }
    let mut v: Vec<ProposalSpec> = proposals
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.dh.is_empty() {
                p.dh = groups.clone();
            } else if let Some(i) = p.dh.iter().position(|x| *x == g) {
                p.dh.swap(0, i);
            }
            p
        })
        .collect();
    v.sort_by_key(|p| p.dh.first() != Some(&g));
    v
}

/// Do none of these ESP proposals name a PFS group?
pub(in crate::sa) fn no_group(proposals: &[ProposalSpec]) -> bool {
    proposals.iter().all(|p| p.dh.is_empty())
}
