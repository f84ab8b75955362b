//! The `Dataplane`: where negotiated CHILD SAs and their policies go.
//!
//! Backends: `none` (records only; a CHILD SA is "installed" when it accepts
//! it), `userspace` (ESP-in-UDP over TUN) and `xfrm` (Linux kernel ESP over
//! netlink XFRM). The trait is synchronous and cheap to call
//! from actors; a backend that must block (netlink round trips) does so for
//! bounded, short times.
//!
//! [`Dataplane`] is what every backend implements. Two capabilities hang
//! off it: [`EncapSockets`] ([`Dataplane::encap`]; how the daemon's IKE
//! sockets are bound and prepared, plain sockets unless the backend says
//! otherwise) and [`FaultInjection`] ([`Dataplane::faults`]; for tests and
//! `vpnctl impair`, absent unless the backend has it).
//!
//! Invariants every backend keeps: an SA pair is addressed by its inbound
//! SPI; `remove_owner` leaves nothing of that connection behind (SAs,
//! policies, traps, routes); every method is idempotent where it removes.

pub mod lifetime;
pub mod none;
pub mod updown;
pub mod userspace;
pub mod xfrm;

use std::net::SocketAddr;

use ike::config::Mode;
use ike::crypto::AeadAlg;
use ike::keys::ChildKeys;
use ike::wire::TrafficSelector;

pub use none::NoneDataplane;
pub use xfrm::XfrmOptions;

/// Everything a backend needs to install one CHILD SA (both directions and
/// the policies for its selectors).
#[derive(Clone, Debug)]
pub struct SaInstall {
    /// The connection that owns it.
    pub owner: String,
    pub child: String,
    /// Stable per connection child across rekeys (policies refer to it).
    pub reqid: u32,
    pub spi_in: u32,
    pub spi_out: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// ESP-in-UDP (RFC 3948) between `local` and `remote`.
    pub encap: bool,
    pub mode: Mode,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub encr: AeadAlg,
    pub esn: bool,
    pub keys: ChildKeys,
    /// This SA replaces the one with this inbound SPI (rekey): policies
    /// stay, only the SAs change.
    pub rekey_of: Option<u32>,
    /// We initiated the exchange that negotiated it: the peer has it
    /// installed. As rekey responder a backend should keep sending on the
    /// old SA until the peer uses the new one or deletes the old one.
    pub initiator: bool,
    /// Volume and time limits enforced by the backend.
    pub lifetime: Lifetime,
    /// Marks and XFRM interface ids (kernel backends).
    pub opts: XfrmOptions,
}

/// Lifetimes of one SA pair (0 / `None`: unlimited). Bytes and packets are
/// counted per direction, as strongSwan and Linux do; reaching a soft limit
/// raises [`DataplaneEvent::Expire`] with `hard: false` once (the CHILD SA
/// should be rekeyed), a hard limit removes the SA and raises it with
/// `hard: true`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub soft_bytes: u64,
    pub hard_bytes: u64,
    pub soft_packets: u64,
    pub hard_packets: u64,
    pub hard_time: Option<std::time::Duration>,
}

/// A trap policy: traffic from `local_ts` to `remote_ts` without an SA
/// raises an `Acquire` for `owner` instead of leaving in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trap {
    pub owner: String,
    pub child: String,
    pub reqid: u32,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// The connection's own and peer's addresses, when it names them: the
    /// tunnel a kernel trap's template points at.
    pub local: Option<std::net::IpAddr>,
    pub remote: Option<std::net::IpAddr>,
    pub mode: Mode,
    pub opts: XfrmOptions,
}

/// Traffic counters of one SA pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SaCounters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// Inbound packets dropped as replays or older than the window.
    pub replay_drops: u64,
    /// Inbound packets whose integrity check failed.
    pub integrity_failures: u64,
}

/// Receives IKE datagrams a backend reads from a UDP socket it took over:
/// `(local, from, payload)`, the payload as received (with the non-ESP
/// marker on port 4500).
pub type IkeInput = std::sync::Arc<dyn Fn(SocketAddr, SocketAddr, &[u8]) + Send + Sync>;

/// What a backend reports about installed state (for status and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledSa {
    pub owner: String,
    pub child: String,
    pub reqid: u32,
    pub spi_in: u32,
    pub spi_out: u32,
}

/// Asynchronous notifications from the dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataplaneEvent {
    /// A packet hit a trap: start `owner` (child `child`).
    Acquire { owner: String, child: String },
    /// A lifetime expired; `hard` means the SA is gone.
    Expire { spi_in: u32, hard: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataplaneError {
    #[error("{backend}: {what}")]
    Failed { backend: &'static str, what: String },
    #[error("SPI {0:08x} is already installed")]
    Duplicate(u32),
    #[error("injected failure (impair kernel-fail)")]
    Injected,
}

/// A place CHILD SAs go: what every backend implements.
///
/// Capabilities only some backends have hang off it: the daemon's IKE
/// sockets ([`Dataplane::encap`]) and fault injection
/// ([`Dataplane::faults`]).
pub trait Dataplane: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Install an SA pair with its policies (or, with `rekey_of`, swap the
    /// SAs under existing policies).
    fn install_sa(&self, sa: &SaInstall) -> Result<(), DataplaneError>;
    /// Remove an SA pair (idempotent). Its policies go with the last SA of
    /// the child, unless a trap for it is installed, which then takes over.
    fn remove_sa(&self, owner: &str, spi_in: u32) -> Result<(), DataplaneError>;
    fn install_trap(&self, trap: &Trap) -> Result<(), DataplaneError>;
    fn remove_trap(&self, owner: &str, child: &str) -> Result<(), DataplaneError>;
    /// Remove everything `owner` has: SAs, policies, traps (idempotent).
    fn remove_owner(&self, owner: &str);
    fn counters(&self, spi_in: u32) -> Option<SaCounters>;
    fn installed(&self) -> Vec<InstalledSa>;
    /// Inbound SPIs of `owner`'s installed SA pairs. The default filters
    /// [`Dataplane::installed`]; a backend with an index by owner answers
    /// from it, so a gateway with many connections does not copy every SA
    /// to find one connection's.
    fn spis_of(&self, owner: &str) -> Vec<u32> {
        self.installed()
            .into_iter()
            .filter(|s| s.owner == owner)
            .map(|s| s.spi_in)
            .collect()
    }
    fn traps(&self) -> Vec<Trap>;
    /// Subscribe to ACQUIRE / EXPIRE events.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DataplaneEvent>;
    /// Reserves an inbound SPI for a CHILD SA of `owner` from `remote` to
    /// `local` (kernel backends: XFRM_MSG_ALLOCSPI). `None`: the caller
    /// picks one at random, as backends that keep their own tables allow.
    fn alloc_spi(
        &self,
        _owner: &str,
        _local: std::net::IpAddr,
        _remote: std::net::IpAddr,
        _reqid: u32,
    ) -> Option<u32> {
        None
    }
    /// Gives back an SPI from [`Dataplane::alloc_spi`] that was never
    /// installed (its negotiation failed or its IKE SA is gone); an
    /// installed or unknown SPI is left alone.
    fn release_spi(&self, _spi_in: u32) {}
    /// Objects in the backend (the kernel) that vpnd did not install, one
    /// line each, for `vpnctl status`.
    fn unknown_state(&self) -> Vec<String> {
        Vec::new()
    }
    /// Backend-wide counters for `vpnctl stats` (name, value).
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// How the daemon's IKE sockets are bound and prepared; by default as
    /// plain sockets ([`PlainSockets`]), the ESP on them being the kernel's
    /// business.
    fn encap(&self) -> &dyn EncapSockets {
        &PlainSockets
    }
    /// Fault injection (`vpnctl impair`), where the backend has it.
    fn faults(&self) -> Option<&dyn FaultInjection> {
        None
    }
}

/// The daemon's IKE sockets (ports 500 and 4500) as a backend needs them:
/// one that carries ESP-in-UDP itself takes the port-4500 sockets over.
/// Every method has the answer of a backend that needs nothing.
pub trait EncapSockets: Send + Sync {
    /// Whether CHILD SAs must be UDP-encapsulated (the userspace backend
    /// only speaks ESP-in-UDP): IKE then forces encapsulation.
    fn forces_encap(&self) -> bool {
        false
    }
    /// Binds the daemon's UDP socket on `local` (port 4500), later offered
    /// with [`EncapSockets::attach_encap_socket`]. A backend that reads it
    /// from several threads binds it so that sibling sockets may share the
    /// port.
    fn bind_encap_socket(&self, local: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
        std::net::UdpSocket::bind(local)
    }
    /// Offers the daemon's UDP socket bound to `local` (port 4500). A
    /// backend that carries ESP-in-UDP itself keeps it, reads it from then
    /// on and hands IKE datagrams to `ike`; it returns `true`. Kernel
    /// backends decline (the kernel consumes ESP on the socket itself).
    fn attach_encap_socket(
        &self,
        _local: SocketAddr,
        _socket: std::net::UdpSocket,
        _ike: IkeInput,
    ) -> bool {
        false
    }
    /// Prepares each of the daemon's IKE sockets (ports 500 and 4500)
    /// before it sends anything: the userspace backend marks them so that
    /// its routes into the TUN device never capture the daemon's own IKE
    /// and ESP-in-UDP packets.
    fn prepare_socket(&self, _fd: std::os::fd::RawFd) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sockets as the daemon binds them, untouched.
pub struct PlainSockets;

impl EncapSockets for PlainSockets {}

/// Faults a backend can be told to produce, for tests and `vpnctl impair`.
pub trait FaultInjection: Send + Sync {
    /// Make the next `install_sa` of connection `owner` fail with
    /// [`DataplaneError::Injected`]; other connections install as usual.
    fn fail_next_install(&self, owner: &str);
    /// Raise an ACQUIRE for `owner`'s trap as if a packet had hit it
    /// (backends that see real packets may raise it whether or not the trap
    /// is installed).
    fn simulate_acquire(&self, owner: &str, child: &str);
}

/// The "fail the next install" switches of [`FaultInjection`], one per
/// connection, for backends to embed.
#[derive(Debug, Default)]
pub struct FailNext(std::sync::Mutex<std::collections::HashSet<String>>);

impl FailNext {
    /// The next [`FailNext::check`] for `owner` fails.
    pub fn arm(&self, owner: &str) {
        self.0
            .lock()
            .expect("fail-next lock")
            .insert(owner.to_string());
    }

    /// Fails (once) if armed for `owner`; call first thing in
    /// `install_sa`.
    pub fn check(&self, owner: &str) -> Result<(), DataplaneError> {
        if self.0.lock().expect("fail-next lock").remove(owner) {
            Err(DataplaneError::Injected)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_fails_only_the_armed_connection_once() {
        let f = FailNext::default();
        f.arm("c4");
        assert_eq!(f.check("c7"), Ok(()));
        assert_eq!(f.check("c4"), Err(DataplaneError::Injected));
        assert_eq!(f.check("c4"), Ok(()));
    }
}
