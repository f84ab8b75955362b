//! The configuration layer: a full example, inheritance, durations,
//! includes, secrets and every class of error with its exact text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use control::config::{self, AuthMethod, Auto, Dataplane, DpdAction, RemoteAddr};
use ike::config::Mode;
use ike::ts::parse_ts;

mod common;
use common::*;

#[test]
fn design_example_parses() {
    let dir = Dir::new("example");
    let main = dir.write("vpnd.toml", DESIGN_EXAMPLE);
    dir.write_secret("secrets.toml", SECRETS);
    let c = ok(config::load(&main));

    assert_eq!(c.main_file, main);
    assert_eq!(
        c.daemon.listen,
        vec!["198.18.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(c.daemon.dataplane, Dataplane::Auto);
    assert_eq!(c.daemon.include, vec!["conf.d/*.toml".to_string()]);
    assert_eq!(c.daemon.secrets, vec![dir.path("secrets.toml")]);
    assert_eq!(c.daemon.metrics, Some("127.0.0.1:9469".parse().unwrap()));
    assert_eq!(c.daemon.socket_group, None);

    assert_eq!(c.scheduler.key_computations_per_sec, Some(1000));
    assert_eq!(c.scheduler.max_concurrent, 4);
    assert_eq!(c.scheduler.max_half_open_per_peer, 4);
    assert_eq!(c.scheduler.rekey_jitter_pct, 10);

    assert_eq!(c.connections.len(), 1);
    let o = &c.connections[0];
    assert_eq!(o.name, "oregon");
    assert_eq!(o.file, main);
    assert_eq!(o.line, 19);
    assert_eq!(
        o.local_addrs,
        vec!["198.18.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        o.remote_addrs,
        vec![RemoteAddr::Ip("198.18.0.2".parse().unwrap())]
    );
    assert_eq!(o.local_id, "a.test");
    assert_eq!(o.remote_id, "b.test");
    assert_eq!(o.auth, AuthMethod::Psk);
    assert_eq!(o.proposals, vec![ike("aes256gcm16-prfsha256-x25519")]);
    assert_eq!(o.auto, Auto::Start);
    assert_eq!(o.rekey_time, Duration::from_secs(4 * 3600));
    assert_eq!(o.dpd_delay, Duration::from_secs(30));
    assert_eq!(o.dpd_action, DpdAction::Restart);
    assert_eq!(o.retransmit_timeout, Duration::from_secs(2));
    assert_eq!(o.retransmit_tries, 5);
    assert_eq!(o.keyingtries, 3);
    assert_eq!(o.retry_base, Duration::from_secs(1));
    assert_eq!(o.retry_max, Duration::from_secs(300));
    assert!(!o.encap);

    assert_eq!(o.children.len(), 1);
    let net = &o.children[0];
    assert_eq!(net.name, "net");
    assert_eq!(net.local_ts, vec![parse_ts("198.19.1.0/24").unwrap()]);
    assert_eq!(net.remote_ts, vec![parse_ts("198.19.2.0/24").unwrap()]);
    assert_eq!(net.esp_proposals, vec![esp("aes256gcm16")]);
    assert_eq!(net.mode, Mode::Tunnel);
    assert_eq!(net.rekey_time, Duration::from_secs(3600));
    assert_eq!(net.updown, Some(PathBuf::from("/etc/vpnd/updown.sh")));

    assert_eq!(c.secrets.len(), 1);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.secrets.psk_for("a.test", "b.test").is_some());
}

#[test]
fn builtin_defaults_for_unset_keys() {
    let dir = Dir::new("builtin");
    let main = dir.write("vpnd.toml", &conn("min"));
    let c = ok(config::load(&main));
    assert!(c.daemon.listen.is_empty());
    assert_eq!(c.daemon.dataplane, Dataplane::Auto);
    assert_eq!(c.daemon.metrics, None);
    assert_eq!(c.scheduler, config::SchedulerConfig::default());
    assert_eq!(c.scheduler.key_computations_per_sec, None);
    assert_eq!(c.scheduler.rekey_jitter_pct, 10);
    assert!(c.secrets.is_empty());
    let m = &c.connections[0];
    assert!(m.local_addrs.is_empty());
    assert_eq!(m.auth, AuthMethod::Psk);
    assert_eq!(m.proposals, vec![ike("default")]);
    assert_eq!(m.auto, Auto::Add);
    assert_eq!(m.rekey_time, Duration::from_secs(4 * 3600));
    assert_eq!(m.dpd_delay, Duration::from_secs(30));
    assert_eq!(m.dpd_action, DpdAction::Restart);
    assert_eq!(m.retransmit_timeout, Duration::from_secs(2));
    assert_eq!(m.retransmit_tries, 5);
    assert_eq!(m.keyingtries, 3);
    assert_eq!(m.retry_base, Duration::from_secs(1));
    assert_eq!(m.retry_max, Duration::from_secs(300));
    assert!(!m.encap);
    assert_eq!(m.children[0].esp_proposals, vec![esp("default")]);
    assert_eq!(m.children[0].mode, Mode::Tunnel);
    assert_eq!(m.children[0].rekey_time, Duration::from_secs(3600));
    assert_eq!(m.children[0].updown, None);
}

#[test]
fn defaults_are_inherited_and_overridden() {
    let dir = Dir::new("defaults");
    let text = format!(
        r#"[defaults]
local_id = "gw.test"
remote_addrs = ["198.18.0.9"]
proposals = ["aes128gcm16-prfsha256-ecp256"]
keyingtries = 7
dpd_delay = "10s"
rekey_time = "8h"
encap = true
auto = "route"

[connections.inherits]
remote_id = "b.test"
{c1}
[connections.overrides]
remote_id = "c.test"
local_id = "other.test"
keyingtries = 0
dpd_delay = "0"
encap = false
auto = "add"
{c2}"#,
        c1 = child("inherits"),
        c2 = child("overrides")
    );
    let main = dir.write("vpnd.toml", &text);
    let c = ok(config::load(&main));
    let names: Vec<&str> = c.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["inherits", "overrides"]);

    let a = c.connection("inherits").unwrap();
    assert_eq!(a.local_id, "gw.test");
    assert_eq!(
        a.remote_addrs,
        vec![RemoteAddr::Ip("198.18.0.9".parse().unwrap())]
    );
    assert_eq!(a.proposals, vec![ike("aes128gcm16-prfsha256-ecp256")]);
    assert_eq!(a.keyingtries, 7);
    assert_eq!(a.dpd_delay, Duration::from_secs(10));
    assert_eq!(a.rekey_time, Duration::from_secs(8 * 3600));
    assert!(a.encap);
    assert_eq!(a.auto, Auto::Route);
    // Children inherit nothing from [defaults]: their rekey_time is 1h.
    assert_eq!(a.children[0].rekey_time, Duration::from_secs(3600));

    let b = c.connection("overrides").unwrap();
    assert_eq!(b.local_id, "other.test");
    assert_eq!(b.remote_id, "c.test");
    assert_eq!(b.keyingtries, 0);
    assert_eq!(b.dpd_delay, Duration::ZERO);
    assert!(!b.encap);
    assert_eq!(b.auto, Auto::Add);
    assert_eq!(b.rekey_time, Duration::from_secs(8 * 3600));
}

#[test]
fn durations_in_every_form() {
    let dir = Dir::new("durations");
    let text = format!(
        r#"[connections.t]
{CONN}rekey_time = "1d"
dpd_delay = 45
retransmit_timeout = "500ms"
retry_base = "0s"
retry_max = "2m"

[connections.t.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
rekey_time = "90m"
"#
    );
    let main = dir.write("vpnd.toml", &text);
    let c = ok(config::load(&main));
    let t = &c.connections[0];
    assert_eq!(t.rekey_time, Duration::from_secs(86_400));
    assert_eq!(t.dpd_delay, Duration::from_secs(45));
    assert_eq!(t.retransmit_timeout, Duration::from_millis(500));
    assert_eq!(t.retry_base, Duration::ZERO);
    assert_eq!(t.retry_max, Duration::from_secs(120));
    assert_eq!(t.children[0].rekey_time, Duration::from_secs(5400));
    assert_eq!(
        config::parse_duration("4h"),
        Ok(Duration::from_secs(14_400))
    );
    assert_eq!(config::format_duration(Duration::from_secs(300)), "5m");
}

#[test]
fn bad_durations_are_reported_precisely() {
    let dir = Dir::new("baddur");
    let text = format!(
        r#"[connections.t]
{CONN}rekey_time = "4 hours"
dpd_delay = -5
retry_max = 1.5
retransmit_timeout = "0s"
{}"#,
        child("t")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:5: connections.t.rekey_time: invalid duration '4 hours': expected a whole number with a unit ms, s, m, h or d (e.g. \"30s\", \"5m\", \"4h\")"),
            format!("{m}:6: connections.t.dpd_delay: invalid value -5: must not be negative"),
            format!("{m}:7: connections.t.retry_max: expected a duration (e.g. \"30s\", \"5m\", \"4h\"), found a float"),
            format!("{m}:8: connections.t.retransmit_timeout: 0s is below the minimum of 100ms"),
        ]
    );
}

#[test]
fn a_dpd_delay_below_a_second_and_a_tiny_retransmit_timeout_are_refused() {
    let dir = Dir::new("floors");
    let text = format!(
        "[connections.t]\n{CONN}dpd_delay = \"1ms\"\nretransmit_timeout = \"99ms\"\n{}",
        child("t")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:5: connections.t.dpd_delay: 1ms is below the minimum of 1s (0 turns dead peer detection off)"),
            format!("{m}:6: connections.t.retransmit_timeout: 99ms is below the minimum of 100ms"),
        ]
    );
    // 0 (DPD off), 1 s and 100 ms are fine.
    let text = format!(
        "[connections.t]\n{CONN}dpd_delay = \"0\"\nretransmit_timeout = \"100ms\"\n{}",
        child("t")
    );
    let main = dir.write("vpnd.toml", &text);
    let c = config::load(&main).expect("loads");
    assert!(c.connections[0].dpd_delay.is_zero());
}

#[test]
fn unknown_keys_get_suggestions() {
    let dir = Dir::new("unknown");
    let text = r#"[daemon]
dataplan = "xfrm"

[connections.oregon]
remote_addr = ["198.18.0.2"]
remote_addrs = ["198.18.0.2"]
local_id = "a.test"
remote_id = "b.test"
frobnicate = 1
local_ts = ["198.19.1.0/24"]

[connections.oregon.children.net]
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
esp_proposal = ["aes256gcm16"]
dpd_delay = "5s"

[sheduler]
"#;
    let main = dir.write("vpnd.toml", text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:2: daemon.dataplan: unknown key 'dataplan' (did you mean 'dataplane'?)"),
            format!("{m}:5: connections.oregon.remote_addr: unknown key 'remote_addr' (did you mean 'remote_addrs'?)"),
            format!("{m}:9: connections.oregon.frobnicate: unknown key 'frobnicate'"),
            format!("{m}:10: connections.oregon.local_ts: unknown key 'local_ts' (it belongs in a child: [connections.oregon.children.NAME])"),
            format!("{m}:15: connections.oregon.children.net.esp_proposal: unknown key 'esp_proposal' (did you mean 'esp_proposals'?)"),
            format!("{m}:16: connections.oregon.children.net.dpd_delay: unknown key 'dpd_delay' (it is a connection key: set it in [connections.oregon])"),
            format!("{m}:18: sheduler: unknown key 'sheduler' (did you mean 'scheduler'?)"),
        ]
    );
}

#[test]
fn wrong_types() {
    let dir = Dir::new("types");
    let text = format!(
        r#"[daemon]
listen = "198.18.0.1"

[connections.t]
{CONN}retransmit_tries = "5"
encap = "yes"
proposals = [1]
{}"#,
        child("t")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:2: daemon.listen: expected an array of strings, found a string"),
            format!("{m}:8: connections.t.retransmit_tries: expected an integer, found a string"),
            format!("{m}:9: connections.t.encap: expected true or false, found a string"),
            format!("{m}:10: connections.t.proposals: expected a string, found an integer"),
        ]
    );
}

#[test]
fn bad_values_name_the_token() {
    let dir = Dir::new("values");
    let text = r#"[connections.t]
remote_addrs = ["198.18.0.2", "gw.example.net"]
local_addrs = ["198.18.0.300"]
local_id = "C=CH, XX=gw"
remote_id = "b.test"
proposals = [
  "aes256gcm16-prfsha256-x25519",
  "aes256gcm17-prfsha256-x25519",
]

[connections.t.children.net]
local_ts = ["198.19.1.0/33"]
remote_ts = ["198.19.2.0/24[tcp/http]"]
esp_proposals = ["aes256gcm16-prfsha256"]
mode = "tunel"
"#;
    let main = dir.write("vpnd.toml", text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:2: connections.t.remote_addrs: invalid address 'gw.example.net': expected an IP address or %any"),
            format!("{m}:3: connections.t.local_addrs: invalid address '198.18.0.300': expected an IP address"),
            format!("{m}:4: connections.t.local_id: invalid identity 'C=CH, XX=gw': unknown DN attribute (use C, ST, L, O, OU, CN, SN, serialNumber, T, G, E, DC)"),
            format!("{m}:8: connections.t.proposals: unknown algorithm 'aes256gcm17' in proposal 'aes256gcm17-prfsha256-x25519'"),
            format!("{m}:12: connections.t.children.net.local_ts: invalid traffic selector '198.19.1.0/33': prefix length too long"),
            format!("{m}:13: connections.t.children.net.remote_ts: invalid traffic selector '198.19.2.0/24[tcp/http]': bad port"),
            format!("{m}:14: connections.t.children.net.esp_proposals: 'prfsha256' is not allowed in an ESP proposal: 'aes256gcm16-prfsha256'"),
            format!("{m}:15: connections.t.children.net.mode: invalid value 'tunel': expected tunnel or transport"),
        ]
    );
}

#[test]
fn invalid_enum_values() {
    let dir = Dir::new("enums");
    let text = format!(
        r#"[daemon]
dataplane = "kernel"

[connections.t]
{CONN}auto = 'strat'
dpd_action = "reset"
auth = "cert"
{}"#,
        child("t")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:2: daemon.dataplane: invalid value 'kernel': expected auto, xfrm, userspace or none"),
            format!("{m}:8: connections.t.auto: invalid value 'strat': expected start, route, add or ignore"),
            format!("{m}:9: connections.t.dpd_action: invalid value 'reset': expected clear, hold or restart"),
            format!("{m}:10: connections.t.auth: invalid value 'cert': expected psk or pubkey"),
        ]
    );
}

#[test]
fn missing_required_keys_even_when_ignored() {
    let dir = Dir::new("missing");
    let text = r#"[connections.nothing]
auto = "ignore"

[connections.nots]
remote_addrs = ["198.18.0.2"]
local_id = "a.test"
remote_id = "b.test"

[connections.nots.children.net]
local_ts = ["198.19.1.0/24"]
"#;
    let main = dir.write("vpnd.toml", text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:1: connections.nothing.remote_addrs: missing (required; set it here or in [defaults])"),
            format!("{m}:1: connections.nothing.local_id: missing (required; set it here or in [defaults])"),
            format!("{m}:1: connections.nothing.remote_id: missing (required; set it here or in [defaults])"),
            format!("{m}:1: connections.nothing.children: missing: a connection needs at least one child ([connections.nothing.children.NAME] with local_ts and remote_ts)"),
            format!("{m}:9: connections.nots.children.net.remote_ts: missing (required)"),
        ]
    );
}

#[test]
fn ignored_connections_are_validated_and_loaded() {
    let dir = Dir::new("ignore");
    let text = format!(
        "[connections.off]\n{CONN}auto = \"ignore\"\nkeyingtrys = 3\n\n{}",
        child("off")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [format!("{m}:6: connections.off.keyingtrys: unknown key 'keyingtrys' (did you mean 'keyingtries'?)")]
    );
    let main = dir.write("vpnd.toml", &text.replace("keyingtrys = 3\n", ""));
    let c = ok(config::load(&main));
    assert_eq!(c.connections[0].auto, Auto::Ignore);
}

#[test]
fn any_remote_cannot_be_initiated() {
    let dir = Dir::new("any");
    let body = "remote_addrs = [\"%any\"]\nlocal_id = \"a.test\"\nremote_id = \"%any\"\n";
    let text = format!(
        "[connections.s]\n{body}auto = \"start\"\n{}\n[connections.r]\n{body}auto = \"route\"\n{}\n[connections.a]\n{body}auto = \"add\"\n{}",
        child("s"),
        child("r"),
        child("a")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:5: connections.s.auto: auto = 'start' cannot initiate to remote_addrs = [\"%any\"]: name the peer's address or use auto = 'add'"),
            format!("{m}:14: connections.r.auto: auto = 'route' cannot initiate to remote_addrs = [\"%any\"]: name the peer's address or use auto = 'add'"),
        ]
    );
    // A responder-only connection with %any is fine.
    let only_add = format!("[connections.a]\n{body}auto = \"add\"\n{}", child("a"));
    let main = dir.write("vpnd.toml", &only_add);
    let c = ok(config::load(&main));
    assert_eq!(c.connections[0].remote_addrs, vec![RemoteAddr::Any]);
    assert_eq!(c.connections[0].remote_id, "%any");
    let peer = c.connections[0].to_peer_config(&c.secrets).unwrap();
    assert_eq!(peer.remote_id, None);
}

#[test]
fn cross_key_and_scheduler_checks() {
    let dir = Dir::new("cross");
    let text = format!(
        r#"[scheduler]
max_concurrent = 0
rekey_jitter = "150%"
key_computations_per_sec = 5000000000

[connections.t]
{CONN}retry_base = "10m"
retry_max = "5m"
local_id = "%any"
{}"#,
        child("t")
    );
    let main = dir.write("vpnd.toml", &text.replace("local_id = \"a.test\"\n", ""));
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:2: scheduler.max_concurrent: invalid value 0: must be at least 1"),
            format!("{m}:3: scheduler.rekey_jitter: invalid value 150%: must be between 0% and 100%"),
            format!("{m}:4: scheduler.key_computations_per_sec: invalid value 5000000000: too large (at most 4294967295)"),
            format!("{m}:9: connections.t.retry_base: retry_base (10m) is longer than retry_max (5m)"),
            format!("{m}:11: connections.t.local_id: '%any' is only allowed for remote_id"),
        ]
    );
}

#[test]
fn toml_syntax_errors_carry_file_and_line() {
    let dir = Dir::new("syntax");
    let main = dir.write(
        "vpnd.toml",
        "[daemon]\ndataplane = \"none\"\n\n[connections.t]\nremote_addrs = [\"198.18.0.2\"\nlocal_id = \"a.test\"\n",
    );
    let m = d(&main);
    // toml notices the missing ']' where the next key starts.
    assert_eq!(
        errors(config::load(&main)),
        [format!(
            "{m}:6: invalid TOML: missing comma between array elements, expected `,`"
        )]
    );

    let main = dir.write(
        "vpnd.toml",
        "[daemon]\ndataplane = \"none\"\ndataplane = \"xfrm\"\n",
    );
    assert_eq!(
        errors(config::load(&main)),
        [format!("{m}:3: invalid TOML: duplicate key 'dataplane'")]
    );
}

#[test]
fn unreadable_main_file() {
    let dir = Dir::new("nomain");
    let main = dir.path("absent.toml");
    let e = errors(config::load(&main));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!("{}: cannot read: ", d(&main))),
        "{}",
        e[0]
    );
}

#[test]
fn one_file_per_tunnel() {
    let dir = Dir::new("includes");
    let main = dir.write(
        "vpnd.toml",
        &format!(
            "[daemon]\ninclude = [\"conf.d/*.toml\", \"extra/*.toml\"]\n\n[defaults]\nkeyingtries = 9\n\n{}",
            conn("main")
        ),
    );
    let b = dir.write("conf.d/b.toml", &format!("# tunnel b\n{}", conn("bravo")));
    let a = dir.write(
        "conf.d/a.toml",
        &format!("{}\n{}", conn("alpha"), conn("alpha2")),
    );
    dir.write("conf.d/notes.txt", "[daemon]\n");
    dir.write("conf.d/.hidden.toml", "[daemon]\n");
    let c = ok(config::load(&main));
    let got: Vec<(&str, &Path, usize)> = c
        .connections
        .iter()
        .map(|c| (c.name.as_str(), c.file.as_path(), c.line))
        .collect();
    assert_eq!(
        got,
        [
            ("main", main.as_path(), 7),
            ("alpha", a.as_path(), 1),
            ("alpha2", a.as_path(), 10),
            ("bravo", b.as_path(), 2),
        ]
    );
    // The main file's [defaults] apply to included connections.
    assert!(c.connections.iter().all(|c| c.keyingtries == 9));
}

#[test]
fn duplicate_names_across_files() {
    let dir = Dir::new("dups");
    let main = dir.write(
        "vpnd.toml",
        &format!(
            "[daemon]\ninclude = [\"conf.d/*.toml\"]\n\n{}",
            conn("oregon")
        ),
    );
    let inc = dir.write("conf.d/oregon.toml", &format!("\n{}", conn("oregon")));
    assert_eq!(
        errors(config::load(&main)),
        [format!(
            "{}:2: connections.oregon: duplicate connection name 'oregon': already defined at {}:4",
            d(&inc),
            d(&main)
        )]
    );
}

#[test]
fn include_may_not_hold_daemon_scheduler_or_defaults() {
    let dir = Dir::new("incdaemon");
    let main = dir.write("vpnd.toml", "[daemon]\ninclude = [\"conf.d/*.toml\"]\n");
    let inc = dir.write(
        "conf.d/bad.toml",
        &format!(
            "[daemon]\ndataplane = \"none\"\n\n[defaults]\nencap = true\n\n{}\n[psk]\n",
            conn("x")
        ),
    );
    let (i, m) = (d(&inc), d(&main));
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{i}:1: daemon: [daemon] is only allowed in the main configuration file ({m}); an included file may only define [connections.*]"),
            format!("{i}:4: defaults: [defaults] is only allowed in the main configuration file ({m}); an included file may only define [connections.*]"),
            format!("{i}:16: psk: unknown key 'psk'"),
        ]
    );
}

#[test]
fn missing_literal_include_and_secrets_are_errors_globs_are_not() {
    let dir = Dir::new("literal");
    let main = dir.write(
        "vpnd.toml",
        "[daemon]\ninclude = [\"nothing/*.toml\", \"conf.d/missing.toml\"]\nsecrets = [\"secrets.d/*.toml\", \"secrets.toml\"]\n",
    );
    let m = d(&main);
    let e = errors(config::load(&main));
    assert_eq!(
        e,
        [
            format!(
                "{m}:2: daemon.include: cannot read '{}': No such file or directory (os error 2)",
                d(&dir.path("conf.d/missing.toml"))
            ),
            format!(
                "{m}:3: daemon.secrets: cannot read '{}': No such file or directory (os error 2)",
                d(&dir.path("secrets.toml"))
            ),
        ]
    );
    // With only the globs, an empty configuration loads.
    let main = dir.write(
        "vpnd.toml",
        "[daemon]\ninclude = [\"nothing/*.toml\"]\nsecrets = [\"secrets.d/*.toml\"]\n",
    );
    let c = ok(config::load(&main));
    assert!(c.connections.is_empty());
    assert!(c.secrets.is_empty());
}

#[test]
fn every_error_in_every_file_is_reported_at_once() {
    let dir = Dir::new("many");
    let main = dir.write(
        "vpnd.toml",
        &format!(
            "[daemon]\ninclude = [\"conf.d/*.toml\"]\nsecrets = [\"secrets.toml\"]\n\n[connections.a]\n{CONN}auto = \"strat\"\n{}",
            child("a")
        ),
    );
    let b = dir.write(
        "conf.d/b.toml",
        &format!(
            "[connections.b]\n{CONN}proposals = [\"aes256gcm16-prfsha256-modp1024x\"]\n{}",
            child("b")
        ),
    );
    let broken = dir.write("conf.d/c.toml", "[connections.c\n");
    let s = dir.write_secret(
        "secrets.toml",
        "[[psk]]\nids = [\"a.test\"]\nsecrte = \"x\"\n",
    );
    let m = d(&main);
    assert_eq!(
        errors(config::load(&main)),
        [
            format!("{m}:9: connections.a.auto: invalid value 'strat': expected start, route, add or ignore"),
            format!("{}:5: connections.b.proposals: unknown algorithm 'modp1024x' in proposal 'aes256gcm16-prfsha256-modp1024x'", d(&b)),
            format!("{}:1: invalid TOML: unclosed table, expected `]`", d(&broken)),
            format!("{}:1: psk.secret: missing (required)", d(&s)),
            format!("{}:3: psk.secrte: unknown key 'secrte' (did you mean 'secret'?)", d(&s)),
        ]
    );
}

#[test]
fn config_errors_display_one_per_line() {
    let e = config::ConfigErrors(vec![
        config::ConfigError {
            file: "/etc/vpnd/vpnd.toml".into(),
            line: Some(3),
            key: "connections.x.auto".into(),
            message: "bad".into(),
            quoted: config::Quoted::Value("\"x\"".into()),
        },
        config::ConfigError {
            file: "/etc/vpnd/secrets.toml".into(),
            line: None,
            key: String::new(),
            message: "cannot read: gone".into(),
            quoted: config::Quoted::Nothing,
        },
    ]);
    assert_eq!(
        e.to_string(),
        "/etc/vpnd/vpnd.toml:3: connections.x.auto: bad\n/etc/vpnd/secrets.toml: cannot read: gone"
    );
    let _: &dyn std::error::Error = &e;
}

#[test]
fn an_error_keeps_its_value_apart_and_renders_without_it_for_a_non_reader() {
    let dir = Dir::new("redact");
    let text = format!(
        "[connections.x]\n{CONN}auto = \"SECRET-VALUE-123\"\nrekey_tme = \"1h\"\n{}",
        child("x")
    );
    let main = dir.write("vpnd.toml", &text);
    let m = d(&main);
    let errs = config::load(&main).unwrap_err();
    assert_eq!(errs.0[0].value(), Some("\"SECRET-VALUE-123\""));
    assert_eq!(errs.0[1].quoted, config::Quoted::Nothing, "an unknown key");
    let full = errs.render(|_| true);
    assert!(full.contains("invalid value 'SECRET-VALUE-123'"), "{full}");
    assert_eq!(full, errs.to_string());
    assert_eq!(
        errs.render(|_| false),
        format!(
            "{m}:5: connections.x.auto: invalid value (redacted: file not readable by you)\n\
             {m}:6: connections.x.rekey_tme: unknown key 'rekey_tme' (did you mean 'rekey_time'?)"
        )
    );
}

#[test]
fn an_error_in_a_secrets_file_keeps_nothing_of_its_text() {
    let dir = Dir::new("redactsecrets");
    let secrets = dir.write(
        "secrets.toml",
        "[[psk]]\nids = [\"not an id @@ SECRET\"]\nsecret = \"0xSECRETzz\"\n",
    );
    let errs = control::secrets::Secrets::load(&[secrets]).unwrap_err();
    assert!(!errs.0.is_empty());
    for e in &errs.0 {
        assert_eq!(e.quoted, config::Quoted::Withheld, "{e}");
        assert!(!e.message.contains("0xSECRETzz"), "{e}");
        assert!(!e.render(false).contains("SECRET"), "{e}");
    }
    // Broken TOML around a secret: the syntax error does not quote it.
    for text in [
        "[[psk]]\nids = [\"a.test\"]\nsecret = \"SECRETVALUE\n",
        "[[psk]]\nids = [\"a.test\"]\nsecret = \"SECRET\\qVALUE\"\n",
        "[[psk]]\nids = [\"a.test\"]\nsecret = SECRETVALUE\n",
    ] {
        let secrets = dir.write("broken.toml", text);
        let errs = control::secrets::Secrets::load(&[secrets]).unwrap_err();
        let told = errs.to_string();
        assert!(told.contains("invalid TOML"), "{told}");
        assert!(!told.contains("SECRET"), "{told}");
    }
}
