//! `/dashboard`: a live dashboard built into the demo, with the panels of the classic Flask
//! monitoring dashboards (requests/s and errors/s per route, p50/p90/p99, average response time,
//! share under 250 ms, active requests, CPU, memory), and no Prometheus or Grafana needed.
//!
//! The numbers come from the API's own exposition ([`Metrics::render`]), read back once a
//! second into a one-minute history; rates and quantiles are computed from differences between
//! snapshots, the way `rate()` and `histogram_quantile()` compute them in Prometheus.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use redwatch::{Format, Metrics};
use serde::Serialize;

use super::exposition;

/// The page: one file, inline CSS and JS, no external assets.
const PAGE: &str = include_str!("dashboard.html");
/// How often the history takes a snapshot.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Snapshots kept: one minute of history.
const HISTORY_LEN: usize = 61;
/// Window of the current values (rates, quantiles) at the top of the page.
const CURRENT_WINDOW: Duration = Duration::from_secs(10);
/// Each history point is computed over this many sampling intervals, to smooth the lines.
const POINT_WINDOW: usize = 5;
/// The latency objective the "% under" panel shows; a bucket bound of the default buckets.
const THRESHOLD_SECONDS: f64 = 0.25;

/// The cumulative figures of one route, summed over methods and status codes.
#[derive(Debug, Clone, Default, PartialEq)]
struct RouteTotals {
    count: f64,
    /// Responses with a 5xx status.
    server_errors: f64,
    sum_seconds: f64,
    /// (upper bound, cumulative count), ascending by bound, `+Inf` last.
    buckets: Vec<(f64, f64)>,
}

impl RouteTotals {
    fn add_bucket(&mut self, bound: f64, count: f64) {
        match self.buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, total)) => *total += count,
            None => {
                let at = self.buckets.partition_point(|(b, _)| *b < bound);
                self.buckets.insert(at, (bound, count));
            }
        }
    }

    fn merge(&mut self, other: &RouteTotals) {
        self.count += other.count;
        self.server_errors += other.server_errors;
        self.sum_seconds += other.sum_seconds;
        for &(bound, count) in &other.buckets {
            self.add_bucket(bound, count);
        }
    }

    /// What happened between `older` and `self`.
    fn since(&self, older: Option<&RouteTotals>) -> RouteTotals {
        let Some(older) = older else {
            return self.clone();
        };
        let before = |bound: f64| {
            older
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c)
        };
        RouteTotals {
            count: self.count - older.count,
            server_errors: self.server_errors - older.server_errors,
            sum_seconds: self.sum_seconds - older.sum_seconds,
            buckets: self
                .buckets
                .iter()
                .map(|&(bound, count)| (bound, count - before(bound)))
                .collect(),
        }
    }

    /// The `q` quantile in seconds, interpolated inside its bucket as `histogram_quantile` does;
    /// `None` without observations.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.buckets {
            if count >= rank {
                if bound.is_infinite() {
                    // Beyond the last finite bucket: its bound is all that is known.
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * fraction);
            }
            lower = (bound, count);
        }
        None
    }

    /// The share of observations at or under `bound` (a bucket bound), in percent.
    fn percent_under(&self, bound: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|(b, _)| (b - bound).abs() < 1e-12)
            .map(|(_, under)| under / self.count * 100.0)
    }
}

/// Everything the dashboard reads from one exposition.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    routes: BTreeMap<String, RouteTotals>,
    active_requests: f64,
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
}

impl Snapshot {
    fn take(metrics: &Metrics) -> Self {
        let text = metrics.render(Format::Prometheus);
        Self::parse(&String::from_utf8_lossy(&text), metrics, Instant::now())
    }

    fn parse(text: &str, metrics: &Metrics, at: Instant) -> Self {
        let names = metrics.naming().names();
        let bucket = format!("{}_bucket", names.duration);
        let count = format!("{}_count", names.duration);
        let sum = format!("{}_sum", names.duration);
        let mut snapshot = Snapshot {
            at,
            routes: BTreeMap::new(),
            active_requests: 0.0,
            cpu_seconds: None,
            resident_bytes: None,
        };
        for sample in exposition::samples(text) {
            let name = sample.name;
            if name == names.active_requests {
                snapshot.active_requests += sample.value;
                continue;
            }
            if name == "process_cpu_seconds_total" {
                snapshot.cpu_seconds = Some(sample.value);
                continue;
            }
            if name == "process_resident_memory_bytes" {
                snapshot.resident_bytes = Some(sample.value);
                continue;
            }
            if name != bucket && name != count && name != sum {
                continue;
            }
            let Some(route) = sample.label(names.route_label) else {
                continue;
            };
            let totals = snapshot.routes.entry(route.to_owned()).or_default();
            if name == count {
                totals.count += sample.value;
                if sample
                    .label(names.status_label)
                    .is_some_and(|status| status.starts_with('5'))
                {
                    totals.server_errors += sample.value;
                }
            } else if name == sum {
                totals.sum_seconds += sample.value;
            } else {
                let bound = match sample.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(bound) => bound,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                totals.add_bucket(bound, sample.value);
            }
        }
        snapshot
    }

    fn all_routes(&self) -> RouteTotals {
        let mut all = RouteTotals::default();
        for totals in self.routes.values() {
            all.merge(totals);
        }
        all
    }
}

/// Rates and latencies over a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
struct Stats {
    requests_per_s: f64,
    /// 5xx responses per second.
    errors_per_s: f64,
    avg_ms: Option<f64>,
    under_250ms_pct: Option<f64>,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl Stats {
    fn of(delta: &RouteTotals, seconds: f64) -> Self {
        let per_second = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
        let ms = |seconds: Option<f64>| seconds.map(|s| s * 1000.0);
        Stats {
            requests_per_s: per_second(delta.count),
            errors_per_s: per_second(delta.server_errors),
            avg_ms: (delta.count > 0.0).then(|| delta.sum_seconds / delta.count * 1000.0),
            under_250ms_pct: delta.percent_under(THRESHOLD_SECONDS),
            p50_ms: ms(delta.quantile(0.5)),
            p90_ms: ms(delta.quantile(0.9)),
            p99_ms: ms(delta.quantile(0.99)),
        }
    }
}

#[derive(Debug, Serialize)]
struct RouteStats {
    route: String,
    /// Requests recorded since the start, as on /metrics.
    total: u64,
    #[serde(flatten)]
    stats: Stats,
}

/// One-minute history, oldest first; each point covers the [`POINT_WINDOW`] seconds before it.
#[derive(Debug, Default, Serialize)]
struct History {
    seconds_ago: Vec<f64>,
    requests_per_s: BTreeMap<String, Vec<f64>>,
    errors_per_s: Vec<f64>,
    avg_ms: Vec<Option<f64>>,
    under_250ms_pct: Vec<Option<f64>>,
    p50_ms: Vec<Option<f64>>,
    p90_ms: Vec<Option<f64>>,
    p99_ms: Vec<Option<f64>>,
    active_requests: Vec<f64>,
    cpu_percent: Vec<Option<f64>>,
    resident_bytes: Vec<Option<f64>>,
}

/// The JSON of `/dashboard/data`.
#[derive(Debug, Serialize)]
struct Data {
    /// Seconds the current values are computed over (shorter right after the start).
    window_s: f64,
    /// Requests recorded since the start, all routes.
    requests_total: u64,
    /// 5xx responses since the start.
    server_errors_total: u64,
    active_requests: f64,
    /// CPU time used by the process per second of wall time, in percent of one core.
    cpu_percent: Option<f64>,
    resident_bytes: Option<f64>,
    overall: Stats,
    routes: Vec<RouteStats>,
    history: History,
}

fn cpu_percent(newer: &Snapshot, older: &Snapshot) -> Option<f64> {
    let seconds = newer.at.duration_since(older.at).as_secs_f64();
    match (newer.cpu_seconds, older.cpu_seconds) {
        (Some(now), Some(then)) if seconds > 0.0 => Some((now - then) / seconds * 100.0),
        _ => None,
    }
}

fn whole(count: f64) -> u64 {
    // Counts are whole numbers printed as floats; negative or NaN cannot come from a counter.
    if count.is_finite() && count > 0.0 {
        count.round() as u64
    } else {
        0
    }
}

/// Builds the JSON from the fresh snapshot `now` and the sampled `history` (oldest first).
fn data(now: &Snapshot, history: &[Arc<Snapshot>]) -> Data {
    // The current window starts at the oldest sample inside it, or at the oldest sample.
    let base = history
        .iter()
        .find(|s| now.at.duration_since(s.at) <= CURRENT_WINDOW)
        .or(history.first());
    let window_s = base.map_or(0.0, |b| now.at.duration_since(b.at).as_secs_f64());
    let route_base = |route: &str| base.and_then(|b| b.routes.get(route));
    let routes = now
        .routes
        .iter()
        .map(|(route, totals)| RouteStats {
            route: route.clone(),
            total: whole(totals.count),
            stats: Stats::of(&totals.since(route_base(route)), window_s),
        })
        .collect();
    let all_now = now.all_routes();
    let overall = Stats::of(
        &all_now.since(base.map(|b| b.all_routes()).as_ref()),
        window_s,
    );

    let mut points = History::default();
    let all_routes: Vec<&String> = now.routes.keys().collect();
    for (index, sample) in history.iter().enumerate().skip(1) {
        let older = &history[index.saturating_sub(POINT_WINDOW)];
        let seconds = sample.at.duration_since(older.at).as_secs_f64();
        points
            .seconds_ago
            .push(now.at.duration_since(sample.at).as_secs_f64());
        for route in &all_routes {
            let delta = match sample.routes.get(*route) {
                Some(totals) => totals.since(older.routes.get(*route)),
                None => RouteTotals::default(),
            };
            let rate = if seconds > 0.0 {
                delta.count / seconds
            } else {
                0.0
            };
            points
                .requests_per_s
                .entry((*route).clone())
                .or_default()
                .push(rate);
        }
        let stats = Stats::of(
            &sample.all_routes().since(Some(&older.all_routes())),
            seconds,
        );
        points.errors_per_s.push(stats.errors_per_s);
        points.avg_ms.push(stats.avg_ms);
        points.under_250ms_pct.push(stats.under_250ms_pct);
        points.p50_ms.push(stats.p50_ms);
        points.p90_ms.push(stats.p90_ms);
        points.p99_ms.push(stats.p99_ms);
        points.active_requests.push(sample.active_requests);
        points.cpu_percent.push(cpu_percent(sample, older));
        points.resident_bytes.push(sample.resident_bytes);
    }

    Data {
        window_s,
        requests_total: whole(all_now.count),
        server_errors_total: whole(all_now.server_errors),
        active_requests: now.active_requests,
        cpu_percent: base.and_then(|b| cpu_percent(now, b)),
        resident_bytes: now.resident_bytes,
        overall,
        routes,
        history: points,
    }
}

struct Shared {
    metrics: Metrics,
    history: Mutex<VecDeque<Arc<Snapshot>>>,
}

impl Shared {
    fn history(&self) -> Vec<Arc<Snapshot>> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// The dashboard's sampler and routes; dropping it stops the sampler.
pub struct Dashboard {
    shared: Arc<Shared>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Starts sampling `metrics` once a second.
    pub fn start(metrics: Metrics) -> Self {
        let shared = Arc::new(Shared {
            metrics,
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
        });
        let sampler = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut ticks = tokio::time::interval(SAMPLE_EVERY);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let snapshot = Arc::new(Snapshot::take(&shared.metrics));
                    let mut history = shared
                        .history
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if history.len() == HISTORY_LEN {
                        history.pop_front();
                    }
                    history.push_back(snapshot);
                }
            }
        });
        Self { shared, sampler }
    }

    /// `GET /dashboard` (the page) and `GET /dashboard/data` (its JSON).
    pub fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        Router::new()
            .route(
                "/dashboard",
                get(|| async {
                    (
                        [
                            (CONTENT_TYPE, "text/html; charset=utf-8"),
                            (CACHE_CONTROL, "no-store"),
                        ],
                        PAGE,
                    )
                }),
            )
            .route(
                "/dashboard/data",
                get(move || {
                    let shared = Arc::clone(&shared);
                    async move {
                        let now = Snapshot::take(&shared.metrics);
                        let data = data(&now, &shared.history());
                        ([(CACHE_CONTROL, "no-store")], Json(data)).into_response()
                    }
                }),
            )
    }

    /// Requests the API recorded, read once no request is in flight any more (bounded wait),
    /// so that every response the load generator saw is counted.
    pub async fn settled_request_count(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let snapshot = Snapshot::take(&self.shared.metrics);
            if snapshot.active_requests <= 0.0 || Instant::now() >= deadline {
                return whole(snapshot.all_routes().count);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(ep_one: [u64; 3], errors: u64, cpu: f64) -> String {
        // ep_one: observations under 0.1 s, under 0.25 s, total; /error: all under 5 ms.
        let [fast, under, total] = ep_one;
        let d = "http_server_request_duration_seconds";
        let ep =
            "http_request_method=\"GET\",http_route=\"/ep_one\",http_response_status_code=\"200\"";
        let er =
            "http_request_method=\"GET\",http_route=\"/error\",http_response_status_code=\"500\"";
        format!(
            "{d}_bucket{{{ep},le=\"0.1\"}} {fast}\n\
             {d}_bucket{{{ep},le=\"0.25\"}} {under}\n\
             {d}_bucket{{{ep},le=\"+Inf\"}} {total}\n\
             {d}_sum{{{ep}}} {}\n\
             {d}_count{{{ep}}} {total}\n\
             {d}_bucket{{{er},le=\"0.1\"}} {errors}\n\
             {d}_bucket{{{er},le=\"0.25\"}} {errors}\n\
             {d}_bucket{{{er},le=\"+Inf\"}} {errors}\n\
             {d}_sum{{{er}}} 0\n\
             {d}_count{{{er}}} {errors}\n\
             http_server_active_requests{{http_request_method=\"GET\"}} 2\n\
             process_cpu_seconds_total {cpu}\n\
             process_resident_memory_bytes 1048576\n",
            total as f64 * 0.1
        )
    }

    #[test]
    fn rates_quantiles_and_shares_come_from_the_differences() {
        let metrics = Metrics::new();
        let start = Instant::now();
        let old = Snapshot::parse(&exposition([0, 0, 0], 0, 1.0), &metrics, start);
        let now = Snapshot::parse(
            &exposition([50, 80, 100], 10, 1.5),
            &metrics,
            start + Duration::from_secs(10),
        );
        let data = data(&now, &[Arc::new(old)]);
        assert_eq!(data.window_s, 10.0);
        assert_eq!(data.requests_total, 110);
        assert_eq!(data.server_errors_total, 10);
        assert_eq!(data.active_requests, 2.0);
        assert_eq!(data.cpu_percent, Some(5.0));
        let ep_one = data.routes.iter().find(|r| r.route == "/ep_one").unwrap();
        assert_eq!(ep_one.total, 100);
        assert_eq!(ep_one.stats.requests_per_s, 10.0);
        assert_eq!(ep_one.stats.errors_per_s, 0.0);
        assert_eq!(ep_one.stats.under_250ms_pct, Some(80.0));
        // Median: rank 50 is the last observation of the first bucket [0, 0.1].
        assert_eq!(ep_one.stats.p50_ms, Some(100.0));
        // p90: rank 90 is past the 0.25 bucket: only the last finite bound is known.
        assert_eq!(ep_one.stats.p90_ms, Some(250.0));
        assert!((ep_one.stats.avg_ms.unwrap() - 100.0).abs() < 1e-9);
        let error = data.routes.iter().find(|r| r.route == "/error").unwrap();
        assert_eq!(error.stats.errors_per_s, 1.0);
        assert_eq!(data.overall.requests_per_s, 11.0);
        assert_eq!(data.overall.errors_per_s, 1.0);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let totals = RouteTotals {
            count: 100.0,
            server_errors: 0.0,
            sum_seconds: 10.0,
            buckets: vec![(0.1, 20.0), (0.2, 100.0), (f64::INFINITY, 100.0)],
        };
        // Rank 60 lies half-way through the 80 observations of (0.1, 0.2].
        assert!((totals.quantile(0.6).unwrap() - 0.15).abs() < 1e-12);
        assert_eq!(RouteTotals::default().quantile(0.5), None);
    }

    #[test]
    fn history_points_cover_a_few_seconds_each() {
        let metrics = Metrics::new();
        let start = Instant::now();
        let history: Vec<Arc<Snapshot>> = (0..8u64)
            .map(|second| {
                Arc::new(Snapshot::parse(
                    &exposition([0, 0, second * 10], 0, 0.0),
                    &metrics,
                    start + Duration::from_secs(second),
                ))
            })
            .collect();
        let now = history.last().unwrap().as_ref().clone();
        let data = data(&now, &history);
        assert_eq!(data.history.seconds_ago.len(), 7);
        assert_eq!(data.history.seconds_ago.last(), Some(&0.0));
        for rate in &data.history.requests_per_s["/ep_one"] {
            assert!((rate - 10.0).abs() < 1e-9, "{rate}");
        }
    }
}
