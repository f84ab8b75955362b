//! The updown script runner: strongSwan's `updown` plugin interface.
//!
//! When a CHILD SA comes up or goes down (never on rekey) the configured
//! script runs once per local × remote traffic-selector pair, with the
//! `PLUTO_*` environment strongSwan's updown plugin exports (see
//! [`environment`]). Pairs are formed as strongSwan's policy enumerator
//! forms them: local-major, skipping pairs whose address families differ or
//! whose protocols are both set and differ.
//!
//! Runs happen on tokio tasks and never block the caller. Runs for the same
//! connection (CHILD SA config name) are serialized in submission order, so
//! an `up` finishes before the matching `down` starts; different connections
//! run concurrently.
//!
//! Each run executes the script directly (no shell: it must be executable
//! and start with a `#!` line), with an environment of
//! `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` plus
//! the `PLUTO_*` variables and nothing else, stdin from `/dev/null`, in its
//! own process group. Its stdout is logged at info and its stderr at warn,
//! line by line. A run ends when the script has exited and both output
//! pipes are closed; if that does not happen within the timeout, the whole
//! process group gets SIGKILL. A script that leaves a background process
//! behind must redirect that process's output, or the run times out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ike::wire::TrafficSelector;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// The PATH every script gets.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The timeout the daemon uses by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest output line logged as one line; longer lines are split.
const MAX_LINE: usize = 4096;

/// One CHILD SA coming up or going down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdownEvent {
    pub up: bool,
    /// The CHILD SA (config) name, as strongSwan's PLUTO_CONNECTION.
    pub connection: String,
    pub reqid: u32,
    /// The IKE SA's unique id.
    pub unique_id: u64,
    pub me: IpAddr,
    pub my_id: String,
    pub peer: IpAddr,
    pub peer_id: String,
    /// The peer's UDP port when ESP is UDP-encapsulated (NAT), e.g. 4500.
    pub udp_encap_port: Option<u16>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub mark_in: Option<u32>,
    pub mark_out: Option<u32>,
    pub if_id_in: Option<u32>,
    pub if_id_out: Option<u32>,
}

/// The local × remote selector pairs the script runs for, in order
/// (local-major; pairs of different families, or of different non-zero
/// protocols, are skipped as strongSwan skips them).
pub fn pairs(ev: &UpdownEvent) -> Vec<(&TrafficSelector, &TrafficSelector)> {
    let mut out = Vec::new();
    for l in &ev.local_ts {
        for r in &ev.remote_ts {
            if l.start_addr.is_ipv4() != r.start_addr.is_ipv4() {
                continue;
            }
            if l.ip_proto != 0 && r.ip_proto != 0 && l.ip_proto != r.ip_proto {
                continue;
            }
            out.push((l, r));
        }
    }
    out
}

/// True when `ts` is exactly the single address `addr`.
fn is_host(ts: &TrafficSelector, addr: IpAddr) -> bool {
    ts.start_addr == addr && ts.end_addr == addr
}

/// `up-host`, `up-client`, `down-host`, `down-client`, with `-v6` appended
/// for IPv6. "host" when the local selector is exactly our own address.
pub fn verb(ev: &UpdownEvent, local: &TrafficSelector) -> String {
    let host = is_host(local, ev.me);
    let v6 = if host {
        ev.me.is_ipv6()
    } else {
        local.start_addr.is_ipv6()
    };
    format!(
        "{}{}{}",
        if ev.up { "up" } else { "down" },
        if host { "-host" } else { "-client" },
        if v6 { "-v6" } else { "" }
    )
}

fn addr_bits(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// strongSwan's `to_subnet`: the selector as `net/prefix`; a range that is
/// not a prefix is approximated by the smallest subnet covering it (the
/// common prefix of its first and last address). The flag is true when the
/// result is exact.
pub fn client_subnet(ts: &TrafficSelector) -> (String, bool) {
    let (from, width) = addr_bits(ts.start_addr);
    let (to, _) = addr_bits(ts.end_addr);
    let diff = from ^ to;
    // Bits in common from the top of the `width`-bit address.
    let prefix = if diff == 0 {
        width
    } else {
        (diff.leading_zeros() - (128 - width)).min(width)
    };
    let host_bits = width - prefix;
    let host_mask: u128 = if host_bits == 0 {
        0
    } else if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let net = from & !host_mask;
    let exact = from & host_mask == 0 && to & host_mask == host_mask;
    let net_addr: IpAddr = match ts.start_addr {
        IpAddr::V4(_) => IpAddr::V4((net as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(net.into()),
    };
    (format!("{net_addr}/{prefix}"), exact)
}

/// strongSwan's `get_port`: a single port (0 = any), `from:to` for a range,
/// and for ICMP/ICMPv6 the message type (local) or code (remote).
fn port(local: &TrafficSelector, remote: &TrafficSelector, for_local: bool) -> String {
    if matches!(local.ip_proto.max(remote.ip_proto), 1 | 58) {
        let p = local.start_port.max(remote.start_port);
        return if for_local {
            (p >> 8).to_string()
        } else {
            (p & 0xff).to_string()
        };
    }
    let ts = if for_local { local } else { remote };
    let (from, to) = (ts.start_port, ts.end_port);
    if from == to || (from == 0 && to == 0xffff) {
        from.to_string()
    } else {
        format!("{from}:{to}")
    }
}

/// The `PLUTO_*` environment for one selector pair, in the order
/// strongSwan's updown plugin pushes it.
///
/// Always: `PLUTO_VERSION`, `PLUTO_VERB`, `PLUTO_CONNECTION`,
/// `PLUTO_INTERFACE` (`unknown`: vpnd does not look the interface up, which
/// is what strongSwan exports when it cannot), `PLUTO_REQID`, `PLUTO_PROTO`,
/// `PLUTO_UNIQUEID`, `PLUTO_ME`, `PLUTO_MY_ID`, `PLUTO_MY_CLIENT`,
/// `PLUTO_MY_PORT`, `PLUTO_MY_PROTOCOL`, `PLUTO_PEER`, `PLUTO_PEER_ID`,
/// `PLUTO_PEER_CLIENT`, `PLUTO_PEER_PORT`, `PLUTO_PEER_PROTOCOL`.
/// When set (and non-zero): `PLUTO_MARK_IN`, `PLUTO_MARK_OUT` (as
/// `value/0xffffffff`), `PLUTO_IF_ID_IN`, `PLUTO_IF_ID_OUT`. When
/// UDP-encapsulated: `PLUTO_UDP_ENC`.
pub fn environment(
    ev: &UpdownEvent,
    local: &TrafficSelector,
    remote: &TrafficSelector,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(24);
    let mut push = |k: &str, v: String| env.push((k.to_string(), v));
    push("PLUTO_VERSION", "1.1".into());
    push("PLUTO_VERB", verb(ev, local));
    push("PLUTO_CONNECTION", ev.connection.clone());
    push("PLUTO_INTERFACE", "unknown".into());
    push("PLUTO_REQID", ev.reqid.to_string());
    push("PLUTO_PROTO", "esp".into());
    push("PLUTO_UNIQUEID", ev.unique_id.to_string());
    push("PLUTO_ME", ev.me.to_string());
    push("PLUTO_MY_ID", ev.my_id.clone());
    push("PLUTO_MY_CLIENT", client_subnet(local).0);
    push("PLUTO_MY_PORT", port(local, remote, true));
    push("PLUTO_MY_PROTOCOL", local.ip_proto.to_string());
    push("PLUTO_PEER", ev.peer.to_string());
    push("PLUTO_PEER_ID", ev.peer_id.clone());
    push("PLUTO_PEER_CLIENT", client_subnet(remote).0);
    push("PLUTO_PEER_PORT", port(local, remote, false));
    push("PLUTO_PEER_PROTOCOL", remote.ip_proto.to_string());
    if let Some(m) = ev.mark_in.filter(|&m| m != 0) {
        push("PLUTO_MARK_IN", format!("{m}/0x{:08x}", u32::MAX));
    }
    if let Some(m) = ev.mark_out.filter(|&m| m != 0) {
        push("PLUTO_MARK_OUT", format!("{m}/0x{:08x}", u32::MAX));
    }
    if let Some(i) = ev.if_id_in.filter(|&i| i != 0) {
        push("PLUTO_IF_ID_IN", i.to_string());
    }
    if let Some(i) = ev.if_id_out.filter(|&i| i != 0) {
        push("PLUTO_IF_ID_OUT", i.to_string());
    }
    if let Some(p) = ev.udp_encap_port {
        push("PLUTO_UDP_ENC", p.to_string());
    }
    env
}

struct Job {
    script: PathBuf,
    ev: UpdownEvent,
}

/// Runs updown scripts; see the module documentation.
pub struct UpdownRunner {
    timeout: Duration,
    /// Per connection: the jobs waiting. An entry exists exactly while that
    /// connection's worker task is alive.
    queues: Mutex<HashMap<String, VecDeque<Job>>>,
    /// Jobs queued or running.
    pending: watch::Sender<u64>,
    running: AtomicU64,
    runs: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for UpdownRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdownRunner")
            .field("timeout", &self.timeout)
            .field("pending", &*self.pending.borrow())
            .field("running", &self.running())
            .field("runs_total", &self.runs_total())
            .field("failures_total", &self.failures_total())
            .finish()
    }
}

impl UpdownRunner {
    /// A runner killing scripts after `timeout` (the daemon uses
    /// [`DEFAULT_TIMEOUT`], 10 s).
    pub fn new(timeout: Duration) -> Arc<UpdownRunner> {
        Arc::new(UpdownRunner {
            timeout,
            queues: Mutex::new(HashMap::new()),
            pending: watch::Sender::new(0),
            running: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Run `script` for every local × remote pair of `ev`, in order, on a
    /// tokio task; returns at once. Must be called inside a tokio runtime
    /// (outside one, the event is dropped and counted as a failure).
    pub fn run(self: &Arc<Self>, script: PathBuf, ev: UpdownEvent) {
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(h) => h,
            Err(_) => {
                tracing::error!(
                    connection = %ev.connection,
                    script = %script.display(),
                    "updown: not inside a tokio runtime; script not run"
                );
                self.count_failure();
                return;
            }
        };
        self.pending.send_modify(|n| *n += 1);
        let key = ev.connection.clone();
        let job = Job { script, ev };
        let start_worker = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            match queues.get_mut(&key) {
                Some(q) => {
                    q.push_back(job);
                    false
                }
                None => {
                    queues.insert(key.clone(), VecDeque::from([job]));
                    true
                }
            }
        };
        if start_worker {
            let this = Arc::clone(self);
            handle.spawn(this.worker(key));
        }
    }

    /// Script executions so far (one per selector pair).
    pub fn runs_total(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Executions that failed: non-zero exit, death by signal, spawn error,
    /// timeout.
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Scripts running right now.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Wait until nothing is queued or running, at most `limit`; true when
    /// idle.
    pub async fn idle(&self, limit: Duration) -> bool {
        let mut rx = self.pending.subscribe();
        let idle = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok());
        idle
    }

    fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vpnd_updown_failures_total").increment(1);
    }

    /// Drains one connection's queue, one job at a time.
    async fn worker(self: Arc<Self>, key: String) {
        loop {
            let job = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                match queues.get_mut(&key).and_then(|q| q.pop_front()) {
                    Some(job) => job,
                    None => {
                        queues.remove(&key);
                        return;
                    }
                }
            };
            // A task of its own, so that a panic cannot wedge the queue.
            let this = Arc::clone(&self);
            if let Err(e) = tokio::spawn(async move { this.run_job(job).await }).await {
                tracing::error!(connection = %key, "updown: run aborted: {e}");
            }
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }

    async fn run_job(&self, job: Job) {
        let ev = &job.ev;
        let pairs = pairs(ev);
        if pairs.is_empty() {
            tracing::debug!(connection = %ev.connection, "updown: no selector pairs; nothing to run");
        }
        for (local, remote) in pairs {
            for (side, ts) in [("local", local), ("remote", remote)] {
                if !client_subnet(ts).1 {
                    tracing::info!(
                        connection = %ev.connection,
                        "updown approximates {side} TS {} by next larger subnet",
                        ike::ts::Display(ts)
                    );
                }
            }
            let verb = verb(ev, local);
            let env = environment(ev, local, remote);
            self.runs.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("vpnd_updown_runs_total").increment(1);
            self.running.fetch_add(1, Ordering::Relaxed);
            let result = self.exec(&job.script, env, &ev.connection, &verb).await;
            self.running.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(()) => tracing::debug!(
                    connection = %ev.connection,
                    verb = %verb,
                    "updown script {} done",
                    job.script.display()
                ),
                Err(why) => {
                    self.count_failure();
                    tracing::warn!(
                        connection = %ev.connection,
                        verb = %verb,
                        "updown script {} failed: {why}",
                        job.script.display()
                    );
                }
            }
        }
    }

    /// One execution; `Err` says why it failed.
    async fn exec(
        &self,
        script: &Path,
        env: Vec<(String, String)>,
        connection: &str,
        verb: &str,
    ) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new(script);
        cmd.env_clear()
            .env("PATH", BASE_PATH)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = spawn(&mut cmd).await?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let outcome = {
            let out = log_lines(
                stdout,
                |line| tracing::info!(connection = %connection, verb = %verb, "updown: {line}"),
            );
            let err = log_lines(
                stderr,
                |line| tracing::warn!(connection = %connection, verb = %verb, "updown: {line}"),
            );
            let all = async {
                let (_, _, status) = tokio::join!(out, err, child.wait());
                status
            };
            tokio::time::timeout(self.timeout, all).await
        };
        match outcome {
            Ok(Ok(status)) => check_status(status),
            Ok(Err(e)) => Err(format!("waiting for it failed: {e}")),
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    // The script leads its own process group (process_group(0)).
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                }
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(format!(
                    "timed out after {:?}; process group killed",
                    self.timeout
                ))
            }
        }
    }
}

/// Spawn, retrying briefly on ETXTBSY: a script that was just written may
/// still be open for writing in a process that forked meanwhile and has not
/// reached exec yet (its close-on-exec descriptors close then).
async fn spawn(cmd: &mut tokio::process::Command) -> Result<tokio::process::Child, String> {
    let mut attempt = 0u64;
    loop {
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
            }
            Err(e) => return Err(format!("cannot execute: {e}")),
        }
    }
}

fn check_status(status: ExitStatus) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else if let Some(code) = status.code() {
        Err(format!("exit status {code}"))
    } else if let Some(sig) = status.signal() {
        Err(format!("killed by signal {sig}"))
    } else {
        Err(format!("{status}"))
    }
}

/// Log every line of `reader` (lossy UTF-8, lines longer than `MAX_LINE`
/// split) until EOF or a read error.
async fn log_lines<R: AsyncRead + Unpin>(reader: Option<R>, log: impl Fn(&str)) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::new();
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let room = MAX_LINE - line.len();
        let window = &buf[..buf.len().min(room)];
        let (used, complete) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&window[..i]);
                (i + 1, true)
            }
            None => {
                line.extend_from_slice(window);
                (window.len(), line.len() >= MAX_LINE)
            }
        };
        reader.consume(used);
        if complete {
            emit(&mut line, &log);
        }
    }
    if !line.is_empty() {
        emit(&mut line, &log);
    }
}

fn emit(line: &mut Vec<u8>, log: &impl Fn(&str)) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    log(&String::from_utf8_lossy(line));
    line.clear();
}
