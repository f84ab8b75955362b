//! Admission of new IKE_SA_INIT requests: the responder's defence against
//! floods (RFC 7296 §2.6, RFC 8019), with strongSwan's knobs.
//!
//! Every new request passes [`Admission::gate`] on the socket's receive
//! task, before any actor, state or key computation:
//!
//! 1. past `half_open_max` half-open responder SAs, it is dropped;
//! 2. past `cookie_threshold` half-open SAs in all, or `cookie_threshold_ip`
//!    from its source address, it must carry a valid COOKIE; without one it
//!    gets a stateless COOKIE answer (one HMAC, nothing kept);
//! 3. past `block_threshold` half-open SAs from its address, it is dropped.
//!
//! A request that passes is counted as half-open at once (so a burst that
//! arrives faster than the responder path works is still held to the
//! thresholds); the responder path claims that count as a
//! [`HalfOpenSlot`], which the IKE SA holds until it is authenticated or
//! gone. The counts are exact and fall back to zero when a flood ends. A threshold of 0
//! turns that check off, as in strongSwan.
//!
//! The counters feed `vpnctl stats` and metrics; while refusals happen, one
//! summary line every few seconds replaces per-datagram logs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ike::crypto::SystemRandom;
use ike::sa::{CookieCheck, CookieJar, IkeSa, Transmit};
use serde::{Deserialize, Serialize};

/// `[daemon]` flood settings (strongSwan's names and meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Half-open responder SAs before COOKIEs are required of everyone.
    pub cookie_threshold: u32,
    /// ... of one source address.
    pub cookie_threshold_ip: u32,
    /// Half-open SAs from one source address before its new ones are dropped.
    pub block_threshold: u32,
    /// Half-open responder SAs in all before new ones are dropped.
    pub half_open_max: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            cookie_threshold: 30,
            cookie_threshold_ip: 3,
            block_threshold: 5,
            half_open_max: 10_000,
        }
    }
}

/// What [`Admission::gate`] decided for one request.
#[derive(Debug)]
pub enum Gate {
    /// On to the responder path.
    Pass,
    /// Send this COOKIE answer; keep nothing.
    Challenge(Transmit),
    /// Drop it (counted).
    Drop(Refusal),
}

/// Why a new request was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    HalfOpenMax,
    BlockThreshold,
    Malformed,
    /// The responder path is this far behind; it catches up first.
    Backlog,
    /// Key computation for a stranger shed by the scheduler.
    Shed,
    /// No loaded connection accepts the addresses.
    Unmatched,
}

/// Counters of the responder's admission (`vpnctl stats` → `"admission"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionStats {
    /// Half-open responder SAs now.
    pub half_open: u64,
    /// New IKE_SA_INIT requests seen.
    pub requests_total: u64,
    pub cookies_sent_total: u64,
    /// Requests that carried a cookie that did not verify.
    pub cookies_invalid_total: u64,
    /// Requests admitted on a valid cookie.
    pub cookies_valid_total: u64,
    pub dropped_half_open_max_total: u64,
    pub dropped_block_threshold_total: u64,
    /// Requests dropped because the responder path was behind.
    pub dropped_backlog_total: u64,
    /// Strangers' key computations shed by the scheduler.
    pub shed_total: u64,
    /// From addresses no connection accepts.
    pub unmatched_total: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    cookies_sent: AtomicU64,
    cookies_invalid: AtomicU64,
    cookies_valid: AtomicU64,
    half_open_max: AtomicU64,
    block: AtomicU64,
    backlog: AtomicU64,
    shed: AtomicU64,
    unmatched: AtomicU64,
    malformed: AtomicU64,
}

pub struct Admission {
    cfg: RwLock<AdmissionConfig>,
    jar: RwLock<CookieJar>,
    half_open: AtomicU64,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    counters: Counters,
    /// Lines a peer may still make us log in this interval.
    log_budget: AtomicU64,
    suppressed: AtomicU64,
}

/// Lines per interval that peers can trigger before the summary takes over.
const LOG_BUDGET: u64 = 20;
/// The summary interval.
pub const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Cookie secret lifetime (the previous secret stays valid one more).
const ROTATE_EVERY: u32 = 24; // intervals: 2 minutes

impl Admission {
    pub fn new(cfg: AdmissionConfig) -> Arc<Admission> {
        Arc::new(Admission {
            cfg: RwLock::new(cfg),
            jar: RwLock::new(CookieJar::new(&mut SystemRandom::new())),
            half_open: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            log_budget: AtomicU64::new(LOG_BUDGET),
            suppressed: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> AdmissionConfig {
        *self.cfg.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply new thresholds (reload); half-open SAs already admitted stay.
    pub fn set_config(&self, cfg: AdmissionConfig) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// A new cookie secret; cookies of the previous one stay valid until the
    /// next rotation, so a peer mid-exchange is not refused.
    pub fn rotate_cookie_secret(&self) {
        self.jar
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .rotate(&mut SystemRandom::new());
    }

    fn half_open_from(&self, ip: IpAddr) -> u32 {
        let m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&ip).copied().unwrap_or(0)
    }

    /// Decide on a new IKE_SA_INIT request from `remote` (see the module
    /// documentation). Cheap: counters, at most one decode and one HMAC.
    pub fn gate(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) -> Gate {
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let cfg = self.config();
        let all = self.half_open.load(Ordering::Relaxed);
        if over(all, cfg.half_open_max) {
            return self.refuse(Refusal::HalfOpenMax);
        }
        let mine = self.half_open_from(remote.ip()) as u64;
        if over(all, cfg.cookie_threshold) || over(mine, cfg.cookie_threshold_ip) {
            let jar = self.jar.read().unwrap_or_else(|e| e.into_inner());
            match IkeSa::check_cookie(local, remote, data, &jar) {
                CookieCheck::Valid => {
                    c.cookies_valid.fetch_add(1, Ordering::Relaxed);
                }
                CookieCheck::Challenge { reply, invalid } => {
                    c.cookies_sent.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("vpnd_cookies_sent_total").increment(1);
                    if invalid {
                        c.cookies_invalid.fetch_add(1, Ordering::Relaxed);
                    }
                    return Gate::Challenge(reply);
                }
                CookieCheck::Malformed(_) => return self.refuse(Refusal::Malformed),
            }
        }
        match self.reserve(remote.ip()) {
            Ok(()) => Gate::Pass,
            Err(why) => self.refuse(why),
        }
    }

    /// Count a refusal made here or further down the responder path.
    pub fn refuse(&self, why: Refusal) -> Gate {
        let c = &self.counters;
        let (counter, metric) = match why {
            Refusal::HalfOpenMax => (&c.half_open_max, "half_open_max"),
            Refusal::BlockThreshold => (&c.block, "block_threshold"),
            Refusal::Malformed => (&c.malformed, "malformed"),
            Refusal::Backlog => (&c.backlog, "backlog"),
            Refusal::Shed => (&c.shed, "shed"),
            Refusal::Unmatched => (&c.unmatched, "unmatched"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vpnd_ike_sa_init_dropped_total", "reason" => metric).increment(1);
        Gate::Drop(why)
    }

    /// Count one more half-open SA from `remote`, unless that passes a cap.
    fn reserve(&self, remote: IpAddr) -> Result<(), Refusal> {
        let cfg = self.config();
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if over(self.half_open.load(Ordering::Relaxed), cfg.half_open_max) {
            return Err(Refusal::HalfOpenMax);
        }
        let n = m.entry(remote).or_insert(0);
        if over(*n as u64, cfg.block_threshold) {
            if *n == 0 {
                m.remove(&remote);
            }
            return Err(Refusal::BlockThreshold);
        }
        *n += 1;
        self.half_open.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("vpnd_half_open_responder_sas").increment(1.0);
        Ok(())
    }

    /// The count [`Admission::gate`] took for a request it passed, as the
    /// slot its IKE SA holds. Call once per passed request (or
    /// [`Admission::release`] it).
    pub fn claim(self: &Arc<Self>, remote: IpAddr) -> HalfOpenSlot {
        HalfOpenSlot {
            admission: self.clone(),
            remote,
        }
    }

    /// Give back the count of a passed request that went nowhere.
    pub fn release(&self, remote: IpAddr) {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&remote) {
            *n -= 1;
            if *n == 0 {
                m.remove(&remote);
            }
        }
        drop(m);
        let _ = self
            .half_open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        metrics::gauge!("vpnd_half_open_responder_sas").decrement(1.0);
    }

    pub fn half_open(&self) -> u64 {
        self.half_open.load(Ordering::Relaxed)
    }

    /// Whether new requests now need a cookie (all sources).
    pub fn cookies_required(&self) -> bool {
        over(self.half_open(), self.config().cookie_threshold)
    }

    pub fn stats(&self) -> AdmissionStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AdmissionStats {
            half_open: self.half_open(),
            requests_total: get(&c.requests),
            cookies_sent_total: get(&c.cookies_sent),
            cookies_invalid_total: get(&c.cookies_invalid),
            cookies_valid_total: get(&c.cookies_valid),
            dropped_half_open_max_total: get(&c.half_open_max),
            dropped_block_threshold_total: get(&c.block),
            dropped_backlog_total: get(&c.backlog),
            shed_total: get(&c.shed),
            unmatched_total: get(&c.unmatched),
        }
    }

    /// Whether a line a peer triggered may be logged now; the ones that may
    /// not are counted and reported by the summary.
    pub fn may_log(&self) -> bool {
        let ok = self
            .log_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// A new interval: the budget is full again; returns the lines
    /// suppressed in the last one.
    fn new_interval(&self) -> u64 {
        self.log_budget.store(LOG_BUDGET, Ordering::Relaxed);
        self.suppressed.swap(0, Ordering::Relaxed)
    }

    /// Malformed new requests (also in `malformed_datagrams_total`).
    pub fn malformed(&self) -> u64 {
        self.counters.malformed.load(Ordering::Relaxed)
    }
}

/// `count >= threshold`, with 0 meaning "no threshold".
fn over(count: u64, threshold: u32) -> bool {
    threshold > 0 && count >= threshold as u64
}

/// One half-open responder SA counted against the caps; dropping it
/// (authenticated, refused, timed out, actor gone) gives the slot back.
#[must_use = "the half-open slot is released when dropped"]
pub struct HalfOpenSlot {
    admission: Arc<Admission>,
    remote: IpAddr,
}

impl std::fmt::Debug for HalfOpenSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HalfOpenSlot({})", self.remote)
    }
}

impl Drop for HalfOpenSlot {
    fn drop(&mut self) {
        self.admission.release(self.remote);
    }
}

/// Every [`SUMMARY_EVERY`] while the daemon runs: a WARN summary when new
/// requests were refused, the log budget refilled, and the cookie secret
/// rotated every couple of minutes.
pub async fn watch(ctx: std::sync::Weak<crate::ctx::Ctx>) {
    let mut prev = AdmissionStats::default();
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(SUMMARY_EVERY).await;
        let Some(ctx) = ctx.upgrade() else { return };
        let adm = &ctx.admission;
        let now = adm.stats();
        let suppressed = adm.new_interval();
        if let Some(line) = flood_summary(&prev, &now, SUMMARY_EVERY.as_secs()) {
            tracing::warn!("{line}; {suppressed} log lines suppressed");
        }
        prev = now;
        ticks += 1;
        if ticks.is_multiple_of(ROTATE_EVERY) {
            adm.rotate_cookie_secret();
        }
    }
}

/// The summary line of one interval, or `None` when nothing was refused.
pub fn flood_summary(prev: &AdmissionStats, now: &AdmissionStats, secs: u64) -> Option<String> {
    let d = |f: fn(&AdmissionStats) -> u64| f(now).saturating_sub(f(prev));
    let cookies = d(|s| s.cookies_sent_total);
    let max = d(|s| s.dropped_half_open_max_total);
    let block = d(|s| s.dropped_block_threshold_total);
    let backlog = d(|s| s.dropped_backlog_total);
    let shed = d(|s| s.shed_total);
    let unmatched = d(|s| s.unmatched_total);
    if cookies + max + block + backlog + shed + unmatched == 0 {
        return None;
    }
    Some(format!(
        "IKE_SA_INIT flood: in the last {secs} s {} requests; {cookies} answered with COOKIE ({} invalid cookies), {} admitted on a cookie, dropped: {max} at half_open_max, {block} at block_threshold, {backlog} behind the responder backlog, {shed} shed strangers, {unmatched} from addresses no connection accepts; {} half-open",
        d(|s| s.requests_total),
        d(|s| s.cookies_invalid_total),
        d(|s| s.cookies_valid_total),
        now.half_open,
    ))
}

#[cfg(test)]
mod tests {
    use ike::crypto::SeededRandom;
    use ike::sa::IkeSa;
    use ike::testing::Pair;

    use super::*;

    fn request(seed: u64) -> (SocketAddr, SocketAddr, Vec<u8>, IkeSa) {
        let p = Pair::default_with_seed(seed);
        let mut a = IkeSa::initiate(
            p.now,
            p.a.config.clone(),
            p.a.addr,
            p.b.addr,
            Box::new(SeededRandom::new(seed)),
            &["net"],
        );
        let t = a.poll_transmit().unwrap();
        (t.remote, t.local, t.data, a)
    }

    #[test]
    fn cookies_past_the_thresholds_then_blocks_per_address() {
        let adm = Admission::new(AdmissionConfig {
            cookie_threshold: 4,
            cookie_threshold_ip: 2,
            block_threshold: 3,
            half_open_max: 6,
        });
        let (local, remote, data, mut a) = request(1);
        let mut slots = Vec::new();
        for _ in 0..2 {
            assert!(matches!(adm.gate(local, remote, &data), Gate::Pass));
            slots.push(adm.claim(remote.ip()));
        }
        // Two half-open from this address: a cookie is required of it...
        let Gate::Challenge(reply) = adm.gate(local, remote, &data) else {
            panic!("expected a COOKIE")
        };
        // ...but not of another address while the total is below 4.
        let other: SocketAddr = "198.18.9.9:500".parse().unwrap();
        assert!(matches!(adm.gate(local, other, &data), Gate::Pass));
        slots.push(adm.claim(other.ip()));
        // The initiator follows the COOKIE and passes.
        a.handle_datagram(
            Pair::default_with_seed(1).now,
            reply.remote,
            reply.local,
            &reply.data,
        )
        .unwrap();
        let retry = a.poll_transmit().unwrap().data;
        assert!(matches!(adm.gate(local, remote, &retry), Gate::Pass));
        slots.push(adm.claim(remote.ip()));
        // Three from this address: blocked even with a valid cookie.
        assert!(matches!(
            adm.gate(local, remote, &retry),
            Gate::Drop(Refusal::BlockThreshold)
        ));
        // Fill up to half_open_max from elsewhere (with cookies, as four
        // are half-open): then everyone is dropped.
        for _ in 0..2 {
            assert!(matches!(adm.gate(local, remote, &retry), Gate::Drop(_)));
        }
        for ip in ["198.18.8.1", "198.18.8.2"] {
            let ip: IpAddr = ip.parse().unwrap();
            adm.reserve(ip).unwrap();
            slots.push(adm.claim(ip));
        }
        assert!(adm.cookies_required());
        assert!(matches!(
            adm.gate(local, other, &data),
            Gate::Drop(Refusal::HalfOpenMax)
        ));
        let st = adm.stats();
        assert_eq!(st.half_open, 6);
        assert_eq!(st.cookies_sent_total, 1);
        assert_eq!(st.cookies_valid_total, 4);
        assert_eq!(st.dropped_block_threshold_total, 3);
        assert_eq!(st.dropped_half_open_max_total, 1);
        // The flood ends: every slot comes back and nothing is required.
        drop(slots);
        assert_eq!(adm.half_open(), 0);
        assert!(adm.per_ip.lock().unwrap().is_empty());
        assert!(matches!(adm.gate(local, remote, &data), Gate::Pass));
        let line = flood_summary(&AdmissionStats::default(), &adm.stats(), 5).unwrap();
        assert!(line.contains("1 answered with COOKIE"), "{line}");
        assert!(line.contains("3 at block_threshold"), "{line}");
        assert_eq!(flood_summary(&adm.stats(), &adm.stats(), 5), None);
    }

    #[test]
    fn zero_thresholds_turn_the_checks_off() {
        let adm = Admission::new(AdmissionConfig {
            cookie_threshold: 0,
            cookie_threshold_ip: 0,
            block_threshold: 0,
            half_open_max: 0,
        });
        let (local, remote, data, _) = request(2);
        let slots: Vec<_> = (0..50)
            .map(|_| {
                assert!(matches!(adm.gate(local, remote, &data), Gate::Pass));
                adm.claim(remote.ip())
            })
            .collect();
        assert_eq!(adm.half_open(), 50);
        drop(slots);
    }

    #[test]
    fn a_rotated_secret_still_honours_the_previous_cookie() {
        let adm = Admission::new(AdmissionConfig {
            cookie_threshold: 0,
            cookie_threshold_ip: 1,
            block_threshold: 0,
            half_open_max: 0,
        });
        let (local, remote, data, mut a) = request(3);
        adm.reserve(remote.ip()).unwrap();
        let _slot = adm.claim(remote.ip());
        let Gate::Challenge(reply) = adm.gate(local, remote, &data) else {
            panic!("expected a COOKIE")
        };
        a.handle_datagram(
            Pair::default_with_seed(3).now,
            reply.remote,
            reply.local,
            &reply.data,
        )
        .unwrap();
        let retry = a.poll_transmit().unwrap().data;
        adm.rotate_cookie_secret();
        assert!(matches!(adm.gate(local, remote, &retry), Gate::Pass));
        adm.rotate_cookie_secret();
        assert!(matches!(
            adm.gate(local, remote, &retry),
            Gate::Challenge(_)
        ));
        assert_eq!(adm.stats().cookies_invalid_total, 1);
    }
}
