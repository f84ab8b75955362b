//! User-Mode Linux guests for tests that need real kernel ESP.
//!
//! This machine's kernel has XFRM policies but no ESP. Debian's
//! `user-mode-linux` package boots a 6.1 kernel as an ordinary process
//! (`/usr/bin/linux.uml`), with esp4/esp6, xfrm_user, the AEADs, veth and tun
//! as modules under `/usr/lib/uml/modules/<version>`. The guest's root is
//! the host's `/` through hostfs, so the workspace's binaries, strongSwan,
//! iproute2 and iperf3 work inside unchanged; the guest has no network of
//! its own, only the namespaces a test creates there. The guest has one CPU.
//!
//! Invariants:
//! * A `Uml` owns one scratch directory (module index, modprobe wrapper,
//!   init script, command, exit status); the package's module tree is only
//!   read (the index is built in the scratch directory by `depmod`). The
//!   directory is removed on drop.
//! * Inside, `/run`, `/dev/shm` and `TMPDIR` are fresh tmpfs mounts, so
//!   labs in the guest (named after a pid, and pids repeat across kernels)
//!   never meet host labs. When the command fails, the guest's `TMPDIR`
//!   (lab logs, configs) is copied out and kept, and the outcome names it.
//! * The command runs with exactly the environment given plus `PATH`,
//!   `HOME`, `TMPDIR` and `VPND_UML_GUEST=1` (see `in_guest`), in the
//!   caller's current directory.
//! * Every wait is bounded: a guest that reports no exit status within its
//!   time limit is killed with its whole process group; its outcome then has
//!   no status and the console up to that point.
//!
//! `guest_test` lets an ordinary `#[test]` run its body inside a guest: on
//! the host it re-executes the test binary in UML (`--exact <this test>`) and
//! fails with the guest's console unless the test passed in there.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Set to `1` in the environment of every command a guest runs.
pub const GUEST_ENV: &str = "VPND_UML_GUEST";

/// The UML kernel binary (Debian package `user-mode-linux`).
pub const LINUX_UML: &str = "/usr/bin/linux.uml";

/// Where the package keeps the guest kernel's modules, one directory per
/// kernel version.
pub const MODULES: &str = "/usr/lib/uml/modules";

/// Modules loaded at boot: real ESP (esp4/esp6 with UDP encapsulation),
/// the netlink XFRM interface strongSwan's kernel-netlink uses, the AEADs
/// and their templates (AES-GCM, ChaCha20-Poly1305, authenc for the
/// integrity-protected suites), veth for labs and tun for vpnd's userspace
/// dataplane. aes_generic and sha256_generic are built in. Anything else a
/// guest asks for is loaded on demand through the modprobe wrapper.
pub const GUEST_MODULES: &[&str] = &[
    "xfrm_user",
    "esp4",
    "esp6",
    "xfrm4_tunnel",
    "veth",
    "tun",
    "gcm",
    "ghash_generic",
    "ctr",
    "seqiv",
    "echainiv",
    "chacha20poly1305",
    "authenc",
    "authencesn",
    "hmac",
    "sha512_generic",
    "cbc",
];

/// Marker line the init script prints once the guest is ready; the console
/// after it is the command's output.
const READY: &str = "vpnd-uml: guest ready";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static INSTALL: Mutex<()> = Mutex::new(());

/// True inside a guest started by this harness.
pub fn in_guest() -> bool {
    std::env::var_os(GUEST_ENV).is_some_and(|v| v == "1")
}

/// Why a guest could not be run (not: why its command failed; that is in
/// `UmlOutcome`).
#[derive(Debug)]
pub enum UmlError {
    /// `user-mode-linux` or `kmod` is absent and installing it failed.
    Install(String),
    /// The package is there but has no module tree for its kernel.
    NoModules(String),
    /// Preparing the scratch directory or starting the kernel failed.
    Setup(String, std::io::Error),
    /// `depmod` failed on the private module index.
    Depmod(String),
}

impl fmt::Display for UmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UmlError::Install(why) => write!(
                f,
                "User-Mode Linux is not available: {why} (Debian packages user-mode-linux and kmod; scripts/deps.sh installs them)"
            ),
            UmlError::NoModules(why) => write!(f, "no UML kernel modules: {why}"),
            UmlError::Setup(what, e) => write!(f, "UML setup: {what}: {e}"),
            UmlError::Depmod(out) => write!(f, "depmod for the UML modules failed: {out}"),
        }
    }
}

impl std::error::Error for UmlError {}

/// What a guest run produced.
#[derive(Debug)]
pub struct UmlOutcome {
    /// The command's exit status; `None` when the guest reported none
    /// (boot failure, time limit, kernel crash).
    pub status: Option<i32>,
    /// Everything the guest printed on its console: the kernel's boot
    /// messages, then (after the ready line) the command's stdout and stderr.
    pub console: String,
    /// Wall time from starting the kernel to its exit.
    pub elapsed: Duration,
    /// The guest's `TMPDIR` (a tmpfs inside; gone after the run).
    pub guest_tmpdir: PathBuf,
    /// When the command failed: where that `TMPDIR`'s contents were kept.
    pub kept: Option<PathBuf>,
}

impl UmlOutcome {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The console after the guest's ready line (the command's output), or
    /// the whole console when the guest never got that far.
    pub fn output(&self) -> &str {
        match self.console.find(READY) {
            Some(i) => &self.console[i..],
            None => &self.console,
        }
    }
}

impl fmt::Display for UmlOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        match self.status {
            Some(s) => writeln!(f, "guest command exited with status {s} after {secs:.1} s")?,
            None => writeln!(
                f,
                "guest reported no exit status after {secs:.1} s (boot failure, kernel crash or time limit)"
            )?,
        }
        if let Some(k) = &self.kept {
            writeln!(
                f,
                "the guest's TMPDIR ({}) is kept in {}",
                self.guest_tmpdir.display(),
                k.display()
            )?;
        }
        writeln!(f, "----- guest console -----")?;
        f.write_str(self.output().trim_end())?;
        write!(f, "\n----- end of guest console -----")
    }
}

/// One prepared guest: a private module index and a modprobe wrapper;
/// `run` boots a fresh kernel for each command.
pub struct Uml {
    dir: PathBuf,
    kver: String,
    /// Guest memory, as UML's `mem=` (default 768M).
    pub mem: String,
}

/// Boot a guest, run `cmd` in the current directory with `env` (plus
/// `PATH`, `HOME`, `TMPDIR`, `VPND_UML_GUEST=1`), wait at most `timeout`.
pub fn run(cmd: &[&str], env: &[(&str, &str)], timeout: Duration) -> Result<UmlOutcome, UmlError> {
    Uml::new()?.run(cmd, env, timeout)
}

/// Install `user-mode-linux` and `kmod` when absent (apt-get, as root).
pub fn ensure_installed() -> Result<(), UmlError> {
    let present = || Path::new(LINUX_UML).exists() && Path::new("/usr/sbin/depmod").exists();
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return Ok(());
    }
    let apt = |args: &[&str]| -> Result<(), UmlError> {
        let out = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=120"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| UmlError::Install(format!("apt-get: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(UmlError::Install(format!(
                "apt-get {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    apt(&["update", "-qq"])?;
    apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "user-mode-linux",
        "kmod",
    ])?;
    if present() {
        Ok(())
    } else {
        Err(UmlError::Install(format!(
            "{LINUX_UML} or depmod still missing after apt-get install"
        )))
    }
}

/// The newest kernel version under `MODULES` (numeric comparison).
fn kernel_version() -> Result<String, UmlError> {
    let entries =
        std::fs::read_dir(MODULES).map_err(|e| UmlError::NoModules(format!("{MODULES}: {e}")))?;
    let key = |v: &str| -> Vec<u64> {
        v.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| key(v))
        .ok_or_else(|| UmlError::NoModules(format!("{MODULES} is empty")))
}

/// `s` quoted for /bin/sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn setup<T>(what: impl fmt::Display, r: std::io::Result<T>) -> Result<T, UmlError> {
    r.map_err(|e| UmlError::Setup(what.to_string(), e))
}

impl Uml {
    /// Install the packages if needed and prepare the scratch directory: a
    /// module tree whose `kernel/` links to the package's modules, its own
    /// index from `depmod`, and a `modprobe` wrapper pointing at it (the
    /// guest kernel calls that wrapper for modules it loads on demand).
    pub fn new() -> Result<Uml, UmlError> {
        ensure_installed()?;
        let kver = kernel_version()?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("vpnd-uml-{}x{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let uml = Uml {
            dir,
            kver,
            mem: "768M".into(),
        };
        let pkg = Path::new(MODULES).join(&uml.kver);
        let moddir = uml.root().join("lib/modules").join(&uml.kver);
        setup(moddir.display(), std::fs::create_dir_all(&moddir))?;
        setup(
            "module tree link",
            std::os::unix::fs::symlink(pkg.join("kernel"), moddir.join("kernel")),
        )?;
        // depmod reads these; the rest of the index it writes itself.
        for f in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            if pkg.join(f).exists() {
                setup(f, std::fs::copy(pkg.join(f), moddir.join(f)))?;
            }
        }
        let out = setup(
            "depmod",
            Command::new("depmod")
                .arg("-b")
                .arg(uml.root())
                .arg(&uml.kver)
                .output(),
        )?;
        if !out.status.success() {
            return Err(UmlError::Depmod(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let wrapper = uml.dir.join("modprobe");
        setup(
            "modprobe wrapper",
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexec /usr/sbin/modprobe -d {} \"$@\"\n",
                    sh_quote(uml.root().to_str().expect("utf-8 temp dir"))
                ),
            ),
        )?;
        setup("chmod", chmod_x(&wrapper))?;
        Ok(uml)
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The guest kernel's version (e.g. "6.1.176").
    pub fn kernel(&self) -> &str {
        &self.kver
    }

    /// Boot a fresh guest and run `cmd` in it (see the module docs for its
    /// environment); at most `timeout` from boot to power-off.
    pub fn run(
        &self,
        cmd: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<UmlOutcome, UmlError> {
        assert!(!cmd.is_empty(), "uml::run needs a command");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let run_dir = self.dir.join(format!("run{n}"));
        let guest_tmp = run_dir.join("tmp");
        let kept_tmp = run_dir.join("kept");
        let status_file = run_dir.join("status");
        setup(guest_tmp.display(), std::fs::create_dir_all(&guest_tmp))?;
        let cwd = setup("current directory", std::env::current_dir())?;
        let q = |p: &Path| sh_quote(p.to_str().expect("utf-8 path"));

        let mut vars: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ),
            (
                "HOME".into(),
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            ),
            ("TMPDIR".into(), guest_tmp.to_str().expect("utf-8").into()),
            (GUEST_ENV.into(), "1".into()),
        ];
        for (k, v) in env {
            vars.retain(|(key, _)| key != k);
            vars.push(((*k).into(), (*v).into()));
        }
        let mut command = String::from("env -i");
        for (k, v) in &vars {
            command.push(' ');
            command.push_str(&sh_quote(&format!("{k}={v}")));
        }
        for a in cmd {
            command.push(' ');
            command.push_str(&sh_quote(a));
        }

        let init = run_dir.join("init");
        let script = format!(
            r#"#!/bin/sh
# Written by chaos-tests' uml harness: PID 1 of one User-Mode Linux guest.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs {tmp}
echo {modprobe} > /proc/sys/kernel/modprobe
failed=""
for m in {modules}; do
  {modprobe} "$m" 2>/dev/null || failed="$failed $m"
done
[ -z "$failed" ] || echo "vpnd-uml: modules that did not load:$failed"
# Boot messages stay on the console; from here on only warnings and worse,
# so the kernel's chatter (link state changes) does not split the
# command's output lines.
echo 4 > /proc/sys/kernel/printk
ip link set lo up
cd {cwd} || exit 1
echo "{ready} (kernel $(uname -r), $(nproc) cpu)"
{command}
rc=$?
if [ "$rc" != 0 ]; then
  mkdir -p {kept} && cp -a {tmp}/. {kept}/ 2>/dev/null
fi
echo "$rc" > {status}
sync
poweroff -f || halt -f
"#,
            tmp = q(&guest_tmp),
            modprobe = q(&self.dir.join("modprobe")),
            modules = GUEST_MODULES.join(" "),
            cwd = q(&cwd),
            ready = READY,
            command = command,
            kept = q(&kept_tmp),
            status = q(&status_file),
        );
        setup(init.display(), std::fs::write(&init, script))?;
        setup("chmod", chmod_x(&init))?;

        let start = Instant::now();
        let mut child = setup(
            LINUX_UML,
            Command::new(LINUX_UML)
                .arg(format!("mem={}", self.mem))
                .args([
                    "root=/dev/root",
                    "rootfstype=hostfs",
                    "rootflags=/",
                    "rw",
                    "con=null",
                    "con0=null,fd:1",
                ])
                .arg(format!("init={}", init.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own process group: UML runs guest processes as host
                // processes, and a timeout kills them all.
                .process_group(0)
                .spawn(),
        )?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        let exited = wait_child(&mut child, timeout);
        // Whatever is left of the guest (or all of it, on timeout) goes.
        kill_group(&child);
        let _ = child.wait();
        let elapsed = start.elapsed();
        let mut console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        // linux.uml's own stderr (its host-side checks) matters only when
        // the guest never came up.
        if !console.contains(READY) && !stderr.trim().is_empty() {
            console.push_str("\n----- linux.uml stderr -----\n");
            console.push_str(&stderr);
        }
        if !exited {
            console.push_str(&format!(
                "\nvpnd-uml: time limit of {} s reached; guest killed\n",
                timeout.as_secs()
            ));
        }
        let status = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let kept = if status != Some(0) && kept_tmp.exists() {
            let dest =
                std::env::temp_dir().join(format!("vpnd-uml-guest-{}x{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::rename(&kept_tmp, &dest).ok().map(|_| dest)
        } else {
            None
        };
        let _ = std::fs::remove_dir_all(&run_dir);
        Ok(UmlOutcome {
            status,
            console,
            elapsed,
            guest_tmpdir: guest_tmp,
            kept,
        })
    }
}

impl Drop for Uml {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chmod_x(p: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
}

/// Poll `child` until it exits or `timeout` passes; true when it exited.
fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL the process group led by `child` (ours: spawned with
/// `process_group(0)`); already gone is fine.
fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

/// Run the calling `#[test]`'s body in a UML guest.
///
/// Inside a guest (`in_guest`) this just runs `body`. On the host it builds
/// the workspace's binaries (`vpnd::bin_dir`), boots a guest that runs this
/// test binary with `--exact <name> --nocapture --test-threads=1` (the name
/// is the test thread's, which libtest sets to the test's path), and panics
/// with the guest's console unless that test passed in there. Passed into
/// the guest: `VPND_TEST_LOG`, `RUST_BACKTRACE`, `RUST_LOG` when set.
pub fn guest_test(timeout: Duration, body: impl FnOnce()) {
    if in_guest() {
        body();
        return;
    }
    crate::lab::require_root();
    let name = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned)
        .expect("uml::guest_test runs in a #[test] (libtest names its thread after the test)");
    crate::vpnd::bin_dir();
    let exe = std::env::current_exe().expect("current exe");
    let forwarded: Vec<(String, String)> = ["VPND_TEST_LOG", "RUST_BACKTRACE", "RUST_LOG"]
        .iter()
        .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
        .collect();
    let env: Vec<(&str, &str)> = forwarded
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let outcome = run(
        &[
            exe.to_str().expect("utf-8 path"),
            "--exact",
            &name,
            "--nocapture",
            "--test-threads=1",
        ],
        &env,
        timeout,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // libtest exits 0 when no test matched: require that this one ran.
    let ran = outcome.output().contains("test result: ok. 1 passed");
    assert!(
        outcome.success() && ran,
        "{name} failed inside the UML guest{}\n{outcome}",
        if outcome.success() {
            " (the test did not run there)"
        } else {
            ""
        }
    );
    // Shown with --nocapture (libtest keeps a passing test's output).
    eprintln!("{name}: passed in the UML guest; {outcome}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_survives_quotes_and_spaces() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn outcome_output_starts_at_ready_line() {
        let o = UmlOutcome {
            status: Some(0),
            console: format!("Linux version 6.1\nboot noise\n{READY} (kernel 6.1)\nhello\n"),
            elapsed: Duration::ZERO,
            guest_tmpdir: PathBuf::from("/tmp/x"),
            kept: None,
        };
        assert!(o.output().starts_with(READY));
        assert!(o.output().ends_with("hello\n"));
        assert!(o.success());
    }
}
