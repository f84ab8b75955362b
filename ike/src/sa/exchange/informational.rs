//! INFORMATIONAL (RFC 7296 §1.4): DELETE of CHILD SAs and of the IKE SA,
//! liveness checks, both halves.

use std::time::Instant;

use crate::sa::payloads::{first_error, spi_from};
use crate::sa::{ChildState, IkeSa, Pending, Reason, Stage};
use crate::wire::{Delete, ExchangeType, NotifyType, Payload, ProtocolId};

impl IkeSa {
    /// Initiator: delete the CHILD SAs with these inbound SPIs (§1.4.1),
    /// those still held and not being deleted already.
    pub(in crate::sa) fn start_delete_children(&mut self, now: Instant, spis: Vec<u32>) {
        let spis: Vec<u32> = spis
            .into_iter()
            .filter(|s| {
                self.children
                    .iter()
                    .any(|c| c.sa.spi_in == *s && c.state != ChildState::Deleting)
            })
            .collect();
        if spis.is_empty() {
            return;
        }
        for c in self
            .children
            .iter_mut()
            .filter(|c| spis.contains(&c.sa.spi_in))
        {
            c.state = ChildState::Deleting;
        }
        let payloads = [Payload::Delete(Delete::esp(&spis))];
        self.send_request(
            now,
            ExchangeType::INFORMATIONAL,
            &payloads,
            Pending::DeleteChildren(spis),
        );
    }

    /// Initiator: delete an SA the peer installed but we refused.
    pub(in crate::sa) fn start_delete_unknown(&mut self, now: Instant, spi: u32) {
        let payloads = [Payload::Delete(Delete::esp(&[spi]))];
        self.send_request(
            now,
            ExchangeType::INFORMATIONAL,
            &payloads,
            Pending::DeleteChildren(Vec::new()),
        );
    }

    /// Initiator: delete the IKE SA and with it every CHILD SA (§1.4.1).
    pub(in crate::sa) fn start_delete_ike(&mut self, now: Instant) {
        self.stage = Stage::Deleting;
        let payloads = [Payload::Delete(Delete::ike())];
        self.send_request(
            now,
            ExchangeType::INFORMATIONAL,
            &payloads,
            Pending::DeleteIke,
        );
    }

    /// Initiator: an empty INFORMATIONAL, a liveness check (§1.4).
    pub(in crate::sa) fn start_liveness(&mut self, now: Instant) {
        self.send_request(now, ExchangeType::INFORMATIONAL, &[], Pending::Liveness);
    }

    /// The peer confirmed the deletion of these CHILD SAs.
    pub(in crate::sa) fn handle_delete_children_response(&mut self, spis: Vec<u32>) {
        for s in spis {
            let rekeyed = self.children.iter().any(|c| c.sa.spi_in == s && c.rekeyed);
            let reason = if rekeyed { "rekeyed" } else { "deleted" };
            self.child_deleted(s, reason);
        }
    }

    pub(in crate::sa) fn handle_informational_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: Vec<Payload>,
    ) {
        let deletes: Vec<&Delete> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Delete(d) => Some(d),
                _ => None,
            })
            .collect();
        if deletes.iter().any(|d| d.protocol == ProtocolId::IKE) {
            self.respond(id, ExchangeType::INFORMATIONAL, &[]);
            self.close(Reason::PeerDeleted);
            return;
        }
        let mut ours = Vec::new();
        for d in deletes.iter().filter(|d| d.protocol == ProtocolId::ESP) {
            for spi in d.spis.iter().filter_map(|s| spi_from(s)) {
                let Some(c) = self.children.iter().find(|c| c.sa.spi_out == spi) else {
                    continue;
                };
                let spi_in = c.sa.spi_in;
                let reason = if c.rekeyed {
                    "rekeyed"
                } else {
                    "deleted by peer"
                };
                // §1.4.1: if we are deleting it too, answer without it.
                if c.state != ChildState::Deleting {
                    ours.push(spi_in);
                }
                self.child_deleted(spi_in, reason);
            }
        }
        let response: Vec<Payload> = if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete::esp(&ours))]
        };
        self.respond(id, ExchangeType::INFORMATIONAL, &response);
        if let Some(e) = first_error(&payloads) {
            if e == NotifyType::AUTHENTICATION_FAILED && self.established_at.is_some() {
                // The initiator refused our AUTH after we considered it done.
                self.close(Reason::PeerRejectedAuthentication);
                return;
            }
        }
        self.run_tasks(now);
    }
}
