//! What the IKE SA actor does with its core's events: CHILD SA actors
//! started and stopped (with their updown scripts), reports to its owner,
//! the hand-over of an authenticated responder SA, monitor events.

use std::time::Instant;

use ike::config::display_identity;
use ike::sa::{Command, Event};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{IkeMsg, IkeState};
use crate::child_sa::{ChildArgs, ChildMsg, ChildSaActor};
use crate::ctx::CtxRef;
use crate::report::{HandOver, IkeReport, Up};

/// A CHILD SA's updown script and event, if it has one.
pub(super) type Updown = Option<(std::path::PathBuf, kernel::updown::UpdownEvent)>;

/// A CHILD SA actor this IKE SA owns.
pub(super) struct ChildActor {
    pub(super) actor: ActorRef<ChildMsg>,
    pub(super) installed: Instant,
    pub(super) updown: Updown,
}

/// Run the down script of a CHILD SA that is gone (not replaced by a rekey).
pub(super) fn run_down(ctx: &CtxRef, updown: Updown) {
    if let Some((script, ev)) = updown {
        ctx.updown
            .run(script, kernel::updown::UpdownEvent { up: false, ..ev });
    }
}

impl IkeState {
    pub(super) async fn handle_event(
        &mut self,
        myself: &ActorRef<IkeMsg>,
        ev: Event,
    ) -> Result<(), ActorProcessingErr> {
        let conn = self.spec.name.clone();
        match ev {
            Event::Established {
                name,
                proposal,
                local_id,
                remote_id,
                initial_contact,
            } => {
                if self.neutral || name != conn {
                    // A responder SA authenticated: hand it over so it
                    // lives in its connection's subtree.
                    let Some(sa) = self.sa.take() else {
                        return Ok(());
                    };
                    self.unregister_all();
                    self.leave_half_open();
                    let established = Event::Established {
                        name: name.clone(),
                        proposal,
                        local_id,
                        remote_id,
                        initial_contact,
                    };
                    let _ = self.parent.send_message(IkeReport::HandOver(HandOver {
                        conn: name,
                        sa,
                        established,
                        started: self.started_at.unwrap_or_else(runtime::clock::now),
                        spi_owner: self.spi_owner.take(),
                    }));
                    self.done = true;
                    myself.stop(Some("handed over".into()));
                    return Ok(());
                }
                self.established = true;
                let now = runtime::clock::now();
                let started = self.started_at.take().unwrap_or(now);
                metrics::histogram!("vpnd_ike_establish_seconds")
                    .record(now.saturating_duration_since(started).as_secs_f64());
                metrics::counter!("vpnd_ike_established_total").increment(1);
                self.leave_half_open();
                if let Some((spi_i, peer)) = self.half_open_key.take() {
                    self.ctx.router.remove_half_open(spi_i, peer);
                }
                self.ctx.event(
                    Some(&conn),
                    "state",
                    format!(
                        "IKE SA #{} established with '{}' using {}",
                        self.id,
                        display_identity(&remote_id),
                        proposal.describe()
                    ),
                );
                let spis = self
                    .sa
                    .as_ref()
                    .map(|s| (s.spi_i(), s.spi_r()))
                    .unwrap_or_default();
                let _ = self.parent.send_message(IkeReport::Up(Up {
                    ike: myself.get_id(),
                    initial_contact,
                    started,
                    ids: (display_identity(&local_id), display_identity(&remote_id)),
                    spis,
                }));
            }
            Event::ChildReady(child) => {
                let reqid = self.ctx.reqid(&conn, &child.name);
                let spi_in = child.spi_in;
                let name = child.name.clone();
                let spec = self.spec.clone();
                let settings = spec.child(&name);
                let rekey = settings.map(|c| c.rekey_time).unwrap_or_default();
                let rekey_of = child.rekey_of;
                let xfrm = settings.map(|c| c.xfrm).unwrap_or_default();
                let updown = settings.and_then(|c| c.updown.as_ref()).map(|script| {
                    let sa = self.sa.as_ref();
                    let id = |i: Option<&ike::wire::Identification>| {
                        i.map(display_identity).unwrap_or_default()
                    };
                    let ev = kernel::updown::UpdownEvent {
                        up: true,
                        connection: name.clone(),
                        reqid,
                        unique_id: self.id,
                        me: child.local.ip(),
                        my_id: id(sa.and_then(|s| s.local_id())),
                        peer: child.remote.ip(),
                        peer_id: id(sa.and_then(|s| s.remote_id())),
                        udp_encap_port: child.encap.then(|| child.remote.port()),
                        local_ts: child.local_ts.clone(),
                        remote_ts: child.remote_ts.clone(),
                        mark_in: (xfrm.mark_in.0 != 0).then_some(xfrm.mark_in.0),
                        mark_out: (xfrm.mark_out.0 != 0).then_some(xfrm.mark_out.0),
                        if_id_in: (xfrm.if_id_in != 0).then_some(xfrm.if_id_in),
                        if_id_out: (xfrm.if_id_out != 0).then_some(xfrm.if_id_out),
                    };
                    (script.clone(), ev)
                });
                let mut lifetime = settings.map(|c| c.lifetime).unwrap_or_default();
                if lifetime.hard_time.is_none() && !rekey.is_zero() {
                    lifetime.hard_time = Some(rekey + rekey / 10);
                }
                let args = ChildArgs {
                    ctx: self.ctx.clone(),
                    conn: conn.clone(),
                    updown: updown.clone(),
                    sa: *child,
                    reqid,
                    lifetime,
                    xfrm,
                    parent: myself.get_derived(),
                };
                match Actor::spawn_linked(None, ChildSaActor, args, myself.get_cell()).await {
                    Ok((child_ref, _)) => {
                        self.children.insert(
                            spi_in,
                            ChildActor {
                                actor: child_ref,
                                installed: runtime::clock::now(),
                                updown,
                            },
                        );
                        let what = if rekey_of.is_some() {
                            "rekeyed"
                        } else {
                            "installed"
                        };
                        self.ctx.event(
                            Some(&conn),
                            "child",
                            format!("CHILD SA '{name}' {what}: SPI in {spi_in:08x}, reqid {reqid}"),
                        );
                        if rekey_of.is_none() {
                            let _ = self.parent.send_message(IkeReport::ChildUp { child: name });
                        }
                    }
                    Err(e) => {
                        // The dataplane's refusal, not ractor's wrapping.
                        let e = match e {
                            ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                            other => other.to_string(),
                        };
                        let reason = format!("CHILD SA '{name}' could not be installed: {e}");
                        self.ctx.warn(Some(&conn), "error", reason.clone());
                        let _ = self.parent.send_message(IkeReport::ChildFailed {
                            child: name,
                            reason,
                            install: true,
                        });
                        if let Some(sa) = self.sa.as_mut() {
                            sa.handle_command(
                                runtime::clock::now(),
                                Command::DeleteChild { spi_in },
                            );
                        }
                    }
                }
            }
            Event::ChildFailed { name, reason } => {
                let reason = reason.to_string();
                self.ctx.event(Some(&conn), "error", reason.clone());
                let _ = self.parent.send_message(IkeReport::ChildFailed {
                    child: name,
                    reason,
                    install: false,
                });
            }
            Event::ChildRekeyFailed {
                name,
                spi_in,
                reason,
                retry,
            } => {
                let what = match &reason {
                    ike::sa::ChildError::PeerRejected { notify, .. } => {
                        format!("rekey of {spi_in:08x} refused by peer ({notify})")
                    }
                    other => format!("rekey of {spi_in:08x} failed: {other}"),
                };
                let next = match retry {
                    Some(r) => {
                        let ke =
                            r.ke.map(|g| format!(" with KE {}", g.name()))
                                .unwrap_or_default();
                        format!(
                            "retrying{ke} in {}s (retry {} of {})",
                            r.after.as_secs(),
                            r.attempt,
                            ike::sa::MAX_REKEY_RETRIES
                        )
                    }
                    None => "no more retries; the CHILD SA lasts until its hard lifetime".into(),
                };
                self.ctx.warn(
                    Some(&conn),
                    "rekey",
                    format!("connection '{conn}' child '{name}': {what}; {next}"),
                );
            }
            Event::ChildDeleted {
                name,
                spi_in,
                reason,
                ..
            } => {
                if let Some(child) = self.children.remove(&spi_in) {
                    let _ = self.ctx.dataplane.remove_sa(&conn, spi_in);
                    let _ = child.actor.send_message(ChildMsg::Removed);
                    // A rekeyed SA's successor carries on its "up".
                    if reason != "rekeyed" {
                        run_down(&self.ctx, child.updown);
                    }
                }
                // Gone at its hard lifetime with nothing replacing it: the
                // rekey never succeeded.
                let replaced = self
                    .sa
                    .as_ref()
                    .is_some_and(|sa| sa.child_sas().any(|(c, _)| c.name == name));
                if self.expired.remove(&spi_in) && reason != "rekeyed" && !replaced {
                    let why = format!(
                        "connection '{conn}' child '{name}': rekey did not succeed before the \
                         hard lifetime; CHILD SA {spi_in:08x} expired"
                    );
                    self.ctx.warn(Some(&conn), "rekey", why.clone());
                    let _ = self.parent.send_message(IkeReport::ChildLost {
                        child: name.clone(),
                        reason: why,
                    });
                }
                self.ctx.event(
                    Some(&conn),
                    "child",
                    format!("CHILD SA '{name}' {spi_in:08x} deleted: {reason}"),
                );
            }
            Event::IkeRekeyed {
                spi_i,
                spi_r,
                proposal,
                ..
            } => {
                self.register(myself);
                self.ctx.event(
                    Some(&conn),
                    "state",
                    format!(
                        "IKE SA #{} rekeyed: SPIs {spi_i:016x}_i {spi_r:016x}_r, {}",
                        self.id,
                        proposal.describe()
                    ),
                );
            }
            Event::Retired { spi_i, spi_r } => {
                // Whichever of the old SPIs we registered goes.
                for spi in [spi_i, spi_r] {
                    if let Some(i) = self.registered.iter().position(|s| *s == spi) {
                        self.registered.remove(i);
                        self.ctx.router.remove_spi(spi);
                    }
                }
            }
            Event::ExchangeFailed { exchange, reason } => {
                self.ctx
                    .event(Some(&conn), "error", format!("{exchange} failed: {reason}"));
            }
            Event::Alive => {}
            Event::Closed {
                reason,
                was_established,
            } => {
                let peer = match self.sa.as_ref().and_then(|s| s.remote_id()) {
                    Some(id) => display_identity(id),
                    None => self
                        .spec
                        .peer
                        .remote_id
                        .as_ref()
                        .map(display_identity)
                        .unwrap_or_else(|| "%any".into()),
                };
                self.ctx.event(
                    Some(&conn),
                    "state",
                    format!("IKE SA #{} with '{peer}' closed: {reason}", self.id),
                );
                self.finish();
                let _ = self.parent.send_message(IkeReport::Closed {
                    ike: myself.get_id(),
                    reason: reason.to_string(),
                    timeout: matches!(reason, ike::sa::Reason::Timeout { .. }),
                    was_established,
                    initiated: self.initiated,
                });
                self.done = true;
                myself.stop(None);
            }
        }
        Ok(())
    }
}
