//! Client-side Prometheus metrics (`--metrics-listen`), named as fixed in DESIGN.md, so dashboards
//! can put the generator's view next to the server's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::client::ErrorKind;

/// The server-side duration buckets (OTel defaults), so client and server histograms line up.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    endpoint: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

/// The generator's metrics and the registry they are exposed from.
pub struct ClientMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: HistogramFamily,
    /// `redwatch_load_target_rate` (requests/s; 0 in closed loop).
    pub target_rate: Gauge<f64, AtomicU64>,
    /// `redwatch_load_in_flight`.
    pub in_flight: Gauge,
    /// `redwatch_load_schedule_lag_seconds`: how far the sender is behind the schedule.
    pub schedule_lag: Gauge<f64, AtomicU64>,
    /// `redwatch_load_dropped_total`.
    pub dropped: Counter,
}

/// Pre-resolved handles for one endpoint, so recording a request does no label lookups except
/// for the first occurrence of a status code.
pub struct EndpointMetrics {
    label: String,
    duration: Histogram,
    errors: [Counter; 4],
}

impl ClientMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let target_rate = Gauge::<f64, AtomicU64>::default();
        let in_flight = Gauge::default();
        let schedule_lag = Gauge::<f64, AtomicU64>::default();
        let dropped = Counter::default();
        registry.register(
            "redwatch_load_requests",
            "Requests completed by the load generator, by endpoint and status (3-digit code or `error`)",
            requests.clone(),
        );
        registry.register(
            "redwatch_load_errors",
            "Requests that got no response, by endpoint and kind (timeout, connect, reset, other)",
            errors.clone(),
        );
        registry.register(
            "redwatch_load_request_duration_seconds",
            "Request latency measured from the intended send time (coordinated-omission corrected)",
            durations.clone(),
        );
        registry.register(
            "redwatch_load_target_rate",
            "Scheduled request rate in requests per second (0 in closed loop)",
            target_rate.clone(),
        );
        registry.register(
            "redwatch_load_in_flight",
            "Requests sent and not yet completed",
            in_flight.clone(),
        );
        registry.register(
            "redwatch_load_schedule_lag_seconds",
            "How far behind its schedule the sender is",
            schedule_lag.clone(),
        );
        registry.register(
            "redwatch_load_dropped",
            "Scheduled requests never sent because --max-in-flight was reached until the run ended",
            dropped.clone(),
        );
        Self {
            registry,
            requests,
            errors,
            durations,
            target_rate,
            in_flight,
            schedule_lag,
            dropped,
        }
    }

    /// Handles for one endpoint; creates its error series at zero so `rate()` works from the start.
    pub fn endpoint(&self, label: &str) -> EndpointMetrics {
        let duration = self
            .durations
            .get_or_create(&EndpointLabels {
                endpoint: label.to_owned(),
            })
            .clone();
        let errors = ErrorKind::ALL.map(|kind| {
            self.errors
                .get_or_create(&ErrorLabels {
                    endpoint: label.to_owned(),
                    kind: kind.as_str(),
                })
                .clone()
        });
        EndpointMetrics {
            label: label.to_owned(),
            duration,
            errors,
        }
    }

    /// The requests counter for one endpoint and status label.
    pub fn requests_counter(&self, endpoint: &EndpointMetrics, status: &str) -> Counter {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.label.clone(),
                status: status.to_owned(),
            })
            .clone()
    }
}

impl EndpointMetrics {
    /// Records a completed request's latency (seconds, from the intended send time).
    pub fn observe(&self, seconds: f64, error: Option<ErrorKind>) {
        self.duration.observe(seconds);
        if let Some(kind) = error {
            self.errors[kind.index()].inc();
        }
    }
}

/// Renders the exposition. Kept in one function so the library's shared exposition can replace it.
pub fn render(metrics: &ClientMetrics) -> (&'static str, String) {
    let mut body = String::new();
    // Writing into a String cannot fail; an error here would be an encoder bug, so degrade to
    // whatever was written rather than failing the scrape.
    let _ = prometheus_client::encoding::text::encode(&mut body, &metrics.registry);
    (
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    )
}

/// Binds `listen` and serves `GET /metrics` in the background until the process exits.
pub async fn serve(listen: &str, metrics: Arc<ClientMetrics>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on --metrics-listen {listen:?}"))?;
    serve_on(listener, metrics)
}

/// Serves `GET /metrics` on a bound `listener` in the background until the process exits;
/// returns its address.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<ClientMetrics>,
) -> anyhow::Result<SocketAddr> {
    let addr = listener
        .local_addr()
        .context("cannot read the metrics listener address")?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                let (content_type, body) = render(&metrics);
                ([(CONTENT_TYPE, content_type)], body).into_response()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!("metrics listener stopped: {err}");
        }
    });
    Ok(addr)
}
