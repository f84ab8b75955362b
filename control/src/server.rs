//! The control socket: a Unix stream socket (mode 0600, or 0660 with
//! `[daemon] socket_group`), one task per client, one JSON request per line.
//! It keeps the configuration the daemon was last given, so `load` can tell
//! new and changed connections from unchanged ones.
//!
//! What a client can make the daemon hold is bounded (`Limits`): request
//! lines have a maximum length, a client that sends nothing is disconnected
//! after a while (monitor streams excepted), and only so many clients are
//! served at once; one more is told so and closed, never left waiting. The
//! socket has its mode and group before it becomes reachable.
//!
//! Each client is known by its socket credentials ([`crate::peer`]): every
//! verb is open to anyone who can connect, while `load --file` and the
//! wording of configuration errors follow the rules described there.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::{Api, ApiReply, DaemonHandle};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use std::collections::HashMap;

use crate::config::{self, Auto, Config, ConfigErrors, ConnectionConfig};
use crate::convert::to_spec;
use crate::peer::{self, Peer};
use crate::protocol::{Request, Response};

pub struct Server {
    daemon: Arc<DaemonHandle>,
    /// What the daemon was last given, plus `set` overrides per connection.
    state: Mutex<Loaded>,
    limits: Limits,
    clients: AtomicUsize,
}

/// Bounds on what control clients can make the daemon hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest request line, in bytes; a longer one is refused and the
    /// client disconnected.
    pub max_line: usize,
    /// A client that sends no request for this long is disconnected
    /// (a `monitor` stream is not idle).
    pub idle: Duration,
    /// Clients served at once; one more is answered with an error.
    pub max_clients: usize,
}

impl Default for Limits {
    /// 64 KiB lines, 60 s idle, 256 clients: well below a default fd limit
    /// of 1,024, so there is always room for one more `vpnctl`. (A busy
    /// script's `vpnctl` runs overlap: a finished client holds its slot
    /// until the daemon sees it go, so the cap is not the client count.)
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            idle: Duration::from_secs(60),
            max_clients: 256,
        }
    }
}

/// One request line, or why there is none.
enum Line {
    Text(Vec<u8>),
    Eof,
    TooLong,
}

/// Read one line (without its newline) of at most `max` bytes, holding no
/// more than that in memory whatever the client sends.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() {
                Line::Eof
            } else {
                Line::Text(line)
            });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Line::Text(line));
        }
    }
}

/// Counts a served client while it lives.
struct ClientSlot<'a>(&'a AtomicUsize);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Loaded {
    config: Config,
    /// `vpnctl set` values, applied on top of the file's.
    overrides: HashMap<String, Vec<(String, String)>>,
}

/// The keys `vpnctl set` accepts.
pub use crate::config::SET_KEYS;

/// Apply `set` overrides in order, then check what spans several keys.
fn apply_overrides(c: &mut ConnectionConfig, pairs: &[(String, String)]) -> Result<(), String> {
    for (k, v) in pairs {
        c.set(k, v)?;
    }
    if c.retry_base > c.retry_max {
        return Err(format!(
            "retry_base ({}) is greater than retry_max ({})",
            config::format_duration(c.retry_base),
            config::format_duration(c.retry_max)
        ));
    }
    Ok(())
}

const API_TIMEOUT: Duration = Duration::from_secs(330);

/// Look up a group id in /etc/group.
fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Bind the control socket with the right ownership and mode.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        // A live daemon answers; a stale socket file is removed.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("another vpnd is listening on {}", path.display()));
        }
        let _ = std::fs::remove_file(path);
    }
    // Bind inside a private directory, give the socket its group and mode,
    // and only then move it into place: it is never reachable with the
    // permissions the umask would give it.
    let dir = path.parent().unwrap_or(Path::new("."));
    let private = dir.join(format!(".vpnd-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| format!("cannot create {}: {e}", private.display()))?;
    let staged = private.join("socket");
    let placed = (|| {
        let listener = UnixListener::bind(&staged)
            .map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        let mode = match group {
            Some(g) => {
                let gid = group_id(g)
                    .ok_or_else(|| format!("[daemon] socket_group: no group named '{g}'"))?;
                std::os::unix::fs::chown(&staged, None, Some(gid))
                    .map_err(|e| format!("chown {}: {e}", path.display()))?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        std::fs::rename(&staged, path)
            .map_err(|e| format!("cannot move the socket to {}: {e}", path.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    placed
}

impl Server {
    pub fn new(daemon: Arc<DaemonHandle>, config: Config) -> Arc<Server> {
        Self::with_limits(daemon, config, Limits::default())
    }

    pub fn with_limits(daemon: Arc<DaemonHandle>, config: Config, limits: Limits) -> Arc<Server> {
        Arc::new(Server {
            daemon,
            state: Mutex::new(Loaded {
                config,
                overrides: HashMap::new(),
            }),
            limits,
            clients: AtomicUsize::new(0),
        })
    }

    /// Accept clients until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let me = self.clone();
                    if me.clients.fetch_add(1, Ordering::Relaxed) >= me.limits.max_clients {
                        me.clients.fetch_sub(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            let (_r, mut w) = stream.into_split();
                            let message = format!(
                                "too many control clients ({}); try again",
                                me.limits.max_clients
                            );
                            let _ = write(&mut w, &Response::Error { message }).await;
                        });
                        continue;
                    }
                    tokio::spawn(async move {
                        let _slot = ClientSlot(&me.clients);
                        if let Err(e) = me.client(stream).await {
                            tracing::debug!("control client: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn client(&self, stream: UnixStream) -> std::io::Result<()> {
        let cred = stream.peer_cred()?;
        let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
        let peer = off_runtime(move || Peer::from_cred(uid, gid, pid)).await;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let limits = self.limits;
        loop {
            let line =
                match tokio::time::timeout(limits.idle, read_line(&mut r, limits.max_line)).await {
                    Err(_) => {
                        let message = format!("no request for {:?}; closing", limits.idle);
                        write(&mut w, &Response::Error { message }).await?;
                        return Ok(());
                    }
                    Ok(line) => line?,
                };
            let line = match line {
                Line::Eof => return Ok(()),
                Line::TooLong => {
                    let message = format!("request longer than {} bytes; closing", limits.max_line);
                    write(&mut w, &Response::Error { message }).await?;
                    return Ok(());
                }
                Line::Text(t) => t,
            };
            let req: Request = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    write(
                        &mut w,
                        &Response::Error {
                            message: format!("bad request: {e}"),
                        },
                    )
                    .await?;
                    continue;
                }
            };
            if req == Request::Monitor {
                let mut rx = self.daemon.monitor();
                loop {
                    match rx.recv().await {
                        Ok(event) => write(&mut w, &Response::Event { event }).await?,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("monitor client lagged by {n} events");
                        }
                        Err(_) => return Ok(()),
                    }
                }
            }
            let resp = self.handle_as(req, &peer).await;
            write(&mut w, &resp).await?;
        }
    }

    async fn api(&self, api: Api) -> Response {
        match self.daemon.api(api, API_TIMEOUT).await {
            ApiReply::Ok(message) => Response::Ok { message },
            ApiReply::Err(message) => Response::Error { message },
            ApiReply::Status(status) => Response::Status { status },
            ApiReply::Stats(stats) => Response::Stats { stats },
            ApiReply::Names(n) => Response::Ok {
                message: n.join(" "),
            },
        }
    }

    /// An `ignore` connection is known to the config but not to the daemon.
    async fn ignored(&self, conn: &str) -> bool {
        self.state
            .lock()
            .await
            .config
            .connections
            .iter()
            .any(|c| c.name == conn && c.auto == Auto::Ignore)
    }

    /// Serve one request from root.
    pub async fn handle(&self, req: Request) -> Response {
        self.handle_as(req, &Peer::root()).await
    }

    /// Serve one request from `peer`: every verb, with `load --file` and
    /// configuration errors as the module `peer` describes.
    pub async fn handle_as(&self, req: Request, peer: &Peer) -> Response {
        match req {
            Request::Status { conn, kernel } => {
                let mut r = self.api(Api::Status(conn)).await;
                if let (true, Response::Status { status }) = (kernel, &mut r) {
                    let dp = self.daemon.dataplane().clone();
                    status.kernel_unknown = off_runtime(move || dp.unknown_state()).await;
                }
                r
            }
            Request::Up {
                conn,
                child,
                no_wait,
            } => {
                if self.ignored(&conn).await {
                    return Response::Error {
                        message: format!("no config named '{conn}' (it has auto = \"ignore\")"),
                    };
                }
                self.api(Api::Up {
                    conn,
                    child,
                    wait: !no_wait,
                })
                .await
            }
            Request::Down { conn } => self.api(Api::Down(conn)).await,
            Request::Kill { conn } => self.api(Api::Kill(conn)).await,
            Request::Stats => self.api(Api::Stats).await,
            Request::Impair { conn, kind } => self.api(Api::Impair { conn, kind }).await,
            Request::Load { file } => self.load(file, peer).await,
            Request::Add { conn } => self.add_or_replace(&conn, false, peer).await,
            Request::Replace { conn } => self.add_or_replace(&conn, true, peer).await,
            Request::Delete { conn } => {
                let r = self.api(Api::Delete(conn.clone())).await;
                if matches!(r, Response::Ok { .. }) {
                    let mut st = self.state.lock().await;
                    st.config.connections.retain(|c| c.name != conn);
                    st.overrides.remove(&conn);
                }
                r
            }
            Request::Route { conn } => self.api(Api::Route(conn)).await,
            Request::Unroute { conn } => self.api(Api::Unroute(conn)).await,
            Request::Set { conn, settings } => self.set(&conn, &settings, peer).await,
            Request::RereadSecrets => self.reread_secrets(peer).await,
            Request::ListCerts => self.list_certs().await,
            Request::Reload { dry_run } => self.reload(dry_run, peer).await,
            Request::Monitor => Response::Error {
                message: "monitor is a stream".into(),
            },
        }
    }

    /// The daemon's view of `c` with the `set` overrides applied.
    fn spec_for(
        st: &Loaded,
        c: &ConnectionConfig,
        secrets: &crate::secrets::Secrets,
    ) -> Result<Option<actors::ConnSpec>, String> {
        let mut c = c.clone();
        if let Some(pairs) = st.overrides.get(&c.name) {
            apply_overrides(&mut c, pairs)?;
        }
        to_spec(&c, secrets, st.config.scheduler.rekey_jitter_pct)
    }

    async fn names(&self) -> Vec<String> {
        match self.daemon.api(Api::Names, API_TIMEOUT).await {
            ApiReply::Names(n) => n,
            _ => Vec::new(),
        }
    }

    /// `add` (fails if loaded) and `replace` (delete if present, then add),
    /// from a fresh read of the configuration.
    async fn add_or_replace(&self, name: &str, replace: bool, peer: &Peer) -> Response {
        let mut st = self.state.lock().await;
        let main = st.config.main_file.clone();
        let fresh = match off_runtime(move || config::load(&main)).await {
            Ok(c) => c,
            Err(e) => {
                return Response::Error {
                    message: tell(peer, e).await,
                }
            }
        };
        let Some(c) = fresh.connections.iter().find(|c| c.name == name).cloned() else {
            return Response::Error {
                message: format!(
                    "no config named '{name}' in {} or its includes",
                    st.config.main_file.display()
                ),
            };
        };
        if !replace && self.names().await.iter().any(|n| n == name) {
            return Response::Error {
                message: format!("connection '{name}' already exists"),
            };
        }
        let spec = match Self::spec_for(&st, &c, &fresh.secrets) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Response::Error {
                    message: format!("no config named '{name}' (it has auto = \"ignore\")"),
                }
            }
            Err(e) => {
                return Response::Error {
                    message: tell_spec(peer, &c, e).await,
                }
            }
        };
        let r = if replace {
            self.api(Api::Replace(Box::new(spec))).await
        } else {
            self.api(Api::Add(Box::new(spec))).await
        };
        if matches!(r, Response::Ok { .. }) {
            match st.config.connections.iter_mut().find(|o| o.name == name) {
                Some(o) => *o = c,
                None => st.config.connections.push(c),
            }
        }
        r
    }

    async fn set(&self, name: &str, settings: &[String], peer: &Peer) -> Response {
        let mut st = self.state.lock().await;
        let Some(c) = st
            .config
            .connections
            .iter()
            .find(|c| c.name == name)
            .cloned()
        else {
            return Response::Error {
                message: format!("no connection named '{name}'"),
            };
        };
        if settings.is_empty() {
            return Response::Error {
                message: format!("set needs KEY=VALUE (keys: {})", SET_KEYS.join(", ")),
            };
        }
        let mut pairs = st.overrides.get(name).cloned().unwrap_or_default();
        for kv in settings {
            let Some((k, v)) = kv.split_once('=') else {
                return Response::Error {
                    message: format!("'{kv}' is not KEY=VALUE"),
                };
            };
            pairs.retain(|(pk, _)| pk != k);
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        // Validate everything before changing anything.
        if let Err(e) = apply_overrides(&mut c.clone(), &pairs) {
            return Response::Error {
                message: format!("connection '{name}': {e}"),
            };
        }
        let previous = st.overrides.insert(name.to_string(), pairs);
        let secrets = st.config.secrets.clone();
        let r = match Self::spec_for(&st, &c, &secrets) {
            Ok(Some(spec)) => self.api(Api::Set(Box::new(spec))).await,
            Ok(None) => Response::Error {
                message: format!("no config named '{name}' (it has auto = \"ignore\")"),
            },
            Err(e) => Response::Error {
                message: tell_spec(peer, &c, e).await,
            },
        };
        // Nothing changes unless the daemon took the new settings.
        if !matches!(r, Response::Ok { .. }) {
            match previous {
                Some(p) => st.overrides.insert(name.to_string(), p),
                None => st.overrides.remove(name),
            };
        }
        r
    }

    /// New credentials for the next authentications: the secrets files
    /// (PSKs, private keys), `[daemon] cacerts` and `crls`, and each
    /// connection's `local_cert`. Everything is read and checked before
    /// anything changes; running SAs are untouched.
    async fn reread_secrets(&self, peer: &Peer) -> Response {
        let mut st = self.state.lock().await;
        let (daemon, main) = (st.config.daemon.clone(), st.config.main_file.clone());
        let read = off_runtime(move || crate::secrets::Secrets::reload(&daemon, &main)).await;
        let (secrets, warnings) = match read {
            Ok(x) => x,
            Err(e) => {
                return Response::Error {
                    message: format!(
                        "rereadsecrets failed; every credential is as it was:\n{}",
                        tell(peer, e).await
                    ),
                }
            }
        };
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let names = self.names().await;
        let mut specs = Vec::new();
        for c in st
            .config
            .connections
            .iter()
            .filter(|c| names.contains(&c.name))
        {
            match Self::spec_for(&st, c, &secrets) {
                Ok(Some(spec)) => specs.push((c, Box::new(spec))),
                Ok(None) => {}
                Err(e) => {
                    return Response::Error {
                        message: format!(
                            "rereadsecrets failed; every credential is as it was:\n{}",
                            tell_spec(peer, c, e).await
                        ),
                    }
                }
            }
        }
        let updated = specs.len();
        for (i, (_, spec)) in specs.iter().enumerate() {
            if let Response::Error { message } = self.api(Api::Set(spec.clone())).await {
                // Put the connections already updated back on the old credentials.
                let old = st.config.secrets.clone();
                for (c, _) in &specs[..i] {
                    if let Ok(Some(s)) = Self::spec_for(&st, c, &old) {
                        let _ = self.api(Api::Set(Box::new(s))).await;
                    }
                }
                return Response::Error { message };
            }
        }
        let n = secrets.len();
        let loaded = format!(
            "{n} secret(s) loaded, with {} private key(s), {} CA certificate(s), {} CRL(s)",
            secrets.key_files().len(),
            secrets.ca_files().count(),
            secrets.crl_files().count()
        );
        st.config.secrets = secrets;
        tracing::info!("rereadsecrets: {loaded}");
        let mut message =
            format!("{loaded}; {updated} connection(s) use them from their next authentication");
        for w in warnings {
            message.push_str(&format!("\nwarning: {w}"));
        }
        Response::Ok { message }
    }

    /// The loaded certificates, keys and CRLs (`list-certs`): public
    /// facts only, so any client of the socket may ask.
    async fn list_certs(&self) -> Response {
        let (secrets, local) = {
            let st = self.state.lock().await;
            let c = &st.config;
            (c.secrets.clone(), crate::certlist::local_certs(c))
        };
        let report = off_runtime(move || crate::certlist::report(&secrets, &local)).await;
        Response::Certs {
            certs: Box::new(report),
        }
    }

    /// Re-read the main configuration, diff, apply only the changes.
    async fn reload(&self, dry_run: bool, peer: &Peer) -> Response {
        let mut st = self.state.lock().await;
        let main = st.config.main_file.clone();
        let fresh = match off_runtime(move || config::load(&main)).await {
            Ok(c) => c,
            Err(e) => {
                return Response::Error {
                    message: format!(
                        "reload failed; nothing was changed:\n{}",
                        tell(peer, e).await
                    ),
                }
            }
        };
        enum Step {
            Add(Box<actors::ConnSpec>),
            Replace(Box<actors::ConnSpec>),
            /// The running connection takes its new settings, as on `set`.
            Update(Box<actors::ConnSpec>),
            Delete(String),
        }
        let loaded = self.names().await;
        let mut plan: Vec<(String, Step)> = Vec::new();
        let mut lines = Vec::new();
        let mut unchanged = 0;
        for c in &fresh.connections {
            let old = st.config.connections.iter().find(|o| o.name == c.name);
            let running = loaded.contains(&c.name);
            let spec = match Self::spec_for(&st, c, &fresh.secrets) {
                Ok(s) => s,
                Err(e) => {
                    return Response::Error {
                        message: format!(
                            "reload failed; nothing was changed:\n{}",
                            tell_spec(peer, c, e).await
                        ),
                    }
                }
            };
            match (old, spec) {
                (Some(o), Some(_)) if o == c && running => unchanged += 1,
                (_, None) if running => {
                    lines.push(format!("delete {}: auto = ignore", c.name));
                    plan.push((c.name.clone(), Step::Delete(c.name.clone())));
                }
                (_, None) => unchanged += 1,
                (Some(o), Some(spec)) if running && !o.replaced_by(c) => {
                    lines.push(format!(
                        "update {}: changed {}",
                        c.name,
                        o.changed_keys(c).join(", ")
                    ));
                    plan.push((c.name.clone(), Step::Update(Box::new(spec))));
                }
                (Some(o), Some(spec)) if running => {
                    lines.push(format!(
                        "replace {}: changed {}",
                        c.name,
                        o.changed_keys(c).join(", ")
                    ));
                    plan.push((c.name.clone(), Step::Replace(Box::new(spec))));
                }
                (_, Some(spec)) => {
                    lines.push(format!(
                        "add {}: new connection (auto = {})",
                        c.name,
                        c.auto.as_str()
                    ));
                    plan.push((c.name.clone(), Step::Add(Box::new(spec))));
                }
            }
        }
        for name in &loaded {
            if !fresh.connections.iter().any(|c| &c.name == name) {
                lines.push(format!("delete {name}: no longer in the configuration"));
                plan.push((name.clone(), Step::Delete(name.clone())));
            }
        }
        if fresh.daemon.listen != st.config.daemon.listen {
            lines.push("note: daemon.listen changed; restart vpnd to apply".into());
        }
        let admission = crate::convert::admission(&fresh.daemon);
        if admission != crate::convert::admission(&st.config.daemon) {
            lines.push(format!(
                "daemon: cookie_threshold {}, cookie_threshold_ip {}, block_threshold {}, half_open_max {}",
                admission.cookie_threshold,
                admission.cookie_threshold_ip,
                admission.block_threshold,
                admission.half_open_max
            ));
        }
        lines.push(format!("{unchanged} connection(s) unchanged"));
        if dry_run {
            return Response::Ok {
                message: format!(
                    "reload plan (dry run, nothing changed):\n{}",
                    lines.join("\n")
                ),
            };
        }
        self.daemon.set_admission(admission);
        let mut failed = Vec::new();
        for (name, step) in plan {
            let r = match step {
                Step::Add(s) => self.api(Api::Add(s)).await,
                Step::Replace(s) => self.api(Api::Replace(s)).await,
                Step::Update(s) => self.api(Api::Set(s)).await,
                Step::Delete(n) => {
                    st.overrides.remove(&n);
                    self.api(Api::Delete(n)).await
                }
            };
            if let Response::Error { message } = r {
                failed.push(format!("{name}: {message}"));
            }
        }
        st.config = fresh;
        if failed.is_empty() {
            Response::Ok {
                message: format!("reloaded:\n{}", lines.join("\n")),
            }
        } else {
            Response::Error {
                message: format!(
                    "reload applied with errors:\n{}\n{}",
                    lines.join("\n"),
                    failed.join("\n")
                ),
            }
        }
    }

    /// Apply new and changed connections from the main config or one file;
    /// nothing is applied unless everything validates.
    async fn load(&self, file: Option<PathBuf>, peer: &Peer) -> Response {
        let mut guard = self.state.lock().await;
        let current = &mut guard.config;
        let (incoming, whole) = match &file {
            None => match off_runtime({
                let main = current.main_file.clone();
                move || config::load(&main)
            })
            .await
            {
                Ok(c) => (c.connections.clone(), Some(c)),
                Err(e) => {
                    return Response::Error {
                        message: tell(peer, e).await,
                    }
                }
            },
            Some(f) => match off_runtime({
                let (current, f, peer) = (current.clone(), f.clone(), peer.clone());
                move || load_file(&current, &f, &peer)
            })
            .await
            {
                Ok(conns) => (conns, None),
                Err(LoadFileError::Refused(message)) => return Response::Error { message },
                Err(LoadFileError::Config(e)) => {
                    return Response::Error {
                        message: tell(peer, e).await,
                    }
                }
            },
        };
        let secrets = whole
            .as_ref()
            .map(|c| c.secrets.clone())
            .unwrap_or_else(|| current.secrets.clone());
        let jitter = current.scheduler.rekey_jitter_pct;
        // Validate every conversion before changing anything.
        let mut plan = Vec::new();
        for c in &incoming {
            let old = current.connections.iter().find(|o| o.name == c.name);
            if old == Some(c) {
                continue;
            }
            match to_spec(c, &secrets, jitter) {
                Ok(spec) => plan.push((c.clone(), old.is_some(), spec)),
                Err(e) => {
                    return Response::Error {
                        message: tell_spec(peer, c, e).await,
                    }
                }
            }
        }
        let mut lines = Vec::new();
        let mut failed = false;
        for (c, existed, spec) in plan {
            let r = match (spec, existed) {
                (Some(spec), true) => self.api(Api::Replace(Box::new(spec))).await,
                (Some(spec), false) => self.api(Api::Add(Box::new(spec))).await,
                (None, true) => self.api(Api::Delete(c.name.clone())).await,
                (None, false) => Response::Ok {
                    message: format!("connection '{}' loaded (auto = ignore)", c.name),
                },
            };
            match r {
                Response::Ok { message } => lines.push(message),
                Response::Error { message } => {
                    failed = true;
                    lines.push(message);
                }
                _ => {}
            }
            match current.connections.iter_mut().find(|o| o.name == c.name) {
                Some(o) => *o = c,
                None => current.connections.push(c),
            }
        }
        if let Some(w) = whole {
            current.secrets = w.secrets;
        }
        if lines.is_empty() {
            lines.push("no changes".into());
        }
        let message = lines.join("\n");
        if failed {
            Response::Error { message }
        } else {
            Response::Ok { message }
        }
    }
}

/// Why `load --file` loaded nothing.
enum LoadFileError {
    /// The file is not one this client may have loaded.
    Refused(String),
    Config(ConfigErrors),
}

/// Read `load --file`'s file: as asked for a trusted client, only a file
/// root vouched for otherwise ([`peer::open_vouched`]). Blocking.
fn load_file(
    current: &Config,
    file: &std::path::Path,
    peer: &Peer,
) -> Result<Vec<ConnectionConfig>, LoadFileError> {
    if peer.trusted {
        return config::load_extra(current, file).map_err(LoadFileError::Config);
    }
    let (real, text) = peer::open_vouched(file, peer).map_err(LoadFileError::Refused)?;
    config::load_extra_text(current, &real, &text).map_err(LoadFileError::Config)
}

/// Configuration errors as `peer` may be told them: whole for the files
/// they can read, without values for the others.
async fn tell(peer: &Peer, errors: ConfigErrors) -> String {
    if peer.trusted {
        return errors.to_string();
    }
    let peer = peer.clone();
    off_runtime(move || errors.render(|f| peer.may_read(f))).await
}

/// A connection that validated but cannot be used (`to_spec`), as `peer`
/// may be told it: the reason may quote its identities.
async fn tell_spec(peer: &Peer, c: &ConnectionConfig, message: String) -> String {
    if peer.trusted {
        return message;
    }
    let (p, file) = (peer.clone(), c.file.clone());
    if off_runtime(move || p.may_read(&file)).await {
        return message;
    }
    format!(
        "{}:{}: connections.{}: cannot be used ({})",
        c.file.display(),
        c.line,
        c.name,
        config::REDACTED
    )
}

/// Reading configuration touches the filesystem, so it runs on the blocking
/// pool, never on the async runtime that serves IKE and the control socket.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("configuration reader did not complete: {e}"),
    }
}

async fn write(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut s = serde_json::to_string(r).map_err(std::io::Error::other)?;
    s.push('\n');
    w.write_all(s.as_bytes()).await
}
