//! The control socket: a Unix stream socket (mode 0600, or 0660 with
//! `[daemon] socket_group`), one task per client, one JSON request per line.
//! It keeps the configuration the daemon was last given, so `load` can tell
//! new and changed connections from unchanged ones.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actors::{Api, ApiReply, DaemonHandle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::config::{self, Auto, Config};
use crate::convert::to_spec;
use crate::protocol::{Request, Response};

pub struct Server {
    daemon: Arc<DaemonHandle>,
    config: Mutex<Config>,
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
    let listener =
        UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    let mode = match group {
        Some(g) => {
            let gid = group_id(g)
                .ok_or_else(|| format!("[daemon] socket_group: no group named '{g}'"))?;
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok(listener)
}

impl Server {
    pub fn new(daemon: Arc<DaemonHandle>, config: Config) -> Arc<Server> {
        Arc::new(Server {
            daemon,
            config: Mutex::new(config),
        })
    }

    /// Accept clients until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let me = self.clone();
                    tokio::spawn(async move {
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
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        while let Some(line) = lines.next_line().await? {
            let req: Request = match serde_json::from_str(&line) {
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
            let resp = self.handle(req).await;
            write(&mut w, &resp).await?;
        }
        Ok(())
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
        self.config
            .lock()
            .await
            .connections
            .iter()
            .any(|c| c.name == conn && c.auto == Auto::Ignore)
    }

    pub async fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status { conn } => self.api(Api::Status(conn)).await,
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
            Request::Load { file } => self.load(file).await,
            Request::Monitor => Response::Error {
                message: "monitor is a stream".into(),
            },
        }
    }

    /// Apply new and changed connections from the main config or one file;
    /// nothing is applied unless everything validates.
    async fn load(&self, file: Option<PathBuf>) -> Response {
        let mut current = self.config.lock().await;
        let (incoming, whole) = match &file {
            None => match config::load(&current.main_file) {
                Ok(c) => (c.connections.clone(), Some(c)),
                Err(e) => {
                    return Response::Error {
                        message: e.to_string(),
                    }
                }
            },
            Some(f) => match config::load_extra(&current, f) {
                Ok(conns) => (conns, None),
                Err(e) => {
                    return Response::Error {
                        message: e.to_string(),
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
                Err(e) => return Response::Error { message: e },
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

async fn write(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut s = serde_json::to_string(r).map_err(std::io::Error::other)?;
    s.push('\n');
    w.write_all(s.as_bytes()).await
}
