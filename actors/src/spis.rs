//! Inbound ESP SPIs from the dataplane: an IKE SA's `ike::sa::Provider`
//! asks the backend to reserve each CHILD SA's inbound SPI (the kernel
//! backend: XFRM_MSG_ALLOCSPI, so no other keying daemon on the host can
//! take it), and picks one at random where the backend keeps its own
//! tables.

use std::net::IpAddr;
use std::sync::Arc;

use ike::crypto::{Random, SystemRandom};
use ike::sa::Provider;

pub struct DataplaneSpis {
    rng: SystemRandom,
    dataplane: Arc<dyn kernel::Dataplane>,
    /// The connection, or empty for a responder that has not found it yet.
    owner: String,
    local: IpAddr,
    remote: IpAddr,
}

impl DataplaneSpis {
    pub fn boxed(
        dataplane: Arc<dyn kernel::Dataplane>,
        owner: &str,
        local: IpAddr,
        remote: IpAddr,
    ) -> Box<DataplaneSpis> {
        Box::new(DataplaneSpis {
            rng: SystemRandom::new(),
            dataplane,
            owner: owner.to_string(),
            local,
            remote,
        })
    }
}

impl Provider for DataplaneSpis {
    fn random(&mut self) -> &mut dyn Random {
        &mut self.rng
    }

    fn alloc_child_spi(&mut self) -> u32 {
        if let Some(spi) = self
            .dataplane
            .alloc_spi(&self.owner, self.local, self.remote, 0)
            .filter(|s| *s >= 0x100)
        {
            return spi;
        }
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let spi = u32::from_be_bytes(b);
            if spi >= 0x100 {
                return spi;
            }
        }
    }
}
