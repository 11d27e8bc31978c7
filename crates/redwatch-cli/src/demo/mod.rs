//! `redwatch demo`: the whole system on one machine, one command.
//!
//! The demo API (the same app as `redwatch serve`) with the library's live dashboard at
//! `/dashboard`, the load generator running in-process against it, and — when a `prometheus`
//! binary is available — a Prometheus scraping both, configured by the generator's own files,
//! whose alerts the dashboard shows. Everything stops on Ctrl-C/SIGTERM or after `--duration`,
//! and nothing is left running or on disk.

mod prometheus;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use redwatch::Metrics;
use redwatch::dashboard::Dashboard;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::generate::PromDuration;
use crate::load::{self, Embedding, LoadSettings, Mix, Target};
use crate::serve::{self, parse_addr};
use crate::signals::ShutdownSignals;
use prometheus::{Prometheus, PrometheusChoice};

/// Flags of `redwatch demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address of the API (and of /metrics and /dashboard).
    #[arg(long, env = "REDWATCH_LISTEN", default_value = "127.0.0.1:5000", value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// Requests per second the built-in load generator sends (open loop, with --mix).
    #[arg(long, env = "REDWATCH_RATE", default_value = "20", value_parser = load::rate_flag)]
    pub rate: f64,

    /// Stop everything after this long, e.g. 30s, 5m. [default: run until Ctrl-C or SIGTERM]
    #[arg(long, env = "REDWATCH_DURATION", value_parser = load::positive_duration)]
    pub duration: Option<Duration>,

    /// Endpoints and weights of the built-in load generator, as `redwatch load --mix`.
    #[arg(long, env = "REDWATCH_MIX", default_value = load::DEFAULT_MIX,
          value_parser = load::mix_flag)]
    pub mix: Mix,

    /// Path of the Prometheus binary, or `none` to run without Prometheus.
    /// [default: `prometheus` from PATH if there is one, else run without it]
    #[arg(long, env = "REDWATCH_PROMETHEUS", value_name = "PATH")]
    pub prometheus: Option<String>,

    /// Address Prometheus listens on; when it is taken, a free port on the same IP is used.
    #[arg(long, env = "REDWATCH_PROMETHEUS_LISTEN", default_value = "127.0.0.1:9090", value_parser = parse_addr)]
    pub prometheus_listen: SocketAddr,

    /// How often Prometheus scrapes the API and the load generator and evaluates the rules
    /// (as `redwatch generate --scrape-interval`).
    #[arg(long, env = "REDWATCH_SCRAPE_INTERVAL", default_value = "5s",
          value_parser = crate::generate::nonzero_duration)]
    pub scrape_interval: PromDuration,

    /// The window of the dashboard's rates and quantiles, as the `[...]` of `rate()`.
    /// [default: Grafana's `$__rate_interval` for the scrape interval, 4 × --scrape-interval]
    #[arg(long, env = "REDWATCH_DASHBOARD_RATE_WINDOW", value_parser = dashboard_rate_window_flag)]
    pub dashboard_rate_window: Option<Duration>,
}

/// How often the dashboard samples the registry (the library's default resolution).
const DASHBOARD_RESOLUTION: Duration = Duration::from_secs(1);

/// `--dashboard-rate-window`: at least two dashboard samples, as `rate()` needs two points.
fn dashboard_rate_window_flag(text: &str) -> Result<Duration, String> {
    let window = load::positive_duration(text)?;
    if window < DASHBOARD_RESOLUTION * 2 {
        return Err(format!(
            "must be at least {} s (two dashboard samples)",
            (DASHBOARD_RESOLUTION * 2).as_secs()
        ));
    }
    Ok(window)
}

impl DemoArgs {
    /// The dashboard's rate window: `--dashboard-rate-window`, or what Grafana's
    /// `$__rate_interval` is on the demo's Prometheus for short ranges (4 scrape intervals),
    /// so that the page and a Grafana panel on the same data draw the same lines.
    pub fn dashboard_rate_window(&self) -> Duration {
        self.dashboard_rate_window
            .unwrap_or(Duration::from_millis(
                self.scrape_interval.times(4).millis(),
            ))
            .max(DASHBOARD_RESOLUTION * 2)
    }
}

/// The address to connect to for a listener bound to `addr` (0.0.0.0 and :: are not
/// destinations).
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// How long the API may finish requests in flight after the load stopped.
const API_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The demo's parts, configured and bound, before any of them runs.
struct Parts {
    metrics: Metrics,
    api_listener: TcpListener,
    /// Where the API is reached (loopback for an unspecified listen address).
    api_target: SocketAddr,
    load_metrics_listener: TcpListener,
    load: LoadSettings,
    /// The generator's settings Prometheus's configuration and rules are written with.
    rules: crate::generate::Settings,
    /// The dashboard, with the rules' latency threshold and objective; Prometheus's address is
    /// added once it runs.
    dashboard: redwatch::dashboard::DashboardBuilder,
}

impl Parts {
    /// Builds every part's settings and binds the listeners: anything wrong with the input
    /// fails here, before anything starts.
    async fn prepare(args: &DemoArgs) -> anyhow::Result<Self> {
        let metrics = Metrics::builder()
            .service_name("redwatch-demo")
            .app_version(env!("CARGO_PKG_VERSION"))
            .environment("demo")
            // As `redwatch serve`: the load below sends a sampled `traceparent` with every
            // request, so the latency buckets carry exemplars for the demo's Prometheus to keep.
            .exemplars(true)
            .build()
            .context("invalid metrics configuration")?;
        let api_listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let api_addr = api_listener
            .local_addr()
            .context("cannot read the API address")?;
        let api_target = connect_addr(api_addr);
        let load_metrics_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("cannot listen for the load generator's metrics")?;
        let load_metrics_addr = load_metrics_listener
            .local_addr()
            .context("cannot read the load metrics address")?;
        let mut load = LoadSettings::open_loop(Target::http(api_target), args.rate)
            .map_err(|err| anyhow::anyhow!("{}", crate::clap_error_line(&err)))
            .context("load generator settings")?;
        load.mix = args.mix.clone();
        load.duration = args.duration;
        load.traceparent = true;
        let rules = prometheus::rule_settings(api_target, load_metrics_addr, args.scrape_interval)?;
        let dashboard = dashboard_settings(&metrics, &rules, args.dashboard_rate_window());
        // Checked now, so that a setting the dashboard refuses stops the demo before it starts.
        dashboard.clone().build().context("dashboard settings")?;
        Ok(Self {
            metrics,
            api_listener,
            api_target,
            load_metrics_listener,
            load,
            rules,
            dashboard,
        })
    }
}

/// The dashboard's settings: the latency threshold and availability objective are the ones the
/// alert rules are generated with, so the page and the alerts judge by the same numbers.
fn dashboard_settings(
    metrics: &Metrics,
    rules: &crate::generate::Settings,
    rate_window: Duration,
) -> redwatch::dashboard::DashboardBuilder {
    Dashboard::builder(metrics)
        .resolution(DASHBOARD_RESOLUTION)
        .rate_window(rate_window)
        .latency_threshold(Duration::from_millis(rules.latency_threshold.millis()))
        .objective(rules.availability)
}

/// Requests the API recorded, once those in flight have finished (or after 2 s).
async fn settled_request_count(metrics: &Metrics) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let snapshot = metrics.snapshot();
        if snapshot.active_requests() <= 0 || std::time::Instant::now() >= deadline {
            return snapshot.requests(|_| true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The API with its live dashboard, serving until told to stop.
struct RunningApi {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
}

impl RunningApi {
    fn start(listener: TcpListener, metrics: &Metrics, dashboard: &Dashboard) -> Self {
        // The dashboard sits behind the metrics layer, as in any app, and leaves its own
        // requests out (`record_own_requests` is off by default): the panels show what the
        // load generator did, nothing else.
        let app = serve::app_with(
            metrics,
            1.0,
            true,
            &serve::Drain::default(),
            dashboard.router(),
        );
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let mut stop = stop_rx;
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .into_future(),
        );
        Self { task, stop }
    }

    /// Stops accepting, lets requests in flight finish for up to [`API_SHUTDOWN_GRACE`].
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        match tokio::time::timeout(API_SHUTDOWN_GRACE, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => return Err(err).context("the API server failed"),
            Ok(Err(join_error)) => return Err(join_error).context("the API server task failed"),
            Err(_) => {
                tracing::warn!(grace = ?API_SHUTDOWN_GRACE, "API requests still in flight; exiting")
            }
        }
        Ok(())
    }
}

/// Runs `redwatch demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be wrong with the input is checked before anything starts.
    let prometheus_choice = PrometheusChoice::from_flag(args.prometheus.as_deref());
    let prometheus_binary = prometheus_choice.locate().await?;
    let parts = Parts::prepare(&args).await?;
    // Before anything is announced: a signal from then on must reach our handler.
    let mut signals = ShutdownSignals::install()?;

    // Prometheus first: if it cannot start, nothing else has started yet. Started from this
    // task (the main thread under `block_on`), which its parent-death signal is tied to. A
    // signal while it starts (which can take seconds) stops at once: dropping the start stops
    // Prometheus and removes its directory.
    let prometheus = match &prometheus_binary {
        Ok(binary) => {
            let start = Prometheus::start(binary, &parts.rules, args.prometheus_listen);
            tokio::select! {
                started = start => Some(started?),
                signal = signals.recv() => {
                    let name = signal.unwrap_or("a signal");
                    println!("redwatch demo: {name} while Prometheus was starting: stopped");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        Err(_) => None,
    };
    let mut dashboard = parts.dashboard;
    if let Some(prometheus) = &prometheus {
        // Read by the browser: a reachable address, not 0.0.0.0.
        let reachable = connect_addr(prometheus.addr());
        dashboard = dashboard.prometheus_url(format!("http://{reachable}"));
    }
    let dashboard = dashboard.build().context("dashboard settings")?;
    let api = RunningApi::start(parts.api_listener, &parts.metrics, &dashboard);
    let load_metrics_addr = parts
        .load_metrics_listener
        .local_addr()
        .context("cannot read the load metrics address")?;
    let prometheus_line = match (&prometheus, &prometheus_binary) {
        (Some(prometheus), _) => Some(format!(
            "http://{}/ (config and data in {}, removed on exit)",
            prometheus.addr(),
            prometheus.dir().display()
        )),
        (None, Err(why)) => Some(format!("not running: {why}")),
        (None, Ok(_)) => None,
    };
    announce(
        &args,
        &parts.metrics,
        parts.api_target,
        load_metrics_addr,
        &parts.load,
        prometheus_line,
    );

    let load_outcome = run_load(parts.load, parts.load_metrics_listener, signals).await;
    // The load printed its summary; compare with what the API itself recorded. A failed load
    // is reported after everything is stopped.
    let recorded = settled_request_count(&parts.metrics).await;
    match &load_outcome {
        Ok(outcome) => println!(
            "redwatch demo: the API recorded {recorded} requests; the load generator completed {}",
            outcome.requests
        ),
        Err(_) => println!("redwatch demo: the API recorded {recorded} requests"),
    }
    if let Some(prometheus) = prometheus {
        let how = prometheus.stop().await;
        println!("redwatch demo: Prometheus {how}, its directory removed");
    }
    api.stop().await?;
    load_outcome.context("load generator")?;
    println!("redwatch demo: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Prints where each part is reached and what the load does.
fn announce(
    args: &DemoArgs,
    metrics: &Metrics,
    api_target: SocketAddr,
    load_metrics_addr: SocketAddr,
    load: &LoadSettings,
    prometheus: Option<String>,
) {
    println!("redwatch demo: the whole system on this machine");
    println!("  API:          http://{api_target}/");
    println!(
        "  metrics:      http://{api_target}{}",
        metrics.metrics_path()
    );
    println!("  dashboard:    http://{api_target}/dashboard");
    println!("  load metrics: http://{load_metrics_addr}/metrics");
    if let Some(prometheus) = prometheus {
        println!("  Prometheus:   {prometheus}");
    }
    let until = match args.duration {
        Some(duration) => format!("for {}", humanize(duration)),
        None => "until Ctrl-C or SIGTERM".to_owned(),
    };
    println!(
        "  load:         {} req/s open loop, mix {}, {until}",
        args.rate, load.mix
    );
    tracing::info!(%api_target, rate = args.rate, "demo running");
}

/// Runs the load generator until its --duration ends or a signal arrives.
async fn run_load(
    settings: LoadSettings,
    metrics_listener: TcpListener,
    mut signals: ShutdownSignals,
) -> anyhow::Result<load::EmbeddedOutcome> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut load = tokio::spawn(load::run_embedded(
        settings,
        Embedding {
            stop: stop_rx,
            metrics_listener: Some(metrics_listener),
        },
    ));
    let signal = signals.recv();
    tokio::pin!(signal);
    let result = tokio::select! {
        result = &mut load => result,
        signal = &mut signal => {
            match signal {
                Ok(name) => eprintln!("redwatch demo: {name}: stopping the load, Prometheus and the API"),
                Err(err) => eprintln!("redwatch demo: {err:#}; stopping"),
            }
            let _ = stop_tx.send(true);
            (&mut load).await
        }
    };
    result.unwrap_or_else(|join_error| {
        Err(anyhow::anyhow!(
            "the load generator task failed: {join_error}"
        ))
    })
}

/// `90s` → `1 min 30 s`, `3s` → `3 s`; milliseconds shown only when there are any.
fn humanize(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 || !millis.is_multiple_of(1000) {
        return format!("{:.3} s", duration.as_secs_f64());
    }
    let seconds = duration.as_secs();
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_reached_over_loopback() {
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert_eq!(connect_addr(any), "127.0.0.1:5000".parse().unwrap());
        let any6: SocketAddr = "[::]:5000".parse().unwrap();
        assert_eq!(connect_addr(any6), "[::1]:5000".parse().unwrap());
        let fixed: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert_eq!(connect_addr(fixed), fixed);
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn parse(args: &[&str]) -> Result<DemoArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("demo").chain(args.iter().copied())).map(|cli| cli.demo)
    }

    #[test]
    fn the_dashboard_window_follows_the_scrape_interval_unless_given() {
        let window = |args: &[&str]| parse(args).unwrap().dashboard_rate_window();
        // Grafana's $__rate_interval for short ranges: 4 scrape intervals.
        assert_eq!(window(&[]), Duration::from_secs(20));
        assert_eq!(window(&["--scrape-interval", "1s"]), Duration::from_secs(4));
        assert_eq!(
            window(&["--scrape-interval", "1s", "--dashboard-rate-window", "30s"]),
            Duration::from_secs(30)
        );
        // Two dashboard samples at least, for the flag and for a short scrape interval.
        assert!(parse(&["--dashboard-rate-window", "1s"]).is_err());
        assert_eq!(
            window(&["--scrape-interval", "200ms"]),
            Duration::from_secs(2)
        );
        assert!(parse(&["--scrape-interval", "0s"]).is_err());
    }

    #[test]
    fn the_dashboard_judges_by_the_rules_threshold_and_objective() {
        let api: SocketAddr = "127.0.0.1:5123".parse().unwrap();
        let load: SocketAddr = "127.0.0.1:5124".parse().unwrap();
        let rules = prometheus::rule_settings(api, load, PromDuration::from_millis(5_000)).unwrap();
        let metrics = Metrics::new();
        let dashboard = dashboard_settings(&metrics, &rules, Duration::from_secs(20))
            .build()
            .unwrap();
        let data = dashboard.data(&redwatch::dashboard::DataQuery::new(60, None));
        assert_eq!(data.latency_threshold_s, rules.latency_threshold.secs_f64());
        assert_eq!(data.objective, rules.availability);
        assert_eq!(data.rate_window_s, 20.0);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(3)), "3 s");
        assert_eq!(humanize(Duration::from_secs(120)), "2 min");
        assert_eq!(humanize(Duration::from_secs(90)), "1 min 30 s");
        assert_eq!(humanize(Duration::from_millis(1500)), "1.500 s");
    }
}
