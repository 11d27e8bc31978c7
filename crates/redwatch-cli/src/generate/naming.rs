//! The metric and label names of the API, from the library's naming presets and the API's
//! library configuration. Every PromQL expression the generator writes (rules, alerts,
//! dashboards, rule tests) is built from these names.

use redwatch::Naming;

/// How the API configures the library's metrics (`redwatch::MetricsBuilder`), as far as the
/// names and buckets of its series depend on it.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMetrics {
    /// Prefix of the RED metric names (`MetricsBuilder::namespace`).
    pub namespace: Option<String>,
    /// Labels on every series (`MetricsBuilder::const_label`).
    pub const_labels: Vec<(String, String)>,
    /// Upper bounds of the duration buckets in seconds (`MetricsBuilder::duration_buckets`).
    pub duration_buckets: Vec<f64>,
}

impl AppMetrics {
    /// The library's rule: this configuration builds under `naming`, or the library's reason.
    pub fn check(&self, naming: Naming) -> Result<(), redwatch::BuildError> {
        let mut builder = redwatch::Metrics::builder()
            .naming(naming)
            .duration_buckets(self.duration_buckets.clone());
        if let Some(namespace) = &self.namespace {
            builder = builder.namespace(namespace.clone());
        }
        for (name, value) in &self.const_labels {
            builder = builder.const_label(name.clone(), value.clone());
        }
        builder.build().map(drop)
    }

    /// The names the API's series carry under `naming`: the RED metrics under the namespace,
    /// info metrics without it (as the library's encoder writes them).
    pub fn names(&self, naming: Naming) -> MetricNames {
        let library = naming.names();
        let prefix = match &self.namespace {
            Some(namespace) => format!("{namespace}_"),
            None => String::new(),
        };
        MetricNames {
            duration: format!("{prefix}{}", library.duration),
            route: library.route_label,
            method: library.method_label,
            status: library.status_label,
            active_requests: format!("{prefix}{}", library.active_requests),
            request_body_size: format!("{prefix}{}", library.request_body_size),
            response_body_size: format!("{prefix}{}", library.response_body_size),
            info: library.info,
            version_label: library.version_label,
        }
    }
}

/// Metric and label names of one preset, as one configured API exposes them.
#[derive(Debug, Clone)]
pub struct MetricNames {
    /// Base name of the request duration histogram (`_bucket`, `_sum`, `_count` are appended).
    pub duration: String,
    /// Label holding the route template.
    pub route: &'static str,
    /// Label holding the HTTP method.
    pub method: &'static str,
    /// Label holding the three-digit status code.
    pub status: &'static str,
    /// Gauge of requests currently being served.
    pub active_requests: String,
    /// Base name of the request body size histogram (opt-in: `MetricsBuilder::body_sizes`).
    pub request_body_size: String,
    /// Base name of the response body size histogram (opt-in, as the request's).
    pub response_body_size: String,
    /// Info gauge carrying the service version.
    pub info: &'static str,
    /// Label of `info` holding the version.
    pub version_label: &'static str,
}

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

/// Client-side metrics of `redwatch load --metrics-listen` that the generated files read; the
/// load generator registers its families under these names.
pub mod load {
    pub const REQUESTS: &str = "redwatch_load_requests_total";
    pub const DURATION_BUCKET: &str = "redwatch_load_request_duration_seconds_bucket";
    pub const TARGET_RATE: &str = "redwatch_load_target_rate";
}
