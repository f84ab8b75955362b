//! CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18): both
//! halves, the collisions of §2.8.1, and the old IKE SAs that retire after a
//! rekey (their DELETE exchange).

use std::time::Instant;

use crate::crypto::{DhGroup, DhPrivate};
use crate::keys;
use crate::proposal::{self, Chosen, DhMode, ProposalSpec};
use crate::sa::message::{MessageLayer, RequestId};
use crate::sa::payloads::{
    child_payloads, first_error, min_nonce, notify, random_spi, random_vec, requested_group,
    select_preferring_ke,
};
use crate::sa::{
    ChildState, DatagramError, Event, IkeSa, Pending, RekeyError, MAX_INIT_RETRIES, NONCE_LEN,
};
use crate::wire::{
    self, find_notify, Delete, ExchangeType, KeyExchange, Message, NotifyType, Payload, ProtocolId,
};

/// An IKE rekey we asked for.
pub(in crate::sa) struct IkeRekeyRequest {
    pub(in crate::sa) spi_i: u64,
    pub(in crate::sa) ni: Vec<u8>,
    pub(in crate::sa) dh: DhPrivate,
    pub(in crate::sa) ke_retries: u8,
}

/// A peer's IKE rekey that we answered while our own was outstanding.
pub(in crate::sa) struct IkeCollision {
    pub(in crate::sa) core: MessageLayer,
    pub(in crate::sa) min_nonce: Vec<u8>,
    pub(in crate::sa) proposal: Chosen,
}

impl IkeSa {
    /// Initiator: rekey the IKE SA (§1.3.2) with the negotiated group.
    pub(in crate::sa) fn start_ike_rekey(&mut self, now: Instant) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let group = self
            .proposal
            .as_ref()
            .and_then(|p| p.dh)
            .or_else(|| {
                config
                    .ike_proposals
                    .first()
                    .and_then(|s| s.dh.first().copied())
            })
            .unwrap_or(DhGroup::Curve25519);
        let req = IkeRekeyRequest {
            spi_i: random_spi(self.provider.as_mut()),
            ni: random_vec(self.provider.as_mut(), NONCE_LEN),
            dh: DhPrivate::generate(group, self.provider.random()),
            ke_retries: 0,
        };
        self.send_ike_rekey(now, &config.ike_proposals, req);
    }

    /// Send (or send again, with another group) our IKE rekey request.
    fn send_ike_rekey(&mut self, now: Instant, specs: &[ProposalSpec], req: IkeRekeyRequest) {
        let payloads = Self::ike_rekey_payloads(specs, &req);
        self.send_request(
            now,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Pending::RekeyIke(req),
        );
    }

    fn ike_rekey_payloads(specs: &[ProposalSpec], req: &IkeRekeyRequest) -> Vec<Payload> {
        vec![
            Payload::Sa(
                specs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| p.to_wire(i as u8 + 1, &req.spi_i.to_be_bytes(), true))
                    .collect(),
            ),
            Payload::Nonce(req.ni.clone()),
            Payload::Ke(KeyExchange {
                group: req.dh.group().id(),
                data: req.dh.public_key().to_vec(),
            }),
        ]
    }

    pub(in crate::sa) fn handle_ike_rekey_response(
        &mut self,
        now: Instant,
        mut req: IkeRekeyRequest,
        payloads: Vec<Payload>,
    ) {
        let Some(config) = self.config.clone() else {
            return;
        };
        if let Some(n) = find_notify(&payloads, NotifyType::INVALID_KE_PAYLOAD) {
            if let Some(g) = requested_group(n, &config.ike_proposals) {
                if req.ke_retries < MAX_INIT_RETRIES {
                    req.ke_retries += 1;
                    req.dh = DhPrivate::generate(g, self.provider.random());
                    self.send_ike_rekey(now, &config.ike_proposals, req);
                    return;
                }
            }
        }
        let c = child_payloads(&payloads);
        let result = (|| {
            let (Some(sa), Some(nr), Some(ke)) = (c.sa, c.nonce, c.ke) else {
                return Err(match first_error(&payloads) {
                    Some(e) => RekeyError::Refused(e),
                    None => RekeyError::Incomplete,
                });
            };
            let chosen = proposal::accept_response(&config.ike_proposals, sa, DhMode::Negotiate)
                .ok_or(RekeyError::UnofferedProposal)?;
            let spi_r = <[u8; 8]>::try_from(&chosen.spi[..])
                .map(u64::from_be_bytes)
                .map_err(|_| RekeyError::InvalidSpi)?;
            if ke.group != req.dh.group().id() || chosen.dh != Some(req.dh.group()) {
                return Err(RekeyError::KeGroupMismatch);
            }
            let shared = req.dh.agree(&ke.data).map_err(RekeyError::Crypto)?;
            let new =
                self.derive_rekeyed_core(&chosen, &shared, &req.ni, nr, req.spi_i, spi_r, true)?;
            Ok((new, chosen, min_nonce(&req.ni, nr)))
        })();
        let (new, chosen, ours_min) = match result {
            Ok(x) => x,
            Err(reason) => {
                self.events.push_back(Event::ExchangeFailed {
                    exchange: ExchangeType::CREATE_CHILD_SA,
                    reason,
                });
                // A collision we answered now wins outright.
                if let Some(col) = self.ike_collision.take() {
                    self.switch_core(now, col.core, col.proposal, false);
                }
                return;
            }
        };
        match self.ike_collision.take() {
            Some(col) if ours_min < col.min_nonce => {
                // Our new SA is redundant (§2.8.1): delete it; the peer's
                // survives and the peer deletes the old one.
                let mut redundant = new;
                self.send_ike_delete_on(now, &mut redundant);
                self.switch_core(now, col.core, col.proposal, false);
                self.retiring.push(redundant);
            }
            Some(col) => {
                // The peer's is redundant; it deletes it. Keep it around to
                // answer that DELETE.
                self.switch_core(now, new, chosen, true);
                self.retiring.push(col.core);
            }
            None => self.switch_core(now, new, chosen, true),
        }
    }

    pub(in crate::sa) fn handle_ike_rekey_request(
        &mut self,
        now: Instant,
        id: u32,
        sa: &[wire::Proposal],
        ni: &[u8],
        ke: Option<&KeyExchange>,
    ) {
        let reply_err = |s: &mut IkeSa, t: NotifyType, data: Vec<u8>| {
            s.respond(id, ExchangeType::CREATE_CHILD_SA, &[notify(t, data)]);
        };
        let Some(config) = self.config.clone() else {
            reply_err(self, NotifyType::TEMPORARY_FAILURE, Vec::new());
            return;
        };
        if self
            .children
            .iter()
            .any(|c| c.state == ChildState::Rekeying)
            || matches!(
                self.pending,
                Some(Pending::CreateChild(_)) | Some(Pending::DeleteChildren(_))
            )
        {
            // §2.25: an IKE rekey while we create or delete CHILD SAs.
            reply_err(self, NotifyType::TEMPORARY_FAILURE, Vec::new());
            return;
        }
        let Some(chosen) = select_preferring_ke(&config.ike_proposals, sa, ke.map(|k| k.group))
        else {
            reply_err(self, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
            return;
        };
        let Some(g) = chosen.dh else {
            reply_err(self, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
            return;
        };
        let Some(ke) = ke.filter(|k| k.group == g.id()) else {
            reply_err(
                self,
                NotifyType::INVALID_KE_PAYLOAD,
                g.id().to_be_bytes().to_vec(),
            );
            return;
        };
        let Ok(spi_i) = <[u8; 8]>::try_from(&chosen.spi[..]).map(u64::from_be_bytes) else {
            reply_err(self, NotifyType::INVALID_SYNTAX, Vec::new());
            return;
        };
        let dh = DhPrivate::generate(g, self.provider.random());
        let Ok(shared) = dh.agree(&ke.data) else {
            reply_err(self, NotifyType::INVALID_SYNTAX, Vec::new());
            return;
        };
        let spi_r = random_spi(self.provider.as_mut());
        let nr = random_vec(self.provider.as_mut(), NONCE_LEN);
        let new = match self.derive_rekeyed_core(&chosen, &shared, ni, &nr, spi_i, spi_r, false) {
            Ok(c) => c,
            Err(_) => {
                reply_err(self, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
                return;
            }
        };
        let response = [
            Payload::Sa(vec![chosen.to_wire(chosen.number, &spi_r.to_be_bytes())]),
            Payload::Nonce(nr.clone()),
            Payload::Ke(KeyExchange {
                group: g.id(),
                data: dh.public_key().to_vec(),
            }),
        ];
        self.respond(id, ExchangeType::CREATE_CHILD_SA, &response);
        if matches!(self.pending, Some(Pending::RekeyIke(_))) {
            // Collision (§2.8.1): decide when our own rekey completes.
            self.ike_collision = Some(IkeCollision {
                core: new,
                min_nonce: min_nonce(ni, &nr),
                proposal: chosen,
            });
        } else {
            // The peer initiated; it will delete the old SA.
            self.switch_core(now, new, chosen, false);
        }
    }

    /// Keys for a rekeyed IKE SA (§2.18).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::sa) fn derive_rekeyed_core(
        &self,
        chosen: &Chosen,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        initiator: bool,
    ) -> Result<MessageLayer, RekeyError> {
        let old = self.core.keys.as_ref().ok_or(RekeyError::NoKeys)?;
        let prf = chosen.prf.ok_or(RekeyError::NoPrf)?;
        let seed = keys::skeyseed(prf, shared, ni, nr, Some((old.prf, &old.sk_d)));
        let k = keys::derive_ike_keys(prf, chosen.encr, &seed, ni, nr, spi_i, spi_r)
            .map_err(RekeyError::Crypto)?;
        let mut core = MessageLayer::new(spi_i, spi_r, initiator);
        // The new IKE SA keeps the extensions negotiated for the old one.
        core.fragmentation = self.core.fragmentation;
        core.keys = Some(k);
        Ok(core)
    }

    /// Make `new` the current IKE SA. If `delete_old`, we initiated the
    /// surviving rekey and delete the old SA; otherwise the peer will, and
    /// the old one stays to answer.
    pub(in crate::sa) fn switch_core(
        &mut self,
        now: Instant,
        new: MessageLayer,
        proposal: Chosen,
        delete_old: bool,
    ) {
        let mut old = std::mem::replace(&mut self.core, new);
        self.proposal = Some(proposal.clone());
        self.arm_periodic(now);
        self.events.push_back(Event::IkeRekeyed {
            old_spi_i: old.spi_i,
            old_spi_r: old.spi_r,
            spi_i: self.core.spi_i,
            spi_r: self.core.spi_r,
            proposal,
        });
        if delete_old && old.out.is_none() {
            self.send_ike_delete_on(now, &mut old);
        }
        self.retiring.push(old);
        self.run_tasks(now);
    }

    /// Start a DELETE of the IKE SA `core` (an old or redundant one after a
    /// rekey), retransmitted like any request of ours.
    pub(in crate::sa) fn send_ike_delete_on(&mut self, now: Instant, core: &mut MessageLayer) {
        let id = core.next_request_id();
        let data = core.protect(
            ExchangeType::INFORMATIONAL,
            false,
            id,
            &[Payload::Delete(Delete::ike())],
            None,
        );
        let wait = self.retransmit_policy().wait_after(0);
        core.begin_request(now, ExchangeType::INFORMATIONAL, data.clone(), wait);
        self.transmit_all(data);
    }

    /// A datagram for an old IKE SA after a rekey: answer its DELETE, finish
    /// our DELETE, refuse anything else.
    pub(in crate::sa) fn handle_retiring(
        &mut self,
        i: usize,
        data: &[u8],
        msg: Message,
    ) -> Result<(), DatagramError> {
        let core = &mut self.retiring[i];
        let payloads = core.open(data, &msg).map_err(DatagramError::Open)?;
        let id = msg.header.message_id;
        if msg.header.is_response() {
            if core.out.as_ref().is_some_and(|o| o.id == id) {
                let c = self.retiring.remove(i);
                self.events.push_back(Event::Retired {
                    spi_i: c.spi_i,
                    spi_r: c.spi_r,
                });
            }
            return Ok(());
        }
        match core.classify_request(id, data) {
            RequestId::Retransmit(r) => {
                self.transmit_all(r);
                return Ok(());
            }
            RequestId::Drop => {
                return Err(DatagramError::Unexpected("old SA: unexpected message ID"))
            }
            RequestId::New => {}
        }
        let is_delete = payloads
            .iter()
            .any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::IKE));
        let answer = if is_delete {
            Vec::new()
        } else {
            vec![notify(NotifyType::TEMPORARY_FAILURE, Vec::new())]
        };
        let resp = core.protect(msg.header.exchange, true, id, &answer, None);
        core.answered(id, resp.clone());
        self.transmit_all(resp);
        if is_delete {
            let c = self.retiring.remove(i);
            self.events.push_back(Event::Retired {
                spi_i: c.spi_i,
                spi_r: c.spi_r,
            });
        }
        Ok(())
    }
}
