//! A typed, format-neutral view of the registry: what [`crate::Metrics::snapshot`] returns.
//!
//! Every histogram is read as the encoder reads it: one pass over its buckets, with `count`
//! taken from that same pass, so `count` always equals the `+Inf` bucket and buckets never
//! decrease, even while requests are recorded.

use crate::collect::{self, Collected};
use crate::naming::{Naming, PROTOCOL_VERSIONS, SCHEMES};
use crate::registry::{AtomicHistogram, Shared};

/// The RED series, gauges and scrape-time values of one [`crate::Metrics`] at one moment.
///
/// ```
/// let metrics = redwatch::Metrics::new();
/// let snapshot = metrics.snapshot();
/// // Nothing recorded yet: no series, no request in flight.
/// assert!(snapshot.series.is_empty());
/// assert_eq!(snapshot.active_requests(), 0);
/// for series in &snapshot.series {
///     println!(
///         "{} {} {}: {} requests, {} s, buckets {:?}",
///         series.method, series.route, series.status,
///         series.duration.count, series.duration.sum, series.duration.buckets,
///     );
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The naming preset the series are exported under.
    pub naming: Naming,
    /// One entry per (method, route, status), in the order the series were created.
    pub series: Vec<SeriesSnapshot>,
    /// Requests in flight, for every method label value.
    pub active: Vec<ActiveRequests>,
    /// Requests whose handler panicked, by method and status (recorded under every preset;
    /// exported as `flask_http_request_exceptions_total` by the `flask` preset).
    pub exceptions: Vec<ExceptionCount>,
    /// The info, process and runtime values collected with this snapshot.
    pub collected: Collected,
}

/// One RED series: a (method, route, status) label set and its histograms.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SeriesSnapshot {
    /// The method label value (`GET`, ..., `_OTHER`).
    pub method: &'static str,
    /// The route label value, unescaped (a template, `unmatched` or `overflow`).
    pub route: String,
    /// The three-digit status code.
    pub status: u16,
    /// The URI scheme, `http` or `https`; `None` under a preset without the label (`flask`).
    pub url_scheme: Option<&'static str>,
    /// The HTTP version (`1.1`, `2`, ...); `None` under a preset without the label (`flask`).
    pub protocol_version: Option<&'static str>,
    /// The [request label](crate::RequestLabel)'s value, unescaped (`overflow` past the cap,
    /// empty for a request without one); `None` when no request label is declared.
    pub request_label: Option<String>,
    /// Request durations, in seconds.
    pub duration: HistogramSnapshot,
    /// Request body sizes, in bytes, when [`crate::MetricsBuilder::body_sizes`] is on.
    pub request_size: Option<HistogramSnapshot>,
    /// Response body sizes, in bytes, when [`crate::MetricsBuilder::body_sizes`] is on.
    pub response_size: Option<HistogramSnapshot>,
}

/// One histogram series read in one pass.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// Observations; equal to the count of the last (`+Inf`) bucket.
    pub count: u64,
    /// Sum of the observations, in the family's unit (seconds or bytes).
    pub sum: f64,
    /// Cumulative buckets in ascending order of bound, the `+Inf` bucket last.
    pub buckets: Vec<Bucket>,
}

/// A cumulative histogram bucket: observations less than or equal to `upper_bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The inclusive upper bound (the `le` label); `f64::INFINITY` for the last bucket.
    pub upper_bound: f64,
    /// Observations at or below the bound.
    pub cumulative_count: u64,
}

/// The requests-in-flight gauge of one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveRequests {
    /// The method label value.
    pub method: &'static str,
    /// Requests of this method being served.
    pub value: i64,
}

/// Panicking handlers counted for one (method, status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionCount {
    /// The method label value.
    pub method: &'static str,
    /// The status recorded for those requests.
    pub status: u16,
    /// How many.
    pub count: u64,
}

impl Snapshot {
    /// Requests in flight, summed over methods.
    pub fn active_requests(&self) -> i64 {
        self.active.iter().map(|gauge| gauge.value).sum()
    }

    /// Requests recorded by the series `filter` accepts, e.g. `|s| s.route == "/users/{id}"`.
    pub fn requests(&self, filter: impl Fn(&SeriesSnapshot) -> bool) -> u64 {
        self.series
            .iter()
            .filter(|series| filter(series))
            .map(|series| series.duration.count)
            .sum()
    }

    /// The series of `route`, in creation order.
    pub fn route<'a>(&'a self, route: &'a str) -> impl Iterator<Item = &'a SeriesSnapshot> + 'a {
        self.series
            .iter()
            .filter(move |series| series.route == route)
    }
}

/// Reads every series of `shared`, the gauges, and collects the scrape-time values.
pub(crate) fn take(shared: &Shared) -> Snapshot {
    let config = &shared.config;
    let names = config.names();
    let sizes: Vec<f64> = config
        .size_bounds_bytes
        .iter()
        .flatten()
        .map(|&bound| bound as f64)
        .collect();
    let mut cumulative = Vec::with_capacity(config.duration_bounds_nanos.len() + 1);
    let mut read = |histogram: &AtomicHistogram, bounds: &[f64], scale: f64| {
        let sum = histogram.snapshot(&mut cumulative);
        let buckets = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(cumulative.iter())
            .map(|(upper_bound, &cumulative_count)| Bucket {
                upper_bound,
                cumulative_count,
            })
            .collect();
        HistogramSnapshot {
            count: cumulative.last().copied().unwrap_or(0),
            sum: sum as f64 / scale,
            buckets,
        }
    };
    if !config.request_metrics {
        return Snapshot {
            naming: config.naming,
            series: Vec::new(),
            active: Vec::new(),
            exceptions: Vec::new(),
            collected: collect::collect(config),
        };
    }
    let series = shared
        .series()
        .map(|s| SeriesSnapshot {
            method: config.method_name(s.method),
            route: s.route.to_string(),
            status: s.status,
            url_scheme: names.scheme_label.map(|_| SCHEMES[usize::from(s.scheme)]),
            protocol_version: names
                .protocol_version_label
                .map(|_| PROTOCOL_VERSIONS[usize::from(s.version)]),
            request_label: shared
                .label_values
                .as_ref()
                .and_then(|values| values.value(s.label)),
            duration: read(&s.duration, &config.duration_bounds_seconds, 1e9),
            request_size: s.request_size.as_ref().map(|h| read(h, &sizes, 1.0)),
            response_size: s.response_size.as_ref().map(|h| read(h, &sizes, 1.0)),
        })
        .collect();
    // By method, summed over schemes.
    let mut active: Vec<ActiveRequests> = config
        .methods
        .iter()
        .map(|&method| ActiveRequests { method, value: 0 })
        .collect();
    for (_scheme, method, value) in shared.active_gauges() {
        if let Some(gauge) = active.get_mut(usize::from(method)) {
            gauge.value += value;
        }
    }
    // A copy, so that a panicking handler never waits for this snapshot.
    let exceptions = shared.exceptions().clone();
    let exceptions = exceptions
        .into_iter()
        .map(|((method, status), count)| ExceptionCount {
            method: config.method_name(method),
            status,
            count,
        })
        .collect();
    Snapshot {
        naming: config.naming,
        series,
        active,
        exceptions,
        collected: collect::collect(config),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Format, Metrics};

    #[test]
    fn reads_counts_sums_and_cumulative_buckets_of_each_series() {
        let metrics = Metrics::builder()
            .duration_buckets(vec![0.1, 1.0])
            .build()
            .unwrap();
        let core = &metrics.inner_core();
        let bounds = core.shared.config.duration_bounds_nanos.clone();
        let entry = core.route("/a\"b");
        // 50 ms, 100 ms (on the bound), 500 ms and 3 s, as GET 200; one 2 s POST 503.
        for nanos in [50_000_000, 100_000_000, 500_000_000, 3_000_000_000] {
            entry.with_series(0, 200, |s| {
                s.duration.observe(&bounds, nanos);
            });
        }
        entry.with_series(2, 503, |s| {
            s.duration.observe(&bounds, 2_000_000_000);
        });
        core.shared
            .active(0, 2)
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);

        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.series.len(), 2);
        let get = &snapshot.series[0];
        assert_eq!(
            (get.method, get.route.as_str(), get.status),
            ("GET", "/a\"b", 200)
        );
        assert_eq!(get.duration.count, 4);
        assert!((get.duration.sum - 3.65).abs() < 1e-9);
        let buckets: Vec<(f64, u64)> = get
            .duration
            .buckets
            .iter()
            .map(|b| (b.upper_bound, b.cumulative_count))
            .collect();
        assert_eq!(buckets, vec![(0.1, 2), (1.0, 3), (f64::INFINITY, 4)]);
        let post = &snapshot.series[1];
        assert_eq!(
            (post.method, post.status, post.duration.count),
            ("POST", 503, 1)
        );
        assert_eq!(snapshot.requests(|s| s.status >= 500), 1);
        assert_eq!(snapshot.requests(|_| true), 5);
        assert_eq!(snapshot.active_requests(), 3);
        assert_eq!(snapshot.route("/a\"b").count(), 2);
        assert!(get.request_size.is_none());

        // The exposition shows the same numbers.
        let text = String::from_utf8(metrics.render(Format::Prometheus)).unwrap();
        assert!(text.contains(
            "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/a\\\"b\",http_response_status_code=\"200\",error_type=\"\",url_scheme=\"http\",network_protocol_version=\"0.9\",le=\"1\"} 3"
        ), "{text}");
        assert!(text.contains(
            "http_server_active_requests{http_request_method=\"POST\",url_scheme=\"http\"} 3"
        ));
    }

    #[test]
    fn collected_values_carry_the_configured_info() {
        let metrics = Metrics::builder()
            .app_version("1.2.3")
            .environment("staging")
            .service_name("shop")
            .build()
            .unwrap();
        let info = metrics.snapshot().collected.info;
        assert_eq!(
            (
                info.service_name.as_str(),
                info.version.as_str(),
                info.environment.as_str()
            ),
            ("shop", "1.2.3", "staging")
        );
        #[cfg(all(target_os = "linux", feature = "process"))]
        {
            let process = metrics.snapshot().collected.process.unwrap();
            assert!(process.resident_memory_bytes > 0 && process.threads >= 1);
        }
    }
}
