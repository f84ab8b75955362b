//! Real traffic through a lab: ICMP echo with `ping` and TCP with `iperf3`
//! (both installed by scripts/deps.sh). Every wait is bounded: `ping` has a
//! deadline, the iperf3 client runs under `timeout`, and a one-off iperf3
//! server is a lab process, so the lab's `Drop` kills it if the client never
//! came.

use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::lab::{Lab, Ns};

static PORTS: AtomicU32 = AtomicU32::new(0);

/// `ping -c count -I src dst` inside `ns`, 0.2 s apart, done within
/// `count + 3` seconds. True when every echo was answered.
pub fn ping(lab: &Lab, ns: &Ns, src: &str, dst: &str, count: u32) -> bool {
    let out = ping_output(lab, ns, src, dst, count);
    out.status.success() && received(&out) == Some(count)
}

/// `ping`'s raw output (for diagnostics and partial-loss checks).
pub fn ping_output(lab: &Lab, ns: &Ns, src: &str, dst: &str, count: u32) -> Output {
    require_tool("ping", "iputils-ping");
    let c = count.to_string();
    let deadline = (count + 3).to_string();
    lab.try_exec(
        ns,
        &[
            "ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "1", "-w", &deadline, "-I", src, dst,
        ],
    )
}

/// Panics, naming the Debian package, when `tool` is not on PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "'{tool}' is not installed (Debian package {package}; scripts/deps.sh)"
    );
}

/// Echo replies received, from ping's summary line.
pub fn received(out: &Output) -> Option<u32> {
    summary(&String::from_utf8_lossy(&out.stdout)).map(|(_, rx)| rx)
}

/// `(transmitted, received)` from ping's summary line
/// (`50 packets transmitted, 49 received, 2% packet loss, time 2450ms`).
pub fn summary(text: &str) -> Option<(u32, u32)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let num = |key: &str| -> Option<u32> {
        let part = line.split(',').find(|p| p.contains(key))?;
        part.split_whitespace().next()?.parse().ok()
    };
    Some((num("transmitted")?, num("received")?))
}

/// A ping running in the background as a lab process (so the lab's `Drop`
/// ends it if a test fails first): echoes `interval` apart, each waited for
/// at most one second, until `count` are answered or its deadline passes
/// (with a deadline, ping sends more than `count` when some are lost, so
/// transmitted minus received is the loss).
pub struct PingRun {
    name: String,
    count: u32,
    interval: Duration,
}

/// Start `ping -c count -i interval -I src dst` in `ns` in the background
/// under the process name `name`. Intervals under 0.2 s need root (the labs
/// run as root).
pub fn ping_start(
    lab: &mut Lab,
    ns: &Ns,
    name: &str,
    src: &str,
    dst: &str,
    interval: Duration,
    count: u32,
) -> PingRun {
    require_tool("ping", "iputils-ping");
    let c = count.to_string();
    let i = format!("{:.3}", interval.as_secs_f64());
    // A loaded guest sends slower than `interval`: room for half again.
    let deadline = (interval.as_secs_f64() * count as f64 * 1.5 + 5.0)
        .ceil()
        .to_string();
    lab.spawn(
        ns,
        name,
        &[
            "ping", "-n", "-q", "-c", &c, "-i", &i, "-W", "1", "-w", &deadline, "-I", src, dst,
        ],
        &[],
    );
    PingRun {
        name: name.into(),
        count,
        interval,
    }
}

impl PingRun {
    /// Wait for the ping to end (at most its own deadline plus a margin)
    /// and return `(transmitted, received)`; panics with its log when it
    /// printed no summary.
    pub fn finish(self, lab: &mut Lab) -> (u32, u32) {
        let limit = self.interval * self.count * 3 / 2 + Duration::from_secs(10);
        lab.wait_exit(&self.name, limit);
        let log = lab.log(&self.name);
        summary(&log).unwrap_or_else(|| panic!("ping '{}' printed no summary:\n{log}", self.name))
    }
}

/// What one iperf3 TCP run measured (from its JSON report).
#[derive(Clone, Debug)]
pub struct Transfer {
    /// Bytes the client sent.
    pub bytes_sent: u64,
    /// Bytes the server counted before the test ended. With `-n` iperf3
    /// ends the test once the client has *written* everything, so this can
    /// be short by what was still in flight (a few socket buffers).
    pub bytes_received: u64,
    /// Receiver-side throughput, bits per second.
    pub bits_per_second: f64,
    /// Seconds the test lasted.
    pub seconds: f64,
    /// Sender-side TCP retransmissions, when iperf3 reports them.
    pub retransmits: Option<u64>,
}

impl Transfer {
    pub fn gbits(&self) -> f64 {
        self.bits_per_second / 1e9
    }
}

/// How much one iperf3 client sends.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    /// `-n`: this many bytes.
    Bytes(u64),
    /// `-t`: for this many seconds.
    Seconds(u32),
}

/// One iperf3 TCP test, single stream, client in `ns_client` to a one-off
/// server bound to `server_addr` in `ns_server`. `client_bind` (`-B`) pins
/// the client's source address, e.g. a LAN address inside a selector.
/// Fails (with iperf3's own error when it has one) instead of hanging: the
/// whole client run is bounded by the amount plus `slack`.
/// `extra` goes to the client, e.g. `-u -b 600M` for UDP at a fixed
/// offered rate (then `retransmits` is `None`).
#[allow(clippy::too_many_arguments)]
pub fn iperf3(
    lab: &mut Lab,
    ns_client: &Ns,
    ns_server: &Ns,
    server_addr: &str,
    client_bind: Option<&str>,
    amount: Amount,
    slack: Duration,
    extra: &[&str],
) -> Result<Transfer, String> {
    require_tool("iperf3", "iperf3");
    let n = PORTS.fetch_add(1, Ordering::SeqCst);
    let port = (5201 + n % 1000).to_string();
    let name = format!("iperf3-server-{n}");
    lab.spawn(
        ns_server,
        &name,
        &["iperf3", "-s", "-1", "-B", server_addr, "-p", &port],
        &[],
    );
    let listening = Lab::wait_until(Duration::from_secs(5), || {
        let out = lab.try_exec(ns_server, &["ss", "-Hltn", &format!("sport = :{port}")]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    if !listening {
        lab.stop(&name);
        return Err(format!(
            "iperf3 server did not listen on {server_addr}:{port}: {}",
            lab.log(&name)
        ));
    }
    let (flag, value, secs) = match amount {
        Amount::Bytes(b) => ("-n", b.to_string(), 0),
        Amount::Seconds(s) => ("-t", s.to_string(), u64::from(s)),
    };
    let limit = (secs + slack.as_secs().max(1)).to_string();
    let mut argv = vec![
        "timeout",
        "-k",
        "2",
        &limit,
        "iperf3",
        "-c",
        server_addr,
        "-p",
        &port,
        "-J",
        "--connect-timeout",
        "3000",
        flag,
        &value,
    ];
    if let Some(b) = client_bind {
        argv.extend(["-B", b]);
    }
    argv.extend(extra);
    let out = lab.try_exec(ns_client, &argv);
    lab.stop(&name);
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => {
            return Err(format!(
                "iperf3 client exited with {} and no JSON report (after {limit} s limit?): {}{}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if let Some(e) = json["error"].as_str() {
        return Err(format!("iperf3: {e}"));
    }
    if !out.status.success() {
        return Err(format!("iperf3 client exited with {}", out.status));
    }
    let recv = &json["end"]["sum_received"];
    let bits_per_second = recv["bits_per_second"]
        .as_f64()
        .ok_or_else(|| format!("iperf3 report without end.sum_received: {text}"))?;
    Ok(Transfer {
        bytes_sent: json["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0),
        bytes_received: recv["bytes"].as_u64().unwrap_or(0),
        bits_per_second,
        seconds: recv["seconds"].as_f64().unwrap_or(0.0),
        retransmits: json["end"]["sum_sent"]["retransmits"].as_u64(),
    })
}

/// Send `bytes` over one TCP connection from `ns_client` to `server_addr` in
/// `ns_server` with iperf3 (`-n`); at most 30 s plus 1 s per MB.
pub fn tcp_transfer(
    lab: &mut Lab,
    ns_client: &Ns,
    ns_server: &Ns,
    server_addr: &str,
    bytes: u64,
) -> Result<Transfer, String> {
    transfer(lab, ns_client, None, ns_server, server_addr, bytes)
}

/// `tcp_transfer` with the client's source address pinned (`-B`).
pub fn tcp_transfer_from(
    lab: &mut Lab,
    ns_client: &Ns,
    client_addr: &str,
    ns_server: &Ns,
    server_addr: &str,
    bytes: u64,
) -> Result<Transfer, String> {
    transfer(
        lab,
        ns_client,
        Some(client_addr),
        ns_server,
        server_addr,
        bytes,
    )
}

fn transfer(
    lab: &mut Lab,
    ns_client: &Ns,
    client_addr: Option<&str>,
    ns_server: &Ns,
    server_addr: &str,
    bytes: u64,
) -> Result<Transfer, String> {
    let slack = Duration::from_secs(30 + bytes / 1_000_000);
    iperf3(
        lab,
        ns_client,
        ns_server,
        server_addr,
        client_addr,
        Amount::Bytes(bytes),
        slack,
        &[],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ping_summary_line() {
        let text = "PING 198.19.2.1 (198.19.2.1) from 198.19.1.1 : 56(84) bytes of data.\n\n--- 198.19.2.1 ping statistics ---\n50 packets transmitted, 49 received, 2% packet loss, time 2450ms\nrtt min/avg/max/mdev = 0.1/0.2/0.3/0.1 ms\n";
        assert_eq!(super::summary(text), Some((50, 49)));
        let errs = "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4ms\n";
        assert_eq!(super::summary(errs), Some((5, 0)));
        assert_eq!(
            super::summary("ping: connect: Network is unreachable\n"),
            None
        );
    }
}
