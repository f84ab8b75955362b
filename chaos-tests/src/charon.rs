//! strongSwan's charon as a peer inside a lab namespace.
//!
//! Each charon gets its own `strongswan.conf` (via `STRONGSWAN_CONF`), its
//! own vici socket in the lab directory, and a private `/run` (`unshare -m`
//! plus a tmpfs) so that pid files of several charons never collide. On
//! these hosts the kernel has no ESP, so charon uses the `kernel-libipsec`
//! plugin (userspace ESP over TUN, always UDP-encapsulated on port 4500).
//!
//! Traffic through such a charon needs nothing beyond this: kernel-libipsec
//! (loaded before kernel-netlink, so it is the IPsec backend while
//! kernel-netlink still does routes and addresses) opens a TUN device
//! `ipsec0` (from /dev/net/tun) in charon's namespace, and for each
//! installed CHILD SA charon adds `<remote_ts> dev ipsec0 src <local addr>`
//! to routing table 220 (`install_routes`, on by default; a rule
//! `from all lookup 220` sits before `main`). That source address must be
//! an address of the namespace inside `local_ts` (e.g. a `Lab::lan`
//! address), else no route is installed. libipsec always UDP-encapsulates
//! (it fakes NAT detection; `encap = yes` is explicit here anyway).
//!
//! With `CharonOptions::kernel_esp` charon loads kernel-netlink alone and
//! installs real XFRM states and policies instead; that needs a kernel with
//! ESP, i.e. a `uml` guest on these hosts. Routes still go to table 220
//! (towards the peer, not `ipsec0`), with the same source-address rule.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::lab::{Lab, Ns};

/// `charon-plugins.txt`: the plugins every lab's charon loads, in load
/// order, each beside the Debian package that ships it. scripts/deps.sh
/// installs those packages and scripts/preflight checks that a charon loads
/// every plugin, so the list lives in one file.
const PLUGINS: &str = include_str!("../charon-plugins.txt");

/// `(plugin, package)` for each plugin a lab's charon loads, in load order.
pub fn plugins() -> impl Iterator<Item = (&'static str, &'static str)> {
    PLUGINS.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        let plugin = words.next().filter(|w| !w.starts_with('#'))?;
        Some((plugin, words.next().unwrap_or("")))
    })
}

/// charon's `load =` line. With real kernel ESP, kernel-netlink alone is the
/// IPsec backend; otherwise kernel-libipsec comes first and kernel-netlink
/// only does routes and addresses.
fn load_line(kernel_esp: bool) -> String {
    plugins()
        .map(|(plugin, _)| plugin)
        .filter(|p| !(kernel_esp && *p == "kernel-libipsec"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One PSK connection in charon's swanctl.conf.
#[derive(Clone, Debug)]
pub struct CharonConn {
    pub name: String,
    pub local_addr: String,
    pub remote_addr: String,
    pub local_id: String,
    pub remote_id: String,
    pub psk: String,
    pub proposals: String,
    pub esp_proposals: String,
    pub child: String,
    pub local_ts: String,
    pub remote_ts: String,
    /// swanctl `start_action`: none | start | trap.
    pub start_action: String,
    pub mode: String,
    /// Extra lines inside the connection block.
    pub extra: String,
    /// The child's swanctl `rekey_time` ("0": never).
    pub child_rekey_time: String,
    /// swanctl `encap`: "yes" (the default here: UDP encapsulation even
    /// without a NAT, as libipsec needs) or "no" (plain ESP unless a NAT
    /// is detected; kernel ESP only).
    pub encap: String,
    /// Lines inside the child's block (e.g. `mark_in = 42`).
    pub child_extra: String,
    /// The connection's swanctl `rekey_time` (IKE SA; "0": never).
    pub ike_rekey_time: String,
    /// `psk`, or `pubkey` (certificates: `local_cert` names a file in
    /// `x509/` beside swanctl.conf; CA certificates go to `x509ca/`, keys
    /// to `ecdsa/`, `rsa/` or `pkcs8/` there, written before start).
    pub auth: String,
    pub local_cert: String,
    /// Lines inside the `remote` round (e.g. `cacerts = ca.pem`, a pin).
    pub remote_extra: String,
}

impl CharonConn {
    /// A PSK tunnel with the project's default proposals.
    pub fn psk(
        name: &str,
        local: &str,
        remote: &str,
        local_id: &str,
        remote_id: &str,
        psk: &str,
    ) -> CharonConn {
        CharonConn {
            name: name.into(),
            local_addr: local.into(),
            remote_addr: remote.into(),
            local_id: local_id.into(),
            remote_id: remote_id.into(),
            psk: psk.into(),
            proposals: "aes256gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes256gcm16".into(),
            child: "net".into(),
            local_ts: "198.19.2.0/24".into(),
            remote_ts: "198.19.1.0/24".into(),
            start_action: "none".into(),
            mode: "tunnel".into(),
            extra: String::new(),
            child_rekey_time: "0".into(),
            encap: "yes".into(),
            child_extra: String::new(),
            ike_rekey_time: "0".into(),
            auth: "psk".into(),
            local_cert: String::new(),
            remote_extra: String::new(),
        }
    }

    fn render(&self) -> String {
        format!(
            r#"  {name} {{
    version = 2
    local_addrs = {la}
    remote_addrs = {ra}
    proposals = {p}
    encap = {encap}
    rekey_time = {irt}
    dpd_delay = 0
    {extra}
    local {{
      auth = {auth}
      id = {lid}
      {certs}
    }}
    remote {{
      auth = {auth}
      id = {rid}
      {remote_extra}
    }}
    children {{
      {child} {{
        local_ts = {lts}
        remote_ts = {rts}
        esp_proposals = {ep}
        mode = {mode}
        start_action = {sa}
        rekey_time = {crt}
        {child_extra}
      }}
    }}
  }}
"#,
            name = self.name,
            la = self.local_addr,
            ra = self.remote_addr,
            p = self.proposals,
            extra = self.extra,
            lid = self.local_id,
            rid = self.remote_id,
            child = self.child,
            lts = self.local_ts,
            rts = self.remote_ts,
            ep = self.esp_proposals,
            mode = self.mode,
            sa = self.start_action,
            crt = self.child_rekey_time,
            encap = self.encap,
            irt = self.ike_rekey_time,
            child_extra = self.child_extra,
            auth = self.auth,
            remote_extra = self.remote_extra,
            certs = if self.local_cert.is_empty() {
                String::new()
            } else {
                format!("certs = {}", self.local_cert)
            },
        )
    }
}

/// strongswan.conf knobs beyond the defaults of `Charon::start`.
#[derive(Clone, Debug, Default)]
pub struct CharonOptions {
    /// Lines added inside the `charon { }` section, e.g. `keep_alive = 5s`
    /// (NAT-T keepalive interval, default 20 s) or `install_routes = no`.
    pub charon_extra: String,
    /// Lines inside `charon.plugins.kernel-libipsec { }`, e.g. `mtu = 1400`.
    pub libipsec: String,
    /// Real kernel ESP: load kernel-netlink alone as the IPsec backend (no
    /// kernel-libipsec), so CHILD SAs become XFRM states and policies in
    /// charon's namespace. Needs a kernel with ESP: a `uml` guest here.
    pub kernel_esp: bool,
}

/// A running charon.
pub struct Charon {
    pub name: String,
    pub dir: PathBuf,
    uri: String,
}

impl Charon {
    /// Write configs, start charon in `ns` and load `conns` with swanctl.
    pub fn start(lab: &mut Lab, ns: &Ns, name: &str, conns: &[CharonConn]) -> Charon {
        Self::start_with(lab, ns, name, conns, &CharonOptions::default())
    }

    /// `start` with extra strongswan.conf settings.
    pub fn start_with(
        lab: &mut Lab,
        ns: &Ns,
        name: &str,
        conns: &[CharonConn],
        opts: &CharonOptions,
    ) -> Charon {
        let dir = lab.dir().join(name);
        std::fs::create_dir_all(&dir).expect("charon dir");
        let vici = dir.join("charon.vici");
        let conf = dir.join("strongswan.conf");
        let load = load_line(opts.kernel_esp);
        std::fs::write(
            &conf,
            format!(
                r#"charon {{
  load = {load}
  port = 500
  port_nat_t = 4500
  retransmit_timeout = 1
  retransmit_tries = 3
  install_virtual_ip = no
{extra}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  filelog {{
    stderr {{
      default = 1
      ike = 2
      cfg = 2
      knl = 1
      time_format = %H:%M:%S
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{vici}
    }}
    kernel-libipsec {{
{libipsec}
    }}
  }}
}}
"#,
                vici = vici.display(),
                extra = opts.charon_extra,
                libipsec = opts.libipsec,
            ),
        )
        .expect("strongswan.conf");
        let mut swanctl = String::from("connections {\n");
        for c in conns {
            swanctl.push_str(&c.render());
        }
        swanctl.push_str("}\nsecrets {\n");
        for (i, c) in conns.iter().enumerate() {
            swanctl.push_str(&format!(
                "  ike-{i} {{\n    id-1 = {}\n    id-2 = {}\n    secret = \"{}\"\n  }}\n",
                c.local_id, c.remote_id, c.psk
            ));
        }
        swanctl.push_str("}\n");
        std::fs::write(dir.join("swanctl.conf"), swanctl).expect("swanctl.conf");

        let script =
            "mount -t tmpfs tmpfs /run && mkdir -p /run/strongswan && exec /usr/lib/ipsec/charon";
        lab.spawn(
            ns,
            name,
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            &[("STRONGSWAN_CONF", conf.to_str().expect("utf-8 path"))],
        );
        let charon = Charon {
            name: name.to_string(),
            dir: dir.clone(),
            uri: format!("unix://{}", vici.display()),
        };
        assert!(
            Lab::wait_until(Duration::from_secs(10), || vici.exists()),
            "charon '{name}' did not open its vici socket:\n{}",
            lab.log(name)
        );
        let out = charon.swanctl(&[
            "--load-all",
            "--noprompt",
            "--file",
            dir.join("swanctl.conf").to_str().expect("path"),
        ]);
        assert!(out.0, "swanctl --load-all failed:\n{}", out.1);
        charon
    }

    /// Run swanctl against this charon; returns (success, stdout+stderr).
    pub fn swanctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("swanctl")
            .args(args)
            .args(["--uri", &self.uri])
            .output()
            .expect("swanctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `swanctl --list-sas` output.
    pub fn list_sas(&self) -> String {
        self.swanctl(&["--list-sas"]).1
    }

    /// True when an IKE SA is ESTABLISHED and `child` is INSTALLED.
    pub fn has_installed(&self, child: &str) -> bool {
        let sas = self.list_sas();
        sas.contains("ESTABLISHED")
            && sas
                .lines()
                .any(|l| l.contains(child) && l.contains("INSTALLED"))
    }

    /// Poll until `child` is installed, at most `timeout`.
    pub fn wait_installed(&self, child: &str, timeout: Duration) -> bool {
        Lab::wait_until(timeout, || self.has_installed(child))
    }

    /// Bytes through the first installed CHILD SA named `child`, as
    /// `(in, out)` from `swanctl --list-sas` counters.
    pub fn child_bytes(&self, child: &str) -> Option<(u64, u64)> {
        child_bytes(&self.list_sas(), child)
    }

    /// Initiate `child` waiting at most two seconds for the result.
    pub fn initiate(&self, child: &str) {
        let (_ok, _out) = self.swanctl(&["--initiate", "--child", child, "--timeout", "2"]);
    }
}

/// Parse `(in, out)` byte counters of CHILD SA `child` from `swanctl
/// --list-sas` output (`in  c1f0..., 252 bytes, 3 packets, ...`).
pub fn child_bytes(list_sas: &str, child: &str) -> Option<(u64, u64)> {
    let mut lines = list_sas.lines();
    lines.find(|l| {
        let t = l.trim_start();
        t.starts_with(&format!("{child}: ")) && t.contains("INSTALLED")
    })?;
    let (mut inb, mut outb) = (None, None);
    for l in lines {
        let t = l.trim_start();
        let bytes = || -> Option<u64> {
            let part = t.split(',').find(|p| p.trim_end().ends_with(" bytes"))?;
            part.split_whitespace().next()?.parse().ok()
        };
        if t.starts_with("in ") {
            inb = bytes();
        } else if t.starts_with("out ") {
            outb = bytes();
            break;
        }
    }
    Some((inb?, outb?))
}

/// A site-to-site PSK tunnel between two charons: `local_ts` behind the
/// first, `remote_ts` behind the second. Returns the two ends' configs.
pub fn tunnel_pair(
    addrs: (&str, &str),
    ids: (&str, &str),
    lans: (&str, &str),
    psk: &str,
) -> (CharonConn, CharonConn) {
    let mut c1 = CharonConn::psk("tun", addrs.0, addrs.1, ids.0, ids.1, psk);
    c1.local_ts = lans.0.into();
    c1.remote_ts = lans.1.into();
    let mut c2 = CharonConn::psk("tun", addrs.1, addrs.0, ids.1, ids.0, psk);
    c2.local_ts = lans.1.into();
    c2.remote_ts = lans.0.into();
    (c1, c2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn load_line_from_the_plugin_list() {
        let common = "random nonce openssl pem pkcs1 x509 pubkey revocation constraints aes gcm sha1 sha2 hmac kdf";
        assert_eq!(
            super::load_line(false),
            format!("{common} kernel-libipsec kernel-netlink socket-default vici updown")
        );
        assert_eq!(
            super::load_line(true),
            format!("{common} kernel-netlink socket-default vici updown")
        );
        for (plugin, package) in super::plugins() {
            assert!(
                package.starts_with("libstrongswan")
                    || package.starts_with("strongswan-")
                    || package.starts_with("libcharon"),
                "plugin {plugin}: package '{package}'"
            );
        }
    }

    #[test]
    fn child_bytes_from_list_sas() {
        let text = "tun: #1, ESTABLISHED, IKEv2, c3_i* 7e_r
  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
    installed 0s ago
    in  92e881fc,    252 bytes,     3 packets,     0s ago
    out c4782b02, 242290140 bytes, 173105 packets,     0s ago
    local  198.19.1.0/24
";
        assert_eq!(super::child_bytes(text, "net"), Some((252, 242290140)));
        assert_eq!(super::child_bytes(text, "other"), None);
    }
}
