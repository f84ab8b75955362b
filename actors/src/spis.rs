//! Inbound ESP SPIs from the dataplane: an IKE SA's `ike::sa::Provider`
//! asks the backend to reserve each CHILD SA's inbound SPI (the kernel
//! backend: XFRM_MSG_ALLOCSPI, so no other keying daemon on the host can
//! take it), and picks one at random where the backend keeps its own
//! tables.

use std::net::IpAddr;
use std::sync::Arc;

use ike::crypto::{Random, SystemRandom};
use ike::sa::Provider;

/// The connection an IKE SA's SPIs are reserved for: empty for a
/// responder until IKE_AUTH names its connection; the actor that adopts
/// the SA sets it, so its later rekeys' SPIs go with that connection.
pub type SpiOwner = Arc<std::sync::Mutex<String>>;

/// How many reserved SPIs an IKE SA remembers; older ones were installed
/// or have expired in the kernel (ALLOCSPI's reservation lasts 30 s).
const REMEMBERED: usize = 8;

/// Lives inside its IKE SA (`ike::sa::IkeSa` owns its provider): when the
/// SA is dropped, however its actor ended, the SPIs it reserved and never
/// installed are given back.
pub struct DataplaneSpis {
    rng: SystemRandom,
    dataplane: Arc<dyn kernel::Dataplane>,
    owner: SpiOwner,
    reserved: Vec<u32>,
    local: IpAddr,
    remote: IpAddr,
}

impl DataplaneSpis {
    pub fn boxed(
        dataplane: Arc<dyn kernel::Dataplane>,
        owner: &str,
        local: IpAddr,
        remote: IpAddr,
    ) -> (Box<DataplaneSpis>, SpiOwner) {
        let cell: SpiOwner = Arc::new(std::sync::Mutex::new(owner.to_string()));
        let me = Box::new(DataplaneSpis {
            rng: SystemRandom::new(),
            dataplane,
            owner: cell.clone(),
            reserved: Vec::new(),
            local,
            remote,
        });
        (me, cell)
    }
}

impl Provider for DataplaneSpis {
    fn random(&mut self) -> &mut dyn Random {
        &mut self.rng
    }

    fn alloc_child_spi(&mut self) -> u32 {
        let owner = self.owner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(spi) = self
            .dataplane
            .alloc_spi(&owner, self.local, self.remote, 0)
            .filter(|s| *s >= 0x100)
        {
            if self.reserved.len() == REMEMBERED {
                self.reserved.remove(0);
            }
            self.reserved.push(spi);
            return spi;
        }
        ike::sa::random_child_spi(&mut self.rng)
    }
}

impl Drop for DataplaneSpis {
    fn drop(&mut self) {
        for spi in self.reserved.drain(..) {
            self.dataplane.release_spi(spi);
        }
    }
}
