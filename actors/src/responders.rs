//! The neutral home of half-open responder IKE SAs. A new IKE_SA_INIT
//! request comes here straight from the router (the Daemon is not on that
//! path); the candidates are the loaded connections whose addresses admit
//! it, read from the shared directory. The IKE SA actor it starts lives here
//! until IKE_AUTH names its connection, then hands its SA over, through the
//! Daemon, to that connection's subtree. So no connection's actor owns
//! another connection's half-open SAs: killing or restarting one leaves the
//! responders of the others alone.
//!
//! A half-open SA that fails (refused, timed out, panicked) simply ends
//! here; no connection hears of it.

use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, SupervisionEvent};

use runtime::scheduler::Priority;

use crate::admission::Refusal;
use crate::ctx::CtxRef;
use crate::derive_report;
use crate::ike_sa::{IkeArgs, IkeSaActor, IkeStart, IkeView};
use crate::report::{HandOver, IkeReport};
use crate::router::Datagram;

pub enum ResponderMsg {
    /// A new IKE_SA_INIT request.
    New(Datagram),
    /// From a half-open IKE SA actor.
    Report(IkeReport),
}

derive_report!(Datagram => ResponderMsg::New);
derive_report!(IkeReport => ResponderMsg::Report);

pub struct ResponderArgs {
    pub ctx: CtxRef,
    /// Where authenticated SAs go to find their connection (the Daemon).
    pub hand_over: DerivedActorRef<HandOver>,
}

pub struct Responders;

pub struct ResponderState {
    ctx: CtxRef,
    hand_over: DerivedActorRef<HandOver>,
}

impl Actor for Responders {
    type Msg = ResponderMsg;
    type State = ResponderState;
    type Arguments = ResponderArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ResponderMsg>,
        a: ResponderArgs,
    ) -> Result<ResponderState, ActorProcessingErr> {
        a.ctx.router.set_responders(myself.get_derived());
        Ok(ResponderState {
            ctx: a.ctx,
            hand_over: a.hand_over,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ResponderMsg>,
        msg: ResponderMsg,
        st: &mut ResponderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ResponderMsg::New(Datagram {
                local,
                remote,
                data,
            }) => {
                st.ctx.router.new_taken();
                // The gate counted it as half-open when it let it through.
                let slot = st.ctx.admission.claim(remote.ip());
                let group = st.ctx.group(local.ip(), remote.ip());
                let Some(first) = group.first.clone() else {
                    // Unloaded since the gate let it through.
                    st.ctx.admission.refuse(Refusal::Unmatched);
                    return Ok(());
                };
                let args = IkeArgs {
                    ctx: st.ctx.clone(),
                    // Retransmission settings until IKE_AUTH picks the
                    // connection; the SA itself weighs every candidate.
                    spec: first,
                    parent: myself.get_derived(),
                    view: IkeView::new_ref(),
                    start: IkeStart::Accept {
                        local,
                        remote,
                        data,
                        candidates: group.candidates.clone(),
                        slot: Some(slot),
                        priority: if group.named {
                            Priority::High
                        } else {
                            Priority::Stranger
                        },
                    },
                };
                if let Err(e) = Actor::spawn_linked(None, IkeSaActor, args, myself.get_cell()).await
                {
                    tracing::warn!(%remote, "responder IKE SA not started: {e}");
                }
            }
            ResponderMsg::Report(IkeReport::HandOver(h)) => {
                let _ = st.hand_over.send_message(h);
            }
            // Up and CHILD reports come only from SAs of a connection, and
            // a closed half-open SA leaves nothing behind.
            ResponderMsg::Report(_) => {}
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ResponderMsg>,
        evt: SupervisionEvent,
        _st: &mut ResponderState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, err) = evt {
            // Its registrations went with it (post_stop); the peer retries.
            tracing::warn!("a half-open responder IKE SA failed: {err}");
        }
        Ok(())
    }
}
