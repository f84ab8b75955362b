//! systemd's service notifications (`Type=notify`, `WatchdogSec=`).
//!
//! - `READY=1` once the sockets are bound and the configuration is loaded
//!   (the caller sends it, [`Notifier::ready`]);
//! - `STATUS=12 connections, 11 IKE SAs, 14 CHILD SAs`, refreshed when the
//!   monitor stream reports a change (at most once a second) and every
//!   [`STATUS_REFRESH`] regardless;
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, but only when the daemon actor
//!   answered a `Stats` request within a quarter of it: a wedged actor tree
//!   stops the pings and systemd restarts the daemon;
//! - `STOPPING=1` on shutdown.
//!
//! Without `NOTIFY_SOCKET` none of this runs. Datagrams are written by one
//! plain thread fed by a channel, so a slow or full notification socket
//! never blocks the async runtime.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::status::StatsReport;
use actors::{Api, ApiReply, DaemonHandle};
use sd_notify::NotifyState;
use tokio::sync::broadcast::error::RecvError;

/// The `STATUS=` line is refreshed at least this often.
pub const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// One notification for the writer thread.
#[derive(Debug)]
enum Note {
    Ready(String),
    Status(String),
    Watchdog,
    Stopping,
}

/// Sends notifications to the service manager, off the async runtime.
/// Inert when the process was not started with `NOTIFY_SOCKET`.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Note>>,
}

impl Notifier {
    /// From the environment: inert without `NOTIFY_SOCKET`.
    pub fn from_env() -> Notifier {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Notifier { tx: None };
        }
        let (tx, rx) = mpsc::channel::<Note>();
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                for note in rx {
                    let r = match &note {
                        Note::Ready(s) => {
                            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(s)])
                        }
                        Note::Status(s) => sd_notify::notify(&[NotifyState::Status(s)]),
                        Note::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
                        Note::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
                    };
                    if let Err(e) = r {
                        tracing::warn!("sd_notify: cannot send {note:?}: {e}");
                    }
                }
            });
        match spawned {
            Ok(_) => Notifier { tx: Some(tx) },
            Err(e) => {
                tracing::warn!("sd_notify: cannot start the notification thread: {e}");
                Notifier { tx: None }
            }
        }
    }

    /// Does this process talk to a service manager?
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn send(&self, note: Note) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(note);
        }
    }

    /// `READY=1` with the first `STATUS=` line.
    pub fn ready(&self, status: &str) {
        self.send(Note::Ready(status.to_string()));
    }

    pub fn status(&self, status: &str) {
        self.send(Note::Status(status.to_string()));
    }

    pub fn watchdog(&self) {
        self.send(Note::Watchdog);
    }

    pub fn stopping(&self) {
        self.send(Note::Stopping);
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `12 connections, 11 IKE SAs, 14 CHILD SAs`.
pub fn summary(s: &StatsReport) -> String {
    format!(
        "{}, {}, {}",
        plural(s.connections, "connection", "connections"),
        plural(s.ike_sas, "IKE SA", "IKE SAs"),
        plural(s.child_sas, "CHILD SA", "CHILD SAs")
    )
}

/// The daemon's counters, or `None` when the actor tree did not answer
/// within `timeout`.
pub async fn stats(daemon: &DaemonHandle, timeout: Duration) -> Option<StatsReport> {
    match daemon.api(Api::Stats, timeout).await {
        ApiReply::Stats(s) => Some(*s),
        _ => None,
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this
/// process), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Keeps `STATUS=` current and, with `watchdog`, pings systemd while the
/// daemon actor answers. Runs until aborted.
pub async fn supervise(
    daemon: Arc<DaemonHandle>,
    notifier: Notifier,
    watchdog: Option<Duration>,
    mut last: String,
) {
    let mut events = daemon.monitor();
    let mut events_open = true;
    let mut dirty = false;
    let mut refreshed = Instant::now();
    let mut status_tick = tokio::time::interval(Duration::from_secs(1));
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Ping at half the interval; the probe must answer within a quarter.
    let period = watchdog.map(|w| (w / 2).max(Duration::from_millis(10)));
    let probe_timeout = watchdog.map_or(Duration::from_secs(2), |w| {
        (w / 4).clamp(Duration::from_millis(5), Duration::from_secs(5))
    });
    let mut wd_tick = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
    wd_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        tokio::select! {
            r = events.recv(), if events_open => match r {
                Ok(_) | Err(RecvError::Lagged(_)) => dirty = true,
                Err(RecvError::Closed) => events_open = false,
            },
            _ = status_tick.tick() => {
                if dirty || refreshed.elapsed() >= STATUS_REFRESH {
                    if let Some(s) = stats(&daemon, Duration::from_secs(2)).await {
                        dirty = false;
                        refreshed = Instant::now();
                        let line = summary(&s);
                        if line != last {
                            notifier.status(&line);
                            last = line;
                        }
                    }
                }
            }
            _ = wd_tick.tick(), if period.is_some() => {
                match stats(&daemon, probe_timeout).await {
                    Some(s) => {
                        notifier.watchdog();
                        if stalled {
                            tracing::info!("watchdog: the daemon actor answers again");
                            stalled = false;
                        }
                        let line = summary(&s);
                        if line != last {
                            notifier.status(&line);
                            last = line;
                        }
                    }
                    None => {
                        if !stalled {
                            tracing::error!(
                                "watchdog: the daemon actor did not answer within {probe_timeout:?}; \
                                 WATCHDOG=1 withheld (systemd restarts vpnd if this lasts)"
                            );
                        }
                        stalled = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_with_plurals() {
        let mut s = StatsReport {
            connections: 12,
            ike_sas: 11,
            child_sas: 14,
            ..Default::default()
        };
        assert_eq!(summary(&s), "12 connections, 11 IKE SAs, 14 CHILD SAs");
        s.connections = 1;
        s.ike_sas = 1;
        s.child_sas = 0;
        assert_eq!(summary(&s), "1 connection, 1 IKE SA, 0 CHILD SAs");
    }
}
