//! `redwatch serve`: the demo API, instrumented with the redwatch library.
//!
//! Four endpoints of increasing latency, one that always fails, `/cpu` and `/memory` to make
//! the resource panels move, a templated route, a health check and `/metrics`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rand::RngExt;
use redwatch::{Metrics, Naming};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// Flags of `redwatch serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Use 0.0.0.0:5000 inside a container or to accept other hosts;
    /// the default only accepts connections from this machine.
    #[arg(long, env = "REDWATCH_LISTEN", default_value = "127.0.0.1:5000", value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// Metric naming preset: `otel` (OpenTelemetry semantic conventions) or `flask`
    /// (prometheus_flask_exporter compatible).
    #[arg(long, env = "REDWATCH_NAMING", default_value = "otel")]
    pub naming: Naming,

    /// Multiplies the artificial latency of /ep_one../ep_four (each sleeps uniformly in
    /// [0, 0.2·k·scale] s); 0 turns the sleeps off for benchmarks.
    #[arg(long, env = "REDWATCH_LATENCY_SCALE", default_value = "1", value_parser = parse_scale,
          allow_negative_numbers = true)]
    pub latency_scale: f64,

    /// Application version reported by the info metric.
    #[arg(long, env = "REDWATCH_APP_VERSION", default_value = env!("CARGO_PKG_VERSION"), value_parser = parse_label_value)]
    pub app_version: String,

    /// Deployment environment reported by the info metric.
    #[arg(long, env = "REDWATCH_ENVIRONMENT", default_value = "development", value_parser = parse_label_value)]
    pub environment: String,

    /// Serve /metrics on this separate address instead of the API's (e.g. a port only
    /// Prometheus can reach). Default: /metrics on the API listener.
    #[arg(long, env = "REDWATCH_METRICS_LISTEN", value_parser = parse_addr)]
    pub metrics_listen: Option<SocketAddr>,

    /// Require `Authorization: Bearer TOKEN` on /metrics. Default: no authentication.
    #[arg(long, env = "REDWATCH_METRICS_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub metrics_token: Option<String>,

    /// How long in-flight requests may run after SIGINT/SIGTERM before the server exits.
    #[arg(long, env = "REDWATCH_SHUTDOWN_GRACE", default_value = "10s", value_parser = crate::duration::duration_flag)]
    pub shutdown_grace: Duration,

    /// Adds this many constant series (`redwatch_demo_extra_series{series="N"}`) to /metrics,
    /// to see what scraping a large exposition costs the API (see bench/soak). At most 1000000.
    #[arg(long, env = "REDWATCH_EXTRA_SERIES", default_value = "0", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub extra_series: u32,

    /// Also keep the request durations as native histograms, served in the Prometheus protobuf
    /// format to a Prometheus started with `--enable-feature=native-histograms` (text scrapes are
    /// unchanged).
    #[arg(long, env = "REDWATCH_NATIVE_HISTOGRAMS")]
    pub native_histograms: bool,
}

/// Parses `IP:PORT`, with a message that says what is expected.
pub fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!(
            "expected IP:PORT such as 127.0.0.1:5000, [::1]:5000 or 0.0.0.0:5000, got {value:?}"
        )
    })
}

/// A label value of the info metric: an empty one would drop the label.
fn parse_label_value(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(value.to_owned())
}

/// A bearer token as the Authorization header carries it.
fn parse_token(value: &str) -> Result<String, String> {
    if value.is_empty() || value.contains(char::is_whitespace) {
        // The value is a secret: do not echo it.
        return Err("the token must be non-empty and contain no whitespace".to_owned());
    }
    Ok(value.to_owned())
}

fn parse_scale(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale >= 0.0 => Ok(scale),
        _ => Err(format!("expected a number >= 0, got {value:?}")),
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Demo {
    latency_scale: f64,
    /// Bounds concurrent /cpu burns to the number of cores.
    cpu_slots: Arc<Semaphore>,
    /// Bounds concurrent /memory calls, so at most `MEMORY_SLOTS` × 50 MB is ever held.
    memory_slots: Arc<Semaphore>,
}

const MEMORY_SLOTS: usize = 2;
const MEMORY_BYTES: usize = 50 * 1024 * 1024;
const CPU_BURN: Duration = Duration::from_millis(100);

/// Requests in flight on the API routes, and whether the server is draining after a signal.
///
/// While draining, the listener keeps accepting: /metrics is served as usual, so a scrape during
/// the grace period collects the final counts, and API requests get a 503 with
/// `Connection: close`. The server stops once no API request is in flight.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    inner: Arc<DrainState>,
}

#[derive(Debug, Default)]
struct DrainState {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Counts one API request in flight until dropped (completed or cancelled).
struct InFlight(Arc<DrainState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    fn start(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Resolves once no API request is in flight.
    async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

async fn refuse_while_draining(
    State(drain): State<Drain>,
    request: Request,
    next: Next,
) -> Response {
    if drain.inner.draining.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONNECTION, "close")],
            "shutting down\n",
        )
            .into_response();
    }
    drain.inner.in_flight.fetch_add(1, Ordering::AcqRel);
    let _in_flight = InFlight(Arc::clone(&drain.inner));
    next.run(request).await
}

/// Builds the demo API's router, instrumented by `metrics`; /metrics is included when
/// `with_metrics_route` is true. API requests are counted by `drain`, and refused once it drains.
pub fn app(
    metrics: &Metrics,
    latency_scale: f64,
    with_metrics_route: bool,
    drain: &Drain,
) -> Router {
    app_with(
        metrics,
        latency_scale,
        with_metrics_route,
        drain,
        Router::new(),
    )
}

/// [`app`] with `extra` routes (e.g. the live dashboard) behind the metrics layer, as an
/// application adds them; they decide themselves whether they are recorded.
pub fn app_with(
    metrics: &Metrics,
    latency_scale: f64,
    with_metrics_route: bool,
    drain: &Drain,
    extra: Router,
) -> Router {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let demo = Demo {
        latency_scale,
        cpu_slots: Arc::new(Semaphore::new(cores)),
        memory_slots: Arc::new(Semaphore::new(MEMORY_SLOTS)),
    };
    let mut router = Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/ep_one",
            get(|State(demo): State<Demo>| sleep_endpoint(demo, 1)),
        )
        .route(
            "/ep_two",
            get(|State(demo): State<Demo>| sleep_endpoint(demo, 2)),
        )
        .route(
            "/ep_three",
            get(|State(demo): State<Demo>| sleep_endpoint(demo, 3)),
        )
        .route(
            "/ep_four",
            get(|State(demo): State<Demo>| sleep_endpoint(demo, 4)),
        )
        .route("/error", get(error))
        .route("/cpu", get(cpu))
        .route("/memory", get(memory))
        .route("/users/{id}", get(user))
        .route("/health", get(|| async { "ok" }))
        .with_state(demo)
        .layer(middleware::from_fn_with_state(
            drain.clone(),
            refuse_while_draining,
        ));
    if with_metrics_route {
        router = router.merge(metrics.router());
    }
    router.merge(extra).layer(metrics.layer())
}

async fn sleep_endpoint(demo: Demo, k: u32) -> String {
    let upper = 0.2 * f64::from(k) * demo.latency_scale;
    let seconds = if upper > 0.0 {
        rand::rng().random_range(0.0..upper)
    } else {
        0.0
    };
    if seconds > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }
    format!("endpoint {k} slept {:.1} ms\n", seconds * 1000.0)
}

async fn error() -> impl IntoResponse {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "this endpoint always fails\n",
    )
}

async fn cpu(State(demo): State<Demo>) -> Result<String, StatusCode> {
    let _slot = demo
        .cpu_slots
        .acquire()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let iterations = tokio::task::spawn_blocking(|| {
        let start = Instant::now();
        let mut x = 0u64;
        let mut iterations = 0u64;
        while start.elapsed() < CPU_BURN {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            iterations += 1;
            std::hint::black_box(x);
        }
        iterations
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(format!(
        "burned {} ms of CPU in {iterations} rounds\n",
        CPU_BURN.as_millis()
    ))
}

async fn memory(State(demo): State<Demo>) -> Result<String, StatusCode> {
    let _slot = demo
        .memory_slots
        .acquire()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let touched = tokio::task::spawn_blocking(|| {
        // Write every page so the allocation is resident, not just reserved.
        let mut block = vec![0u8; MEMORY_BYTES];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        let touched: usize = block.iter().step_by(4096).map(|&b| usize::from(b)).sum();
        drop(std::hint::black_box(block));
        touched
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(format!(
        "allocated and released {} MiB ({touched} pages)\n",
        MEMORY_BYTES / (1024 * 1024)
    ))
}

async fn user(Path(id): Path<String>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": id }))
}

/// Registers `count` constant gauge series, one per value of the label `series`.
fn register_extra_series(metrics: &Metrics, count: u32) {
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    if count == 0 {
        return;
    }
    let family = Family::<[(&'static str, String); 1], Gauge>::default();
    for i in 0..count {
        family.get_or_create(&[("series", i.to_string())]).set(1);
    }
    metrics.register(
        "redwatch_demo_extra_series",
        "Constant series added by --extra-series to make the exposition large.",
        family,
    );
}

/// The demo API's metrics as the flags configure them.
fn metrics(args: &ServeArgs) -> anyhow::Result<Metrics> {
    let mut builder = Metrics::builder()
        .naming(args.naming)
        .service_name("redwatch-demo")
        .app_version(&args.app_version)
        .environment(&args.environment)
        // Requests that carry a sampled `traceparent` (`redwatch load --traceparent`) become
        // exemplars of the latency buckets.
        .exemplars(true)
        .native_histograms(args.native_histograms);
    if let Some(token) = &args.metrics_token {
        builder = builder.bearer_token(token);
    }
    let metrics = builder.build().context("invalid metrics configuration")?;
    register_extra_series(&metrics, args.extra_series);
    Ok(metrics)
}

/// Runs `redwatch serve` until SIGINT/SIGTERM, then drains (see [`Drain`]).
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let metrics = metrics(&args)?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let api_addr = listener.local_addr()?;
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(listener) => listener.local_addr()?,
        None => api_addr,
    };

    // Before the startup line: a signal sent as soon as the line appears must reach our
    // handler, not the default action that kills the process without a graceful shutdown.
    let mut signals = crate::signals::ShutdownSignals::install()?;

    let drain = Drain::default();
    let app = app(
        &metrics,
        args.latency_scale,
        metrics_listener.is_none(),
        &drain,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    };
    let api = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped())
            .into_future(),
    );
    let metrics_server =
        metrics_listener.map(|listener| tokio::spawn(metrics.clone().serve(listener, stopped())));

    println!(
        "redwatch serve listening on http://{api_addr} (metrics: http://{metrics_addr}{})",
        metrics.metrics_path()
    );
    tracing::info!(%api_addr, %metrics_addr, naming = %args.naming, latency_scale = args.latency_scale, "serving the demo API");

    let signal = signals.recv().await?;
    tracing::info!(signal, grace = ?args.shutdown_grace, "shutting down: finishing requests in flight, refusing new ones with 503, still serving /metrics");
    let shutdown = drain_and_stop(drain, stop_tx, api, metrics_server, args.shutdown_grace);
    tokio::select! {
        result = shutdown => result,
        second = signals.recv() => {
            let second = second?;
            tracing::warn!(signal = second, "second signal: exiting at once");
            Ok(ExitCode::from(130))
        }
    }
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Refuses new API requests, waits for those in flight, then stops the servers; exits anyway
/// once `grace` has passed.
async fn drain_and_stop(
    drain: Drain,
    stop_tx: tokio::sync::watch::Sender<bool>,
    api: ServerTask,
    metrics_server: Option<ServerTask>,
    grace: Duration,
) -> anyhow::Result<ExitCode> {
    let deadline = tokio::time::Instant::now() + grace;
    drain.start();
    if tokio::time::timeout_at(deadline, drain.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "requests still in flight after the grace period; exiting"
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Stop accepting and close idle connections; a scrape under way may finish.
    let _ = stop_tx.send(true);
    let finished = async {
        let api_result = api.await;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        api_result
    };
    match tokio::time::timeout_at(deadline, finished).await {
        Ok(Ok(Ok(()))) => {
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(Err(error))) => Err(error).context("server failed"),
        Ok(Err(join_error)) => Err(join_error).context("server task failed"),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; exiting"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_must_be_non_negative() {
        assert_eq!(parse_scale("0"), Ok(0.0));
        assert!(parse_scale("-1").unwrap_err().contains(">= 0"));
        assert!(parse_scale("NaN").is_err());
    }
}
