//! The control socket's limits, against a real `Server` on a real Unix
//! socket, with the daemon behind it running in-process on an in-memory
//! network (no root, no namespaces): long request lines, idle clients, the
//! client cap, and the socket's mode from the moment it is reachable.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::memnet::MemoryNet;
use actors::socket::Sockets;
use actors::{DaemonHandle, DaemonSettings};
use control::server::{self, Limits, Server};
use kernel::none::NoneDataplane;

const LIMITS: Limits = Limits {
    max_line: 1024,
    idle: Duration::from_millis(400),
    max_clients: 2,
};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vpnd-limits-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A server with `LIMITS` on `dir/vpnd.sock`, a daemon with no connections.
async fn serve(dir: &Path) -> PathBuf {
    let conf = dir.join("vpnd.toml");
    std::fs::write(&conf, "[daemon]\ndataplane = \"none\"\n").expect("config");
    let config = control::config::load(&conf).expect("config loads");
    let ip = "198.18.0.1".parse().expect("ip");
    let settings = DaemonSettings {
        listen: vec![ip],
        dataplane: Arc::new(NoneDataplane::new()),
        scheduler: Default::default(),
        impair: false,
        admission: Default::default(),
        state_dir: None,
    };
    let sockets = Sockets::memory(MemoryNet::new(), vec![ip]);
    let daemon = DaemonHandle::start_on(settings, Vec::new(), sockets)
        .await
        .expect("daemon");
    let path = dir.join("vpnd.sock");
    let listener = server::bind(&path, None).expect("bind");
    tokio::spawn(Server::with_limits(Arc::new(daemon), config, LIMITS).serve(listener));
    path
}

/// Send `line` and read one response line (blocking, off the runtime).
async fn ask(path: &Path, line: Vec<u8>) -> (String, UnixStream) {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A refused client may be closed before it has written: the
        // answer is still there to read.
        let _ = s.write_all(&line);
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut resp = String::new();
        r.read_line(&mut resp).expect("response");
        (resp, s)
    })
    .await
    .expect("client")
}

/// True once the daemon has closed `s` within the read timeout: EOF, or a
/// reset when it closed with our data still unread.
fn closed(mut s: UnixStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[tokio::test]
async fn a_request_line_over_the_limit_is_refused_and_the_client_closed() {
    let dir = scratch("line");
    let path = serve(&dir).await;
    let (resp, s) = ask(&path, b"{\"verb\":\"stats\"}\n".to_vec()).await;
    assert!(resp.contains("\"result\":\"stats\""), "{resp}");
    drop(s);
    // 64 KiB without a newline: refused at 1 KiB, nothing more is read.
    let (resp, s) = ask(&path, vec![b'x'; 64 * 1024]).await;
    assert!(resp.contains("request longer than 1024 bytes"), "{resp}");
    assert!(tokio::task::spawn_blocking(move || closed(s))
        .await
        .unwrap());
    // The server goes on serving.
    let (resp, _s) = ask(&path, b"{\"verb\":\"stats\"}\n".to_vec()).await;
    assert!(resp.contains("\"result\":\"stats\""), "{resp}");
}

#[tokio::test]
async fn an_idle_client_is_disconnected() {
    let dir = scratch("idle");
    let path = serve(&dir).await;
    let t = Instant::now();
    let (resp, s) = ask(&path, Vec::new()).await;
    let took = t.elapsed();
    assert!(resp.contains("no request for"), "{resp}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(tokio::task::spawn_blocking(move || closed(s))
        .await
        .unwrap());
}

#[tokio::test]
async fn clients_past_the_cap_are_told_so_and_a_freed_slot_serves_again() {
    let dir = scratch("cap");
    let path = serve(&dir).await;
    let p = path.clone();
    let held = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|_| UnixStream::connect(&p).expect("connect"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (resp, s) = ask(&path, b"{\"verb\":\"stats\"}\n".to_vec()).await;
    assert!(resp.contains("too many control clients (2)"), "{resp}");
    assert!(tokio::task::spawn_blocking(move || closed(s))
        .await
        .unwrap());
    drop(held);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (resp, _s) = ask(&path, b"{\"verb\":\"stats\"}\n".to_vec()).await;
    assert!(resp.contains("\"result\":\"stats\""), "{resp}");
}

#[tokio::test]
async fn the_socket_is_private_from_the_start_and_leaves_no_staging_behind() {
    let dir = scratch("mode");
    let path = serve(&dir).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| n == "vpnd.sock" || n == "vpnd.toml"),
        "{left:?}"
    );
}
