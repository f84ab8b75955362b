//! Network namespaces, veth links and processes inside them.
//!
//! Invariant: everything a `Lab` creates (namespaces, processes, temporary
//! files) is removed when it is dropped, in reverse order, whatever the test
//! outcome. Names carry the process id and a counter so parallel tests and
//! leftover labs from a killed run never collide.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace of a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ns {
    pub name: String,
}

/// A running process inside a namespace; killed when the lab drops.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

pub struct Lab {
    id: String,
    dir: PathBuf,
    namespaces: Vec<Ns>,
    procs: Vec<Proc>,
    links: u32,
}

/// Panics unless running as root: these labs cannot run otherwise.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "network-namespace tests need root (run scripts/test-all as root)"
    );
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Lab {
    /// A new, empty lab. `tag` (a few letters) shows up in namespace names.
    pub fn new(tag: &str) -> Lab {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "{}{}x{}",
            &tag[..tag.len().min(4)],
            std::process::id() % 100_000,
            n
        );
        let dir = std::env::temp_dir().join(format!("vpnd-lab-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab dir");
        Lab {
            id,
            dir,
            namespaces: Vec::new(),
            procs: Vec::new(),
            links: 0,
        }
    }

    /// The usual lab: gateways "a" (198.18.0.1) and "b" (198.18.0.2) on one
    /// veth link.
    pub fn gateways(tag: &str) -> (Lab, Ns, Ns) {
        let mut lab = Lab::new(tag);
        let a = lab.ns("a");
        let b = lab.ns("b");
        lab.link(&a, &["198.18.0.1/24"], &b, &["198.18.0.2/24"]);
        (lab, a, b)
    }

    /// The lab's scratch directory (configs, sockets, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create a namespace with loopback up.
    pub fn ns(&mut self, name: &str) -> Ns {
        let ns = Ns {
            name: format!("{}-{}", self.id, name),
        };
        run(Command::new("ip").args(["netns", "add", &ns.name]));
        self.namespaces.push(ns.clone());
        self.exec(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Join two namespaces with a veth pair and assign addresses
    /// (`198.18.0.1/24` form; IPv6 works too). Returns the interface names.
    pub fn link(&mut self, a: &Ns, a_addrs: &[&str], b: &Ns, b_addrs: &[&str]) -> (String, String) {
        self.links += 1;
        let (ia, ib) = (format!("va{}", self.links), format!("vb{}", self.links));
        // Create in `a` directly, then move the peer: the host never sees them.
        self.exec(
            a,
            &[
                "ip", "link", "add", &ia, "type", "veth", "peer", "name", &ib,
            ],
        );
        self.exec(a, &["ip", "link", "set", &ib, "netns", &b.name]);
        for (ns, ifname, addrs) in [(a, &ia, a_addrs), (b, &ib, b_addrs)] {
            for addr in addrs {
                let mut args = vec!["ip"];
                if addr.contains(':') {
                    args.push("-6");
                }
                args.extend(["addr", "add", addr, "dev", ifname]);
                if addr.contains(':') {
                    args.push("nodad");
                }
                self.exec(ns, &args);
            }
            self.exec(ns, &["ip", "link", "set", ifname, "up"]);
        }
        (ia, ib)
    }

    /// Give `ns` addresses for a protected subnet behind it (on loopback:
    /// this kernel has no dummy interfaces).
    pub fn lan(&mut self, ns: &Ns, addrs: &[&str]) {
        for a in addrs {
            self.exec(ns, &["ip", "addr", "add", a, "dev", "lo"]);
        }
    }

    fn command(ns: &Ns, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.name]).args(argv);
        c
    }

    /// Run a command in `ns`; panics with its output if it fails.
    pub fn exec(&self, ns: &Ns, argv: &[&str]) -> Output {
        run(&mut Self::command(ns, argv))
    }

    /// Run a command in `ns` and return its output whatever the status.
    pub fn try_exec(&self, ns: &Ns, argv: &[&str]) -> Output {
        Self::command(ns, argv)
            .output()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    /// Start a long-running process in `ns`, stdout+stderr to a log file in
    /// the lab directory. `env` is added to the environment.
    pub fn spawn(&mut self, ns: &Ns, name: &str, argv: &[&str], env: &[(&str, &str)]) -> usize {
        let log = self.dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let mut c = Self::command(ns, argv);
        c.stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
        });
        self.procs.len() - 1
    }

    /// The pid of a process started with `spawn` (`ip netns exec` execs
    /// the command, so it is the command's).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.child.id())
    }

    /// A started process's log so far.
    pub fn log(&self, name: &str) -> String {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Wait for a process started with `spawn` to exit, up to `timeout`.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        let p = self.procs.iter_mut().find(|p| p.name == name)?;
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = p.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stop a process: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self, name: &str) {
        if let Some(p) = self.procs.iter_mut().find(|p| p.name == name) {
            stop_child(&mut p.child);
        }
    }

    /// SIGKILL a process started with `spawn` and wait for it to be gone
    /// (a crash: it cleans nothing up). Its log stays, under `name~N`, so
    /// the same name can be spawned again.
    pub fn kill(&mut self, name: &str) {
        let n = self.procs.len();
        let Some(p) = self.procs.iter_mut().find(|p| p.name == name) else {
            panic!("no process named '{name}'");
        };
        let _ = p.child.kill();
        let _ = p.child.wait();
        let old = self.dir.join(format!("{name}~{n}.log"));
        let _ = std::fs::rename(&p.log, &old);
        p.log = old;
        p.name = format!("{name}~{n}");
    }

    /// Poll `cond` every 50 ms until it holds or `timeout` passes.
    pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            stop_child(&mut p.child);
        }
        // Anything else still running inside our namespaces (e.g. children
        // of the processes above) goes too.
        for ns in self.namespaces.iter().rev() {
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &ns.name])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns.name]).status();
        }
        if std::thread::panicking() {
            eprintln!("lab {} kept its logs in {}", self.id, self.dir.display());
            for p in &self.procs {
                eprintln!("----- {} ({}) -----", p.name, p.log.display());
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
