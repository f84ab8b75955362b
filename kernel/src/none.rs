//! The `none` dataplane: records SAs and traps, moves no packets. A CHILD SA
//! is installed when this backend has accepted it.
//!
//! Time lifetimes are enforced as by every backend (`lifetime`): an SA
//! with a hard time limit gets a timer on the Tokio clock (so paused-time
//! tests see it expire); at the limit it is removed and
//! `Expire { hard: true }` is raised. Volume limits never trigger, as no
//! packet passes. Outside a Tokio runtime no timer can run and time
//! lifetimes are not enforced (the daemon always has one).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::lifetime::{LifetimeClock, Verdict};
use crate::{
    Dataplane, DataplaneError, DataplaneEvent, FailNext, FaultInjection, InstalledSa, SaCounters,
    SaInstall, Trap,
};

struct Entry {
    sa: InstalledSa,
    life: LifetimeClock,
    /// The hard-lifetime timer; aborted when the SA goes first.
    timer: Option<tokio::task::AbortHandle>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

/// The installed SAs by inbound SPI, and their SPIs by owner.
#[derive(Default)]
struct Table {
    sas: BTreeMap<u32, Entry>,
    by_owner: HashMap<String, BTreeSet<u32>>,
}

impl Table {
    fn remove(&mut self, spi_in: u32) -> Option<Entry> {
        let e = self.sas.remove(&spi_in)?;
        if let Some(set) = self.by_owner.get_mut(&e.sa.owner) {
            set.remove(&spi_in);
            if set.is_empty() {
                self.by_owner.remove(&e.sa.owner);
            }
        }
        Some(e)
    }
}

struct Inner {
    sas: Mutex<Table>,
    traps: Mutex<Vec<Trap>>,
    events: broadcast::Sender<DataplaneEvent>,
    fail_next: FailNext,
}

pub struct NoneDataplane {
    inner: Arc<Inner>,
}

impl Default for NoneDataplane {
    fn default() -> Self {
        NoneDataplane {
            inner: Arc::new(Inner {
                sas: Mutex::new(Table::default()),
                traps: Mutex::new(Vec::new()),
                events: broadcast::channel(64).0,
                fail_next: FailNext::default(),
            }),
        }
    }
}

impl Inner {
    /// The hard-lifetime timer of `spi_in` fired: if that SA is still the
    /// one installed and past its limit, it goes.
    fn expire(&self, spi_in: u32) {
        let gone = {
            let mut sas = self.sas.lock().expect("dataplane lock");
            let now = tokio::time::Instant::now().into_std();
            let due = sas.sas.get_mut(&spi_in).is_some_and(|e| {
                let hard = e.life.check(now, 0, 0) == Verdict::Hard;
                if hard {
                    // The timer is this task: do not abort it.
                    e.timer = None;
                }
                hard
            });
            if due {
                sas.remove(spi_in)
            } else {
                None
            }
        };
        if let Some(e) = gone {
            tracing::info!(
                conn = e.sa.owner,
                "SA {spi_in:08x}: hard lifetime reached, removed"
            );
            let _ = self
                .events
                .send(DataplaneEvent::Expire { spi_in, hard: true });
        }
    }
}

impl NoneDataplane {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Dataplane for NoneDataplane {
    fn name(&self) -> &'static str {
        "none"
    }

    fn install_sa(&self, sa: &SaInstall) -> Result<(), DataplaneError> {
        self.inner.fail_next.check(&sa.owner)?;
        let mut sas = self.inner.sas.lock().expect("dataplane lock");
        if sas.sas.contains_key(&sa.spi_in) {
            return Err(DataplaneError::Duplicate(sa.spi_in));
        }
        let now = tokio::time::Instant::now();
        let life = LifetimeClock::new(sa.lifetime, now.into_std());
        let timer = match (sa.lifetime.hard_time, tokio::runtime::Handle::try_current()) {
            (Some(d), Ok(rt)) => {
                let inner = Arc::downgrade(&self.inner);
                let spi_in = sa.spi_in;
                let task = rt.spawn(async move {
                    tokio::time::sleep_until(now + d).await;
                    if let Some(inner) = inner.upgrade() {
                        inner.expire(spi_in);
                    }
                });
                Some(task.abort_handle())
            }
            _ => None,
        };
        sas.by_owner
            .entry(sa.owner.clone())
            .or_default()
            .insert(sa.spi_in);
        sas.sas.insert(
            sa.spi_in,
            Entry {
                sa: InstalledSa {
                    owner: sa.owner.clone(),
                    child: sa.child.clone(),
                    reqid: sa.reqid,
                    spi_in: sa.spi_in,
                    spi_out: sa.spi_out,
                },
                life,
                timer,
            },
        );
        Ok(())
    }

    fn remove_sa(&self, _owner: &str, spi_in: u32) -> Result<(), DataplaneError> {
        self.inner
            .sas
            .lock()
            .expect("dataplane lock")
            .remove(spi_in);
        Ok(())
    }

    fn install_trap(&self, trap: &Trap) -> Result<(), DataplaneError> {
        let mut traps = self.inner.traps.lock().expect("dataplane lock");
        traps.retain(|t| !(t.owner == trap.owner && t.child == trap.child));
        traps.push(trap.clone());
        Ok(())
    }

    fn remove_trap(&self, owner: &str, child: &str) -> Result<(), DataplaneError> {
        self.inner
            .traps
            .lock()
            .expect("dataplane lock")
            .retain(|t| !(t.owner == owner && t.child == child));
        Ok(())
    }

    fn remove_owner(&self, owner: &str) {
        {
            let mut t = self.inner.sas.lock().expect("dataplane lock");
            for spi in t.by_owner.remove(owner).unwrap_or_default() {
                t.sas.remove(&spi);
            }
        }
        self.inner
            .traps
            .lock()
            .expect("dataplane lock")
            .retain(|t| t.owner != owner);
    }

    fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        self.inner
            .sas
            .lock()
            .expect("dataplane lock")
            .sas
            .contains_key(&spi_in)
            .then(SaCounters::default)
    }

    fn installed(&self) -> Vec<InstalledSa> {
        self.inner
            .sas
            .lock()
            .expect("dataplane lock")
            .sas
            .values()
            .map(|e| e.sa.clone())
            .collect()
    }

    fn spis_of(&self, owner: &str) -> Vec<u32> {
        let t = self.inner.sas.lock().expect("dataplane lock");
        t.by_owner
            .get(owner)
            .map_or_else(Vec::new, |s| s.iter().copied().collect())
    }

    fn traps(&self) -> Vec<Trap> {
        self.inner.traps.lock().expect("dataplane lock").clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<DataplaneEvent> {
        self.inner.events.subscribe()
    }

    fn faults(&self) -> Option<&dyn FaultInjection> {
        Some(self)
    }
}

impl FaultInjection for NoneDataplane {
    fn fail_next_install(&self, owner: &str) {
        self.inner.fail_next.arm(owner);
    }

    /// Raised only for an installed trap.
    fn simulate_acquire(&self, owner: &str, child: &str) {
        let trapped = self
            .inner
            .traps
            .lock()
            .expect("dataplane lock")
            .iter()
            .any(|t| t.owner == owner && t.child == child);
        if trapped {
            let _ = self.inner.events.send(DataplaneEvent::Acquire {
                owner: owner.into(),
                child: child.into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sa(spi_in: u32, hard: Option<Duration>) -> SaInstall {
        SaInstall {
            owner: "c0".into(),
            child: "net".into(),
            reqid: 1,
            spi_in,
            spi_out: spi_in + 1,
            local: "198.18.0.1:4500".parse().unwrap(),
            remote: "198.18.0.2:4500".parse().unwrap(),
            encap: true,
            mode: ike::config::Mode::Tunnel,
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            encr: ike::crypto::AeadAlg::AesGcm16_256,
            esn: false,
            keys: ike::keys::ChildKeys {
                encr: ike::crypto::AeadAlg::AesGcm16_256,
                inbound: vec![1; 36].into(),
                outbound: vec![2; 36].into(),
            },
            rekey_of: None,
            initiator: true,
            lifetime: crate::Lifetime {
                hard_time: hard,
                ..crate::Lifetime::default()
            },
            opts: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hard_time_lifetime_removes_the_sa_and_raises_expire() {
        let dp = NoneDataplane::new();
        let mut events = dp.subscribe();
        dp.install_sa(&sa(0x1000, Some(Duration::from_secs(11))))
            .unwrap();
        dp.install_sa(&sa(0x2000, None)).unwrap();
        dp.install_sa(&sa(0x3000, Some(Duration::from_secs(5))))
            .unwrap();
        // Removed before its time: no event for it later.
        dp.remove_sa("c0", 0x3000).unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(dp.installed().len(), 2, "not yet");
        assert!(events.try_recv().is_err());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let left: Vec<u32> = dp.installed().iter().map(|s| s.spi_in).collect();
        assert_eq!(left, [0x2000]);
        assert_eq!(
            events.try_recv().unwrap(),
            DataplaneEvent::Expire {
                spi_in: 0x1000,
                hard: true
            }
        );
        assert!(events.try_recv().is_err(), "one event only");
    }

    #[test]
    fn kernel_fail_hits_the_connection_it_names() {
        let dp = NoneDataplane::new();
        dp.fail_next_install("c4");
        let mut other = sa(0x10, None);
        other.owner = "c7".into();
        dp.install_sa(&other).unwrap();
        let mut c4 = sa(0x20, None);
        c4.owner = "c4".into();
        assert_eq!(dp.install_sa(&c4), Err(DataplaneError::Injected));
        dp.install_sa(&c4).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn spis_by_owner_follow_installs_removals_and_expiry() {
        let dp = NoneDataplane::new();
        let of = |owner: &str, spi: u32, hard: Option<Duration>| {
            let mut s = sa(spi, hard);
            s.owner = owner.into();
            s
        };
        dp.install_sa(&of("a", 0x10, None)).unwrap();
        dp.install_sa(&of("a", 0x20, Some(Duration::from_secs(5))))
            .unwrap();
        dp.install_sa(&of("b", 0x30, None)).unwrap();
        assert_eq!(dp.spis_of("a"), [0x10, 0x20]);
        assert_eq!(dp.spis_of("b"), [0x30]);
        assert!(dp.spis_of("nobody").is_empty());
        dp.remove_sa("a", 0x10).unwrap();
        assert_eq!(dp.spis_of("a"), [0x20]);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(dp.spis_of("a").is_empty(), "expired with its hard lifetime");
        dp.remove_owner("b");
        assert!(dp.spis_of("b").is_empty() && dp.installed().is_empty());
        dp.install_sa(&of("b", 0x30, None)).unwrap();
        assert_eq!(dp.spis_of("b"), [0x30], "a removed SPI may come back");
    }
}
