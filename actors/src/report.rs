//! The narrow messages that go up the actor tree. A child holds a
//! `DerivedActorRef` of one of these and never names its parent's message
//! enum, so the modules form no cycle: an IKE SA actor reports to whichever
//! actor owns it (a Connection, or the neutral Responders while half-open),
//! and a CHILD SA actor to its IKE SA.

use ike::sa::{Command, Event, IkeSa};
use ractor::ActorId;

/// What an IKE SA actor tells its owner.
pub enum IkeReport {
    /// IKE_AUTH completed for the owner's connection.
    Up(Up),
    /// A CHILD SA (not a rekey) is installed.
    ChildUp { child: String },
    ChildFailed {
        child: String,
        reason: String,
        /// The dataplane refused it (the connection retries it).
        install: bool,
    },
    /// A CHILD SA reached its hard lifetime without a successful rekey and
    /// nothing replaces it: the connection may re-create it.
    ChildLost { child: String, reason: String },
    /// The actor is done. Supervision events overtake ordinary messages, so
    /// the owner's entry for it may already be gone: everything needed is
    /// here.
    Closed {
        ike: ActorId,
        reason: String,
        timeout: bool,
        was_established: bool,
        initiated: bool,
    },
    /// A responder SA authenticated as connection `conn`: it moves there.
    HandOver(HandOver),
}

/// An IKE SA of the owner's connection is established: what the owner
/// needs to find its stale or duplicate siblings.
pub struct Up {
    pub ike: ActorId,
    /// The peer sent INITIAL_CONTACT (RFC 7296 §2.4).
    pub initial_contact: bool,
    /// When the SA began negotiating (our IKE_SA_INIT request, or the
    /// peer's arriving).
    pub started: std::time::Instant,
    /// (local, remote) identities as displayed.
    pub ids: (String, String),
    /// (SPIi, SPIr): the same two numbers on both ends.
    pub spis: (u64, u64),
}

/// A responder IKE SA whose peer authenticated as connection `conn`, with
/// the `Event::Established` that says so: the connection that adopts it
/// acts on that event as if its own actor had seen it (INITIAL_CONTACT,
/// the monitor's "established", metrics).
pub struct HandOver {
    pub conn: String,
    pub sa: Box<IkeSa>,
    pub established: Event,
    /// When the peer's IKE_SA_INIT arrived.
    pub started: std::time::Instant,
    /// Whom the SA's reserved SPIs belong to; the adopter names itself.
    pub spi_owner: Option<crate::spis::SpiOwner>,
}

/// What a CHILD SA actor asks of its IKE SA: rekey or delete it;
/// `expired` when the delete is for a hard lifetime (the SA is gone from
/// the dataplane already).
pub struct ChildReport {
    pub command: Command,
    pub expired: bool,
}

/// The dataplane reached a CHILD SA's lifetime: soft → rekey, hard → the
/// SA is gone from the dataplane and is deleted with the peer.
pub struct Expired {
    pub hard: bool,
}

/// `From`/`TryFrom` between a narrow report type and a parent's message
/// variant that wraps it, as `DerivedActorRef` needs.
#[macro_export]
macro_rules! derive_report {
    ($report:ty => $msg:ident :: $variant:ident) => {
        impl From<$report> for $msg {
            fn from(r: $report) -> Self {
                $msg::$variant(r)
            }
        }
        impl TryFrom<$msg> for $report {
            type Error = ();
            fn try_from(m: $msg) -> Result<Self, ()> {
                match m {
                    $msg::$variant(r) => Ok(r),
                    _ => Err(()),
                }
            }
        }
    };
}
