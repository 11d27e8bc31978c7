//! Client-side Prometheus metrics (`--metrics-listen`), named as fixed in DESIGN.md, so dashboards
//! can put the generator's view next to the server's.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::client::ErrorKind;
use crate::generate::naming::load as load_names;

/// The family a series belongs to: its name without the `suffix` the encoder appends.
fn family(series: &'static str, suffix: &str) -> &'static str {
    series.strip_suffix(suffix).unwrap_or(series)
}

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

/// The generator's metrics, exposed by the library's registry and exposition (with process
/// metrics, content negotiation and gzip) like any app instrumented with redwatch.
pub struct ClientMetrics {
    exposition: redwatch::Metrics,
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
        // The generator serves no API: no empty request families or in-flight gauge of 0.
        let exposition = redwatch::Metrics::builder()
            .request_metrics(false)
            .service_name("redwatch-load")
            .app_version(env!("CARGO_PKG_VERSION"))
            .build()
            // A fixed configuration, valid by construction (tested).
            .unwrap_or_else(|_| redwatch::Metrics::new());
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations: HistogramFamily = Family::new_with_constructor(|| {
            Histogram::new(redwatch::DEFAULT_DURATION_BUCKETS.iter().copied())
        });
        let target_rate = Gauge::<f64, AtomicU64>::default();
        let in_flight = Gauge::default();
        let schedule_lag = Gauge::<f64, AtomicU64>::default();
        let dropped = Counter::default();
        exposition.register(
            family(load_names::REQUESTS, "_total"),
            "Requests completed by the load generator, by endpoint and status (3-digit code or `error`)",
            requests.clone(),
        );
        exposition.register(
            "redwatch_load_errors",
            "Requests that got no response, by endpoint and kind (timeout, connect, reset, other)",
            errors.clone(),
        );
        exposition.register(
            family(load_names::DURATION_BUCKET, "_bucket"),
            "Request latency measured from the intended send time (coordinated-omission corrected)",
            durations.clone(),
        );
        exposition.register(
            load_names::TARGET_RATE,
            "Scheduled request rate in requests per second (0 in closed loop)",
            target_rate.clone(),
        );
        exposition.register(
            "redwatch_load_in_flight",
            "Requests sent and not yet completed",
            in_flight.clone(),
        );
        exposition.register(
            "redwatch_load_schedule_lag_seconds",
            "How far behind its schedule the sender is",
            schedule_lag.clone(),
        );
        exposition.register(
            "redwatch_load_dropped",
            "Scheduled requests never sent because --max-in-flight was reached until the run ended",
            dropped.clone(),
        );
        Self {
            exposition,
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

/// Serves `GET /metrics` on a bound `listener` in the background until the process exits;
/// returns its address.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: &ClientMetrics,
) -> anyhow::Result<SocketAddr> {
    let addr = listener
        .local_addr()
        .context("cannot read the metrics listener address")?;
    let exposition = metrics.exposition.clone();
    tokio::spawn(async move {
        if let Err(err) = exposition.serve(listener, std::future::pending()).await {
            tracing::warn!("metrics listener stopped: {err}");
        }
    });
    Ok(addr)
}

impl ClientMetrics {
    /// The exposition as Prometheus text.
    #[cfg(test)]
    pub fn render(&self) -> String {
        String::from_utf8_lossy(&self.exposition.render(redwatch::Format::Prometheus)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_the_client_metrics_and_the_process_metrics() {
        let metrics = ClientMetrics::new();
        let endpoint = metrics.endpoint("/ep_one");
        endpoint.observe(0.3, None);
        metrics.requests_counter(&endpoint, "200").inc();
        let text = metrics.render();
        for needle in [
            "redwatch_load_request_duration_seconds_bucket{le=\"0.5\",endpoint=\"/ep_one\"} 1",
            "redwatch_load_errors_total{endpoint=\"/ep_one\",kind=\"timeout\"} 0",
            redwatch::process_names::RESIDENT_MEMORY,
            load_names::REQUESTS,
            load_names::DURATION_BUCKET,
            load_names::TARGET_RATE,
        ] {
            assert!(text.contains(needle), "no {needle:?} in\n{text}");
        }
        // No server-side request metrics: the generator serves no API.
        for family in [
            "http_server_request_duration",
            "http_server_active_requests",
        ] {
            assert!(!text.contains(family), "{family} in\n{text}");
        }
    }
}
