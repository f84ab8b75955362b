//! The CHILD SA actor: installs its SA pair in the dataplane when it starts
//! (a CHILD SA is "installed" when the backend accepts it; a refusal fails
//! the spawn), turns the dataplane's lifetime expiries into rekeys and
//! deletes, and removes the SA when it stops. Its rekey timer lives in the
//! IKE SA's core (`ike::sa::Timers`).

use ike::sa::{ChildSa, Command};
use kernel::SaInstall;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};

use std::path::PathBuf;

use kernel::updown::UpdownEvent;

use crate::ctx::CtxRef;
use crate::derive_report;
use crate::report::{ChildReport, Expired};

pub struct ChildArgs {
    pub ctx: CtxRef,
    pub conn: String,
    pub sa: ChildSa,
    pub reqid: u32,
    pub lifetime: kernel::Lifetime,
    pub xfrm: kernel::XfrmOptions,
    /// Its IKE SA, for rekey and delete requests.
    pub parent: DerivedActorRef<ChildReport>,
    /// The updown script and its event: "up" runs when the SA is installed
    /// (not for a rekey); the IKE SA actor runs "down".
    pub updown: Option<(PathBuf, UpdownEvent)>,
}

pub enum ChildMsg {
    /// The dataplane reached a lifetime.
    Expired(Expired),
    /// The IKE SA deleted it (and removed it from the dataplane and ran the
    /// down script).
    Removed,
}

derive_report!(Expired => ChildMsg::Expired);

pub struct ChildSaActor;

pub struct ChildActorState {
    _alive: runtime::counters::AliveGuard,
    id: ractor::ActorId,
    ctx: CtxRef,
    conn: String,
    spi_in: u32,
    parent: DerivedActorRef<ChildReport>,
}

impl Actor for ChildSaActor {
    type Msg = ChildMsg;
    type State = ChildActorState;
    type Arguments = ChildArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ChildMsg>,
        a: ChildArgs,
    ) -> Result<ChildActorState, ActorProcessingErr> {
        let c = &a.sa;
        let install = SaInstall {
            owner: a.conn.clone(),
            child: c.name.clone(),
            reqid: a.reqid,
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            local: c.local,
            remote: c.remote,
            encap: c.encap,
            mode: c.mode,
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
            encr: c.proposal.encr,
            esn: c.proposal.esn,
            keys: c.keys.clone(),
            rekey_of: c.rekey_of,
            initiator: c.initiator,
            lifetime: a.lifetime,
            opts: a.xfrm,
        };
        a.ctx.dataplane.install_sa(&install)?;
        // updown runs on up and down, never on rekey: the tunnel stays up.
        if let (Some((script, ev)), None) = (&a.updown, c.rekey_of) {
            a.ctx.updown.run(
                script.clone(),
                UpdownEvent {
                    up: true,
                    ..ev.clone()
                },
            );
        }
        metrics::gauge!("vpnd_child_sas").increment(1.0);
        a.ctx.children.insert(c.spi_in, myself.get_derived());
        Ok(ChildActorState {
            _alive: runtime::counters::AliveGuard::new(),
            id: myself.get_id(),
            ctx: a.ctx,
            conn: a.conn,
            spi_in: c.spi_in,
            parent: a.parent,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ChildMsg>,
        msg: ChildMsg,
        st: &mut ChildActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ChildMsg::Expired(Expired { hard: false }) => {
                st.ctx.event(
                    Some(&st.conn),
                    "child",
                    format!(
                        "CHILD SA {:08x}: soft lifetime reached, rekeying",
                        st.spi_in
                    ),
                );
                let _ = st.parent.send_message(ChildReport {
                    command: Command::RekeyChild { spi_in: st.spi_in },
                    expired: false,
                });
            }
            ChildMsg::Expired(Expired { hard: true }) => {
                st.ctx.event(
                    Some(&st.conn),
                    "child",
                    format!(
                        "CHILD SA {:08x}: hard lifetime reached, deleting",
                        st.spi_in
                    ),
                );
                let _ = st.parent.send_message(ChildReport {
                    command: Command::DeleteChild { spi_in: st.spi_in },
                    expired: true,
                });
            }
            ChildMsg::Removed => myself.stop(None),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ChildMsg>,
        st: &mut ChildActorState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = st.ctx.dataplane.remove_sa(&st.conn, st.spi_in);
        Ok(())
    }
}

/// An actor that is killed (as ractor kills the children of an actor that
/// stops) never runs `post_stop`, but its state is dropped: what must not
/// outlive it is released here.
impl Drop for ChildActorState {
    fn drop(&mut self) {
        self.ctx
            .children
            .remove_if(&self.spi_in, |_, a| a.get_id() == self.id);
        metrics::gauge!("vpnd_child_sas").decrement(1.0);
    }
}
