//! CREATE_CHILD_SA for CHILD SAs (RFC 7296 §1.3.1 new, §1.3.3 rekey):
//! both halves, optional PFS, narrowing (§2.9) and the CHILD rekey
//! collisions of §2.8.1.

use std::time::Instant;

use zeroize::Zeroizing;

use crate::config::Mode;
use crate::crypto::{DhGroup, DhPrivate};
use crate::keys;
use crate::proposal::{self, Chosen, DhMode, ProposalSpec};
use crate::sa::payloads::{
    child_payloads, first_error, fmt_ts, min_nonce, notify, random_vec, select_preferring_ke,
    spi_bytes, spi_from,
};
use crate::sa::{
    BadChild, Child, ChildError, ChildSa, ChildState, Event, IkeSa, Pending, Phase, RekeyRetry,
    Task, MAX_INIT_RETRIES, MAX_REKEY_RETRIES, NONCE_LEN,
};
use crate::ts;

use super::pfs::{no_group, proposals_with_group, without_groups};
use crate::wire::{
    self, find_notify, ExchangeType, KeyExchange, Notify, NotifyType, Payload, ProtocolId,
    TrafficSelector,
};

/// A CHILD SA we asked for (IKE_AUTH or CREATE_CHILD_SA).
pub(in crate::sa) struct ChildRequest {
    pub(in crate::sa) name: String,
    pub(in crate::sa) spi_in: u32,
    pub(in crate::sa) ni: Vec<u8>,
    pub(in crate::sa) dh: Option<DhPrivate>,
    pub(in crate::sa) rekey_of: Option<u32>,
    pub(in crate::sa) ts_i: Vec<TrafficSelector>,
    pub(in crate::sa) ts_r: Vec<TrafficSelector>,
    pub(in crate::sa) mode: Mode,
    pub(in crate::sa) proposals: Vec<ProposalSpec>,
    pub(in crate::sa) ke_retries: u8,
    /// Already retried with a KE after NO_PROPOSAL_CHOSEN.
    pub(in crate::sa) pfs_retried: bool,
    /// Already retried without KE after NO_PROPOSAL_CHOSEN to one with.
    pub(in crate::sa) nopfs_retried: bool,
}

/// A CHILD SA the responder agreed to.
pub(in crate::sa) struct Negotiated {
    pub(in crate::sa) name: String,
    pub(in crate::sa) spi_in: u32,
    pub(in crate::sa) spi_out: u32,
    pub(in crate::sa) chosen: Chosen,
    pub(in crate::sa) tsi: Vec<TrafficSelector>,
    pub(in crate::sa) tsr: Vec<TrafficSelector>,
    pub(in crate::sa) mode: Mode,
    pub(in crate::sa) dh: Option<DhPrivate>,
}

impl Negotiated {
    pub(in crate::sa) fn response_payloads(&self) -> Vec<Payload> {
        let mut v = Vec::new();
        if self.mode == Mode::Transport {
            v.push(notify(NotifyType::USE_TRANSPORT_MODE, Vec::new()));
        }
        v.push(Payload::Sa(vec![self
            .chosen
            .to_wire(self.chosen.number, &spi_bytes(self.spi_in))]));
        v.push(Payload::TsI(self.tsi.clone()));
        v.push(Payload::TsR(self.tsr.clone()));
        v
    }
}

impl IkeSa {
    /// Initiator: ask for CHILD SA `name`, or rekey the one whose inbound
    /// SPI is `rekey_of` (§1.3.1, §1.3.3).
    pub(in crate::sa) fn start_create_child(
        &mut self,
        now: Instant,
        name: String,
        rekey_of: Option<u32>,
    ) {
        if let Some(old) = rekey_of {
            match self.children.iter_mut().find(|c| c.sa.spi_in == old) {
                Some(c) if c.state == ChildState::Installed => c.state = ChildState::Rekeying,
                _ => return, // gone or already being replaced
            }
        }
        match self.child_request(&name, rekey_of) {
            Ok(req) => self.send_create_child(now, req),
            Err(reason) => self.events.push_back(Event::ChildFailed { name, reason }),
        }
    }

    /// Build a request for CHILD SA `name` from the connection config.
    pub(in crate::sa) fn child_request(
        &mut self,
        name: &str,
        rekey_of: Option<u32>,
    ) -> Result<ChildRequest, ChildError> {
        let config = self.config.clone().ok_or(ChildError::NoConfig)?;
        let child = config.child(name).ok_or_else(|| ChildError::UnknownChild {
            conn: config.name.clone(),
            child: name.to_string(),
        })?;
        let old = rekey_of.and_then(|s| self.children.iter().find(|c| c.sa.spi_in == s));
        let (ts_i, ts_r) = match old {
            // A rekey proposes the selectors the old SA has (§2.9.2).
            Some(old) => (old.sa.local_ts.clone(), old.sa.remote_ts.clone()),
            None => (child.local_ts.clone(), child.remote_ts.clone()),
        };
        // Our proposals name no group, but this SA was made with one, or a
        // refused rekey taught us the peer wants one: rekey with it.
        // A peer that refused PFS for this SA's predecessor gets rekeys
        // without KE.
        let proposals = match old.map(|o| (o.pfs, o.pfs_refused)) {
            Some((_, true)) => without_groups(&child.esp_proposals),
            Some((Some(g), false)) if no_group(&child.esp_proposals) => {
                proposals_with_group(&child.esp_proposals, g, &[])
            }
            _ => child.esp_proposals.clone(),
        };
        Ok(ChildRequest {
            name: name.to_string(),
            spi_in: self.provider.alloc_child_spi(),
            ni: random_vec(self.provider.as_mut(), NONCE_LEN),
            dh: None,
            rekey_of,
            ts_i,
            ts_r,
            mode: child.mode,
            proposals,
            ke_retries: 0,
            pfs_retried: false,
            nopfs_retried: false,
        })
    }

    pub(in crate::sa) fn child_sa_payloads(req: &ChildRequest, include_dh: bool) -> Vec<Payload> {
        let mut v = Vec::new();
        if req.mode == Mode::Transport {
            v.push(notify(NotifyType::USE_TRANSPORT_MODE, Vec::new()));
        }
        v.push(Payload::Sa(
            req.proposals
                .iter()
                .enumerate()
                .map(|(i, p)| p.to_wire(i as u8 + 1, &spi_bytes(req.spi_in), include_dh))
                .collect(),
        ));
        v
    }

    pub(in crate::sa) fn send_create_child(&mut self, now: Instant, mut req: ChildRequest) {
        let pfs = req.proposals.first().and_then(|p| p.dh.first().copied());
        if req
            .dh
            .as_ref()
            .map(|d| Some(d.group()) != pfs)
            .unwrap_or(pfs.is_some())
        {
            req.dh = pfs.map(|g| DhPrivate::generate(g, self.provider.random()));
        }
        let mut payloads = Vec::new();
        if let Some(old) = req.rekey_of {
            payloads.push(Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: spi_bytes(old),
                notify_type: NotifyType::REKEY_SA,
                data: Vec::new(),
            }));
        }
        payloads.extend(Self::child_sa_payloads(&req, true));
        payloads.push(Payload::Nonce(req.ni.clone()));
        if let Some(dh) = &req.dh {
            payloads.push(Payload::Ke(KeyExchange {
                group: dh.group().id(),
                data: dh.public_key().to_vec(),
            }));
        }
        payloads.push(Payload::TsI(req.ts_i.clone()));
        payloads.push(Payload::TsR(req.ts_r.clone()));
        self.send_request(
            now,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Pending::CreateChild(req),
        );
    }

    pub(in crate::sa) fn handle_create_child_response(
        &mut self,
        now: Instant,
        mut req: ChildRequest,
        payloads: Vec<Payload>,
    ) {
        if let Some(n) = find_notify(&payloads, NotifyType::INVALID_KE_PAYLOAD) {
            let g = n
                .data
                .get(..2)
                .and_then(|b| DhGroup::from_id(u16::from_be_bytes([b[0], b[1]])))
                .filter(|g| self.pfs_allowed(*g, &req.proposals));
            if let (Some(g), true) = (g, req.ke_retries < MAX_INIT_RETRIES) {
                req.ke_retries += 1;
                req.dh = Some(DhPrivate::generate(g, self.provider.random()));
                // Put the wanted group first so it goes in KE.
                req.proposals = proposals_with_group(&req.proposals, g, &[]);
                self.note_pfs_retry(&req, NotifyType::INVALID_KE_PAYLOAD, g);
                self.send_create_child(now, req);
                return;
            }
        }
        // A peer that wants PFS (Libreswan's default pfs=yes) refuses a
        // request without KE: ask again with the IKE SA's group.
        if req.dh.is_none()
            && !req.pfs_retried
            && first_error(&payloads) == Some(NotifyType::NO_PROPOSAL_CHOSEN)
        {
            let g = self
                .proposal
                .as_ref()
                .and_then(|p| p.dh)
                .filter(|g| self.pfs_allowed(*g, &req.proposals));
            if let Some(g) = g {
                req.pfs_retried = true;
                // The IKE SA's group first, the others of our IKE
                // proposals as alternatives (INVALID_KE_PAYLOAD may pick).
                let others = self.ike_groups();
                req.proposals = proposals_with_group(&req.proposals, g, &others);
                self.note_pfs_retry(&req, NotifyType::NO_PROPOSAL_CHOSEN, g);
                self.send_create_child(now, req);
                return;
            }
        }
        // A peer that refuses PFS (strongSwan without a group in its ESP
        // proposals) refuses a request with KE: ask again without. Only
        // the authenticated peer can refuse (the exchange is protected by
        // the IKE SA), and the keys still come from SK_d.
        let required = self
            .config
            .as_ref()
            .and_then(|c| c.child(&req.name))
            .is_some_and(|c| c.pfs_required);
        if req.dh.is_some()
            && !required
            && !req.nopfs_retried
            && !req.pfs_retried
            && first_error(&payloads) == Some(NotifyType::NO_PROPOSAL_CHOSEN)
        {
            req.nopfs_retried = true;
            req.dh = None;
            req.proposals = without_groups(&req.proposals);
            if let Some(old) = req.rekey_of {
                self.events.push_back(Event::ChildRekeyFailed {
                    name: req.name.clone(),
                    spi_in: old,
                    reason: ChildError::PeerRejected {
                        child: req.name.clone(),
                        notify: NotifyType::NO_PROPOSAL_CHOSEN,
                    },
                    retry: Some(RekeyRetry {
                        attempt: 1,
                        after: std::time::Duration::ZERO,
                        ke: None,
                    }),
                });
            }
            self.send_create_child(now, req);
            return;
        }
        let c = child_payloads(&payloads);
        let shared = match (&req.dh, c.ke) {
            (Some(dh), Some(ke)) if ke.group == dh.group().id() => match dh.agree(&ke.data) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.child_request_failed(now, &req, ChildError::ResponderKe(e));
                    return;
                }
            },
            _ => None,
        };
        if c.sa.is_none() {
            // An error answer: reported by finish_initiated_child.
            let ni = req.ni.clone();
            self.finish_initiated_child(now, req, &payloads, &ni, &[], None);
            return;
        }
        let Some(nr) = c.nonce.map(<[u8]>::to_vec) else {
            self.child_request_failed(now, &req, ChildError::NoNonce);
            return;
        };
        // A KE we sent may go unanswered only if the responder chose a
        // proposal without a group (§1.3.1: it then ignores our KE).
        let chose_group =
            c.sa.and_then(|sa| proposal::accept_response(&req.proposals, sa, DhMode::Negotiate))
                .is_some_and(|ch| ch.dh.is_some());
        if req.dh.is_some() && shared.is_none() && chose_group {
            self.child_request_failed(now, &req, ChildError::NoPfsAnswer);
            return;
        }
        let ni = req.ni.clone();
        let shared: Option<Zeroizing<Vec<u8>>> = shared;
        self.finish_initiated_child(
            now,
            req,
            &payloads,
            &ni,
            &nr,
            shared.as_ref().map(|s| &s[..]),
        );
    }

    /// May a CHILD SA request carry a KE of group `g`? If our ESP
    /// proposals name groups, only those; if they name none, any group of
    /// the connection's IKE proposals (PFS only strengthens the SA).
    fn pfs_allowed(&self, g: DhGroup, proposals: &[ProposalSpec]) -> bool {
        if proposals.iter().any(|p| p.dh.contains(&g)) {
            return true;
        }
        no_group(proposals)
            && self
                .config
                .as_ref()
                .is_some_and(|c| c.ike_proposals.iter().any(|p| p.dh.contains(&g)))
    }

    /// The DH groups of the connection's IKE proposals, in order.
    fn ike_groups(&self) -> Vec<DhGroup> {
        let mut v = Vec::new();
        for g in self
            .config
            .iter()
            .flat_map(|c| c.ike_proposals.iter())
            .flat_map(|p| p.dh.iter())
        {
            if !v.contains(g) {
                v.push(*g);
            }
        }
        v
    }

    /// A rekey is asked again at once with a KE of `g`: say so. (What
    /// succeeds is remembered by the new SA, see `add_child`.)
    fn note_pfs_retry(&mut self, req: &ChildRequest, notify: NotifyType, g: DhGroup) {
        let Some(old) = req.rekey_of else { return };
        self.events.push_back(Event::ChildRekeyFailed {
            name: req.name.clone(),
            spi_in: old,
            reason: ChildError::PeerRejected {
                child: req.name.clone(),
                notify,
            },
            retry: Some(RekeyRetry {
                attempt: u32::from(req.ke_retries) + u32::from(req.pfs_retried),
                after: std::time::Duration::ZERO,
                ke: Some(g),
            }),
        });
    }

    /// Our CHILD SA request failed. A new CHILD SA is reported failed; a
    /// rekey leaves the old SA in service and is tried again after a
    /// backoff, at most `MAX_REKEY_RETRIES` times.
    pub(in crate::sa) fn child_request_failed(
        &mut self,
        now: Instant,
        req: &ChildRequest,
        reason: ChildError,
    ) {
        let Some(old) = req.rekey_of else {
            self.events.push_back(Event::ChildFailed {
                name: req.name.clone(),
                reason,
            });
            return;
        };
        self.restore_rekeying(Some(old));
        let delay = |n| self.timers.rekey_retry_delay(n);
        let Some(ch) = self.children.iter_mut().find(|c| c.sa.spi_in == old) else {
            return;
        };
        if ch.state != ChildState::Installed {
            // Deleted or replaced meanwhile: nothing left to rekey.
            return;
        }
        ch.rekey_failures += 1;
        let n = ch.rekey_failures;
        let retry = (n <= MAX_REKEY_RETRIES).then(|| RekeyRetry {
            attempt: n,
            after: delay(n),
            ke: req.proposals.first().and_then(|p| p.dh.first().copied()),
        });
        ch.rekey_at = retry.map(|r| now + r.after);
        self.events.push_back(Event::ChildRekeyFailed {
            name: req.name.clone(),
            spi_in: old,
            reason,
            retry,
        });
    }

    /// Complete a CHILD SA we asked for, from the response payloads.
    /// `shared` is the PFS secret, if any.
    pub(in crate::sa) fn finish_initiated_child(
        &mut self,
        now: Instant,
        req: ChildRequest,
        payloads: &[Payload],
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
    ) {
        let c = child_payloads(payloads);
        let fail = |sa: &mut IkeSa, reason: ChildError| sa.child_request_failed(now, &req, reason);
        let (Some(sa_p), Some(tsi), Some(tsr)) = (c.sa, c.tsi, c.tsr) else {
            let reason = match first_error(payloads) {
                Some(notify) => ChildError::PeerRejected {
                    child: req.name.clone(),
                    notify,
                },
                None => ChildError::NotOffered {
                    child: req.name.clone(),
                },
            };
            fail(self, reason);
            return;
        };
        // CREATE_CHILD_SA negotiates PFS (a proposal without a group is
        // chosen without KE); IKE_AUTH ignores DH transforms.
        let dh_mode = if shared.is_some() || req.dh.is_some() {
            DhMode::Negotiate
        } else {
            DhMode::Ignore
        };
        let chosen = proposal::accept_response(&req.proposals, sa_p, dh_mode);
        let spi_out = chosen.as_ref().and_then(|ch| spi_from(&ch.spi));
        let checked = match (chosen, spi_out) {
            (None, _) => Err(BadChild::UnofferedProposal),
            (_, None) => Err(BadChild::InvalidSpi),
            _ if !ts::all_within(tsi, &req.ts_i) || !ts::all_within(tsr, &req.ts_r) => {
                Err(BadChild::TsNotWithin)
            }
            _ if c.transport != (req.mode == Mode::Transport) => {
                Err(BadChild::ModeRefused(req.mode))
            }
            (Some(chosen), Some(spi_out)) => Ok((chosen, spi_out)),
        };
        let (chosen, spi_out) = match checked {
            Ok(ok) => ok,
            Err(problem) => {
                let reason = ChildError::BadResponse {
                    child: req.name.clone(),
                    problem,
                };
                fail(self, reason);
                if spi_out.is_some() {
                    // The peer installed its half: ask it to remove it (§1.4.1).
                    self.tasks.push_front(Task::DeleteUnknown(req.spi_in));
                }
                return;
            }
        };
        let Some(child_keys) = self.child_keys(chosen.encr, shared, ni, nr, true) else {
            fail(self, ChildError::NoKeys);
            return;
        };
        let sa = ChildSa {
            name: req.name.clone(),
            spi_in: req.spi_in,
            spi_out,
            mode: req.mode,
            local_ts: tsi.to_vec(),
            remote_ts: tsr.to_vec(),
            proposal: chosen,
            keys: child_keys,
            encap: self.encap(),
            local: self.local,
            remote: self.remote,
            rekey_of: req.rekey_of,
            initiator: true,
        };
        let mine = min_nonce(ni, nr);
        self.add_child(now, sa);
        if let Some(old) = req.rekey_of {
            self.resolve_child_rekey(old, req.spi_in, mine);
        }
    }

    /// A rekey of `old` failed: it stays in service.
    pub(in crate::sa) fn restore_rekeying(&mut self, old: Option<u32>) {
        if let Some(ch) = old.and_then(|o| self.children.iter_mut().find(|c| c.sa.spi_in == o)) {
            if ch.state == ChildState::Rekeying {
                ch.state = ChildState::Installed;
                ch.collision = None;
            }
        }
    }

    /// Our rekey of `old` produced `new`. Decide, per §2.8.1, which SA to
    /// delete.
    pub(in crate::sa) fn resolve_child_rekey(&mut self, old: u32, new: u32, new_min: Vec<u8>) {
        let Some(o) = self.children.iter_mut().find(|c| c.sa.spi_in == old) else {
            // The old SA vanished meanwhile (peer deleted it): keep the new.
            return;
        };
        match o.collision.take() {
            Some((_, peer_min)) if new_min < peer_min => {
                // Ours has the lowest nonce: it is redundant, we delete it;
                // the peer, whose SA survives, deletes the old one.
                o.state = ChildState::Rekeyed;
                o.rekeyed = true;
                if let Some(n) = self.children.iter_mut().find(|c| c.sa.spi_in == new) {
                    n.rekeyed = true;
                }
                self.tasks.push_back(Task::DeleteChildren(vec![new]));
            }
            collision => {
                o.state = ChildState::Rekeyed;
                o.rekeyed = true;
                self.tasks.push_back(Task::DeleteChildren(vec![old]));
                // The peer's SA from the collision is redundant; the peer
                // deletes it, and that deletion is part of the rekey.
                if let Some((peer_new, _)) = collision {
                    if let Some(n) = self.children.iter_mut().find(|c| c.sa.spi_in == peer_new) {
                        n.rekeyed = true;
                    }
                }
            }
        }
    }

    pub(in crate::sa) fn handle_create_child_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: Vec<Payload>,
    ) {
        if self.phase() == Phase::Deleting {
            self.respond(
                id,
                ExchangeType::CREATE_CHILD_SA,
                &[notify(NotifyType::TEMPORARY_FAILURE, Vec::new())],
            );
            return;
        }
        let c = child_payloads(&payloads);
        let (Some(sa), Some(ni)) = (c.sa, c.nonce) else {
            self.respond(
                id,
                ExchangeType::CREATE_CHILD_SA,
                &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        if sa.first().is_some_and(|p| p.protocol == ProtocolId::IKE) {
            self.handle_ike_rekey_request(now, id, sa, ni, c.ke);
            return;
        }
        let Some((tsi, tsr)) = c.tsi.zip(c.tsr) else {
            self.respond(
                id,
                ExchangeType::CREATE_CHILD_SA,
                &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        // CHILD rekey: the notify's SPI is the initiator's inbound SPI, i.e.
        // our outbound SPI of the old SA (§1.3.3).
        let rekey = match c.rekey {
            Some(n) => {
                let old =
                    spi_from(&n.spi).and_then(|s| self.children.iter().find(|c| c.sa.spi_out == s));
                match old {
                    Some(o) if matches!(o.state, ChildState::Installed | ChildState::Rekeying) => {
                        Some((
                            o.sa.spi_in,
                            o.sa.name.clone(),
                            o.state == ChildState::Rekeying,
                        ))
                    }
                    Some(_) => {
                        self.respond(
                            id,
                            ExchangeType::CREATE_CHILD_SA,
                            &[notify(NotifyType::TEMPORARY_FAILURE, Vec::new())],
                        );
                        return;
                    }
                    None => {
                        let mut n = n.clone();
                        n.notify_type = NotifyType::CHILD_SA_NOT_FOUND;
                        self.respond(id, ExchangeType::CREATE_CHILD_SA, &[Payload::Notify(n)]);
                        return;
                    }
                }
            }
            None => None,
        };
        if rekey.is_none() {
            let limit = self.config.as_ref().map_or(u32::MAX, |c| c.max_child_sas);
            let live = self
                .children
                .iter()
                .filter(|c| matches!(c.state, ChildState::Installed | ChildState::Rekeying))
                .count();
            if live >= limit as usize {
                let reason = ChildError::TooManyChildSas { limit };
                let (t, data) = reason.notify();
                self.respond(id, ExchangeType::CREATE_CHILD_SA, &[notify(t, data)]);
                self.events.push_back(Event::ChildFailed {
                    name: String::new(),
                    reason,
                });
                return;
            }
        }
        let only = rekey.as_ref().map(|r| r.1.clone());
        let negotiated = self.negotiate_child(
            sa,
            tsi,
            tsr,
            c.transport,
            c.ke.map(|k| k.group),
            DhMode::Negotiate,
            only.as_deref(),
        );
        let mut n = match negotiated {
            Ok(n) => n,
            Err(reason) => {
                let (t, data) = reason.notify();
                self.respond(id, ExchangeType::CREATE_CHILD_SA, &[notify(t, data)]);
                if !matches!(reason, ChildError::WrongKeGroup(_)) {
                    self.events.push_back(Event::ChildFailed {
                        name: only.unwrap_or_default(),
                        reason,
                    });
                }
                return;
            }
        };
        let nr = random_vec(self.provider.as_mut(), NONCE_LEN);
        let mut shared = None;
        if let (Some(g), Some(ke)) = (n.chosen.dh, c.ke) {
            let dh = DhPrivate::generate(g, self.provider.random());
            match dh.agree(&ke.data) {
                Ok(s) => shared = Some(s),
                Err(_) => {
                    self.respond(
                        id,
                        ExchangeType::CREATE_CHILD_SA,
                        &[notify(NotifyType::INVALID_SYNTAX, Vec::new())],
                    );
                    return;
                }
            }
            n.dh = Some(dh);
        }
        let mut response = Vec::new();
        if n.mode == Mode::Transport {
            response.push(notify(NotifyType::USE_TRANSPORT_MODE, Vec::new()));
        }
        response.push(Payload::Sa(vec![n
            .chosen
            .to_wire(n.chosen.number, &spi_bytes(n.spi_in))]));
        response.push(Payload::Nonce(nr.clone()));
        if let Some(dh) = &n.dh {
            response.push(Payload::Ke(KeyExchange {
                group: dh.group().id(),
                data: dh.public_key().to_vec(),
            }));
        }
        response.push(Payload::TsI(n.tsi.clone()));
        response.push(Payload::TsR(n.tsr.clone()));
        self.respond(id, ExchangeType::CREATE_CHILD_SA, &response);
        let rekey_of = rekey.as_ref().map(|r| r.0);
        let Some(new_spi) =
            self.install_child(now, n, ni, &nr, shared.as_ref().map(|s| &s[..]), rekey_of)
        else {
            return;
        };
        if let Some((old, _, colliding)) = rekey {
            let peer_min = min_nonce(ni, &nr);
            if let Some(o) = self.children.iter_mut().find(|c| c.sa.spi_in == old) {
                if colliding {
                    o.collision = Some((new_spi, peer_min));
                } else {
                    // The peer initiated the rekey; it deletes the old SA.
                    o.state = ChildState::Rekeyed;
                    o.rekeyed = true;
                }
            }
        }
        self.run_tasks(now);
    }

    /// Responder side of a CHILD SA negotiation: pick a child config whose
    /// selectors overlap, narrow, select a proposal.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::sa) fn negotiate_child(
        &mut self,
        sa: &[wire::Proposal],
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        transport: bool,
        ke_group: Option<u16>,
        dh_mode: DhMode,
        only: Option<&str>,
    ) -> Result<Negotiated, ChildError> {
        let config = self.config.clone().ok_or(ChildError::NoConfig)?;
        let mut error = ChildError::TsUnacceptable {
            tsi: fmt_ts(tsi),
            tsr: fmt_ts(tsr),
        };
        for child in config
            .children
            .iter()
            .filter(|c| only.is_none_or(|n| n == c.name))
        {
            // The initiator's TSi is our remote side.
            let n_tsi = ts::narrow(tsi, &child.remote_ts);
            let n_tsr = ts::narrow(tsr, &child.local_ts);
            if n_tsi.is_empty() || n_tsr.is_empty() {
                continue;
            }
            if transport != (child.mode == Mode::Transport) && child.mode == Mode::Transport {
                error = ChildError::TransportRequired {
                    child: child.name.clone(),
                };
                continue;
            }
            // A peer that adds a KE although our ESP proposals name no
            // group gets PFS with any group of our IKE proposals: it only
            // strengthens the SA (Libreswan's pfs=yes from the other side).
            let pfs_ours: Vec<ProposalSpec>;
            let ours = match ke_group {
                Some(_) if no_group(&child.esp_proposals) => {
                    let groups = self.ike_groups();
                    pfs_ours = child
                        .esp_proposals
                        .iter()
                        .map(|p| ProposalSpec {
                            dh: groups.clone(),
                            ..p.clone()
                        })
                        .collect();
                    &pfs_ours
                }
                _ => &child.esp_proposals,
            };
            let chosen = match dh_mode {
                // A peer that refuses PFS asks without KE: accepted without
                // (the mirror of the above; see `without_groups`).
                DhMode::Negotiate => select_preferring_ke(ours, sa, ke_group).or_else(|| {
                    (ke_group.is_none() && !child.pfs_required)
                        .then(|| {
                            proposal::select(
                                &without_groups(&child.esp_proposals),
                                sa,
                                DhMode::Negotiate,
                            )
                        })
                        .flatten()
                }),
                DhMode::Ignore => proposal::select(&child.esp_proposals, sa, DhMode::Ignore),
            };
            let Some(chosen) = chosen else {
                error = ChildError::NoProposal {
                    child: child.name.clone(),
                };
                continue;
            };
            if let (Some(g), DhMode::Negotiate) = (chosen.dh, &dh_mode) {
                if ke_group != Some(g.id()) {
                    return Err(ChildError::WrongKeGroup(g));
                }
            }
            let Some(spi_out) = spi_from(&chosen.spi) else {
                return Err(ChildError::InvalidSpi);
            };
            let mode = if transport && child.mode == Mode::Transport {
                Mode::Transport
            } else {
                Mode::Tunnel
            };
            return Ok(Negotiated {
                name: child.name.clone(),
                spi_in: self.provider.alloc_child_spi(),
                spi_out,
                chosen,
                tsi: n_tsi,
                tsr: n_tsr,
                mode,
                dh: None,
            });
        }
        Err(error)
    }

    pub(in crate::sa) fn install_child(
        &mut self,
        now: Instant,
        n: Negotiated,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        rekey_of: Option<u32>,
    ) -> Option<u32> {
        let child_keys = self.child_keys(n.chosen.encr, shared, ni, nr, false)?;
        let sa = ChildSa {
            name: n.name,
            spi_in: n.spi_in,
            spi_out: n.spi_out,
            mode: n.mode,
            // Our local side is the initiator's TSr.
            local_ts: n.tsr,
            remote_ts: n.tsi,
            proposal: n.chosen,
            keys: child_keys,
            encap: self.encap(),
            local: self.local,
            remote: self.remote,
            rekey_of,
            initiator: false,
        };
        self.add_child(now, sa);
        Some(n.spi_in)
    }

    /// KEYMAT for a CHILD SA of this IKE SA (§2.17); `None` before keys.
    fn child_keys(
        &self,
        encr: crate::crypto::AeadAlg,
        shared: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        initiator: bool,
    ) -> Option<keys::ChildKeys> {
        let k = self.core.keys.as_ref()?;
        Some(keys::derive_child_keys(
            k.prf, &k.sk_d, encr, shared, ni, nr, initiator,
        ))
    }

    /// Hold a new CHILD SA, arm its rekey, and report it ready.
    fn add_child(&mut self, now: Instant, sa: ChildSa) {
        let (rekey_at, rekey_interval) = self.child_rekey_deadline(now, &sa.name);
        // Rekeys of it repeat what this negotiation found: PFS with the
        // group used, or none where the peer refused the group we name.
        let names_group = self
            .config
            .as_ref()
            .and_then(|c| c.child(&sa.name))
            .is_some_and(|c| !no_group(&c.esp_proposals));
        let pfs_refused = sa.rekey_of.is_some() && sa.proposal.dh.is_none() && names_group;
        // Exactly: an IKE SA usually has one CHILD SA, and a doubling
        // Vec would hold room for four.
        self.children.reserve_exact(1);
        self.children.push(Child {
            sa: sa.clone(),
            state: ChildState::Installed,
            rekeyed: false,
            collision: None,
            rekey_at,
            rekey_interval,
            pfs: sa.proposal.dh,
            pfs_refused,
            rekey_failures: 0,
        });
        self.events.push_back(Event::ChildReady(Box::new(sa)));
    }
}
