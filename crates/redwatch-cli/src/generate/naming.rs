//! The one table of metric and label names per naming preset. Every PromQL expression the
//! generator writes (rules, alerts, dashboards, rule tests) is built from these names.

use clap::ValueEnum;

/// A naming preset of the instrumented API (the `--naming` flag of `redwatch serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// OpenTelemetry HTTP semantic conventions as exported to Prometheus.
    Otel,
    /// prometheus_flask_exporter compatible names.
    Flask,
}

impl Preset {
    /// Both presets, in the order the default output is written.
    pub const ALL: [Preset; 2] = [Preset::Otel, Preset::Flask];

    /// The directory name and identifier of the preset.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Otel => "otel",
            Preset::Flask => "flask",
        }
    }

    /// The metric and label names this preset exposes.
    pub fn names(self) -> &'static MetricNames {
        match self {
            Preset::Otel => &OTEL,
            Preset::Flask => &FLASK,
        }
    }
}

/// Metric and label names of one preset.
#[derive(Debug)]
pub struct MetricNames {
    /// Base name of the request duration histogram (`_bucket`, `_sum`, `_count` are appended).
    pub duration: &'static str,
    /// Label holding the route template.
    pub route: &'static str,
    /// Label holding the HTTP method.
    pub method: &'static str,
    /// Label holding the three-digit status code.
    pub status: &'static str,
    /// Gauge of requests currently being served.
    pub active_requests: &'static str,
    /// Info gauge carrying the service version.
    pub info: &'static str,
    /// Label of `info` holding the version.
    pub version_label: &'static str,
}

/// The generator's view of the library's names: the library is the one source of truth.
const fn from_library(names: &'static redwatch::MetricNames) -> MetricNames {
    MetricNames {
        duration: names.duration,
        route: names.route_label,
        method: names.method_label,
        status: names.status_label,
        active_requests: names.active_requests,
        info: names.info,
        version_label: names.version_label,
    }
}

static OTEL: MetricNames = from_library(redwatch::Naming::Otel.names());
static FLASK: MetricNames = from_library(redwatch::Naming::Flask.names());

impl MetricNames {
    /// The histogram's `_count` series: one per request.
    pub fn count(&self) -> String {
        format!("{}_count", self.duration)
    }
    /// The histogram's `_sum` series: total seconds spent.
    pub fn sum(&self) -> String {
        format!("{}_sum", self.duration)
    }
    /// The histogram's `_bucket` series.
    pub fn bucket(&self) -> String {
        format!("{}_bucket", self.duration)
    }
}

/// Process metrics exposed under both presets.
pub mod process {
    pub use redwatch::process_names::*;
}

/// Client-side metrics of `redwatch load --metrics-listen`.
pub mod load {
    pub const REQUESTS: &str = "redwatch_load_requests_total";
    pub const DURATION_BUCKET: &str = "redwatch_load_request_duration_seconds_bucket";
    pub const TARGET_RATE: &str = "redwatch_load_target_rate";
}

/// Histogram bucket upper bounds (seconds) of the server and the load generator. The latency SLO
/// threshold must be one of them: a ratio "under the threshold" is only exact at a bucket bound.
pub const BUCKETS: &[f64] = redwatch::DEFAULT_DURATION_BUCKETS;
