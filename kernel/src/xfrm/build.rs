//! Pure construction of XFRM netlink messages from what the daemon
//! negotiated: states, policies (with strongSwan's priorities), traps and
//! the requests that delete them. Nothing here does I/O, so every message
//! vpnd sends can be checked in unit tests.

use std::net::{IpAddr, SocketAddr};

use ike::config::Mode;
use ike::crypto::AeadAlg;
use ike::wire::TrafficSelector;
use netlink_packet_xfrm::{
    constants::*, policy, state, Address, AlgAead, EncapTmpl, Id, LifetimeConfig, Mark, ReplayEsn,
    Selector, UserPolicyId, UserPolicyInfo, UserSaId, UserSaInfo, UserSpiInfo, UserTemplate,
    XfrmAttrs, XfrmMessage,
};

use crate::{Lifetime, SaInstall};

/// Every reqid vpnd gives the kernel is `REQID_BASE | n`: states and
/// policies in this range are vpnd's, whoever else keys the same kernel.
pub const REQID_BASE: u32 = 0x7670_0000;
const REQID_MASK: u32 = 0xffff_0000;

/// The kernel reqid of the daemon's reqid `n` (stable per connection child).
pub fn kernel_reqid(reqid: u32) -> u32 {
    REQID_BASE | (reqid & !REQID_MASK)
}

/// Whether a reqid the kernel reports is one of vpnd's.
pub fn is_ours(reqid: u32) -> bool {
    reqid & REQID_MASK == REQID_BASE
}

/// The replay window of every inbound SA (strongSwan's default).
pub const REPLAY_WINDOW: u32 = 32;

/// Marks and XFRM interface ids of one CHILD SA (strongSwan's `mark_in`,
/// `mark_out`, `if_id_in`, `if_id_out`); zero means unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XfrmOptions {
    pub mark_in: (u32, u32),
    pub mark_out: (u32, u32),
    pub if_id_in: u32,
    pub if_id_out: u32,
}

/// What identifies one policy to the kernel, kept to delete it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyKey {
    pub sel: Selector,
    pub dir: u8,
    pub mark: (u32, u32),
    pub if_id: u32,
}

/// What identifies one state to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub dst: IpAddr,
    pub spi: u32,
}

/// The kernel's AEAD name and key length (bits, with the salt) of `alg`.
pub fn aead_name(alg: AeadAlg) -> &'static str {
    match alg {
        AeadAlg::AesGcm16_128 | AeadAlg::AesGcm16_256 => "rfc4106(gcm(aes))",
        AeadAlg::ChaCha20Poly1305 => "rfc7539esp(chacha20,poly1305)",
    }
}

fn aead(alg: AeadAlg, key: &[u8]) -> XfrmAttrs {
    let mut name = [0u8; 64];
    let n = aead_name(alg).as_bytes();
    name[..n.len()].copy_from_slice(n);
    XfrmAttrs::EncryptionAlgAead(AlgAead {
        alg_name: name,
        alg_key_len: (key.len() * 8) as u32,
        alg_icv_len: 128,
        alg_key: key.to_vec(),
    })
}

fn family(ip: IpAddr) -> u16 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn lifetime_cfg(l: &Lifetime) -> LifetimeConfig {
    let limit = |v: u64| if v == 0 { XFRM_INF } else { v };
    LifetimeConfig {
        soft_byte_limit: limit(l.soft_bytes),
        hard_byte_limit: limit(l.hard_bytes),
        soft_packet_limit: limit(l.soft_packets),
        hard_packet_limit: limit(l.hard_packets),
        hard_add_expires_seconds: l.hard_time.map_or(0, |d| d.as_secs().max(1)),
        ..LifetimeConfig::default()
    }
}

fn mode(m: Mode) -> u8 {
    match m {
        Mode::Tunnel => XFRM_MODE_TUNNEL,
        Mode::Transport => XFRM_MODE_TRANSPORT,
    }
}

fn mark_attr(mark: (u32, u32)) -> Option<XfrmAttrs> {
    (mark != (0, 0)).then_some(XfrmAttrs::Mark(Mark {
        value: mark.0,
        mask: mark.1,
    }))
}

fn if_id_attr(if_id: u32) -> Option<XfrmAttrs> {
    (if_id != 0).then_some(XfrmAttrs::IfId(if_id))
}

/// One direction of an SA pair.
pub struct Direction<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub spi: u32,
    pub key: &'a [u8],
    pub mark: (u32, u32),
    pub if_id: u32,
    /// The kernel already holds this SPI (ALLOCSPI): update, not add.
    pub update: bool,
}

/// The state of one direction of `sa`.
pub fn state(sa: &SaInstall, d: &Direction<'_>) -> XfrmMessage {
    let mut info = UserSaInfo {
        id: Id {
            daddr: Address::from_ip(&d.dst.ip()),
            spi: d.spi,
            proto: IPPROTO_ESP,
        },
        saddr: Address::from_ip(&d.src.ip()),
        lifetime_cfg: lifetime_cfg(&sa.lifetime),
        reqid: kernel_reqid(sa.reqid),
        family: family(d.dst.ip()),
        mode: mode(sa.mode),
        ..UserSaInfo::default()
    };
    info.selector.family = family(d.dst.ip());
    let mut nlas = vec![aead(sa.encr, d.key)];
    if sa.esn {
        info.flags |= XFRM_STATE_ESN;
        nlas.push(XfrmAttrs::ReplayStateEsn(ReplayEsn {
            bmp_len: REPLAY_WINDOW.div_ceil(32),
            replay_window: REPLAY_WINDOW,
            bmp: vec![0; REPLAY_WINDOW.div_ceil(32) as usize],
            ..ReplayEsn::default()
        }));
    } else {
        info.replay_window = REPLAY_WINDOW as u8;
    }
    if sa.encap {
        nlas.push(XfrmAttrs::EncapsulationTemplate(EncapTmpl {
            encap_type: UDP_ENCAP_ESPINUDP,
            encap_sport: d.src.port(),
            encap_dport: d.dst.port(),
            encap_oa: Address::default(),
        }));
    }
    nlas.extend(mark_attr(d.mark));
    nlas.extend(if_id_attr(d.if_id));
    let msg = state::ModifyMessage {
        user_sa_info: info,
        nlas,
    };
    if d.update {
        XfrmMessage::UpdateSa(msg)
    } else {
        XfrmMessage::AddSa(msg)
    }
}

/// Deletes the ESP state `spi` towards `dst` (with its mark, which is part
/// of the state's identity).
pub fn delete_state(key: StateKey, mark: (u32, u32)) -> XfrmMessage {
    let mut id = UserSaId {
        spi: key.spi,
        proto: IPPROTO_ESP,
        ..UserSaId::default()
    };
    id.destination(&key.dst);
    XfrmMessage::DeleteSa(state::DelGetMessage {
        user_sa_id: id,
        nlas: mark_attr(mark).into_iter().collect(),
    })
}

/// Asks for the state `spi` towards `dst` (counters).
pub fn get_state(key: StateKey, mark: (u32, u32)) -> XfrmMessage {
    match delete_state(key, mark) {
        XfrmMessage::DeleteSa(m) => XfrmMessage::GetSa(m),
        _ => unreachable!("delete_state builds a DeleteSa"),
    }
}

/// Reserves an inbound SPI from `src` to `dst` (a larval state the kernel
/// drops by itself after `net.core.xfrm_acq_expires` unless updated).
pub fn alloc_spi(src: IpAddr, dst: IpAddr, reqid: u32) -> XfrmMessage {
    let mut info = UserSpiInfo::default();
    info.info.id.daddr = Address::from_ip(&dst);
    info.info.saddr = Address::from_ip(&src);
    info.info.family = family(dst);
    info.info.reqid = kernel_reqid(reqid);
    info.protocol(IPPROTO_ESP);
    info.spi_range(0xc000_0000, 0xcfff_ffff);
    XfrmMessage::AllocSpi(state::AllocSpiMessage {
        spi_info: info,
        nlas: vec![],
    })
}

/// The smallest prefix that covers a selector's address range, as
/// strongSwan's `to_subnet` does (XFRM selectors are prefixes).
pub fn covering_prefix(start: IpAddr, end: IpAddr) -> (IpAddr, u8) {
    match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => {
            let (s, e) = (u32::from(s), u32::from(e));
            let len = (s ^ e).leading_zeros() as u8;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (IpAddr::V4((s & mask).into()), len)
        }
        (IpAddr::V6(s), IpAddr::V6(e)) => {
            let (s, e) = (u128::from(s), u128::from(e));
            let len = (s ^ e).leading_zeros() as u8;
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (IpAddr::V6((s & mask).into()), len)
        }
        (s, _) => (s, 0),
    }
}

/// A port range as XFRM's port and mask (a range that is not a single
/// port or everything is widened to the mask of its common prefix).
fn port_mask(start: u16, end: u16) -> (u16, u16) {
    if start == 0 && end == u16::MAX {
        return (0, 0);
    }
    let len = (start ^ end).leading_zeros();
    let mask = if len == 0 { 0 } else { u16::MAX << (16 - len) };
    (start & mask, mask)
}

/// The selector of traffic from `src` to `dst`.
pub fn selector(src: &TrafficSelector, dst: &TrafficSelector) -> Selector {
    let mut sel = Selector::default();
    let (sa, sl) = covering_prefix(src.start_addr, src.end_addr);
    let (da, dl) = covering_prefix(dst.start_addr, dst.end_addr);
    sel.source_prefix(&sa, sl);
    sel.destination_prefix(&da, dl);
    sel.prefixlen_s = sl;
    sel.prefixlen_d = dl;
    sel.family = family(sa);
    sel.proto = if src.ip_proto != 0 {
        src.ip_proto
    } else {
        dst.ip_proto
    };
    (sel.sport, sel.sport_mask) = port_mask(src.start_port, src.end_port);
    (sel.dport, sel.dport_mask) = port_mask(dst.start_port, dst.end_port);
    sel
}

/// strongSwan's policy priority: lower is preferred; more specific
/// selectors (longer prefixes, a protocol, ports, an interface) come first,
/// and an SA's policy beats the trap for the same selectors.
pub fn priority(sel: &Selector, trap: bool) -> u32 {
    const BASE: u32 = 400_000;
    let ports = sel.sport_mask.count_ones() + sel.dport_mask.count_ones();
    BASE - ((sel.prefixlen_s as u32 + sel.prefixlen_d as u32) << 9)
        - if sel.proto != 0 { 256 } else { 0 }
        - (ports << 2)
        - if sel.ifindex != 0 { 2 } else { 0 }
        - if trap { 0 } else { 1 }
}

/// What one policy needs besides its selector.
pub struct PolicySpec {
    pub dir: u8,
    pub tmpl_src: IpAddr,
    pub tmpl_dst: IpAddr,
    pub reqid: u32,
    pub mode: Mode,
    pub mark: (u32, u32),
    pub if_id: u32,
    pub trap: bool,
}

/// Adds (or replaces) the policy `sel` → ESP template.
pub fn policy(sel: Selector, p: &PolicySpec) -> (XfrmMessage, PolicyKey) {
    let mut tmpl = UserTemplate::default();
    tmpl.source(&p.tmpl_src);
    tmpl.destination(&p.tmpl_dst);
    tmpl.protocol(IPPROTO_ESP);
    tmpl.mode(mode(p.mode));
    tmpl.reqid(kernel_reqid(p.reqid));
    if p.mode == Mode::Transport {
        // The template's addresses are the SA's, which the selector names.
        tmpl.saddr = Address::default();
        tmpl.id.daddr = Address::default();
    }
    let info = UserPolicyInfo {
        selector: sel,
        lifetime_cfg: LifetimeConfig::default(),
        priority: priority(&sel, p.trap),
        direction: p.dir,
        action: XFRM_POLICY_ALLOW,
        share: XFRM_SHARE_ANY,
        ..UserPolicyInfo::default()
    };
    let mut nlas = vec![XfrmAttrs::Template(vec![tmpl])];
    nlas.extend(mark_attr(p.mark));
    nlas.extend(if_id_attr(p.if_id));
    let key = PolicyKey {
        sel,
        dir: p.dir,
        mark: p.mark,
        if_id: p.if_id,
    };
    (
        XfrmMessage::UpdatePolicy(policy::ModifyMessage {
            user_policy_info: info,
            nlas,
        }),
        key,
    )
}

/// Deletes the policy `key`.
pub fn delete_policy(key: &PolicyKey) -> XfrmMessage {
    let mut nlas: Vec<XfrmAttrs> = mark_attr(key.mark).into_iter().collect();
    nlas.extend(if_id_attr(key.if_id));
    XfrmMessage::DeletePolicy(policy::DelGetMessage {
        user_policy_id: UserPolicyId {
            selector: key.sel,
            index: 0,
            direction: key.dir,
        },
        nlas,
    })
}

/// The policies of a child's selectors: `out` from local to remote, and
/// `in` (plus `fwd` in tunnel mode) back. `local`/`remote` are the SA's
/// outer addresses.
#[allow(clippy::too_many_arguments)]
pub fn child_policies(
    local_ts: &[TrafficSelector],
    remote_ts: &[TrafficSelector],
    local: IpAddr,
    remote: IpAddr,
    reqid: u32,
    mode: Mode,
    opts: &XfrmOptions,
    trap: bool,
) -> Vec<(XfrmMessage, PolicyKey)> {
    let mut out = Vec::new();
    for l in local_ts {
        for r in remote_ts {
            if l.start_addr.is_ipv4() != r.start_addr.is_ipv4() {
                continue;
            }
            let spec = |dir, src, dst, mark, if_id| PolicySpec {
                dir,
                tmpl_src: src,
                tmpl_dst: dst,
                reqid,
                mode,
                mark,
                if_id,
                trap,
            };
            out.push(policy(
                selector(l, r),
                &spec(
                    XFRM_POLICY_OUT,
                    local,
                    remote,
                    opts.mark_out,
                    opts.if_id_out,
                ),
            ));
            let back = selector(r, l);
            out.push(policy(
                back,
                &spec(XFRM_POLICY_IN, remote, local, opts.mark_in, opts.if_id_in),
            ));
            if mode == Mode::Tunnel {
                out.push(policy(
                    back,
                    &spec(XFRM_POLICY_FWD, remote, local, opts.mark_in, opts.if_id_in),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(a: &str, b: &str) -> TrafficSelector {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: a.parse().unwrap(),
            end_addr: b.parse().unwrap(),
        }
    }

    #[test]
    fn reqids_are_in_vpnds_range_and_recognised() {
        assert_eq!(kernel_reqid(1), 0x7670_0001);
        assert!(is_ours(kernel_reqid(7)));
        assert!(!is_ours(1));
        assert!(!is_ours(0x7671_0001));
    }

    #[test]
    fn covering_prefix_of_ranges() {
        let p = |a: &str, b: &str| covering_prefix(a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(
            p("198.19.1.0", "198.19.1.255"),
            ("198.19.1.0".parse().unwrap(), 24)
        );
        assert_eq!(
            p("198.19.1.7", "198.19.1.7"),
            ("198.19.1.7".parse().unwrap(), 32)
        );
        assert_eq!(
            p("0.0.0.0", "255.255.255.255"),
            ("0.0.0.0".parse().unwrap(), 0)
        );
        // Not a prefix: widened to the one that covers it.
        assert_eq!(
            p("198.19.1.1", "198.19.1.6"),
            ("198.19.1.0".parse().unwrap(), 29)
        );
        assert_eq!(
            p("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"),
            ("2001:db8::".parse().unwrap(), 64)
        );
    }

    #[test]
    fn priorities_follow_strongswan_more_specific_first() {
        let net = selector(
            &ts("198.19.1.0", "198.19.1.255"),
            &ts("198.19.2.0", "198.19.2.255"),
        );
        // strongSwan installs a /24 <-> /24 tunnel policy at 375423.
        assert_eq!(priority(&net, false), 375_423);
        assert_eq!(priority(&net, true), 375_424);
        let host = selector(
            &ts("198.19.1.1", "198.19.1.1"),
            &ts("198.19.2.0", "198.19.2.255"),
        );
        assert!(priority(&host, false) < priority(&net, false));
        let any = selector(
            &ts("0.0.0.0", "255.255.255.255"),
            &ts("0.0.0.0", "255.255.255.255"),
        );
        assert_eq!(priority(&any, false), 399_999);
    }

    #[test]
    fn ports_become_port_and_mask() {
        assert_eq!(port_mask(0, 65535), (0, 0));
        assert_eq!(port_mask(443, 443), (443, 0xffff));
        assert_eq!(port_mask(1024, 2047), (1024, 0xfc00));
    }

    #[test]
    fn tunnel_children_get_out_in_and_fwd_transport_only_out_and_in() {
        let l = [ts("198.19.1.0", "198.19.1.255")];
        let r = [
            ts("198.19.2.0", "198.19.2.255"),
            ts("2001:db8:2::", "2001:db8:2::ffff"),
        ];
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let o = XfrmOptions::default();
        let tun = child_policies(&l, &r, a, b, 3, Mode::Tunnel, &o, false);
        let dirs: Vec<u8> = tun.iter().map(|(_, k)| k.dir).collect();
        // The IPv6 remote selector has no IPv4 local partner.
        assert_eq!(dirs, vec![XFRM_POLICY_OUT, XFRM_POLICY_IN, XFRM_POLICY_FWD]);
        let tr = child_policies(&l, &r, a, b, 3, Mode::Transport, &o, false);
        assert_eq!(tr.len(), 2);
        let XfrmMessage::UpdatePolicy(m) = &tun[0].0 else {
            panic!("not a policy")
        };
        let XfrmAttrs::Template(t) = &m.nlas[0] else {
            panic!("no template")
        };
        assert_eq!(t[0].reqid, kernel_reqid(3));
        assert_eq!(t[0].mode, XFRM_MODE_TUNNEL);
        assert_eq!(t[0].id.daddr, Address::from_ip(&b));
    }

    #[test]
    fn marks_and_if_ids_go_into_the_policies_of_their_direction() {
        let l = [ts("0.0.0.0", "255.255.255.255")];
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let o = XfrmOptions {
            mark_in: (0x10, 0xff),
            mark_out: (0x20, 0xff),
            if_id_in: 42,
            if_id_out: 43,
        };
        let p = child_policies(&l, &l, a, b, 1, Mode::Tunnel, &o, false);
        assert_eq!((p[0].1.mark, p[0].1.if_id), ((0x20, 0xff), 43));
        assert_eq!((p[1].1.mark, p[1].1.if_id), ((0x10, 0xff), 42));
    }
}
