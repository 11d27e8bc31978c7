//! Naming presets: which metric and label names the RED metrics are exported under.

use std::fmt;
use std::str::FromStr;

/// The metric and label names redwatch exports its RED metrics under.
///
/// ```
/// use redwatch::Naming;
///
/// let naming: Naming = "flask".parse().unwrap();
/// assert_eq!(naming, Naming::Flask);
/// assert_eq!(naming.names().duration, "flask_http_request_duration_seconds");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Naming {
    /// OpenTelemetry HTTP semantic conventions, as exported to Prometheus
    /// (`http_server_request_duration_seconds{http_request_method, http_route, http_response_status_code}`).
    #[default]
    Otel,
    /// prometheus_flask_exporter compatible names (`flask_http_request_duration_seconds{method, path, status}`),
    /// so that dashboards written for Flask apps work unchanged.
    Flask,
}

/// The concrete names of one [`Naming`] preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricNames {
    /// Request duration histogram, in seconds.
    pub duration: &'static str,
    /// Requests currently being served, by method.
    pub active_requests: &'static str,
    /// Request body size histogram, in bytes (opt-in).
    pub request_body_size: &'static str,
    /// Response body size histogram, in bytes (opt-in).
    pub response_body_size: &'static str,
    /// Request counter by method and status (`flask` only; derived from the duration histogram).
    pub requests_total: Option<&'static str>,
    /// Panicking handlers by method and status (`flask` only).
    pub exceptions_total: Option<&'static str>,
    /// Label holding the HTTP method.
    pub method_label: &'static str,
    /// Label holding the route template.
    pub route_label: &'static str,
    /// Label holding the three-digit status code.
    pub status_label: &'static str,
    /// Label holding the request's URI scheme, `http` or `https` (`otel` only).
    pub scheme_label: Option<&'static str>,
    /// Label holding the HTTP version, `1.1`, `2`, ... (`otel` only).
    pub protocol_version_label: Option<&'static str>,
    /// Label holding the status code of a server error (5xx), on those series only (`otel` only).
    pub error_type_label: Option<&'static str>,
    /// Info gauge (value 1) carrying the application's version and environment.
    pub info: &'static str,
    /// Label of [`MetricNames::info`] holding the application's version.
    pub version_label: &'static str,
    /// Label of [`MetricNames::info`] holding the deployment environment.
    pub environment_label: &'static str,
}

const OTEL: MetricNames = MetricNames {
    duration: "http_server_request_duration_seconds",
    active_requests: "http_server_active_requests",
    request_body_size: "http_server_request_body_size_bytes",
    response_body_size: "http_server_response_body_size_bytes",
    requests_total: None,
    exceptions_total: None,
    method_label: "http_request_method",
    route_label: "http_route",
    status_label: "http_response_status_code",
    scheme_label: Some("url_scheme"),
    protocol_version_label: Some("network_protocol_version"),
    error_type_label: Some("error_type"),
    info: "target_info",
    version_label: "service_version",
    environment_label: "deployment_environment_name",
};

const FLASK: MetricNames = MetricNames {
    duration: "flask_http_request_duration_seconds",
    active_requests: "flask_http_requests_in_progress",
    request_body_size: "flask_http_request_body_size_bytes",
    response_body_size: "flask_http_response_body_size_bytes",
    requests_total: Some("flask_http_request_total"),
    exceptions_total: Some("flask_http_request_exceptions_total"),
    method_label: "method",
    route_label: "path",
    status_label: "status",
    scheme_label: None,
    protocol_version_label: None,
    error_type_label: None,
    info: "app_info",
    version_label: "version",
    environment_label: "environment",
};

impl Naming {
    /// Every preset, in a stable order.
    pub const ALL: [Naming; 2] = [Naming::Otel, Naming::Flask];

    /// The metric and label names of this preset.
    pub const fn names(self) -> &'static MetricNames {
        match self {
            Naming::Otel => &OTEL,
            Naming::Flask => &FLASK,
        }
    }

    /// The preset's name as accepted by [`FromStr`]: `otel` or `flask`.
    pub fn as_str(self) -> &'static str {
        match self {
            Naming::Otel => "otel",
            Naming::Flask => "flask",
        }
    }
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a naming preset that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownNaming(pub String);

impl fmt::Display for UnknownNaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown naming preset {:?} (expected otel or flask)",
            self.0
        )
    }
}

impl std::error::Error for UnknownNaming {}

impl FromStr for Naming {
    type Err = UnknownNaming;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "otel" => Ok(Naming::Otel),
            "flask" => Ok(Naming::Flask),
            other => Err(UnknownNaming(other.to_owned())),
        }
    }
}

/// Names of the process and Tokio runtime metrics that `/metrics` shows under every naming,
/// for code that reads them (dashboards, rules, tests).
pub mod process_names {
    /// Counter: user and system CPU time, in seconds.
    pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
    /// Gauge: resident memory, in bytes.
    pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
    /// Gauge: virtual memory, in bytes.
    pub const VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
    /// Gauge: open file descriptors.
    pub const OPEN_FDS: &str = "process_open_fds";
    /// Gauge: the file descriptor limit.
    pub const MAX_FDS: &str = "process_max_fds";
    /// Gauge: OS threads.
    pub const THREADS: &str = "process_threads";
    /// Gauge: start time, in seconds since the Unix epoch.
    pub const START_TIME: &str = "process_start_time_seconds";
    /// Gauge: worker threads of the Tokio runtime.
    pub const TOKIO_WORKERS: &str = "tokio_runtime_workers";
    /// Gauge: alive tasks of the Tokio runtime.
    pub const TOKIO_ALIVE_TASKS: &str = "tokio_runtime_alive_tasks";
    /// Gauge: tasks in the Tokio runtime's global queue.
    pub const TOKIO_GLOBAL_QUEUE: &str = "tokio_runtime_global_queue_depth";
}

/// The OpenTelemetry default duration buckets, in seconds.
pub const DEFAULT_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Default body size buckets, in bytes: powers of four from 64 B to 16 MiB.
pub const DEFAULT_SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// The route value shared by every request no route matched (the 404 fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The route value for routes beyond [`crate::MetricsBuilder::max_routes`].
pub const OVERFLOW_ROUTE: &str = "overflow";

/// The status recorded for a request abandoned before a response existed (client disconnect,
/// timeout, dropped future): nginx's "client closed request".
pub const ABANDONED_STATUS: u16 = 499;

/// The label value of methods outside the known list.
pub(crate) const OTHER_METHOD: &str = "_OTHER";

/// The most methods [`crate::MetricsBuilder::known_methods`] takes.
pub(crate) const MAX_KNOWN_METHODS: usize = 16;

/// URI schemes, by index: what a request's `url_scheme` can be.
pub(crate) const SCHEMES: [&str; 2] = ["http", "https"];

/// HTTP versions, by index, as OpenTelemetry writes them in `network.protocol.version`.
pub(crate) const PROTOCOL_VERSIONS: [&str; 5] = ["0.9", "1.0", "1.1", "2", "3"];

/// The index of `version` in [`PROTOCOL_VERSIONS`].
#[inline]
pub(crate) fn version_index(version: http::Version) -> u8 {
    match version {
        http::Version::HTTP_09 => 0,
        http::Version::HTTP_10 => 1,
        http::Version::HTTP_2 => 3,
        http::Version::HTTP_3 => 4,
        _ => 2,
    }
}

/// HTTP methods that get their own label value by default (the methods of RFC 9110 and
/// PATCH, as OpenTelemetry lists them); all others are recorded as `_OTHER`.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

/// The index of `method` in [`METHODS`].
#[inline]
pub(crate) fn method_index(method: &http::Method) -> u8 {
    // Standard methods are a tag inside `http::Method`, so this is one switch on it.
    match *method {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::CONNECT => 5,
        http::Method::OPTIONS => 6,
        http::Method::TRACE => 7,
        http::Method::PATCH => 8,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_presets_and_rejects_others() {
        assert_eq!("otel".parse::<Naming>(), Ok(Naming::Otel));
        assert_eq!("flask".parse::<Naming>(), Ok(Naming::Flask));
        let err = "prom".parse::<Naming>().unwrap_err();
        assert!(err.to_string().contains("\"prom\""));
    }

    #[test]
    fn nonstandard_methods_share_other() {
        assert_eq!(METHODS[method_index(&http::Method::GET) as usize], "GET");
        assert_eq!(
            METHODS[method_index(&http::Method::PATCH) as usize],
            "PATCH"
        );
        let custom = http::Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(METHODS[method_index(&custom) as usize], "_OTHER");
    }
}
