//! vpnd in a lab namespace: write its config, start it, talk to it with
//! vpnctl, read its status as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::lab::{Lab, Ns};

/// Where the workspace's binaries are; built once per test process so a
/// test never runs a stale vpnd. Inside a UML guest nothing is built: the
/// host side of `uml::guest_test` built them just before booting it.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test> → target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        if crate::uml::in_guest() {
            return dir;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        // Benchmarks run from target/release: build that profile there.
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "-p", "control", "--bins"]);
        // cargo test/bench set these for the running target; a build
        // script that watches one (ring watches CARGO_MANIFEST_DIR) would
        // see it change between this build and a plain `cargo build`, and
        // every crate above it would be rebuilt each time.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
            {
                build.env_remove(&*k);
            }
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .arg("--manifest-path")
            .arg(&manifest)
            .status()
            .expect("cargo build");
        assert!(status.success(), "building vpnd and vpnctl failed");
        dir
    })
}

/// A vpnd started in a namespace.
pub struct Vpnd {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
}

/// vpnctl's exit status and output.
#[derive(Debug)]
pub struct Ctl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl Vpnd {
    /// Write `config` (TOML; `@DIR@` is replaced by the instance directory)
    /// and `secrets` (secrets.toml, mode 0600), then start vpnd in `ns` and
    /// wait for its control socket.
    pub fn start(
        lab: &mut Lab,
        ns: &Ns,
        name: &str,
        config: &str,
        secrets: &str,
        extra_args: &[&str],
    ) -> Vpnd {
        let v = Self::prepare(lab, name, config, secrets);
        v.launch(lab, ns, extra_args);
        assert!(
            Lab::wait_until(Duration::from_secs(10), || v.ctl(&["stats", "--json"]).ok()),
            "vpnd '{name}' did not come up:\n{}",
            lab.log(name)
        );
        v
    }

    /// Write the files without starting. Unless `config` sets its own,
    /// the daemon's `state_dir` is `state/` in its instance directory, so
    /// no two lab daemons share (and revive) each other's state.
    pub fn prepare(lab: &Lab, name: &str, config: &str, secrets: &str) -> Vpnd {
        use std::os::unix::fs::PermissionsExt;
        let dir = lab.dir().join(name);
        std::fs::create_dir_all(&dir).expect("vpnd dir");
        let config_path = dir.join("vpnd.toml");
        let mut config = config.replace("@DIR@", dir.to_str().expect("utf-8"));
        if !config.contains("state_dir") {
            let line = format!("state_dir = \"{}/state\"\n", dir.display());
            config = match config.find("[daemon]\n") {
                Some(at) => {
                    let at = at + "[daemon]\n".len();
                    format!("{}{line}{}", &config[..at], &config[at..])
                }
                None => format!("[daemon]\n{line}\n{config}"),
            };
        }
        std::fs::write(&config_path, config).expect("config");
        let secrets_path = dir.join("secrets.toml");
        std::fs::write(&secrets_path, secrets).expect("secrets");
        std::fs::set_permissions(&secrets_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        Vpnd {
            name: name.to_string(),
            socket: dir.join("vpnd.sock"),
            config: config_path,
            dir,
        }
    }

    pub fn launch(&self, lab: &mut Lab, ns: &Ns, extra_args: &[&str]) {
        let bin = bin_dir().join("vpnd");
        // VPND_TEST_WRAP puts a command before vpnd that execs it (so the
        // pid stays vpnd's), `{name}` replaced by the instance name: a
        // heap profiler's preload, e.g. `env LD_PRELOAD=/usr/lib/heaptrack/
        // libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT=/tmp/ht.{name}.raw`.
        let wrap = std::env::var("VPND_TEST_WRAP")
            .unwrap_or_default()
            .replace("{name}", &self.name);
        let mut argv: Vec<&str> = wrap.split_whitespace().collect();
        argv.extend([
            bin.to_str().expect("utf-8"),
            "--config",
            self.config.to_str().expect("utf-8"),
            "--socket",
            self.socket.to_str().expect("utf-8"),
        ]);
        argv.extend_from_slice(extra_args);
        // VPND_TEST_LOG overrides the log filter (e.g. "debug") when a lab
        // test needs a closer look.
        let filter = std::env::var("VPND_TEST_LOG").unwrap_or_else(|_| "info".into());
        lab.spawn(ns, &self.name, &argv, &[("RUST_LOG", filter.as_str())]);
    }

    /// Run vpnctl against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Ctl {
        let out = Command::new(bin_dir().join("vpnctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("vpnctl");
        Ctl {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn status(&self) -> Value {
        let c = self.ctl(&["status", "--json"]);
        assert!(c.ok(), "vpnctl status failed: {c:?}");
        serde_json::from_str(&c.stdout).expect("status json")
    }

    pub fn stats(&self) -> Value {
        let c = self.ctl(&["stats", "--json"]);
        assert!(c.ok(), "vpnctl stats failed: {c:?}");
        serde_json::from_str(&c.stdout).expect("stats json")
    }

    /// CHILD SAs in state "installed" across all connections.
    pub fn installed_children(&self) -> usize {
        let s = self.status();
        s["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ike_sas"].as_array().into_iter().flatten())
            .flat_map(|i| i["child_sas"].as_array().into_iter().flatten())
            .filter(|ch| ch["state"] == "installed")
            .count()
    }

    /// The first installed CHILD SA of connection `name`, if any.
    pub fn installed_child(&self, name: &str) -> Option<Value> {
        self.conn(name)["ike_sas"]
            .as_array()?
            .iter()
            .flat_map(|i| i["child_sas"].as_array().cloned().unwrap_or_default())
            .find(|c| c["state"] == "installed")
    }

    /// The status object of one connection.
    pub fn conn(&self, name: &str) -> Value {
        let s = self.status();
        s["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }
}
