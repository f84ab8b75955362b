//! Key-computation scheduler on tokio's paused clock.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime::scheduler::{
    Priority, SchedulerConfig, SchedulerHandle, SchedulerStats, Weight, STRANGER_QUEUE,
};
use tokio::time::{sleep, timeout, Instant};

fn cfg(rate: u32, conc: u32, half: u32) -> SchedulerConfig {
    SchedulerConfig {
        key_computations_per_sec: rate,
        max_concurrent: conc,
        max_half_open_per_peer: half,
    }
}

async fn spawn(c: SchedulerConfig) -> SchedulerHandle {
    SchedulerHandle::spawn(c, None).await.expect("spawn").0
}

/// Let spawned tasks and the actor run (paused time advances only when idle).
async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn rate_limit_holds_in_every_window() {
    let rate = 10u32;
    let s = spawn(cfg(rate, 0, 0)).await;
    let burst = cfg(rate, 0, 0).burst() as f64;
    assert_eq!(burst, 1.0);
    let start = Instant::now();
    let grants = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        let grants = grants.clone();
        tasks.push(tokio::spawn(async move {
            let p = s.permit(Priority::Normal).await;
            grants.lock().unwrap().push(Instant::now());
            drop(p);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut g = grants.lock().unwrap().clone();
    g.sort();
    assert_eq!(g.len(), 50);
    let span = g[49] - start;
    assert!(
        span >= Duration::from_millis(4500),
        "50 permits took {span:?}"
    );
    assert!(span < Duration::from_secs(6), "too slow: {span:?}");
    // Sliding window: the grants in [g[i], g[j]] never exceed burst + rate * t.
    for i in 0..g.len() {
        for j in i..g.len() {
            let n = (j - i + 1) as f64;
            let t = (g[j] - g[i]).as_secs_f64();
            assert!(
                n <= burst + rate as f64 * t + 1e-9,
                "{n} grants within {t} s"
            );
        }
    }
    let st = s.stats().await;
    assert_eq!(st.key_computations_total, 50);
    assert_eq!(st.queued, 0);
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.rate_limit_per_sec, 10);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_with_burst() {
    // rate 400 -> burst 20: the first 20 are immediate, then 1 per 2.5 ms.
    let rate = 400u32;
    let s = spawn(cfg(rate, 0, 0)).await;
    let burst = cfg(rate, 0, 0).burst() as f64;
    assert_eq!(burst, 20.0);
    let start = Instant::now();
    let mut g = Vec::new();
    for _ in 0..220 {
        let _p = s.permit(Priority::High).await;
        g.push(Instant::now());
    }
    assert_eq!(g[19], start, "burst granted at once");
    assert!(g[219] - start >= Duration::from_millis(500));
    for i in 0..g.len() {
        for j in i..g.len() {
            let n = (j - i + 1) as f64;
            let t = (g[j] - g[i]).as_secs_f64();
            assert!(n <= burst + rate as f64 * t + 1e-9, "{n} in {t}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_cap_is_respected() {
    let s = spawn(cfg(0, 2, 0)).await;
    let alive = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..12u64 {
        let (s, alive, peak) = (s.clone(), alive.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let p = s.permit(Priority::Normal).await;
            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            sleep(Duration::from_millis(10 + i)).await;
            alive.fetch_sub(1, Ordering::SeqCst);
            drop(p);
        }));
    }
    settle().await;
    let st = s.stats().await;
    assert_eq!(st.in_flight, 2);
    assert_eq!(st.queued, 10);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    settle().await;
    let st = s.stats().await;
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.key_computations_total, 12);
}

#[tokio::test(start_paused = true)]
async fn priority_order_high_normal_low() {
    let s = spawn(cfg(0, 1, 0)).await;
    let hold = s.permit(Priority::Normal).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (prio, tag) in [
        (Priority::Low, "low1"),
        (Priority::Normal, "normal1"),
        (Priority::Low, "low2"),
        (Priority::High, "high1"),
        (Priority::Normal, "normal2"),
        (Priority::High, "high2"),
    ] {
        let (s, order) = (s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let p = s.permit(prio).await;
            order.lock().unwrap().push(tag);
            drop(p);
        }));
        settle().await; // enqueue in this order
    }
    assert_eq!(s.stats().await.queued, 6);
    assert!(order.lock().unwrap().is_empty());
    drop(hold);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["high1", "high2", "normal1", "normal2", "low1", "low2"]
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_does_not_leak_a_slot() {
    let s = spawn(cfg(0, 1, 0)).await;
    let hold = s.permit(Priority::Normal).await;

    // A waiter that times out (its future is dropped while queued).
    assert!(timeout(Duration::from_millis(50), s.permit(Priority::High))
        .await
        .is_err());
    // A waiter in a task that gets aborted (`vpnctl kill`).
    let s2 = s.clone();
    let task = tokio::spawn(async move {
        let _p = s2.permit(Priority::High).await;
        std::future::pending::<()>().await;
    });
    settle().await;
    assert_eq!(s.stats().await.queued, 1);
    task.abort();
    let _ = task.await;
    settle().await;
    let st = s.stats().await;
    assert_eq!(st.queued, 0, "cancelled waiters pruned");
    assert_eq!(st.in_flight, 1);

    drop(hold);
    // The slot comes back: a new caller gets it at once.
    let p = timeout(Duration::from_millis(10), s.permit(Priority::Low))
        .await
        .expect("slot was leaked");
    assert_eq!(s.stats().await.in_flight, 1);
    drop(p);
    settle().await;
    let st = s.stats().await;
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.key_computations_total, 2);
}

#[tokio::test(start_paused = true)]
async fn waiter_cancelled_after_grant_returns_the_slot() {
    // The permit is sent, but the receiving task is aborted before it runs.
    let s = spawn(cfg(0, 1, 0)).await;
    let hold = s.permit(Priority::Normal).await;
    let s2 = s.clone();
    let task = tokio::spawn(async move {
        let _p = s2.permit(Priority::Normal).await;
        std::future::pending::<()>().await;
    });
    settle().await;
    drop(hold); // actor grants to the waiting task...
    task.abort(); // ...which may be cancelled before or after receiving it
    let _ = task.await;
    settle().await;
    assert_eq!(s.stats().await.in_flight, 0);
    let _p = timeout(Duration::from_millis(10), s.permit(Priority::Normal))
        .await
        .expect("slot was leaked");
}

#[tokio::test(start_paused = true)]
async fn half_open_pacing_per_peer() {
    let s = spawn(cfg(0, 0, 2)).await;
    let a: IpAddr = "198.18.0.2".parse().unwrap();
    let b: IpAddr = "198.18.0.3".parse().unwrap();
    let g1 = s.half_open(a).await;
    let _g2 = s.half_open(a).await;
    let s2 = s.clone();
    let third = tokio::spawn(async move { s2.half_open(a).await });
    sleep(Duration::from_secs(5)).await;
    assert!(!third.is_finished(), "third half-open towards a must wait");
    // Another peer is not blocked.
    let gb = timeout(Duration::from_millis(1), s.half_open(b))
        .await
        .expect("peer b blocked");
    assert_eq!(gb.peer(), b);
    assert_eq!(s.stats().await.half_open, 3);

    drop(g1);
    let g3 = timeout(Duration::from_millis(10), third)
        .await
        .expect("third not released")
        .unwrap();
    assert_eq!(g3.peer(), a);
    assert_eq!(s.stats().await.half_open, 3);

    // A cancelled half-open waiter does not take a slot.
    assert!(timeout(Duration::from_millis(5), s.half_open(a))
        .await
        .is_err());
    drop(g3);
    let _g4 = timeout(Duration::from_millis(5), s.half_open(a))
        .await
        .expect("slot leaked");
    drop(gb);
    settle().await;
    assert_eq!(s.stats().await.half_open, 2);
}

#[tokio::test(start_paused = true)]
async fn compute_runs_the_closure_under_a_permit() {
    let s = spawn(cfg(100, 1, 0)).await;
    let v = s.compute(Priority::High, Weight::Heavy, || 6 * 7).await;
    assert_eq!(v, 42);
    let outs: Vec<u64> = futures_join(&s).await;
    assert_eq!(outs, (0..8).map(|i| i * i).collect::<Vec<_>>());
    settle().await;
    let st = s.stats().await;
    assert_eq!(st.key_computations_total, 9);
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.queued, 0);
}

async fn futures_join(s: &SchedulerHandle) -> Vec<u64> {
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.compute(Priority::Normal, Weight::Heavy, move || i * i)
                .await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn compute_propagates_panics_and_releases() {
    let s = spawn(cfg(0, 1, 0)).await;
    let s2 = s.clone();
    let r = tokio::spawn(async move {
        s2.compute(Priority::Normal, Weight::Heavy, || -> u32 {
            panic!("dh failed")
        })
        .await
    })
    .await;
    assert!(r.unwrap_err().is_panic());
    settle().await;
    assert_eq!(s.stats().await.in_flight, 0);
    assert_eq!(s.compute(Priority::Normal, Weight::Heavy, || 1).await, 1);
}

#[tokio::test(start_paused = true)]
async fn pressure_notifications_and_stats_json() {
    let s = spawn(cfg(0, 1, 0)).await;
    let mut rx = s.subscribe_pressure();
    let hold = s.permit(Priority::Normal).await;
    let s2 = s.clone();
    let waiter = tokio::spawn(async move { drop(s2.permit(Priority::Low).await) });
    let on = timeout(Duration::from_secs(1), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on.queued, 1);
    assert_eq!(on.in_flight, 1);
    drop(hold);
    let off = timeout(Duration::from_secs(1), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(off.queued, 0);
    waiter.await.unwrap();
    settle().await;
    let st = s.stats().await;
    let json = serde_json::to_value(st).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "key_computations_total": 2, "queued": 0, "in_flight": 0,
            "rate_limit_per_sec": 0, "half_open": 0, "shed_total": 0
        })
    );
}

#[tokio::test(start_paused = true)]
async fn set_config_raises_concurrency() {
    let s = spawn(cfg(0, 1, 1)).await;
    let _p1 = s.permit(Priority::Normal).await;
    let s2 = s.clone();
    let t = tokio::spawn(async move { s2.permit(Priority::Normal).await });
    settle().await;
    assert!(!t.is_finished());
    s.set_config(cfg(50, 2, 1)).await;
    let _p2 = timeout(Duration::from_millis(5), t).await.unwrap().unwrap();
    assert_eq!(s.config(), cfg(50, 2, 1));
    assert_eq!(
        s.stats().await,
        SchedulerStats {
            key_computations_total: 2,
            queued: 0,
            in_flight: 2,
            rate_limit_per_sec: 50,
            half_open: 0,
            shed_total: 0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn dead_scheduler_fails_open_and_can_be_respawned() {
    let (s, join) = SchedulerHandle::spawn(cfg(0, 1, 1), None).await.unwrap();
    let old = s.permit(Priority::Normal).await;
    s.actor_ref().stop(None);
    join.await.unwrap();
    // Fails open instead of hanging.
    let _p = timeout(Duration::from_millis(5), s.permit(Priority::Normal))
        .await
        .expect("hung on a dead scheduler");
    assert_eq!(s.stats().await.in_flight, 0);
    let _join = s.respawn(None, None).await.unwrap();
    drop(old); // released towards the dead actor: no effect on the new one
    let _p1 = s.permit(Priority::Normal).await;
    settle().await;
    assert_eq!(s.stats().await.in_flight, 1);
    assert!(
        timeout(Duration::from_millis(5), s.permit(Priority::Normal))
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn strangers_are_served_last_and_shed_oldest_first() {
    let s = spawn(cfg(0, 1, 0)).await;
    let hold = s.permit(Priority::Normal).await;
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut strangers = Vec::new();
    // One more stranger than the queue holds: the first one is shed.
    for i in 0..=STRANGER_QUEUE {
        let (s, served) = (s.clone(), served.clone());
        strangers.push(tokio::spawn(async move {
            let r = s
                .compute_or_shed(Priority::Stranger, Weight::Heavy, move || i)
                .await;
            if let Some(i) = r {
                served.lock().unwrap().push(format!("stranger{i}"));
            }
            r.is_some()
        }));
        settle().await;
    }
    // A configured peer's and a rekey's work arrive after the flood.
    let mut ours = Vec::new();
    for (prio, tag) in [(Priority::High, "peer"), (Priority::Low, "rekey")] {
        let (s, served) = (s.clone(), served.clone());
        ours.push(tokio::spawn(async move {
            let p = s.permit(prio).await;
            served.lock().unwrap().push(tag.to_string());
            drop(p);
        }));
        settle().await;
    }
    assert_eq!(s.stats().await.queued, STRANGER_QUEUE as u64 + 2);
    assert_eq!(s.stats().await.shed_total, 1);
    drop(hold);
    let mut outcomes = Vec::new();
    for t in strangers {
        outcomes.push(t.await.unwrap());
    }
    for t in ours {
        t.await.unwrap();
    }
    assert!(!outcomes[0], "the oldest stranger is shed");
    assert!(outcomes[1..].iter().all(|&ok| ok));
    let served = served.lock().unwrap();
    assert_eq!(served[..2], ["peer".to_string(), "rekey".to_string()]);
    assert_eq!(served[2], "stranger1");
    assert_eq!(served.len(), 2 + STRANGER_QUEUE);
}

#[test]
fn the_derived_default_rate_fills_half_of_the_cores() {
    // 100 us a computation on 2 cores: 10,000 a second take one core.
    assert_eq!(
        SchedulerConfig::derived_rate(Duration::from_micros(100), 2),
        10_000
    );
    // Rounded down to a hundred.
    assert_eq!(
        SchedulerConfig::derived_rate(Duration::from_micros(130), 1),
        3_800
    );
    // A very slow machine still gets some.
    assert_eq!(
        SchedulerConfig::derived_rate(Duration::from_secs(1), 1),
        100
    );
}
