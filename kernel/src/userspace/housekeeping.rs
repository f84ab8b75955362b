//! The userspace dataplane's housekeeping thread: the clock of the tables
//! and hold queues (which take `now` as a parameter), and the sender of NAT
//! keepalives.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dataplane::Shared;
use super::table::lock;
use super::udp;

/// How often the thread wakes.
const PERIOD: Duration = Duration::from_millis(200);
/// How often SAs are checked for a keepalive due.
const KEEPALIVE_CHECK: Duration = Duration::from_secs(1);

/// Held-packet timeouts, lifetimes and drains every [`PERIOD`]; keepalives
/// checked every [`KEEPALIVE_CHECK`]; until the dataplane stops.
pub(super) fn run(sh: Arc<Shared>) {
    let mut last_keepalive = Instant::now();
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(PERIOD);
        let now = Instant::now();
        let dropped = lock(&sh.held).expire(now, sh.opts.trap_hold);
        sh.stats.trap_dropped.fetch_add(dropped, Ordering::Relaxed);
        let events = {
            let mut t = sh.write();
            let tick = t.tick(now);
            sh.apply(tick.routes);
            tick.events
        };
        for ev in events {
            let _ = sh.events.send(ev);
        }
        let ka = sh.opts.keep_alive;
        if !ka.is_zero() && now.duration_since(last_keepalive) >= KEEPALIVE_CHECK {
            last_keepalive = now;
            send_keepalives(&sh, now, ka);
        }
    }
}

/// NAT keepalives (RFC 3948 §2.3) for SAs that sent nothing for `interval`.
fn send_keepalives(sh: &Shared, now: Instant, interval: Duration) {
    let due = {
        let t = sh.read();
        t.keepalives_due(t.ms(now), interval)
    };
    for (local, remote) in due {
        if let Some(s) = sh.sock_for(local) {
            if udp::send_one(s.sock.as_raw_fd(), &[0xff], remote).is_ok() {
                sh.stats.keepalives_tx.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
