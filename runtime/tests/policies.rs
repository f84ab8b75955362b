//! Backoff, retry and restart-tracker policies (pure functions, fake instants).

use std::time::{Duration, Instant};

use runtime::backoff::{self, jitter, Backoff};
use runtime::retry::RetryPolicy;
use runtime::supervise::{Decision, RestartPolicy, RestartTracker};

const MS: Duration = Duration::from_millis(1);

#[test]
fn backoff_doubles_and_caps() {
    let b = Backoff {
        base: 100 * MS,
        max: Duration::from_secs(1),
        jitter_pct: 0,
    };
    let got: Vec<_> = (1..=6).map(|n| b.delay(n, 0.5)).collect();
    assert_eq!(
        got,
        vec![100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
    );
    assert_eq!(b.delay(0, 0.5), 100 * MS, "n = 0 behaves like n = 1");
    assert_eq!(
        b.delay(u32::MAX, 0.5),
        Duration::from_secs(1),
        "no overflow"
    );
    let huge = Backoff {
        base: Duration::from_secs(u64::MAX / 2),
        max: Duration::MAX,
        jitter_pct: 0,
    };
    assert_eq!(huge.delay(200, 0.0), Duration::MAX);
}

#[test]
fn backoff_jitter_bounds() {
    let b = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(8),
        jitter_pct: 20,
    };
    for n in 1..=10 {
        let nominal = b.undithered(n);
        let lo = b.delay(n, 0.0);
        let hi = b.delay(n, 0.999);
        assert_eq!(lo, nominal.mul_f64(0.8), "n={n}");
        assert!(hi <= nominal.mul_f64(1.2), "n={n}: {hi:?}");
        assert!(hi >= nominal.mul_f64(1.199), "n={n}: {hi:?}");
        assert!(hi <= b.max.mul_f64(1.2));
        assert!(lo <= b.delay(n, 0.5) && b.delay(n, 0.5) <= hi);
    }
    // Many random draws stay within bounds.
    for _ in 0..10_000 {
        let r = backoff::rand01();
        assert!((0.0..1.0).contains(&r));
        let d = b.delay(20, r);
        assert!(d >= Duration::from_millis(6400) && d <= Duration::from_millis(9600));
    }
}

#[test]
fn jitter_is_never_negative() {
    assert_eq!(
        jitter(Duration::from_secs(10), 0, 0.0),
        Duration::from_secs(10)
    );
    assert_eq!(
        jitter(Duration::from_secs(10), 10, 0.0),
        Duration::from_secs(9)
    );
    assert_eq!(
        jitter(Duration::from_secs(10), 10, 0.5),
        Duration::from_secs(10)
    );
    assert!(jitter(Duration::from_secs(10), 10, 0.999) <= Duration::from_secs(11));
    assert_eq!(jitter(Duration::from_secs(10), 100, 0.0), Duration::ZERO);
    assert_eq!(jitter(Duration::from_secs(10), 250, 0.0), Duration::ZERO);
    assert_eq!(
        jitter(Duration::from_secs(10), 10, -3.0),
        Duration::from_secs(9)
    );
}

#[test]
fn rand01_spreads() {
    let draws: Vec<f64> = (0..1000).map(|_| backoff::rand01()).collect();
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!((0.4..0.6).contains(&mean), "mean {mean}");
    assert!(draws.iter().any(|&r| r < 0.1) && draws.iter().any(|&r| r > 0.9));
}

#[test]
fn keyingtries_three_gives_two_retries() {
    let p = RetryPolicy {
        keyingtries: 3,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(300),
        jitter_pct: 0,
    };
    // attempt 1 fails -> retry after 1 s; attempt 2 fails -> retry after 2 s;
    // attempt 3 fails -> give up.
    assert_eq!(p.next_attempt(1, 0.0), Some(Duration::from_secs(1)));
    assert_eq!(p.next_attempt(2, 0.0), Some(Duration::from_secs(2)));
    assert_eq!(p.next_attempt(3, 0.0), None);
    assert_eq!(p.next_attempt(4, 0.0), None);

    let once = RetryPolicy {
        keyingtries: 1,
        ..p
    };
    assert_eq!(once.next_attempt(1, 0.0), None, "keyingtries 1: no retry");
}

#[test]
fn keyingtries_zero_retries_forever_capped() {
    let p = RetryPolicy {
        keyingtries: 0,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(300),
        jitter_pct: 10,
    };
    for failed in [1, 2, 10, 1000, u32::MAX] {
        let d = p.next_attempt(failed, 0.999).expect("forever");
        assert!(d <= Duration::from_secs(330), "{failed}: {d:?}");
    }
    assert_eq!(p.next_attempt(100, 0.5), Some(Duration::from_secs(300)));
}

fn policy(max: u32, window_s: u64) -> RestartPolicy {
    RestartPolicy {
        max_restarts: max,
        window: Duration::from_secs(window_s),
        backoff: Backoff {
            base: 100 * MS,
            max: Duration::from_secs(10),
            jitter_pct: 0,
        },
    }
}

#[test]
fn restart_policy_default() {
    let p = RestartPolicy::default();
    assert_eq!(p.max_restarts, 5);
    assert_eq!(p.window, Duration::from_secs(60));
    assert_eq!(p.backoff.base, 100 * MS);
    assert_eq!(p.backoff.max, Duration::from_secs(10));
    assert_eq!(p.backoff.jitter_pct, 20);
}

#[test]
fn restart_tracker_gives_up_after_max_in_window_then_recovers() {
    let t0 = Instant::now();
    let mut tr = RestartTracker::new(policy(3, 60));
    let d1 = tr.on_failure(t0, 0.0);
    let d2 = tr.on_failure(t0 + Duration::from_secs(1), 0.0);
    let d3 = tr.on_failure(t0 + Duration::from_secs(2), 0.0);
    assert_eq!(
        [d1, d2, d3],
        [
            Decision::Restart {
                after: 100 * MS,
                restart_number: 1
            },
            Decision::Restart {
                after: 200 * MS,
                restart_number: 2
            },
            Decision::Restart {
                after: 400 * MS,
                restart_number: 3
            },
        ]
    );
    assert_eq!(
        tr.on_failure(t0 + Duration::from_secs(3), 0.0),
        Decision::GiveUp {
            restarts_in_window: 3
        }
    );
    assert_eq!(tr.restarts_total(), 3);
    // 60 s after the first restart, one slot frees up.
    assert_eq!(
        tr.on_failure(t0 + Duration::from_secs(60), 0.0),
        Decision::Restart {
            after: 400 * MS,
            restart_number: 3
        }
    );
    // Well past the window: back to the first restart and base delay.
    assert_eq!(
        tr.on_failure(t0 + Duration::from_secs(200), 0.0),
        Decision::Restart {
            after: 100 * MS,
            restart_number: 1
        }
    );
    assert_eq!(tr.restarts_total(), 5);
    assert_eq!(tr.restarts_in_window(t0 + Duration::from_secs(200)), 1);
}

#[test]
fn restart_tracker_zero_restarts_always_gives_up() {
    let mut tr = RestartTracker::new(policy(0, 60));
    assert_eq!(
        tr.on_failure(Instant::now(), 0.3),
        Decision::GiveUp {
            restarts_in_window: 0
        }
    );
}
