//! vpnd: the IKEv2 keying daemon. Runs in the foreground, logs to stderr.
//!
//! vpnd [--config PATH] [--socket PATH] [--log-format text|json] [--impair]

use std::sync::Arc;
use std::time::Duration;

use actors::{DaemonHandle, DaemonSettings};
use clap::Parser;
use control::cli::VpndArgs as Args;
use control::config::{self, Dataplane};
use control::server::{self, Server};
use kernel::NoneDataplane;
use runtime::scheduler::SchedulerConfig;

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Under systemd, stderr is the journal, which stamps each line itself.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match (format == "json", journal) {
        (true, _) => builder.json().init(),
        (false, true) => builder.without_time().init(),
        (false, false) => builder.init(),
    }
}

/// Times one key computation here (the median of 64) and derives the
/// default rate from it and the core count.
async fn derived_rate() -> u32 {
    let cost = tokio::task::spawn_blocking(|| {
        let mut rng = ike::crypto::SystemRandom::new();
        let mut times: Vec<Duration> = (0..64)
            .map(|_| {
                let t = std::time::Instant::now();
                let _ = std::hint::black_box(ike::crypto::reference_key_computation(&mut rng));
                t.elapsed()
            })
            .collect();
        times.sort();
        times[times.len() / 2]
    })
    .await
    .unwrap_or(Duration::from_millis(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate = SchedulerConfig::derived_rate(cost, cores);
    tracing::info!(
        "key computations: at most {rate}/s (one takes {} us here, {cores} cores, at most {:.0}% of the CPU; [scheduler] key_computations_per_sec overrides)",
        cost.as_micros(),
        runtime::scheduler::DEFAULT_KEY_CPU_SHARE * 100.0
    );
    rate
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    init_logging(&args.log_format);
    if let Err(e) = run(args).await {
        eprintln!("vpnd: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let cfg = config::load(&args.config).map_err(|e| format!("invalid configuration:\n{e}"))?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let s = &cfg.secrets;
    let (keys, cas, crls) = (
        s.key_files().len(),
        s.ca_files().count(),
        s.crl_files().count(),
    );
    if keys + cas + crls > 0 {
        tracing::info!("loaded {keys} private key(s), {cas} CA certificate(s), {crls} CRL(s)");
    }
    let userspace = || {
        let opts = kernel::userspace::UserspaceOptions {
            tun: cfg.daemon.tun.clone(),
            workers: cfg.daemon.workers as usize,
            keep_alive: cfg.daemon.keep_alive,
            route_table: cfg.daemon.route_table,
            fwmark: cfg.daemon.fwmark,
            ..Default::default()
        };
        kernel::userspace::UserspaceDataplane::new(opts)
    };
    let xfrm = || {
        let d = kernel::xfrm::XfrmDataplane::new(kernel::xfrm::XfrmSettings {
            install_routes: cfg.daemon.install_routes,
            route_table: cfg.daemon.route_table,
            keep_alive: cfg.daemon.keep_alive,
        })?;
        for line in d.reconcile() {
            tracing::warn!("xfrm: {line} (left by an earlier vpnd)");
        }
        Ok::<_, std::io::Error>(d)
    };
    let auto_userspace = |why: String| -> Result<Arc<dyn kernel::Dataplane>, String> {
        match userspace() {
            Ok(d) => {
                tracing::info!("dataplane 'auto': using 'userspace' (ESP-in-UDP over TUN): {why}");
                Ok(Arc::new(d))
            }
            Err(e) => {
                tracing::warn!("dataplane 'auto': {why}; the userspace dataplane cannot start ({e}); using 'none': no packets will flow");
                Ok(Arc::new(NoneDataplane::new()))
            }
        }
    };
    let dataplane: Arc<dyn kernel::Dataplane> = match cfg.daemon.dataplane {
        Dataplane::None => Arc::new(NoneDataplane::new()),
        Dataplane::Userspace => Arc::new(userspace().map_err(|e| {
            format!(
                "{}: daemon.dataplane: the userspace dataplane cannot start: {e}",
                cfg.main_file.display()
            )
        })?),
        Dataplane::Xfrm => Arc::new(xfrm().map_err(|e| {
            format!(
                "{}: daemon.dataplane: the xfrm dataplane cannot start: {e}",
                cfg.main_file.display()
            )
        })?),
        Dataplane::Auto => match kernel::xfrm::probe::probe() {
            Ok(()) => match xfrm() {
                Ok(d) => {
                    tracing::info!("dataplane 'auto': using 'xfrm' (this kernel installs ESP SAs)");
                    Arc::new(d)
                }
                Err(e) => auto_userspace(format!("the xfrm dataplane cannot start: {e}"))?,
            },
            Err(why) => auto_userspace(why)?,
        },
    };
    let specs = control::convert::specs(&cfg)?;
    let rate = match cfg.scheduler.key_computations_per_sec {
        Some(rate) => rate,
        None => derived_rate().await,
    };
    let settings = DaemonSettings {
        listen: cfg.daemon.listen.clone(),
        dataplane,
        scheduler: SchedulerConfig {
            key_computations_per_sec: rate,
            max_concurrent: cfg.scheduler.max_concurrent,
            max_half_open_per_peer: cfg.scheduler.max_half_open_per_peer,
        },
        impair: args.impair,
        admission: control::convert::admission(&cfg.daemon),
        state_dir: cfg.daemon.state_dir.clone(),
    };
    if let Some(addr) = cfg.daemon.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| {
                format!(
                    "{}: daemon.metrics: cannot serve on {addr}: {e}",
                    cfg.main_file.display()
                )
            })?;
        runtime::describe_metrics();
        tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
    }
    let listener = server::bind(&args.socket, cfg.daemon.socket_group.as_deref())?;
    let n = specs.len();
    let daemon = Arc::new(DaemonHandle::start(settings, specs).await?);
    tracing::info!(
        connections = n,
        socket = %args.socket.display(),
        "vpnd started"
    );
    let server = Server::new(daemon.clone(), cfg);
    let serve = tokio::spawn(server.serve(listener));

    // systemd (Type=notify): READY=1 now that the sockets are bound and the
    // configuration is loaded; then STATUS= and the watchdog.
    let notifier = control::notify::Notifier::from_env();
    let supervise = if notifier.enabled() {
        let first = control::notify::stats(&daemon, Duration::from_secs(2))
            .await
            .map(|s| control::notify::summary(&s))
            .unwrap_or_else(|| format!("{n} connections loaded"));
        notifier.ready(&first);
        let watchdog = control::notify::watchdog_interval();
        if let Some(w) = watchdog {
            tracing::info!("systemd watchdog: every {w:?}, pinged while the daemon actor answers");
        }
        Some(tokio::spawn(control::notify::supervise(
            daemon.clone(),
            notifier.clone(),
            watchdog,
            first,
        )))
    } else {
        None
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    notifier.stopping();
    if let Some(t) = supervise {
        t.abort();
        let _ = t.await;
    }
    serve.abort();
    let _ = serve.await;
    let _ = std::fs::remove_file(&args.socket);
    match Arc::try_unwrap(daemon) {
        Ok(d) => d.shutdown().await,
        Err(_) => tracing::warn!("daemon still referenced at shutdown"),
    }
    Ok(())
}
