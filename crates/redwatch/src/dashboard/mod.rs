//! A live dashboard inside the application (cargo feature `dashboard`): a page and its JSON
//! data endpoint, added to an axum app with one call, drawn from an in-process history of the
//! registry — no Prometheus or Grafana needed.
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use redwatch::dashboard::Dashboard;
//!
//! let metrics = redwatch::Metrics::new();
//! let dashboard = Dashboard::builder(&metrics).build()?; // GET /dashboard
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(metrics.router())
//!     .merge(dashboard.router())
//!     .layer(metrics.layer());
//! # Ok(()) }
//! ```
//!
//! The page shows the panels of the generated Grafana dashboard: requests, errors and
//! responses per second, average latency, the share under the latency threshold, p50, p90
//! and p99 per route, a latency heatmap, requests in flight, CPU, memory, availability and
//! error-budget burn against the objective, and a table of routes; clicking a route (or
//! opening the page with `#route=/users/{id}`) shows that route alone. Rates and quantiles
//! are computed as Prometheus's `rate()` and `histogram_quantile()` compute them.
//!
//! Modules, one concern each: `history` (the ring buffer and its sampling thread, with the
//! memory bound), [`promql`] (rate and quantile, public for code that compares), `data` (the numbers of every panel),
//! `service` (the axum routes and the page).

mod data;
mod history;
pub mod promql;
mod service;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use data::{DashboardData, DataQuery, Heatmap, Line, RouteRow};
pub use history::SAMPLE_OVERHEAD;

use crate::Metrics;
use data::Settings;
use history::{History, Sampler};

/// The most samples a history may hold (28 hours at 1 s).
const MAX_SAMPLES: usize = 100_000;

/// The live dashboard of one [`Metrics`]: a sampling thread and the history it fills.
///
/// Cheap to clone; the sampling thread stops when the last clone, and the last router made
/// by [`Dashboard::router`], are dropped.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Metrics,
    path: String,
    settings: Settings,
    history: Arc<Mutex<History>>,
    /// Dropped last: stops and joins the thread.
    _sampler: Sampler,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("path", &self.inner.path)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// Starts configuring the dashboard of `metrics`.
    pub fn builder(metrics: &Metrics) -> DashboardBuilder {
        DashboardBuilder {
            metrics: metrics.clone(),
            path: "/dashboard".to_owned(),
            history: Duration::from_secs(15 * 60),
            resolution: Duration::from_secs(1),
            rate_window: Duration::from_secs(30),
            latency_threshold: Duration::from_millis(250),
            objective: 0.999,
            prometheus_url: None,
            max_series: 500,
            record_own_requests: false,
        }
    }

    /// The path of the page; the data is served on `{path}/data`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The numbers the data endpoint serves for `query`, for code that wants them without
    /// HTTP (e.g. to compare them with Prometheus).
    pub fn data(&self, query: &DataQuery) -> DashboardData {
        let mut history = self
            .inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        data::compute(&mut history, &self.inner.settings, query)
    }

    /// The most bytes the history can take with these settings (see the `history` module's
    /// bound: capacity × ([`SAMPLE_OVERHEAD`] + max_series × (buckets + 2) × 8)).
    pub fn memory_bound_bytes(&self) -> usize {
        self.history().bound_bytes()
    }

    /// The bytes the history takes now, by the same accounting.
    pub fn memory_used_bytes(&self) -> usize {
        self.history().bytes()
    }

    /// Samples in the history now.
    pub fn samples(&self) -> usize {
        self.history().samples.len()
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Configures a [`Dashboard`]; every setting has a default.
#[derive(Debug, Clone)]
pub struct DashboardBuilder {
    metrics: Metrics,
    path: String,
    history: Duration,
    resolution: Duration,
    rate_window: Duration,
    latency_threshold: Duration,
    objective: f64,
    prometheus_url: Option<String>,
    max_series: usize,
    record_own_requests: bool,
}

impl DashboardBuilder {
    /// The page's path (default `/dashboard`); the data is served on `{path}/data`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// How much history is kept (default 15 minutes; at most 100,000 samples). The page offers
    /// the last 1, 5 and 15 minutes, each showing what the history holds of it; `{path}/data`
    /// serves any `range` (seconds) up to the history.
    pub fn history(mut self, history: Duration) -> Self {
        self.history = history;
        self
    }

    /// How often the registry is sampled (default 1 s; from 10 ms to 1 hour).
    pub fn resolution(mut self, resolution: Duration) -> Self {
        self.resolution = resolution;
        self
    }

    /// The window of every rate, as the `[...]` of `rate()` (default 30 s).
    pub fn rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window;
        self
    }

    /// The latency of the "% under" panels (default 250 ms). It must be one of the duration
    /// bucket bounds, as Grafana's `le="0.25"` must.
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.latency_threshold = threshold;
        self
    }

    /// The availability objective as a ratio (default `0.999`, i.e. 99.9 %).
    pub fn objective(mut self, objective: f64) -> Self {
        self.objective = objective;
        self
    }

    /// A Prometheus base URL (e.g. `http://127.0.0.1:9090`) whose `/api/v1/alerts` the page
    /// reads from the browser to show pending and firing alerts. Prometheus answers such
    /// cross-origin reads by default (`--web.cors.origin=.*`).
    pub fn prometheus_url(mut self, url: impl Into<String>) -> Self {
        self.prometheus_url = Some(url.into());
        self
    }

    /// The most RED series kept in the history (default 500); see the memory bound.
    pub fn max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// Also records the requests for the page and its data (off by default: like `/metrics`,
    /// they are left out, so the page's polling does not show up in its own numbers).
    pub fn record_own_requests(mut self, record: bool) -> Self {
        self.record_own_requests = record;
        self
    }

    /// Checks the settings and starts the sampling thread.
    pub fn build(self) -> Result<Dashboard, DashboardError> {
        let fail = |reason: String| Err(DashboardError(reason));
        if !self.path.starts_with('/') || self.path.len() < 2 || self.path.ends_with('/') {
            return fail(format!(
                "dashboard path {:?} must start with '/' and not end with one",
                self.path
            ));
        }
        if self.resolution < Duration::from_millis(10)
            || self.resolution > Duration::from_secs(3600)
        {
            return fail("resolution must be between 10 ms and 1 hour".into());
        }
        if self.history < self.resolution * 2 {
            return fail("history must hold at least two samples".into());
        }
        if self.rate_window < self.resolution * 2 {
            return fail("the rate window must span at least two samples".into());
        }
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return fail(format!(
                "objective {} must be between 0 and 1 (e.g. 0.999)",
                self.objective
            ));
        }
        if self.max_series == 0 {
            return fail("max_series must be at least 1".into());
        }
        if let Some(url) = &self.prometheus_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return fail(format!(
                "Prometheus URL {url:?} must be http:// or https://"
            ));
        }
        let bounds = self.metrics.duration_bounds().to_vec();
        let threshold = self.latency_threshold.as_secs_f64();
        let Some(threshold_bucket) = bounds
            .iter()
            .position(|&bound| (bound - threshold).abs() <= bound * 1e-9)
        else {
            return fail(format!(
                "latency threshold {threshold} s is not a duration bucket bound ({bounds:?})"
            ));
        };
        if !self.record_own_requests {
            self.metrics.exclude_route_later(&self.path);
            self.metrics
                .exclude_route_later(&format!("{}/data", self.path));
        }
        let capacity = self.history.as_nanos() / self.resolution.as_nanos();
        let Some(capacity) = usize::try_from(capacity)
            .ok()
            .filter(|&capacity| capacity <= MAX_SAMPLES)
        else {
            return fail(format!(
                "history / resolution must be at most {MAX_SAMPLES} samples"
            ));
        };
        let history = Arc::new(Mutex::new(History::new(capacity, self.max_series, bounds)));
        let sampler = Sampler::start(self.metrics.clone(), Arc::clone(&history), self.resolution)
            .map_err(|error| {
            DashboardError(format!("cannot start the sampling thread: {error}"))
        })?;
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Ok(Dashboard {
            inner: Arc::new(Inner {
                metrics: self.metrics,
                path: self.path,
                settings: Settings {
                    rate_window_ms: millis(self.rate_window),
                    latency_threshold_s: threshold,
                    threshold_bucket,
                    objective: self.objective,
                    prometheus_url: self
                        .prometheus_url
                        .map(|url| url.trim_end_matches('/').to_owned()),
                    resolution_ms: millis(self.resolution).max(1),
                },
                history,
                _sampler: sampler,
            }),
        })
    }
}

/// A dashboard configuration [`DashboardBuilder::build`] refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardError(String);

impl fmt::Display for DashboardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DashboardError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampling_thread_ends_with_the_last_dashboard_and_router() {
        let metrics = Metrics::new();
        let dashboard = Dashboard::builder(&metrics)
            .resolution(Duration::from_millis(20))
            .rate_window(Duration::from_millis(100))
            .build()
            .unwrap();
        let router: axum::Router = dashboard.router();
        let history = Arc::downgrade(&dashboard.inner.history);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while dashboard.samples() < 2 {
            assert!(std::time::Instant::now() < deadline, "no samples taken");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(dashboard);
        // The router still serves the page, so the history lives on.
        assert!(history.upgrade().is_some());
        drop(router);
        // The thread held the last other reference: gone, so the thread has ended.
        assert!(
            history.upgrade().is_none(),
            "the sampling thread outlived the dashboard"
        );
    }

    #[test]
    fn the_memory_bound_follows_the_settings() {
        let metrics = Metrics::new();
        let dashboard = Dashboard::builder(&metrics).max_series(40).build().unwrap();
        // 900 samples of 40 series with 14 bounds: 900 × (96 + 40 × 16 × 8) bytes.
        assert_eq!(dashboard.memory_bound_bytes(), 900 * (96 + 40 * 16 * 8));
        assert!(dashboard.memory_used_bytes() <= dashboard.memory_bound_bytes());
    }
}
