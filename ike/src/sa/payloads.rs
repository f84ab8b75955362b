//! Payload helpers shared by the exchanges: building notifies, picking the
//! payloads about one CHILD SA out of a message, SPIs and nonces, and
//! proposal selection that prefers the peer's KE group.

use crate::config::display_identity;
use crate::crypto::DhGroup;
use crate::proposal::{self, Chosen, DhMode, ProposalSpec};
use crate::ts;
use crate::wire::{
    self, Authentication, Identification, KeyExchange, Notify, NotifyType, Payload, TrafficSelector,
};

use super::Provider;

pub(super) fn notify(t: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify::new(t, data))
}

/// The DH group an INVALID_KE_PAYLOAD notify asks for (§1.2: two bytes),
/// if it is one we offered.
pub(super) fn requested_group(n: &Notify, offered: &[ProposalSpec]) -> Option<DhGroup> {
    let b = n.data.get(..2)?;
    let g = DhGroup::from_id(u16::from_be_bytes([b[0], b[1]]))?;
    offered.iter().any(|s| s.dh.contains(&g)).then_some(g)
}

pub(super) fn first_error(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
        _ => None,
    })
}

/// The identity and authentication payloads of an IKE_AUTH message.
#[derive(Default)]
pub(super) struct AuthPayloads<'a> {
    pub(super) idi: Option<&'a Identification>,
    pub(super) idr: Option<&'a Identification>,
    pub(super) auth: Option<&'a Authentication>,
}

pub(super) fn auth_payloads(payloads: &[Payload]) -> AuthPayloads<'_> {
    let mut a = AuthPayloads::default();
    for p in payloads {
        match p {
            Payload::IdI(i) => a.idi = a.idi.or(Some(i)),
            Payload::IdR(i) => a.idr = a.idr.or(Some(i)),
            Payload::Auth(x) => a.auth = a.auth.or(Some(x)),
            _ => {}
        }
    }
    a
}

/// The parts of a CREATE_CHILD_SA / IKE_AUTH message about one CHILD SA.
#[derive(Default)]
pub(super) struct ChildPayloads<'a> {
    pub(super) sa: Option<&'a [wire::Proposal]>,
    pub(super) nonce: Option<&'a [u8]>,
    pub(super) ke: Option<&'a KeyExchange>,
    pub(super) tsi: Option<&'a [TrafficSelector]>,
    pub(super) tsr: Option<&'a [TrafficSelector]>,
    pub(super) transport: bool,
    pub(super) rekey: Option<&'a Notify>,
}

pub(super) fn child_payloads(payloads: &[Payload]) -> ChildPayloads<'_> {
    let mut c = ChildPayloads::default();
    for p in payloads {
        match p {
            Payload::Sa(s) => c.sa = Some(s),
            Payload::Nonce(n) => c.nonce = Some(n),
            Payload::Ke(k) => c.ke = Some(k),
            Payload::TsI(t) => c.tsi = Some(t),
            Payload::TsR(t) => c.tsr = Some(t),
            Payload::Notify(n) if n.notify_type == NotifyType::USE_TRANSPORT_MODE => {
                c.transport = true
            }
            Payload::Notify(n) if n.notify_type == NotifyType::REKEY_SA => c.rekey = Some(n),
            _ => {}
        }
    }
    c
}

pub(super) fn min_nonce(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.min(b).to_vec()
}

pub(super) fn spi_bytes(spi: u32) -> Vec<u8> {
    spi.to_be_bytes().to_vec()
}

pub(super) fn spi_from(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

pub(super) fn id_string(id: &Identification) -> String {
    display_identity(id)
}

/// Select with `DhMode::Negotiate`, preferring the group the peer already
/// sent a KE payload for, so an acceptable KE never costs an
/// INVALID_KE_PAYLOAD round trip.
pub(super) fn select_preferring_ke(
    ours: &[ProposalSpec],
    theirs: &[wire::Proposal],
    ke_group: Option<u16>,
) -> Option<Chosen> {
    if let Some(g) = ke_group.and_then(DhGroup::from_id) {
        let only_g: Vec<ProposalSpec> = ours
            .iter()
            .filter(|s| s.dh.contains(&g))
            .map(|s| ProposalSpec {
                dh: vec![g],
                ..s.clone()
            })
            .collect();
        if let Some(c) = proposal::select(&only_g, theirs, DhMode::Negotiate) {
            return Some(c);
        }
    }
    proposal::select(ours, theirs, DhMode::Negotiate)
}

pub(super) fn fmt_ts(list: &[TrafficSelector]) -> String {
    list.iter()
        .map(|t| ts::Display(t).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn random_vec(p: &mut dyn Provider, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    p.random().fill(&mut v);
    v
}

pub(super) fn random_spi(p: &mut dyn Provider) -> u64 {
    loop {
        let mut b = [0u8; 8];
        p.random().fill(&mut b);
        let spi = u64::from_be_bytes(b);
        if spi != 0 {
            return spi;
        }
    }
}
