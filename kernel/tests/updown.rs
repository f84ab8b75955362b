//! The updown runner: the PLUTO_* environment, one run per selector pair,
//! timeouts, failures and per-connection ordering.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ike::ts::parse_ts;
use ike::wire::TrafficSelector;
use kernel::updown::{environment, pairs, verb, UpdownEvent, UpdownRunner, BASE_PATH};

fn ts(s: &str) -> TrafficSelector {
    parse_ts(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn event(up: bool, local: &[&str], remote: &[&str]) -> UpdownEvent {
    UpdownEvent {
        up,
        connection: "net".into(),
        reqid: 7,
        unique_id: 12,
        me: ip("198.18.0.1"),
        my_id: "a.test".into(),
        peer: ip("198.18.0.2"),
        peer_id: "b.test".into(),
        udp_encap_port: None,
        local_ts: local.iter().map(|s| ts(s)).collect(),
        remote_ts: remote.iter().map(|s| ts(s)).collect(),
        mark_in: None,
        mark_out: None,
        if_id_in: None,
        if_id_out: None,
    }
}

fn env_of(ev: &UpdownEvent) -> Vec<(String, String)> {
    environment(ev, &ev.local_ts[0], &ev.remote_ts[0])
}

fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    let mut hits = env.iter().filter(|(k, _)| k == key);
    let hit = hits.next().map(|(_, v)| v.as_str());
    assert!(hits.next().is_none(), "{key} exported twice");
    hit
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ipv4_up_client_environment() {
    let ev = event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]);
    assert_eq!(verb(&ev, &ev.local_ts[0]), "up-client");
    assert_eq!(
        env_of(&ev),
        owned(&[
            ("PLUTO_VERSION", "1.1"),
            ("PLUTO_VERB", "up-client"),
            ("PLUTO_CONNECTION", "net"),
            ("PLUTO_INTERFACE", "unknown"),
            ("PLUTO_REQID", "7"),
            ("PLUTO_PROTO", "esp"),
            ("PLUTO_UNIQUEID", "12"),
            ("PLUTO_ME", "198.18.0.1"),
            ("PLUTO_MY_ID", "a.test"),
            ("PLUTO_MY_CLIENT", "198.19.1.0/24"),
            ("PLUTO_MY_PORT", "0"),
            ("PLUTO_MY_PROTOCOL", "0"),
            ("PLUTO_PEER", "198.18.0.2"),
            ("PLUTO_PEER_ID", "b.test"),
            ("PLUTO_PEER_CLIENT", "198.19.2.0/24"),
            ("PLUTO_PEER_PORT", "0"),
            ("PLUTO_PEER_PROTOCOL", "0"),
        ])
    );
}

#[test]
fn ipv4_up_host_environment() {
    let ev = event(true, &["198.18.0.1/32"], &["198.18.0.2/32"]);
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_VERB"), Some("up-host"));
    assert_eq!(get(&env, "PLUTO_MY_CLIENT"), Some("198.18.0.1/32"));
    assert_eq!(get(&env, "PLUTO_PEER_CLIENT"), Some("198.18.0.2/32"));
    // A single address that is not ours is a client.
    let ev = event(false, &["198.18.0.9/32"], &["198.18.0.2/32"]);
    assert_eq!(get(&env_of(&ev), "PLUTO_VERB"), Some("down-client"));
    // Our address inside a subnet is still a client.
    let ev = event(true, &["198.18.0.0/24"], &["198.18.0.2/32"]);
    assert_eq!(get(&env_of(&ev), "PLUTO_VERB"), Some("up-client"));
}

#[test]
fn ipv6_client_and_host_environment() {
    let mut ev = event(true, &["2001:db8:1::/48"], &["2001:db8:2::/48"]);
    ev.me = ip("2001:db8::1");
    ev.peer = ip("2001:db8::2");
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_VERB"), Some("up-client-v6"));
    assert_eq!(get(&env, "PLUTO_ME"), Some("2001:db8::1"));
    assert_eq!(get(&env, "PLUTO_PEER"), Some("2001:db8::2"));
    assert_eq!(get(&env, "PLUTO_MY_CLIENT"), Some("2001:db8:1::/48"));
    assert_eq!(get(&env, "PLUTO_PEER_CLIENT"), Some("2001:db8:2::/48"));

    let mut ev = event(false, &["2001:db8::1/128"], &["2001:db8::2/128"]);
    ev.me = ip("2001:db8::1");
    ev.peer = ip("2001:db8::2");
    let env = env_of(&ev);
    assert_eq!(verb(&ev, &ev.local_ts[0]), "down-host-v6");
    assert_eq!(get(&env, "PLUTO_VERB"), Some("down-host-v6"));
    assert_eq!(get(&env, "PLUTO_MY_CLIENT"), Some("2001:db8::1/128"));
    assert_eq!(get(&env, "PLUTO_PEER_CLIENT"), Some("2001:db8::2/128"));

    // IPv6 selectors over an IPv4 IKE SA: the selector's family decides.
    let ev = event(true, &["2001:db8:1::/48"], &["2001:db8:2::/48"]);
    assert_eq!(get(&env_of(&ev), "PLUTO_VERB"), Some("up-client-v6"));
}

#[test]
fn ports_and_protocols() {
    let ev = event(true, &["10.0.0.0/8[tcp/443]"], &["10.1.0.0/16[tcp]"]);
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_MY_PROTOCOL"), Some("6"));
    assert_eq!(get(&env, "PLUTO_MY_PORT"), Some("443"));
    assert_eq!(get(&env, "PLUTO_PEER_PROTOCOL"), Some("6"));
    assert_eq!(get(&env, "PLUTO_PEER_PORT"), Some("0"));
    assert_eq!(get(&env, "PLUTO_MY_CLIENT"), Some("10.0.0.0/8"));

    // A port range: "from:to", as strongSwan writes it.
    let ev = event(
        true,
        &["10.0.0.0/8[udp/1000-2000]"],
        &["10.1.0.0/16[udp/53]"],
    );
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_MY_PROTOCOL"), Some("17"));
    assert_eq!(get(&env, "PLUTO_MY_PORT"), Some("1000:2000"));
    assert_eq!(get(&env, "PLUTO_PEER_PORT"), Some("53"));

    // ICMP: type on our side, code on the peer's (echo request = 8/0).
    let ev = event(true, &["10.0.0.0/8[icmp/2048]"], &["10.1.0.0/16[icmp]"]);
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_MY_PROTOCOL"), Some("1"));
    assert_eq!(get(&env, "PLUTO_MY_PORT"), Some("8"));
    assert_eq!(get(&env, "PLUTO_PEER_PORT"), Some("0"));
}

#[test]
fn non_prefix_ranges_are_approximated_as_strongswan_does() {
    let mut ev = event(true, &["10.0.0.0/8"], &["0.0.0.0/0"]);
    ev.local_ts[0].start_addr = ip("10.0.0.5");
    ev.local_ts[0].end_addr = ip("10.0.0.20");
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_MY_CLIENT"), Some("10.0.0.0/27"));
    assert_eq!(get(&env, "PLUTO_PEER_CLIENT"), Some("0.0.0.0/0"));
    assert_eq!(
        kernel::updown::client_subnet(&ev.local_ts[0]),
        ("10.0.0.0/27".to_string(), false)
    );
    assert_eq!(
        kernel::updown::client_subnet(&ts("::/0")),
        ("::/0".to_string(), true)
    );
}

#[test]
fn udp_encapsulation_only_when_set() {
    let mut ev = event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]);
    assert_eq!(get(&env_of(&ev), "PLUTO_UDP_ENC"), None);
    ev.udp_encap_port = Some(4500);
    assert_eq!(get(&env_of(&ev), "PLUTO_UDP_ENC"), Some("4500"));
}

#[test]
fn marks_and_interface_ids_only_when_set() {
    let mut ev = event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]);
    let env = env_of(&ev);
    for key in [
        "PLUTO_MARK_IN",
        "PLUTO_MARK_OUT",
        "PLUTO_IF_ID_IN",
        "PLUTO_IF_ID_OUT",
    ] {
        assert_eq!(get(&env, key), None, "{key}");
    }
    ev.mark_in = Some(42);
    ev.mark_out = Some(43);
    ev.if_id_in = Some(5);
    ev.if_id_out = Some(6);
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_MARK_IN"), Some("42/0xffffffff"));
    assert_eq!(get(&env, "PLUTO_MARK_OUT"), Some("43/0xffffffff"));
    assert_eq!(get(&env, "PLUTO_IF_ID_IN"), Some("5"));
    assert_eq!(get(&env, "PLUTO_IF_ID_OUT"), Some("6"));
    // Zero means "no mark" / "no interface", as in strongSwan.
    ev.mark_in = Some(0);
    ev.if_id_out = Some(0);
    let env = env_of(&ev);
    assert_eq!(get(&env, "PLUTO_MARK_IN"), None);
    assert_eq!(get(&env, "PLUTO_IF_ID_OUT"), None);
}

#[test]
fn pairs_skip_mixed_families_and_protocols() {
    let ev = event(
        true,
        &["10.0.0.0/8", "2001:db8:1::/48", "10.9.0.0/16[tcp]"],
        &["10.1.0.0/16", "2001:db8:2::/48", "10.8.0.0/16[udp]"],
    );
    let got: Vec<(String, String)> = pairs(&ev)
        .into_iter()
        .map(|(l, r)| {
            (
                ike::ts::Display(l).to_string(),
                ike::ts::Display(r).to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("10.0.0.0/8", "10.1.0.0/16"),
        ("10.0.0.0/8", "10.8.0.0/16[17]"),
        ("2001:db8:1::/48", "2001:db8:2::/48"),
        ("10.9.0.0/16[6]", "10.1.0.0/16"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// Running scripts.

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_pair_with_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = script(
        dir.path(),
        "updown",
        &format!(
            "{{ echo \"--- $PLUTO_VERB\"; env | grep ^PLUTO_ | sort; \
             echo \"PATH=$PATH\"; \
             env | grep -v -e ^PLUTO_ -e ^PATH= -e ^PWD= -e ^SHLVL= -e ^_= | sed 's/^/EXTRA /'; \
             }} >> {}\n",
            out.display()
        ),
    );
    let runner = UpdownRunner::new(Duration::from_secs(10));
    let mut ev = event(
        true,
        &["198.19.1.0/24", "198.19.3.0/24[tcp/443]"],
        &["198.19.2.0/24", "198.19.4.0/24"],
    );
    ev.my_id = "C=CH, O=strongSwan, CN=moon".into();
    ev.udp_encap_port = Some(4500);
    ev.mark_out = Some(9);
    runner.run(s, ev.clone());
    assert!(runner.idle(Duration::from_secs(10)).await);
    assert_eq!(runner.runs_total(), 4);
    assert_eq!(runner.failures_total(), 0);
    assert_eq!(runner.running(), 0);

    let mut want = String::new();
    for (l, r) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let mut env = environment(&ev, &ev.local_ts[l], &ev.remote_ts[r]);
        want.push_str(&format!("--- {}\n", verb(&ev, &ev.local_ts[l])));
        env.sort();
        for (k, v) in env {
            want.push_str(&format!("{k}={v}\n"));
        }
        want.push_str(&format!("PATH={BASE_PATH}\n"));
    }
    assert_eq!(read(&out), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_script_is_killed_with_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let s = script(
        dir.path(),
        "hang",
        &format!(
            "sleep 30 &\necho $! >> {p}\necho $$ >> {p}\necho waiting\nsleep 30\n",
            p = pids.display()
        ),
    );
    let runner = UpdownRunner::new(Duration::from_millis(300));
    let t0 = Instant::now();
    runner.run(s, event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]));
    assert!(t0.elapsed() < Duration::from_millis(50), "run() blocked");
    assert!(runner.idle(Duration::from_secs(5)).await);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "idle after {took:?}"
    );
    assert_eq!(runner.runs_total(), 1);
    assert_eq!(runner.failures_total(), 1);
    assert_eq!(runner.running(), 0);

    let pids: Vec<i32> = read(&pids)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "the script wrote both pids");
    // Orphans are reaped by init (or whatever reaps here); allow a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in pids {
        assert!(!alive(p), "process {p} survived the timeout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let runner = UpdownRunner::new(Duration::from_secs(5));
    let ev = event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]);

    let failing = script(dir.path(), "fail", "echo oops >&2\nexit 3\n");
    runner.run(failing, ev.clone());
    assert!(runner.idle(Duration::from_secs(5)).await);
    assert_eq!((runner.runs_total(), runner.failures_total()), (1, 1));

    let not_exec = dir.path().join("not-exec");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
    runner.run(not_exec, ev.clone());
    assert!(runner.idle(Duration::from_secs(5)).await);
    assert_eq!((runner.runs_total(), runner.failures_total()), (2, 2));

    runner.run(dir.path().join("missing"), ev.clone());
    assert!(runner.idle(Duration::from_secs(5)).await);
    assert_eq!((runner.runs_total(), runner.failures_total()), (3, 3));

    let ok = script(dir.path(), "ok", "echo fine\n");
    runner.run(ok, ev);
    assert!(runner.idle(Duration::from_secs(5)).await);
    assert_eq!((runner.runs_total(), runner.failures_total()), (4, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_one_connection_stay_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let up = script(
        dir.path(),
        "up",
        &format!(
            "echo \"$PLUTO_VERB start\" >> {o}\nsleep 0.2\necho \"$PLUTO_VERB end\" >> {o}\n",
            o = out.display()
        ),
    );
    let down = script(
        dir.path(),
        "down",
        &format!(
            "echo \"$PLUTO_VERB start\" >> {o}\necho \"$PLUTO_VERB end\" >> {o}\n",
            o = out.display()
        ),
    );
    let runner = UpdownRunner::new(Duration::from_secs(5));
    runner.run(up, event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]));
    runner.run(down, event(false, &["198.19.1.0/24"], &["198.19.2.0/24"]));
    assert!(runner.idle(Duration::from_secs(5)).await);
    assert_eq!(
        read(&out),
        "up-client start\nup-client end\ndown-client start\ndown-client end\n"
    );
    assert_eq!(runner.failures_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_connections_run_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "slow", "sleep 1\n");
    let runner = UpdownRunner::new(Duration::from_secs(5));
    let t0 = Instant::now();
    for name in ["a", "b", "c"] {
        let mut ev = event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]);
        ev.connection = name.into();
        runner.run(s.clone(), ev);
    }
    // All three start without waiting for one another.
    while runner.running() < 3 && t0.elapsed() < Duration::from_millis(900) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runner.running(), 3);
    assert!(!runner.idle(Duration::from_millis(10)).await);
    assert!(runner.idle(Duration::from_secs(5)).await);
    // Serialized, they would take 3 s.
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!((runner.runs_total(), runner.failures_total()), (3, 0));
}

#[test]
fn run_outside_a_runtime_counts_a_failure() {
    let runner = UpdownRunner::new(Duration::from_secs(1));
    runner.run(
        PathBuf::from("/bin/true"),
        event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]),
    );
    assert_eq!(runner.failures_total(), 1);
}

// ---------------------------------------------------------------------------
// Logging: stdout at info, stderr at warn, tagged with connection and verb.

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

struct FieldsToString<'a>(&'a mut String);

impl tracing::field::Visit for FieldsToString<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut text = String::new();
        event.record(&mut FieldsToString(&mut text));
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.trim_end().to_string()));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn output_is_logged_line_by_line() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));

    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "talk",
        "echo 'to stdout'\necho 'to stderr' >&2\nprintf 'no newline'\nexit 1\n",
    );
    let runner = UpdownRunner::new(Duration::from_secs(5));
    runner.run(s, event(true, &["198.19.1.0/24"], &["198.19.2.0/24"]));
    assert!(runner.idle(Duration::from_secs(5)).await);

    let logs = captured.0.lock().unwrap().clone();
    let find = |needle: &str| {
        logs.iter()
            .find(|(_, t)| t.contains(needle))
            .unwrap_or_else(|| panic!("no log with {needle:?} in {logs:#?}"))
            .clone()
    };
    let (level, text) = find("updown: to stdout");
    assert_eq!(level, tracing::Level::INFO);
    assert!(
        text.contains("connection=net") && text.contains("verb=up-client"),
        "{text}"
    );
    assert_eq!(find("updown: no newline").0, tracing::Level::INFO);
    let (level, text) = find("updown: to stderr");
    assert_eq!(level, tracing::Level::WARN);
    assert!(
        text.contains("connection=net") && text.contains("verb=up-client"),
        "{text}"
    );
    let (level, text) = find("exit status 1");
    assert_eq!(level, tracing::Level::WARN);
    assert!(text.contains("failed"), "{text}");
}
