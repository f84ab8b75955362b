//! The `none` dataplane: records SAs and traps, moves no packets. A CHILD SA
//! is installed when this backend has accepted it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::{
    Dataplane, DataplaneError, DataplaneEvent, FailNext, FaultInjection, InstalledSa, SaCounters,
    SaInstall, Trap,
};

pub struct NoneDataplane {
    sas: Mutex<BTreeMap<u32, InstalledSa>>,
    traps: Mutex<Vec<Trap>>,
    events: broadcast::Sender<DataplaneEvent>,
    fail_next: FailNext,
}

impl Default for NoneDataplane {
    fn default() -> Self {
        NoneDataplane {
            sas: Mutex::new(BTreeMap::new()),
            traps: Mutex::new(Vec::new()),
            events: broadcast::channel(64).0,
            fail_next: FailNext::default(),
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
        self.fail_next.check()?;
        let mut sas = self.sas.lock().expect("dataplane lock");
        if sas.contains_key(&sa.spi_in) {
            return Err(DataplaneError::Duplicate(sa.spi_in));
        }
        sas.insert(
            sa.spi_in,
            InstalledSa {
                owner: sa.owner.clone(),
                child: sa.child.clone(),
                reqid: sa.reqid,
                spi_in: sa.spi_in,
                spi_out: sa.spi_out,
            },
        );
        Ok(())
    }

    fn remove_sa(&self, _owner: &str, spi_in: u32) -> Result<(), DataplaneError> {
        self.sas.lock().expect("dataplane lock").remove(&spi_in);
        Ok(())
    }

    fn install_trap(&self, trap: &Trap) -> Result<(), DataplaneError> {
        let mut traps = self.traps.lock().expect("dataplane lock");
        traps.retain(|t| !(t.owner == trap.owner && t.child == trap.child));
        traps.push(trap.clone());
        Ok(())
    }

    fn remove_trap(&self, owner: &str, child: &str) -> Result<(), DataplaneError> {
        self.traps
            .lock()
            .expect("dataplane lock")
            .retain(|t| !(t.owner == owner && t.child == child));
        Ok(())
    }

    fn remove_owner(&self, owner: &str) {
        self.sas
            .lock()
            .expect("dataplane lock")
            .retain(|_, s| s.owner != owner);
        self.traps
            .lock()
            .expect("dataplane lock")
            .retain(|t| t.owner != owner);
    }

    fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        self.sas
            .lock()
            .expect("dataplane lock")
            .contains_key(&spi_in)
            .then(SaCounters::default)
    }

    fn installed(&self) -> Vec<InstalledSa> {
        self.sas
            .lock()
            .expect("dataplane lock")
            .values()
            .cloned()
            .collect()
    }

    fn traps(&self) -> Vec<Trap> {
        self.traps.lock().expect("dataplane lock").clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<DataplaneEvent> {
        self.events.subscribe()
    }

    fn faults(&self) -> Option<&dyn FaultInjection> {
        Some(self)
    }
}

impl FaultInjection for NoneDataplane {
    fn fail_next_install(&self) {
        self.fail_next.arm();
    }

    /// Raised only for an installed trap.
    fn simulate_acquire(&self, owner: &str, child: &str) {
        let trapped = self
            .traps
            .lock()
            .expect("dataplane lock")
            .iter()
            .any(|t| t.owner == owner && t.child == child);
        if trapped {
            let _ = self.events.send(DataplaneEvent::Acquire {
                owner: owner.into(),
                child: child.into(),
            });
        }
    }
}
