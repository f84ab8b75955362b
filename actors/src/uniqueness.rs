//! Which of a connection's IKE SAs go when another one is established:
//! the stale ones (INITIAL_CONTACT) and duplicates (both ends initiated at
//! once, e.g. a restarted gateway reviving its connections while its peer's
//! DPD restarts them). A pure decision, so both ends can be shown to agree.
//!
//! Rules, for a newly established SA `new` and each other established SA
//! `old` of the same connection with the same identities (local, remote);
//! SAs of other identities (other road warriors of a `%any` connection)
//! are never touched:
//! - `old` came up while `new` was being negotiated (it was established
//!   at or after `new.started`): the two are duplicates of one
//!   simultaneous initiation. Both ends hold the same two SAs with the
//!   same SPIs, so both keep the same one: the SA whose smaller SPI is
//!   lower goes, as RFC 7296 §2.8.1 lets the lowest nonce decide a rekey
//!   collision.
//! - Otherwise `old` is older than `new`'s whole negotiation; with
//!   INITIAL_CONTACT (§2.4: "the only IKE SA currently active between the
//!   authenticated identities") it is stale and goes. Without, it stays.

use std::time::Instant;

/// One established IKE SA, as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Established<K> {
    pub key: K,
    pub ids: (String, String),
    pub started: Instant,
    pub established_at: Instant,
    pub spis: (u64, u64),
}

/// What to remove, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict<K> {
    /// An older SA the peer's INITIAL_CONTACT declared dead.
    Stale(K),
    /// The loser of a simultaneous initiation (it may be `new` itself).
    Duplicate(K),
}

fn rank(spis: (u64, u64)) -> (u64, u64) {
    (spis.0.min(spis.1), spis.0.max(spis.1))
}

/// The SAs to remove now that `new` is established.
pub fn resolve<K: Clone + PartialEq>(
    new: &Established<K>,
    initial_contact: bool,
    others: &[Established<K>],
) -> Vec<Verdict<K>> {
    let mut out = Vec::new();
    for old in others
        .iter()
        .filter(|o| o.key != new.key && o.ids == new.ids)
    {
        if old.established_at >= new.started {
            if rank(old.spis) < rank(new.spis) {
                out.push(Verdict::Duplicate(old.key.clone()));
            } else {
                // `new` loses; whatever else there is stays as it was.
                return vec![Verdict::Duplicate(new.key.clone())];
            }
        } else if initial_contact {
            out.push(Verdict::Stale(old.key.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sa(key: u32, started: u64, up: u64, spis: (u64, u64)) -> Established<u32> {
        let t0 = base();
        Established {
            key,
            ids: ("a.test".into(), "b.test".into()),
            started: t0 + Duration::from_secs(started),
            established_at: t0 + Duration::from_secs(up),
            spis,
        }
    }

    fn base() -> Instant {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    #[test]
    fn initial_contact_removes_older_sa_of_same_identities() {
        let old = sa(1, 0, 1, (10, 11));
        let new = sa(2, 100, 101, (5, 6));
        assert_eq!(
            resolve(&new, true, std::slice::from_ref(&old)),
            vec![Verdict::Stale(1)]
        );
        // Without INITIAL_CONTACT the older one stays.
        assert!(resolve(&new, false, &[old]).is_empty());
    }

    #[test]
    fn initial_contact_spares_other_identities() {
        let mut other = sa(1, 0, 1, (10, 11));
        other.ids.1 = "roadwarrior-2.test".into();
        let new = sa(2, 100, 101, (5, 6));
        assert!(resolve(&new, true, &[other]).is_empty());
    }

    #[test]
    fn simultaneous_initiation_both_ends_keep_the_same_sa() {
        // x is A's, y is B's; each end saw its own SA come up first and
        // the peer's second. Both must remove the same one.
        let x = sa(1, 10, 12, (0x1000, 0x2000));
        let y = sa(2, 10, 11, (0x3000, 0x0500));
        // At A, y came up second (started before x was up).
        let y_late = sa(2, 10, 13, (0x3000, 0x0500));
        let at_a = resolve(&y_late, true, std::slice::from_ref(&x));
        // At B, x came up second.
        let x_late = sa(1, 10, 13, (0x1000, 0x2000));
        let at_b = resolve(&x_late, true, &[y]);
        // y's smaller SPI (0x500) is lower than x's (0x1000): y goes.
        assert_eq!(at_a, vec![Verdict::Duplicate(2)]);
        assert_eq!(at_b, vec![Verdict::Duplicate(2)]);
    }
}
