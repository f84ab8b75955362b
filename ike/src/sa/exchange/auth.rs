//! IKE_AUTH (RFC 7296 §1.2, §2.15): both halves, PSK or certificate
//! authentication, and the first CHILD SA that rides along.

use std::time::Instant;

use rustls_pki_types::UnixTime;

use crate::auth;
use crate::config::{PeerConfig, PeerConfigRef};
use crate::proposal::{Chosen, DhMode};
use crate::sa::payloads::{auth_payloads, child_payloads, first_error, id_string, notify};
use crate::sa::{DatagramError, Event, IkeSa, InitState, PeerMisbehaved, Pending, Reason, Stage};
use crate::wire::{
    find_notify, Authentication, Cert, ExchangeType, Identification, NotifyType, Payload,
};

/// Our proof of identity for `config`: the CERT payloads to send and the
/// AUTH payload over `octets`.
fn prove(
    config: &PeerConfig,
    octets: &[u8],
    prf: crate::crypto::PrfAlg,
    peer_hashes: &[u16],
    peer_certreq: bool,
    peer: &str,
) -> Result<(Vec<Payload>, Authentication), Reason> {
    if let Some(pk) = &config.pubkey {
        let certs = pk
            .cert_payloads(peer_certreq)
            .into_iter()
            .map(Payload::Cert)
            .collect();
        let auth = pk
            .sign(octets, peer_hashes)
            .map_err(|why| Reason::LocalCredential {
                local: id_string(&config.local_id),
                why,
            })?;
        return Ok((certs, auth));
    }
    match config.authenticator() {
        Some(a) => Ok((Vec::new(), a.sign(prf, octets))),
        None => Err(Reason::NoSecret {
            local: id_string(&config.local_id),
            remote: peer.to_string(),
        }),
    }
}

/// The subject of the peer's end-entity certificate among `payloads`, when
/// `config` authenticates with certificates.
fn peer_cert_subject(config: &PeerConfig, payloads: &[Payload]) -> Option<String> {
    config.pubkey.as_ref()?;
    payloads.iter().find_map(|p| match p {
        Payload::Cert(c) if c.encoding == crate::pki::CERT_X509_SIGNATURE => {
            Some(crate::pki::subject_string(&c.data))
        }
        _ => None,
    })
}

/// Check the peer's proof of identity `id` (AUTH payload `auth` over
/// `octets`, with the CERT payloads among `payloads`).
fn check(
    config: &PeerConfig,
    octets: &[u8],
    prf: crate::crypto::PrfAlg,
    id: &Identification,
    payloads: &[Payload],
    auth: &Authentication,
    now: UnixTime,
) -> Result<(), Reason> {
    if let Some(pk) = &config.pubkey {
        let certs: Vec<Cert> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Cert(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        return pk
            .verify(&certs, id, octets, auth, now)
            .map_err(|why| Reason::Certificate {
                peer: id_string(id),
                why,
            });
    }
    match config.authenticator() {
        Some(a) if a.verify(prf, octets, auth) => Ok(()),
        Some(_) => Err(Reason::AuthenticationFailed(id_string(id))),
        None => Err(Reason::NoSecret {
            local: id_string(&config.local_id),
            remote: id_string(id),
        }),
    }
}

impl IkeSa {
    /// IKE_AUTH completed, in either role: leave the handshake (its state
    /// is returned), arm the established SA's timers, report it.
    fn enter_established(
        &mut self,
        now: Instant,
        config: &PeerConfig,
        proposal: Chosen,
        remote_id: Identification,
        initial_contact: bool,
    ) -> Option<Box<InitState>> {
        let init = self.stage.finish_handshake(Stage::Established);
        self.established_at = Some(now);
        self.arm_periodic(now);
        self.half_open_deadline = None;
        self.events.push_back(Event::Established {
            name: config.name.clone(),
            proposal,
            local_id: config.local_id.clone(),
            remote_id,
            initial_contact,
        });
        init
    }

    pub(in crate::sa) fn send_auth(&mut self, now: Instant) -> Result<(), DatagramError> {
        let config = self.our_config()?;
        let (init, keys) = self.handshake()?;
        let prf = keys.prf;
        let octets = auth::signed_octets(prf, &keys.sk_pi, &init.msg_i, &init.nr, &config.local_id);
        let peer = config
            .remote_id
            .as_ref()
            .map(id_string)
            .unwrap_or_else(|| "%any".into());
        let proof = prove(
            &config,
            &octets,
            prf,
            &init.peer_hashes,
            init.peer_certreq,
            &peer,
        );
        let (certs, auth_payload) = match proof {
            Ok(p) => p,
            Err(reason) => {
                self.close(reason);
                return Ok(());
            }
        };
        let mut payloads = vec![Payload::IdI(config.local_id.clone())];
        payloads.extend(certs);
        if config.initial_contact {
            payloads.push(notify(NotifyType::INITIAL_CONTACT, Vec::new()));
        }
        if let Some(req) = config.pubkey.as_ref().and_then(|p| p.certreq()) {
            payloads.push(Payload::CertReq(req));
        }
        // A DN with wildcards is a pattern, not the responder's identity.
        if let Some(r) = config
            .remote_id
            .as_ref()
            .filter(|r| !crate::pki::is_pattern(r))
        {
            payloads.push(Payload::IdR(r.clone()));
        }
        payloads.push(Payload::Auth(auth_payload));
        if let Some(req) = &init.child {
            payloads.extend(Self::child_sa_payloads(req, false));
            payloads.push(Payload::TsI(req.ts_i.clone()));
            payloads.push(Payload::TsR(req.ts_r.clone()));
            payloads.push(notify(
                NotifyType::ESP_TFC_PADDING_NOT_SUPPORTED,
                Vec::new(),
            ));
        }
        self.stage = std::mem::replace(&mut self.stage, Stage::Closed).auth_sent();
        self.send_request(now, ExchangeType::IKE_AUTH, &payloads, Pending::Auth);
        Ok(())
    }

    pub(in crate::sa) fn handle_auth_response(
        &mut self,
        now: Instant,
        payloads: Vec<Payload>,
    ) -> Result<(), DatagramError> {
        let config = self.our_config()?;
        if find_notify(&payloads, NotifyType::AUTHENTICATION_FAILED).is_some() {
            self.close(Reason::PeerRejectedAuthentication);
            return Ok(());
        }
        let a = auth_payloads(&payloads);
        let (Some(idr), Some(auth_p)) = (a.idr.cloned(), a.auth.cloned()) else {
            let reason = match first_error(&payloads) {
                Some(e) => Reason::PeerError(e),
                None => Reason::Protocol(PeerMisbehaved::AuthResponseIncomplete),
            };
            self.close(reason);
            return Ok(());
        };
        if !config.matches_remote(&idr) {
            let expected = config.remote_id.as_ref().map(id_string).unwrap_or_default();
            self.fail_with_notify(
                now,
                NotifyType::AUTHENTICATION_FAILED,
                Reason::IdentityMismatch {
                    expected,
                    got: id_string(&idr),
                },
            );
            return Ok(());
        }
        let wall = self.provider.unix_time();
        let (init, keys) = self.handshake()?;
        let octets = auth::signed_octets(keys.prf, &keys.sk_pr, &init.msg_r, &init.ni, &idr);
        if let Err(reason) = check(&config, &octets, keys.prf, &idr, &payloads, &auth_p, wall) {
            self.fail_with_notify(now, NotifyType::AUTHENTICATION_FAILED, reason);
            return Ok(());
        }
        self.remote_id = Some(idr.clone());
        self.remote_cert = peer_cert_subject(&config, &payloads);
        let Some(proposal) = self.proposal.clone() else {
            return Err(DatagramError::Unexpected("IKE_AUTH before a proposal"));
        };
        let initial_contact = find_notify(&payloads, NotifyType::INITIAL_CONTACT).is_some();
        let init = self.enter_established(now, &config, proposal, idr, initial_contact);
        if let Some(mut init) = init {
            if let Some(req) = init.child.take() {
                self.finish_initiated_child(now, req, &payloads, &init.ni, &init.nr, None);
            }
        }
        Ok(())
    }

    pub(in crate::sa) fn handle_auth_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: Vec<Payload>,
    ) -> Result<(), DatagramError> {
        let a = auth_payloads(&payloads);
        let idr = a.idr.cloned();
        let (Some(idi), Some(auth_p)) = (a.idi.cloned(), a.auth.cloned()) else {
            let e = PeerMisbehaved::AuthRequestIncomplete;
            self.respond(
                id,
                ExchangeType::IKE_AUTH,
                &[notify(e.notify(), Vec::new())],
            );
            self.close(Reason::Protocol(e));
            return Ok(());
        };
        let auth_failed = |sa: &mut IkeSa, reason: Reason| {
            sa.respond(
                id,
                ExchangeType::IKE_AUTH,
                &[notify(NotifyType::AUTHENTICATION_FAILED, Vec::new())],
            );
            sa.close(reason);
        };
        // Candidates by identity; of those, only one whose IKE proposals
        // include the suite IKE_SA_INIT negotiated (perhaps under another
        // candidate's proposals) may have the SA.
        let allowed = |c: &&PeerConfigRef| {
            self.proposal
                .as_ref()
                .is_some_and(|p| c.ike_proposals.iter().any(|s| s.allows(p)))
        };
        let Some(config) = self
            .candidates
            .by_identity(&idi, idr.as_ref())
            .find(allowed)
            .cloned()
        else {
            let first = self.candidates.by_identity(&idi, idr.as_ref()).next();
            let reason = match (first, &self.proposal) {
                (Some(c), Some(p)) => Reason::ProposalNotAllowed {
                    conn: c.name.clone(),
                    peer: id_string(&idi),
                    proposal: p.to_string(),
                },
                _ => Reason::NoMatchingConfig(id_string(&idi)),
            };
            auth_failed(self, reason);
            return Ok(());
        };
        self.name = config.name.clone();
        let wall = self.provider.unix_time();
        let (init, keys) = self.handshake()?;
        let prf = keys.prf;
        let octets = auth::signed_octets(prf, &keys.sk_pi, &init.msg_i, &init.nr, &idi);
        let my_octets =
            auth::signed_octets(prf, &keys.sk_pr, &init.msg_r, &init.ni, &config.local_id);
        let (ni, nr) = (init.ni.clone(), init.nr.clone());
        let peer_hashes = init.peer_hashes.clone();
        let peer_certreq = payloads.iter().any(|p| matches!(p, Payload::CertReq(_)));
        if let Err(reason) = check(&config, &octets, prf, &idi, &payloads, &auth_p, wall) {
            auth_failed(self, reason);
            return Ok(());
        }
        let peer = id_string(&idi);
        let (certs, my_auth) =
            match prove(&config, &my_octets, prf, &peer_hashes, peer_certreq, &peer) {
                Ok(p) => p,
                Err(reason) => {
                    auth_failed(self, reason);
                    return Ok(());
                }
            };
        self.config = Some(config.clone());
        self.local_id = Some(config.local_id.clone());
        self.remote_id = Some(idi.clone());
        self.remote_cert = peer_cert_subject(&config, &payloads);
        let mut response = vec![Payload::IdR(config.local_id.clone())];
        response.extend(certs);
        response.push(Payload::Auth(my_auth));
        let c = child_payloads(&payloads);
        let child = match (c.sa, c.tsi, c.tsr) {
            (Some(sa), Some(tsi), Some(tsr)) => {
                match self.negotiate_child(sa, tsi, tsr, c.transport, None, DhMode::Ignore, None) {
                    Ok(n) => Some(n),
                    Err(reason) => {
                        let (t, data) = reason.notify();
                        response.push(notify(t, data));
                        self.events.push_back(Event::ChildFailed {
                            name: config
                                .children
                                .first()
                                .map(|c| c.name.clone())
                                .unwrap_or_default(),
                            reason,
                        });
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(n) = &child {
            response.extend(n.response_payloads());
        }
        let Some(proposal) = self.proposal.clone() else {
            return Err(DatagramError::Unexpected("IKE_AUTH before a proposal"));
        };
        self.respond(id, ExchangeType::IKE_AUTH, &response);
        let initial_contact = find_notify(&payloads, NotifyType::INITIAL_CONTACT).is_some();
        self.enter_established(now, &config, proposal, idi, initial_contact);
        if let Some(n) = child {
            self.install_child(now, n, &ni, &nr, None, None);
        }
        self.run_tasks(now);
        Ok(())
    }
}
