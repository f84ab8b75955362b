//! What the kernel holds, compared with what vpnd knows: the start-up
//! reconciliation (stale objects in vpnd's reqid range go), the list of
//! objects vpnd does not know (for `vpnctl status`), and the probe behind
//! `dataplane = "auto"`.

use std::net::IpAddr;

use netlink_packet_xfrm::{
    policy, state, Address, UserPolicyInfo, UserSaInfo, XfrmAttrs, XfrmMessage, AF_INET6,
};

use super::build::{self, PolicyKey, StateKey};
use super::nl::{Answer, Netlink, Request};
use super::tables::Loose;
use super::Shared;

fn ip(family: u16, a: &Address) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(a.to_ipv6())
    } else {
        IpAddr::V4(a.to_ipv4())
    }
}

fn mark_of(nlas: &[XfrmAttrs]) -> (u32, u32) {
    nlas.iter()
        .find_map(|n| match n {
            XfrmAttrs::Mark(m) => Some((m.value, m.mask)),
            _ => None,
        })
        .unwrap_or((0, 0))
}

fn if_id_of(nlas: &[XfrmAttrs]) -> u32 {
    nlas.iter()
        .find_map(|n| match n {
            XfrmAttrs::IfId(i) => Some(*i),
            _ => None,
        })
        .unwrap_or(0)
}

fn tmpl_reqid(nlas: &[XfrmAttrs]) -> Option<u32> {
    nlas.iter().find_map(|n| match n {
        XfrmAttrs::Template(t) => t.first().map(|t| t.reqid),
        _ => None,
    })
}

/// The kernel's states and policies (both dumps).
pub struct Dump {
    pub states: Vec<(UserSaInfo, Vec<XfrmAttrs>)>,
    pub policies: Vec<(UserPolicyInfo, Vec<XfrmAttrs>)>,
}

pub fn dump(nl: &Netlink) -> Result<Dump, String> {
    let answers = nl.run(vec![
        Request::Dump(XfrmMessage::GetDumpSa(state::GetDumpMessage::default())),
        Request::Dump(XfrmMessage::GetPolicy(policy::DelGetMessage::default())),
    ]);
    let mut d = Dump {
        states: Vec::new(),
        policies: Vec::new(),
    };
    for a in answers {
        match a {
            Answer::Data(msgs) => {
                for m in msgs {
                    match m {
                        XfrmMessage::AddSa(s) => d.states.push((s.user_sa_info, s.nlas)),
                        XfrmMessage::AddPolicy(p) => d.policies.push((p.user_policy_info, p.nlas)),
                        _ => {}
                    }
                }
            }
            Answer::Done => {}
            Answer::Error(e) => return Err(format!("dumping XFRM state: {e}")),
        }
    }
    Ok(d)
}

fn describe_state(s: &UserSaInfo) -> String {
    format!(
        "state {} -> {} spi 0x{:08x} reqid {}",
        ip(s.family, &s.saddr),
        ip(s.family, &s.id.daddr),
        s.id.spi,
        s.reqid
    )
}

fn describe_policy(p: &UserPolicyInfo, nlas: &[XfrmAttrs]) -> String {
    let dir = ["in", "out", "fwd"]
        .get(p.direction as usize)
        .copied()
        .unwrap_or("?");
    let s = &p.selector;
    format!(
        "policy {}/{} -> {}/{} dir {dir} priority {} reqid {}",
        ip(s.family, &s.saddr),
        s.prefixlen_s,
        ip(s.family, &s.daddr),
        s.prefixlen_d,
        p.priority,
        tmpl_reqid(nlas).map_or("-".to_string(), |r| r.to_string())
    )
}

fn policy_key(p: &UserPolicyInfo, nlas: &[XfrmAttrs]) -> PolicyKey {
    PolicyKey {
        sel: p.selector,
        dir: p.direction,
        mark: mark_of(nlas),
        if_id: if_id_of(nlas),
    }
}

impl Shared {
    /// Removes every state and policy in vpnd's reqid range that these
    /// tables do not hold.
    pub(super) fn reconcile(&self) -> Vec<String> {
        let d = match dump(&self.nl) {
            Ok(d) => d,
            Err(e) => return vec![format!("cannot reconcile: {e}")],
        };
        let (known_states, known_policies) = self.known();
        let mut removed = Vec::new();
        let mut reqs = Vec::new();
        for (s, nlas) in &d.states {
            let key = StateKey {
                dst: ip(s.family, &s.id.daddr),
                spi: s.id.spi,
            };
            if build::is_ours(s.reqid) && !known_states.contains(&key) {
                removed.push(format!("removed stale {}", describe_state(s)));
                reqs.push(self.delete_state(Loose {
                    key,
                    mark: mark_of(nlas),
                }));
            }
        }
        for (p, nlas) in &d.policies {
            let key = policy_key(p, nlas);
            if tmpl_reqid(nlas).is_some_and(build::is_ours) && !known_policies.contains(&key) {
                removed.push(format!("removed stale {}", describe_policy(p, nlas)));
                reqs.push((
                    "deleting stale policy".into(),
                    Request::Ack(build::delete_policy(&key)),
                ));
            }
        }
        self.delete(reqs);
        removed
    }

    fn known(&self) -> (Vec<StateKey>, Vec<PolicyKey>) {
        let t = self.lock();
        let mut states: Vec<StateKey> = t.by_state.keys().copied().collect();
        states.extend(t.larval.values().map(|(_, k)| *k));
        states.extend(t.lingering.values().map(|(_, l)| l.key));
        let policies = t
            .children
            .values()
            .flat_map(|c| c.policies.iter().copied())
            .collect();
        (states, policies)
    }

    /// The kernel's states and policies that vpnd did not install.
    pub(super) fn unknown(&self) -> Vec<String> {
        let d = match dump(&self.nl) {
            Ok(d) => d,
            Err(e) => return vec![e],
        };
        let (known_states, known_policies) = self.known();
        let mut out = Vec::new();
        for (s, _) in &d.states {
            let key = StateKey {
                dst: ip(s.family, &s.id.daddr),
                spi: s.id.spi,
            };
            if !known_states.contains(&key) {
                out.push(describe_state(s));
            }
        }
        for (p, nlas) in &d.policies {
            if !known_policies.contains(&policy_key(p, nlas)) {
                out.push(describe_policy(p, nlas));
            }
        }
        out
    }
}

/// Whether this kernel can hold an ESP SA: installs a throwaway
/// `rfc4106(gcm(aes))` state on the loopback address and removes it. The
/// error says why not, in the kernel's words.
pub fn probe() -> Result<(), String> {
    let nl = Netlink::open().map_err(|e| format!("no XFRM netlink: {e}"))?;
    let lo: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    let spi = 0xcfff_ff00 | (std::process::id() & 0xff);
    let sa = crate::SaInstall {
        owner: "probe".into(),
        child: "probe".into(),
        reqid: 0xffff,
        spi_in: spi,
        spi_out: spi,
        local: lo,
        remote: lo,
        encap: false,
        mode: ike::config::Mode::Tunnel,
        local_ts: vec![],
        remote_ts: vec![],
        encr: ike::crypto::AeadAlg::AesGcm16_128,
        esn: false,
        keys: ike::keys::ChildKeys {
            encr: ike::crypto::AeadAlg::AesGcm16_128,
            inbound: zeroize::Zeroizing::new(vec![7; 20]),
            outbound: zeroize::Zeroizing::new(vec![7; 20]),
        },
        rekey_of: None,
        initiator: true,
        lifetime: crate::Lifetime::default(),
        opts: Default::default(),
    };
    let add = build::state(
        &sa,
        &build::Direction {
            src: lo,
            dst: lo,
            spi,
            key: &sa.keys.inbound,
            mark: (0, 0),
            if_id: 0,
            update: false,
        },
    );
    match nl.one(Request::Ack(add)) {
        Answer::Error(e) => Err(format!(
            "no ESP in this kernel: {} not found ({e})",
            build::aead_name(sa.encr)
        )),
        _ => {
            let key = StateKey { dst: lo.ip(), spi };
            let _ = nl.one(Request::Ack(build::delete_state(key, (0, 0))));
            Ok(())
        }
    }
}
