//! Helpers shared by the configuration tests: scratch directories, the
//! design example, and minimal connections.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use control::config::{Config, ConfigErrors};
use ike::proposal::ProposalSpec;

/// A scratch directory, removed when dropped.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vpnd-config-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A secrets file only its owner can read.
    pub fn write_secret(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.write(rel, text);
        chmod(&p, 0o600);
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn errors(r: Result<Config, ConfigErrors>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors, the configuration loaded"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

pub fn ok(r: Result<Config, ConfigErrors>) -> Config {
    r.unwrap_or_else(|e| panic!("configuration failed:\n{e}"))
}

pub fn d(p: &Path) -> String {
    p.display().to_string()
}

pub fn ike(s: &str) -> ProposalSpec {
    ProposalSpec::parse_ike(s).unwrap()
}

pub fn esp(s: &str) -> ProposalSpec {
    ProposalSpec::parse_esp(s).unwrap()
}

pub const DESIGN_EXAMPLE: &str = r#"[daemon]
listen = ["198.18.0.1"]          # IKE addresses (UDP 500 and 4500); default: all
dataplane = "auto"                # auto | xfrm | userspace | none
include = ["conf.d/*.toml"]       # one file per tunnel works (connections merge)
secrets = ["secrets.toml"]
metrics = "127.0.0.1:9469"        # optional Prometheus endpoint

[scheduler]
key_computations_per_sec = 1000   # DH + key derivations started per second
max_concurrent = 4
max_half_open_per_peer = 4        # pacing towards one peer address
rekey_jitter = "10%"

[defaults]                        # any connection key; connections inherit
keyingtries = 3                   # 0 = forever
retry_base = "1s"
retry_max = "5m"

[connections.oregon]
local_addrs = ["198.18.0.1"]
remote_addrs = ["198.18.0.2"]
local_id = "a.test"
remote_id = "b.test"
auth = "psk"                      # psk | pubkey (certificates)
proposals = ["aes256gcm16-prfsha256-x25519"]   # strongSwan proposal syntax
auto = "start"                    # start | route | add | ignore
rekey_time = "4h"
dpd_delay = "30s"
dpd_action = "restart"            # clear | hold | restart
retransmit_timeout = "2s"         # first retransmit; backoff doubles
retransmit_tries = 5
keyingtries = 3                   # 0 = forever; then retry_base/retry_max backoff
encap = false                     # force UDP encapsulation

[connections.oregon.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
esp_proposals = ["aes256gcm16"]
mode = "tunnel"                   # tunnel | transport
rekey_time = "1h"
updown = "/etc/vpnd/updown.sh"
"#;

pub const SECRETS: &str = r#"[[psk]]
ids = ["a.test", "b.test"]
secret = "correct horse battery staple"
"#;

/// A minimal valid connection body (after its header line).
pub const CONN: &str = r#"remote_addrs = ["198.18.0.2"]
local_id = "a.test"
remote_id = "b.test"
"#;

pub fn child(name: &str) -> String {
    format!(
        "[connections.{name}.children.net]\nlocal_ts = [\"198.19.1.0/24\"]\nremote_ts = [\"198.19.2.0/24\"]\n"
    )
}

pub fn conn(name: &str) -> String {
    format!("[connections.{name}]\n{CONN}\n{}", child(name))
}
