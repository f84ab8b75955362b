//! What a driver reads of an IKE SA (names, SPIs, addresses, identities,
//! the chosen proposal, its CHILD SAs), for status output and routing.

use std::net::SocketAddr;
use std::time::Instant;

use super::*;

impl IkeSa {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this SA's key work may cost milliseconds: our connection
    /// signs with RSA, or (a responder before IKE_AUTH) one it may turn
    /// out to be does.
    pub fn signs_slowly(&self) -> bool {
        match &self.config {
            Some(c) => c.signs_slowly(),
            None => self.candidates.signs_slowly(),
        }
    }

    pub fn spi_i(&self) -> u64 {
        self.core.spi_i
    }

    pub fn spi_r(&self) -> u64 {
        self.core.spi_r
    }

    /// Our SPI of the current IKE SA: the key the daemon demultiplexes on.
    pub fn local_spi(&self) -> u64 {
        if self.core.initiator {
            self.core.spi_i
        } else {
            self.core.spi_r
        }
    }

    pub fn is_initiator(&self) -> bool {
        self.core.initiator
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    pub fn local_id(&self) -> Option<&Identification> {
        self.local_id.as_ref()
    }

    pub fn remote_id(&self) -> Option<&Identification> {
        self.remote_id.as_ref()
    }

    /// The subject DN of the peer's certificate (`auth = pubkey`), once
    /// it authenticated.
    pub fn remote_cert(&self) -> Option<&str> {
        self.remote_cert.as_deref()
    }

    pub fn proposal(&self) -> Option<&Chosen> {
        self.proposal.as_ref()
    }

    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }

    /// UDP encapsulation in use (a NAT was detected or forced).
    pub fn encap(&self) -> bool {
        self.nat_local || self.nat_remote
    }

    pub fn is_closed(&self) -> bool {
        self.phase() == Phase::Closed
    }

    pub fn state(&self) -> State {
        match self.phase() {
            Phase::InitSent | Phase::AuthSent | Phase::AwaitAuth => State::Connecting,
            Phase::Established => {
                if matches!(self.pending, Some(Pending::RekeyIke(_))) {
                    State::Rekeying
                } else {
                    State::Established
                }
            }
            Phase::Deleting => State::Deleting,
            Phase::Closed => State::Closed,
        }
    }

    /// CHILD SAs currently held, with their state.
    pub fn child_sas(&self) -> impl Iterator<Item = (&ChildSa, &'static str)> {
        self.children.iter().map(|c| {
            let s = match c.state {
                ChildState::Installed => "installed",
                ChildState::Rekeying => "rekeying",
                ChildState::Rekeyed | ChildState::Deleting => "deleting",
            };
            (&c.sa, s)
        })
    }

    /// The SPI pairs (spi_i, spi_r) this SA answers to, current first.
    pub fn spi_pairs(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(self.core.spi_i, self.core.spi_r)];
        v.extend(self.retiring.iter().map(|c| (c.spi_i, c.spi_r)));
        v
    }

    /// Fragmentation was negotiated (both sides announced it, RFC 7383).
    pub fn fragmentation(&self) -> bool {
        self.core.fragmentation
    }

    pub fn fragment_stats(&self) -> FragmentStats {
        self.frag_stats
    }
}
