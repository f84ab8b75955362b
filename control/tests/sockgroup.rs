//! What a `socket_group` member may do, against a real socket (mode 0660,
//! group `nogroup`) with the daemon in-process on an in-memory network and a
//! responding peer daemon beside it. The member is `vpnctl` run as uid 65534
//! through `setpriv`; root is `vpnctl` run as is. These tests run as root.
//!
//! - a member may use the verbs (`status`, `list-certs`, `up`);
//! - `load --file` from a member takes only a file owned by root and not
//!   writable by group or others, in directories likewise;
//! - an error from a file the member cannot read leaves the value out; root
//!   and a member who can read the file (here through a supplementary group)
//!   get it whole;
//! - a connection that used up its restarts says so in `status` (text and
//!   JSON) until `up`.

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use actors::memnet::MemoryNet;
use actors::socket::Sockets;
use actors::{DaemonHandle, DaemonSettings};
use control::server::{self, Server};
use kernel::none::NoneDataplane;

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.2";
/// `nobody` and `nogroup` on Debian.
const MEMBER: u32 = 65534;
const GROUP: &str = "nogroup";
const GROUP_ID: u32 = 65534;

fn assert_root() {
    let uid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    assert_eq!(
        uid.ok(),
        Some(0),
        "these tests run as root (setpriv, chown)"
    );
}

/// Is every directory from `d` up root's and not writable by group or
/// others (so that the vouched-for rule can hold below it)?
fn vouched_dir(d: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    d.ancestors()
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
}

/// A fresh directory whose every ancestor is root's and not writable by
/// group or others: under cargo's temporary directory when that qualifies,
/// else under /run.
fn scratch(tag: &str) -> PathBuf {
    assert_root();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let base = if vouched_dir(tmp) {
        tmp
    } else {
        Path::new("/run")
    };
    let d = base.join(format!("vpnd-sockgroup-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(
        vouched_dir(&d),
        "{} must be root's and not group/other-writable all the way up",
        d.display()
    );
    d
}

fn write(path: &Path, text: &str, mode: u32, owner: (u32, u32)) {
    std::fs::write(path, text).expect("write");
    chown(path, Some(owner.0), Some(owner.1)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

const ROOT: (u32, u32) = (0, 0);

fn conn(name: &str, me: &str, peer: &str, lid: &str, rid: &str, auto: &str) -> String {
    let (lts, rts) = if me == B {
        ("198.19.2.0/24", "198.19.1.0/24")
    } else {
        ("198.19.1.0/24", "198.19.2.0/24")
    };
    format!(
        r#"[connections.{name}]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
local_id = "{lid}"
remote_id = "{rid}"
auto = "{auto}"
[connections.{name}.children.net]
local_ts = ["{lts}"]
remote_ts = ["{rts}"]
"#
    )
}

async fn daemon(
    net: &Arc<MemoryNet>,
    me: &str,
    config: &control::config::Config,
    impair: bool,
) -> Arc<DaemonHandle> {
    let ip = me.parse().expect("ip");
    let settings = DaemonSettings {
        listen: vec![ip],
        dataplane: Arc::new(NoneDataplane::new()),
        scheduler: Default::default(),
        impair,
        admission: Default::default(),
        state_dir: None,
    };
    let specs = control::convert::specs(config).expect("specs");
    Arc::new(
        DaemonHandle::start_on(settings, specs, Sockets::memory(net.clone(), vec![ip]))
            .await
            .expect("daemon"),
    )
}

/// Daemon A behind a control socket with `socket_group = "nogroup"` (its
/// connection `home` goes to B, which waits for it), in `dir`.
async fn serve(dir: &Path) -> PathBuf {
    serve_with(dir, false).await
}

/// As [`serve`], with A as `vpnd --impair` when `impair`.
async fn serve_with(dir: &Path, impair: bool) -> PathBuf {
    let net = MemoryNet::new();
    let bdir = dir.join("b");
    std::fs::create_dir_all(&bdir).unwrap();
    for (d, psk_mode) in [(dir, 0o600), (bdir.as_path(), 0o600)] {
        write(
            &d.join("secrets.toml"),
            "[[psk]]\nids = [\"a.test\", \"b.test\"]\nsecret = \"sockgroup-psk\"\n",
            psk_mode,
            ROOT,
        );
    }
    let main = dir.join("vpnd.toml");
    write(
        &main,
        &format!(
            "[daemon]\ndataplane = \"none\"\nsocket_group = \"{GROUP}\"\n\
             secrets = [\"secrets.toml\"]\n\n{}",
            conn("home", A, B, "a.test", "b.test", "add")
        ),
        0o644,
        ROOT,
    );
    let bmain = bdir.join("vpnd.toml");
    write(
        &bmain,
        &format!(
            "[daemon]\ndataplane = \"none\"\nsecrets = [\"secrets.toml\"]\n\n{}",
            conn("home", B, A, "b.test", "a.test", "add")
        ),
        0o644,
        ROOT,
    );
    let bconfig = control::config::load(&bmain).expect("b's config");
    let b = daemon(&net, B, &bconfig, false).await;
    std::mem::forget(b); // B lives as long as the test's runtime.
    let config = control::config::load(&main).expect("a's config");
    let a = daemon(&net, A, &config, impair).await;
    let path = dir.join("vpnd.sock");
    let listener = server::bind(&path, Some(GROUP)).expect("bind");
    tokio::spawn(Server::new(a, config).serve(listener));
    path
}

struct Out {
    ok: bool,
    text: String,
}

/// Run `vpnctl --socket SOCK ARGS` (as root when `setpriv` is empty, else
/// under `setpriv` with those options), off the runtime.
async fn vpnctl(sock: &Path, setpriv: &[&str], args: &[&str]) -> Out {
    let mut cmd = if setpriv.is_empty() {
        Command::new(env!("CARGO_BIN_EXE_vpnctl"))
    } else {
        let mut c = Command::new("setpriv");
        c.args(setpriv).arg(env!("CARGO_BIN_EXE_vpnctl"));
        c
    };
    cmd.arg("--socket").arg(sock).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run vpnctl"))
        .await
        .unwrap();
    Out {
        ok: out.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A member: uid 65534, gid nogroup, no other groups.
const AS_MEMBER: &[&str] = &["--reuid=65534", "--regid=65534", "--clear-groups"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_may_run_status_and_up() {
    let dir = scratch("verbs");
    let sock = serve(&dir).await;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // Someone outside the group cannot even connect.
    let other = vpnctl(
        &sock,
        &["--reuid=65534", "--regid=100", "--clear-groups"],
        &["status"],
    )
    .await;
    assert!(!other.ok, "{}", other.text);
    assert!(other.text.contains("not reachable"), "{}", other.text);
    let s = vpnctl(&sock, AS_MEMBER, &["status"]).await;
    assert!(s.ok, "{}", s.text);
    assert!(s.text.contains("home: auto=add"), "{}", s.text);
    // list-certs shows public facts only: a member may list them.
    let l = vpnctl(&sock, AS_MEMBER, &["list-certs", "--json"]).await;
    assert!(l.ok, "{}", l.text);
    let v: serde_json::Value = serde_json::from_str(&l.text).expect("json");
    assert_eq!(v, serde_json::json!({"certs": [], "crls": []}));
    let up = vpnctl(&sock, AS_MEMBER, &["up", "home"]).await;
    assert!(up.ok, "{}", up.text);
    let s = vpnctl(&sock, AS_MEMBER, &["status", "home", "--json"]).await;
    assert!(s.ok, "{}", s.text);
    let v: serde_json::Value = serde_json::from_str(&s.text).expect("json");
    let ike = &v["connections"][0]["ike_sas"][0];
    assert_eq!(ike["state"], "established", "{}", s.text);
    assert_eq!(ike["child_sas"][0]["state"], "installed", "{}", s.text);
    // `set` keeps the floors the file has.
    let r = vpnctl(&sock, AS_MEMBER, &["set", "home", "dpd_delay=1ms"]).await;
    assert!(!r.ok, "{}", r.text);
    assert!(
        r.text.contains(
            "connection 'home': dpd_delay: 1ms is below the minimum of 1s \
             (0 turns dead peer detection off)"
        ),
        "{}",
        r.text
    );
    let r = vpnctl(&sock, AS_MEMBER, &["set", "home", "dpd_delay=2s"]).await;
    assert!(r.ok, "{}", r.text);
    let s = vpnctl(&sock, AS_MEMBER, &["status", "home", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&s.text).expect("json");
    assert_eq!(v["connections"][0]["dpd_delay_ms"], 2000, "{}", s.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_file_from_a_member_takes_only_files_root_vouched_for() {
    let dir = scratch("loadfile");
    let sock = serve(&dir).await;
    let extra = |name: &str| conn(name, A, "198.18.0.9", "a.test", "z.test", "add");

    // The member's own file: refused, and nothing is loaded.
    let own = dir.join("own.toml");
    write(&own, &extra("mine"), 0o644, (MEMBER, GROUP_ID));
    let r = vpnctl(&sock, AS_MEMBER, &["load", "--file", own.to_str().unwrap()]).await;
    assert!(!r.ok, "{}", r.text);
    assert!(
        r.text.contains(&format!(
            "load --file: {} is owned by uid 65534; a socket_group member may load only \
             files owned by root and not writable by group or others",
            own.display()
        )),
        "{}",
        r.text
    );
    // Nothing was loaded.
    let s = vpnctl(&sock, AS_MEMBER, &["status"]).await;
    assert!(!s.text.contains("mine:"), "{}", s.text);

    // Root's, 0666: refused.
    let open = dir.join("open.toml");
    write(&open, &extra("open"), 0o666, ROOT);
    let r = vpnctl(
        &sock,
        AS_MEMBER,
        &["load", "--file", open.to_str().unwrap()],
    )
    .await;
    assert!(!r.ok, "{}", r.text);
    assert!(
        r.text
            .contains("is writable by group and others (mode 0666); a socket_group member"),
        "{}",
        r.text
    );

    // Root's, 0644, but in a directory the group may write: refused.
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    chown(&shared, Some(0), Some(GROUP_ID)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
    let swappable = shared.join("x.toml");
    write(&swappable, &extra("swappable"), 0o644, ROOT);
    let r = vpnctl(
        &sock,
        AS_MEMBER,
        &["load", "--file", swappable.to_str().unwrap()],
    )
    .await;
    assert!(!r.ok, "{}", r.text);
    assert!(
        r.text.contains(&format!(
            "its directory {} is writable by group (mode 0775)",
            shared.display()
        )),
        "{}",
        r.text
    );

    // A member's link to a root file that is refused is refused as that file.
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&open, &link).unwrap();
    let r = vpnctl(
        &sock,
        AS_MEMBER,
        &["load", "--file", link.to_str().unwrap()],
    )
    .await;
    assert!(!r.ok && r.text.contains("mode 0666"), "{}", r.text);

    // Out of the member's reach (a 0700 directory), or missing: one answer.
    let private = dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = private.join("x.toml");
    write(&hidden, &extra("hidden"), 0o644, ROOT);
    for p in [hidden.clone(), private.join("missing.toml")] {
        let r = vpnctl(&sock, AS_MEMBER, &["load", "--file", p.to_str().unwrap()]).await;
        assert!(!r.ok, "{}", r.text);
        assert!(
            r.text.contains(&format!(
                "load --file: {}: no such file, or not reachable by you",
                p.display()
            )),
            "{}",
            r.text
        );
    }

    // Root's, 0644, in root's directories: loaded.
    let good = dir.join("good.toml");
    write(&good, &extra("vouched"), 0o644, ROOT);
    let r = vpnctl(
        &sock,
        AS_MEMBER,
        &["load", "--file", good.to_str().unwrap()],
    )
    .await;
    assert!(r.ok, "{}", r.text);
    let s = vpnctl(&sock, AS_MEMBER, &["status"]).await;
    assert!(s.text.contains("vouched: auto=add"), "{}", s.text);
    assert!(!s.text.contains("swappable") && !s.text.contains("open:"));

    // Root keeps today's rule: any regular file.
    let r = vpnctl(&sock, &[], &["load", "--file", own.to_str().unwrap()]).await;
    assert!(r.ok, "{}", r.text);
    let s = vpnctl(&sock, &[], &["status"]).await;
    assert!(s.text.contains("mine: auto=add"), "{}", s.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_from_a_file_the_member_cannot_read_leaves_the_value_out() {
    let dir = scratch("redact");
    let sock = serve(&dir).await;
    let bad = dir.join("bad.toml");
    let text = conn("x", A, "198.18.0.9", "a.test", "z.test", "SECRET-VALUE-123");
    write(&bad, &text, 0o600, ROOT);
    let arg = bad.to_str().unwrap();

    let r = vpnctl(&sock, AS_MEMBER, &["load", "--file", arg]).await;
    assert!(!r.ok, "{}", r.text);
    assert!(
        r.text.contains(&format!(
            "{}:6: connections.x.auto: invalid value (redacted: file not readable by you)",
            bad.display()
        )),
        "{}",
        r.text
    );
    assert!(!r.text.contains("SECRET-VALUE-123"), "{}", r.text);

    let r = vpnctl(&sock, &[], &["load", "--file", arg]).await;
    assert!(!r.ok, "{}", r.text);
    assert!(
        r.text
            .contains("connections.x.auto: invalid value 'SECRET-VALUE-123'"),
        "{}",
        r.text
    );

    // Readable through a supplementary group: told whole. (The primary
    // group is not nogroup; nogroup comes from /proc's Groups: line.)
    chown(&bad, Some(0), Some(GROUP_ID)).unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = vpnctl(
        &sock,
        &["--reuid=65534", "--regid=100", "--groups=65534"],
        &["load", "--file", arg],
    )
    .await;
    assert!(!r.ok, "{}", r.text);
    assert!(r.text.contains("'SECRET-VALUE-123'"), "{}", r.text);

    // The same through `reload`, from an included file the member cannot read.
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let main = dir.join("vpnd.toml");
    let mut config = std::fs::read_to_string(&main).unwrap();
    config = config.replace(
        "secrets = [\"secrets.toml\"]",
        "secrets = [\"secrets.toml\"]\ninclude = [\"bad.toml\"]",
    );
    write(&main, &config, 0o644, ROOT);
    for args in [&["reload"][..], &["reload", "--dry-run"], &["load"]] {
        let r = vpnctl(&sock, AS_MEMBER, args).await;
        assert!(!r.ok, "{args:?}: {}", r.text);
        assert!(
            r.text
                .contains("connections.x.auto: invalid value (redacted"),
            "{args:?}: {}",
            r.text
        );
        assert!(!r.text.contains("SECRET-VALUE-123"), "{args:?}: {}", r.text);
        let r = vpnctl(&sock, &[], args).await;
        assert!(
            r.text.contains("'SECRET-VALUE-123'"),
            "{args:?}: {}",
            r.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rereadsecrets_errors_quote_no_secret_to_anyone() {
    let dir = scratch("secrets");
    let sock = serve(&dir).await;
    write(
        &dir.join("secrets.toml"),
        "[[psk]]\nids = [\"a.test\", \"not-an-id @ SECRETID\"]\nsecret = \"0xSECRETzz\"\n",
        0o600,
        ROOT,
    );
    let r = vpnctl(&sock, AS_MEMBER, &["rereadsecrets"]).await;
    assert!(!r.ok, "{}", r.text);
    assert!(
        r.text.contains("(redacted: file not readable by you)"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("SECRET"), "{}", r.text);
    let r = vpnctl(&sock, &[], &["rereadsecrets"]).await;
    assert!(!r.ok, "{}", r.text);
    assert!(!r.text.contains("0xSECRETzz"), "{}", r.text);
}

/// `home`'s status as JSON, asked as a member.
async fn home(sock: &Path) -> serde_json::Value {
    let s = vpnctl(sock, AS_MEMBER, &["status", "home", "--json"]).await;
    assert!(s.ok, "{}", s.text);
    let v: serde_json::Value = serde_json::from_str(&s.text).expect("json");
    v["connections"][0].clone()
}

async fn installed(sock: &Path) -> bool {
    home(sock).await["ike_sas"][0]["child_sas"][0]["state"] == "installed"
}

/// The id of home's IKE SA, once its CHILD SA is installed.
async fn installed_ike(sock: &Path) -> Option<u64> {
    let h = home(sock).await;
    let ike = &h["ike_sas"][0];
    (ike["child_sas"][0]["state"] == "installed").then(|| ike["id"].as_u64())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_when_a_connection_used_up_its_restarts() {
    let dir = scratch("gaveup");
    let sock = serve_with(&dir, true).await;
    let up = vpnctl(&sock, AS_MEMBER, &["up", "home"]).await;
    assert!(up.ok, "{}", up.text);
    assert_eq!(home(&sock).await["gave_up"], serde_json::Value::Null);
    // Five restarts in the window are allowed; the sixth failure gives up.
    // Each panic is waited out by its effect: status reads what the SAs
    // published without asking them, so the panicking SA (which may take a
    // while unwinding) is seen until it is gone.
    for i in 0..6 {
        let before = installed_ike(&sock).await;
        assert!(before.is_some(), "panic {i}: no installed SA to panic");
        let r = vpnctl(&sock, AS_MEMBER, &["impair", "home", "panic"]).await;
        assert!(r.ok, "panic {i}: {}", r.text);
        if i == 5 {
            break;
        }
        let t = std::time::Instant::now();
        loop {
            let now = installed_ike(&sock).await;
            if now.is_some() && now != before {
                break;
            }
            assert!(t.elapsed().as_secs() < 10, "restart {i} took too long");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let said = "gave up after 5 restarts in the window; run 'vpnctl up home' to retry";
    let t = std::time::Instant::now();
    while home(&sock).await["gave_up"] != said && t.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let c = home(&sock).await;
    assert_eq!(c["gave_up"], said, "{c}");
    assert_eq!(c["ike_sas"], serde_json::json!([]), "{c}");
    let s = vpnctl(&sock, AS_MEMBER, &["status", "home"]).await;
    assert!(s.text.contains("home: auto=add, gave up\n"), "{}", s.text);
    assert!(
        s.text.contains(&format!("  gave up: {said}\n")),
        "{}",
        s.text
    );
    // `up` brings it back and clears it.
    let up = vpnctl(&sock, AS_MEMBER, &["up", "home"]).await;
    assert!(up.ok, "{}", up.text);
    let c = home(&sock).await;
    assert_eq!(c["gave_up"], serde_json::Value::Null, "{c}");
    assert!(installed(&sock).await);
}
