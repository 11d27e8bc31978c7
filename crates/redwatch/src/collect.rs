//! What is collected at scrape time, apart from the RED series: the application's info,
//! process figures from `/proc` and Tokio runtime gauges.
//!
//! Collecting produces typed values ([`Collected`]); the encoder writes them and
//! [`crate::Metrics::snapshot`] hands them out, as `prometheus-client`'s collectors separate
//! gathering from encoding.

use crate::registry::Config;

/// Everything collected at scrape time besides the RED series.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Collected {
    /// The application's identity, shown by the info metric.
    pub info: AppInfo,
    /// The process's resource usage; `None` where `/proc` is unavailable.
    pub process: Option<ProcessStats>,
    /// The Tokio runtime's gauges; `None` outside a Tokio runtime.
    pub runtime: Option<RuntimeStats>,
}

/// The application's identity, as configured on [`crate::MetricsBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppInfo {
    /// [`crate::MetricsBuilder::service_name`] (shown by the `otel` preset's `target_info`).
    pub service_name: String,
    /// [`crate::MetricsBuilder::app_version`].
    pub version: String,
    /// [`crate::MetricsBuilder::environment`].
    pub environment: String,
}

/// One reading of the process's resource usage (the `process_*` metrics).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors; `None` when unlimited.
    pub max_fds: Option<u64>,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// OS threads.
    pub threads: u64,
}

/// The Tokio runtime gauges of the stable metrics API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Worker threads.
    pub workers: usize,
    /// Alive tasks.
    pub alive_tasks: usize,
    /// Tasks in the global queue.
    pub global_queue_depth: usize,
}

/// Collects the info, process and runtime values at this moment.
pub(crate) fn collect(config: &Config) -> Collected {
    let lookup = |key: &str| {
        config
            .info
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(String::new, |(_, v)| v.clone())
    };
    Collected {
        info: AppInfo {
            service_name: config.service_name.clone(),
            version: lookup("version"),
            environment: lookup("environment"),
        },
        process: crate::process::read(),
        runtime: runtime(),
    }
}

/// The current Tokio runtime's gauges, when called inside one.
fn runtime() -> Option<RuntimeStats> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let metrics = handle.metrics();
    Some(RuntimeStats {
        workers: metrics.num_workers(),
        alive_tasks: metrics.num_alive_tasks(),
        global_queue_depth: metrics.global_queue_depth(),
    })
}
