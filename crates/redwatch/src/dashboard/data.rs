//! What the data endpoint serves: every panel's numbers, computed from the history with
//! [`super::promql`] as Prometheus would compute the generated Grafana dashboard's queries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::history::{History, Sample};
use super::promql::{histogram_quantile, in_range, rate};

/// Points per chart line.
const POINTS: i64 = 60;
/// How far back an instant value (a gauge) is looked for, as Prometheus's lookback delta.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// What the page asks the data endpoint for (`?range=300&route=/users/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct DataQuery {
    /// The time range shown, in seconds (default 300; at most the history's length).
    pub range: Option<u64>,
    /// Only this route's series (the drill-down); all routes when `None`.
    pub route: Option<String>,
}

impl DataQuery {
    /// A query for `range_seconds` of all routes, or of `route` only.
    pub fn new(range_seconds: u64, route: Option<String>) -> Self {
        Self {
            range: Some(range_seconds),
            route,
        }
    }
}

/// Every number the page shows, as the data endpoint serves it (JSON).
///
/// Rates are `rate(...[rate_window_s])` and quantiles `histogram_quantile(...)` over the
/// rates of the buckets, evaluated at each of `times_ms`; `null` where Prometheus would have
/// no value (fewer than two samples in the window, no requests for a ratio).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DashboardData {
    /// The range shown, in seconds.
    pub range_s: u64,
    /// The window of every rate, in seconds.
    pub rate_window_s: f64,
    /// The latency threshold of the "% under" panels, in seconds.
    pub latency_threshold_s: f64,
    /// The availability objective, e.g. `0.999`.
    pub objective: f64,
    /// Where the page reads alerts from (`/api/v1/alerts`), when configured.
    pub prometheus_url: Option<String>,
    /// The drill-down route, when one was asked for.
    pub route: Option<String>,
    /// Evaluation times of every line, in milliseconds since the Unix epoch.
    pub times_ms: Vec<i64>,
    /// Requests per second, one line per route.
    pub requests_per_s: Vec<Line>,
    /// Server errors (5xx) per second, one line per route that had any.
    pub errors_per_s: Vec<Line>,
    /// Responses per second, one line per status code.
    pub responses_per_s_by_status: Vec<Line>,
    /// Average latency in seconds, one line per route.
    pub average_latency_s: Vec<Line>,
    /// Share of requests at or under the latency threshold (0..1), one line per route.
    pub under_threshold_ratio: Vec<Line>,
    /// Median latency in seconds, one line per route.
    pub p50_s: Vec<Line>,
    /// 90th percentile latency in seconds, one line per route.
    pub p90_s: Vec<Line>,
    /// 99th percentile latency in seconds, one line per route.
    pub p99_s: Vec<Line>,
    /// Requests per latency bucket and time.
    pub heatmap: Heatmap,
    /// Requests in flight.
    pub active_requests: Vec<Option<f64>>,
    /// CPU used, in cores (`rate(process_cpu_seconds_total)`).
    pub cpu_cores: Vec<Option<f64>>,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: Vec<Option<f64>>,
    /// Error-budget burn rate: the 5xx ratio over the rate window divided by `1 - objective`.
    pub burn_rate: Vec<Option<f64>>,
    /// Availability (share of non-5xx responses) over the whole range.
    pub availability: Option<f64>,
    /// The error-budget burn rate over the whole range.
    pub range_burn_rate: Option<f64>,
    /// One row per route (all routes, also in a drill-down).
    pub routes: Vec<RouteRow>,
    /// Series not kept in the history because there were more than `max_series`.
    pub series_not_kept: usize,
}

/// One named line of a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Line {
    /// The route or status code it stands for.
    pub name: String,
    /// One value per evaluation time.
    pub values: Vec<Option<f64>>,
}

/// The latency distribution over time: `sum by (le) (increase(..._bucket[window]))`,
/// de-accumulated so that each row counts the requests of one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Heatmap {
    /// Upper bound of each row in seconds, ascending; `null` for `+Inf`.
    pub upper_bounds_s: Vec<Option<f64>>,
    /// `rows[bucket][time]`: requests in that bucket over the window ending at that time.
    pub rows: Vec<Vec<Option<f64>>>,
}

/// The table's row of one route, at the latest sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouteRow {
    /// The route label value.
    pub route: String,
    /// Requests recorded since the start.
    pub count: u64,
    /// Requests per second over the rate window.
    pub requests_per_s: Option<f64>,
    /// Share of 5xx responses over the rate window (0..1).
    pub error_ratio: Option<f64>,
    /// Median latency over the rate window, in seconds.
    pub p50_s: Option<f64>,
    /// 99th percentile latency over the rate window, in seconds.
    pub p99_s: Option<f64>,
    /// Share of requests at or under the threshold over the rate window (0..1).
    pub under_threshold_ratio: Option<f64>,
}

/// The settings the numbers depend on.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) rate_window_ms: i64,
    pub(crate) latency_threshold_s: f64,
    /// Index of the threshold among the bucket bounds.
    pub(crate) threshold_bucket: usize,
    pub(crate) objective: f64,
    pub(crate) prometheus_url: Option<String>,
    pub(crate) resolution_ms: i64,
}

/// `sum(rate(...))` of a group of series at one time: `None` parts had no series with a rate.
#[derive(Debug, Clone, Default)]
struct Group {
    count: Option<f64>,
    /// `None` when the group has no 5xx series with a rate, as Prometheus then has no value.
    errors: Option<f64>,
    sum: Option<f64>,
    buckets: Vec<f64>,
}

impl Group {
    fn add(&mut self, rates: &SeriesRates, server_error: bool) {
        self.count = Some(self.count.unwrap_or(0.0) + rates.count());
        if server_error {
            self.errors = Some(self.errors.unwrap_or(0.0) + rates.count());
        }
        self.sum = Some(self.sum.unwrap_or(0.0) + rates.sum);
        if self.buckets.is_empty() {
            self.buckets = rates.buckets.clone();
        } else {
            for (total, rate) in self.buckets.iter_mut().zip(&rates.buckets) {
                *total += rate;
            }
        }
    }

    fn ratio(part: f64, whole: Option<f64>) -> Option<f64> {
        whole.filter(|whole| *whole > 0.0).map(|whole| part / whole)
    }

    /// The 5xx share, with no 5xx series counting as none (PromQL's `or vector(0)`).
    fn error_ratio(&self) -> Option<f64> {
        Self::ratio(self.errors.unwrap_or(0.0), self.count)
    }

    fn average(&self) -> Option<f64> {
        self.sum.and_then(|sum| Self::ratio(sum, self.count))
    }

    fn under(&self, threshold_bucket: usize) -> Option<f64> {
        Self::ratio(*self.buckets.get(threshold_bucket)?, self.count)
    }

    fn quantile(&self, q: f64, bounds: &[f64]) -> Option<f64> {
        // No series had a rate: nothing to interpolate.
        self.count?;
        let pairs: Vec<(f64, f64)> = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().copied())
            .collect();
        histogram_quantile(q, &pairs).filter(|value| value.is_finite())
    }
}

/// The rates of one series at one time: every cumulative bucket (the last is the count) and
/// the sum.
#[derive(Debug, Clone)]
struct SeriesRates {
    buckets: Vec<f64>,
    sum: f64,
}

impl SeriesRates {
    fn count(&self) -> f64 {
        self.buckets.last().copied().unwrap_or(0.0)
    }
}

/// Evaluates `rate(series[window])` of every bucket and the sum of series `index` over the
/// samples in `(start, end]`; `None` when fewer than two samples have the series.
fn series_rates(
    window: &[Sample],
    index: usize,
    per_series: usize,
    start_ms: i64,
    end_ms: i64,
    points: &mut Vec<(i64, f64)>,
) -> Option<SeriesRates> {
    let present: Vec<&Sample> = window
        .iter()
        .filter(|sample| sample.sums.len() > index)
        .collect();
    if present.len() < 2 {
        return None;
    }
    let mut rate_of = |value: &dyn Fn(&Sample) -> f64| {
        points.clear();
        points.extend(present.iter().map(|sample| (sample.at_ms, value(sample))));
        rate(points, end_ms, end_ms - start_ms)
    };
    let mut buckets = Vec::with_capacity(per_series);
    for bucket in 0..per_series {
        let at = index * per_series + bucket;
        buckets.push(rate_of(&|sample| sample.buckets[at] as f64)?);
    }
    let sum = rate_of(&|sample| sample.sums[index])?;
    Some(SeriesRates { buckets, sum })
}

/// Groups of the series in scope at one time: per route, per status, and all together.
#[derive(Default)]
struct Groups {
    routes: BTreeMap<String, Group>,
    statuses: BTreeMap<u16, Group>,
    total: Group,
}

fn evaluate(
    history: &History,
    samples: &[Sample],
    scope: &[usize],
    start_ms: i64,
    end_ms: i64,
) -> Groups {
    let window = in_range(samples, |sample| sample.at_ms, start_ms, end_ms);
    let per_series = history.buckets_per_series();
    let mut points = Vec::new();
    let mut groups = Groups::default();
    for &index in scope {
        let Some(rates) = series_rates(window, index, per_series, start_ms, end_ms, &mut points)
        else {
            continue;
        };
        let key = &history.series[index];
        let server_error = (500..600).contains(&key.status);
        groups
            .routes
            .entry(key.route.clone())
            .or_default()
            .add(&rates, server_error);
        groups
            .statuses
            .entry(key.status)
            .or_default()
            .add(&rates, server_error);
        groups.total.add(&rates, server_error);
    }
    groups
}

/// Lines keyed by name, filled point by point.
#[derive(Default)]
struct Lines(BTreeMap<String, Vec<Option<f64>>>);

impl Lines {
    fn set(&mut self, name: &str, point: usize, points: usize, value: Option<f64>) {
        let values = self
            .0
            .entry(name.to_owned())
            .or_insert_with(|| vec![None; points]);
        values[point] = value.filter(|value| value.is_finite());
    }

    fn into_lines(self) -> Vec<Line> {
        self.0
            .into_iter()
            .map(|(name, values)| Line { name, values })
            .collect()
    }
}

/// The last sample at or before `at_ms` within the lookback.
fn instant(samples: &[Sample], at_ms: i64) -> Option<&Sample> {
    in_range(samples, |sample| sample.at_ms, at_ms - LOOKBACK_MS, at_ms).last()
}

/// What one request for data looks at: the samples, the series in scope and the times.
struct View<'a> {
    history: &'a History,
    samples: &'a [Sample],
    settings: &'a Settings,
    /// Indices of the series in scope (the drill-down's route, or all).
    scope: Vec<usize>,
    times_ms: Vec<i64>,
    end_ms: i64,
    range_ms: i64,
}

/// The RED lines of the charts, one value per evaluation time.
#[derive(Default)]
struct RedLines {
    requests: Lines,
    errors: Lines,
    statuses: Lines,
    averages: Lines,
    under: Lines,
    quantiles: [Lines; 3],
    heatmap_rows: Vec<Vec<Option<f64>>>,
    burn_rate: Vec<Option<f64>>,
}

/// The process lines of the charts.
struct ProcessLines {
    active_requests: Vec<Option<f64>>,
    cpu_cores: Vec<Option<f64>>,
    resident_memory_bytes: Vec<Option<f64>>,
}

impl View<'_> {
    fn window_ms(&self) -> i64 {
        self.settings.rate_window_ms
    }

    /// Evaluates the RED queries at every time over the rate window.
    fn red_lines(&self) -> RedLines {
        let points = self.times_ms.len();
        let window_s = self.window_ms() as f64 / 1000.0;
        let bounds = &self.history.bounds;
        let threshold = self.settings.threshold_bucket;
        let budget = 1.0 - self.settings.objective;
        let mut lines = RedLines {
            heatmap_rows: vec![vec![None; points]; self.history.buckets_per_series()],
            burn_rate: vec![None; points],
            ..RedLines::default()
        };
        for (k, &t) in self.times_ms.iter().enumerate() {
            let groups = evaluate(
                self.history,
                self.samples,
                &self.scope,
                t - self.window_ms(),
                t,
            );
            for (route, group) in &groups.routes {
                lines.requests.set(route, k, points, group.count);
                if group.errors.is_some() {
                    lines.errors.set(route, k, points, group.errors);
                }
                lines.averages.set(route, k, points, group.average());
                lines.under.set(route, k, points, group.under(threshold));
                for (quantile, q) in lines.quantiles.iter_mut().zip([0.5, 0.9, 0.99]) {
                    quantile.set(route, k, points, group.quantile(q, bounds));
                }
            }
            for (status, group) in &groups.statuses {
                lines
                    .statuses
                    .set(&status.to_string(), k, points, group.count);
            }
            let total = &groups.total;
            if total.count.is_some() {
                // increase() per bucket, de-accumulated.
                let mut below = 0.0;
                for (row, &cumulative) in lines.heatmap_rows.iter_mut().zip(&total.buckets) {
                    row[k] = Some((cumulative - below) * window_s);
                    below = cumulative;
                }
                lines.burn_rate[k] = total.error_ratio().map(|ratio| ratio / budget);
            }
        }
        lines
    }

    /// Requests in flight and memory as instant values, CPU as a rate, at every time.
    fn process_lines(&self) -> ProcessLines {
        let mut cpu_points = Vec::new();
        let mut lines = ProcessLines {
            active_requests: Vec::with_capacity(self.times_ms.len()),
            cpu_cores: Vec::with_capacity(self.times_ms.len()),
            resident_memory_bytes: Vec::with_capacity(self.times_ms.len()),
        };
        for &t in &self.times_ms {
            let latest = instant(self.samples, t);
            lines
                .active_requests
                .push(latest.map(|sample| sample.active as f64));
            lines
                .resident_memory_bytes
                .push(latest.and_then(|sample| sample.resident_bytes.map(|bytes| bytes as f64)));
            let in_window = in_range(self.samples, |s| s.at_ms, t - self.window_ms(), t);
            cpu_points.clear();
            cpu_points.extend(
                in_window
                    .iter()
                    .filter_map(|sample| Some((sample.at_ms, sample.cpu_seconds?))),
            );
            lines.cpu_cores.push(rate(&cpu_points, t, self.window_ms()));
        }
        lines
    }

    /// Availability and burn rate over the whole range, at its end.
    fn range_summary(&self) -> (Option<f64>, Option<f64>) {
        let start = self.end_ms - self.range_ms;
        let whole = evaluate(self.history, self.samples, &self.scope, start, self.end_ms).total;
        let ratio = whole.error_ratio();
        let budget = 1.0 - self.settings.objective;
        (
            ratio.map(|ratio| 1.0 - ratio),
            ratio.map(|ratio| ratio / budget),
        )
    }

    /// One row per route of every series, at the latest sample.
    fn route_table(&self) -> Vec<RouteRow> {
        let history = self.history;
        let per_series = history.buckets_per_series();
        let all: Vec<usize> = (0..history.series.len()).collect();
        let start = self.end_ms - self.window_ms();
        let now = evaluate(history, self.samples, &all, start, self.end_ms);
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        if let Some(last) = self.samples.last() {
            for (index, key) in history.series.iter().enumerate() {
                let at = (index + 1) * per_series - 1;
                let count = last.buckets.get(at).copied().unwrap_or(0);
                *counts.entry(key.route.as_str()).or_insert(0) += count;
            }
        }
        let empty = Group::default();
        counts
            .into_iter()
            .map(|(route, count)| {
                let group = now.routes.get(route).unwrap_or(&empty);
                RouteRow {
                    route: route.to_owned(),
                    count,
                    requests_per_s: group.count,
                    error_ratio: group.error_ratio(),
                    p50_s: group.quantile(0.5, &history.bounds),
                    p99_s: group.quantile(0.99, &history.bounds),
                    under_threshold_ratio: group.under(self.settings.threshold_bucket),
                }
            })
            .collect()
    }
}

/// Computes everything the page shows for `query` from `history`.
pub(crate) fn compute(
    history: &mut History,
    settings: &Settings,
    query: &DataQuery,
) -> DashboardData {
    let longest_s = (history.capacity() as i64 * settings.resolution_ms / 1000).max(1) as u64;
    let range_s = query.range.unwrap_or(300).clamp(1, longest_s);
    let range_ms = range_s as i64 * 1000;
    history.samples.make_contiguous();
    let history = &*history;
    let samples: &[Sample] = history.samples.as_slices().0;
    let end_ms = samples
        .last()
        .map_or_else(super::history::now_ms, |s| s.at_ms);
    let step_ms = (range_ms / POINTS).max(settings.resolution_ms).max(1);
    let points = usize::try_from(range_ms / step_ms).unwrap_or(1).max(1);
    let scope = (0..history.series.len())
        .filter(|&i| {
            query
                .route
                .as_ref()
                .is_none_or(|route| history.series[i].route == *route)
        })
        .collect();
    let view = View {
        history,
        samples,
        settings,
        scope,
        times_ms: (0..points)
            .map(|k| end_ms - (points - 1 - k) as i64 * step_ms)
            .collect(),
        end_ms,
        range_ms,
    };
    let red = view.red_lines();
    let process = view.process_lines();
    let (availability, range_burn_rate) = view.range_summary();
    let [p50, p90, p99] = red.quantiles;
    DashboardData {
        range_s,
        rate_window_s: settings.rate_window_ms as f64 / 1000.0,
        latency_threshold_s: settings.latency_threshold_s,
        objective: settings.objective,
        prometheus_url: settings.prometheus_url.clone(),
        route: query.route.clone(),
        requests_per_s: red.requests.into_lines(),
        errors_per_s: red.errors.into_lines(),
        responses_per_s_by_status: red.statuses.into_lines(),
        average_latency_s: red.averages.into_lines(),
        under_threshold_ratio: red.under.into_lines(),
        p50_s: p50.into_lines(),
        p90_s: p90.into_lines(),
        p99_s: p99.into_lines(),
        heatmap: Heatmap {
            upper_bounds_s: history
                .bounds
                .iter()
                .map(|&b| Some(b))
                .chain([None])
                .collect(),
            rows: red.heatmap_rows,
        },
        active_requests: process.active_requests,
        cpu_cores: process.cpu_cores,
        resident_memory_bytes: process.resident_memory_bytes,
        burn_rate: red.burn_rate,
        availability,
        range_burn_rate,
        routes: view.route_table(),
        series_not_kept: history.dropped_series,
        times_ms: view.times_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{AppInfo, Collected};
    use crate::naming::Naming;
    use crate::snapshot::{Bucket, HistogramSnapshot, SeriesSnapshot, Snapshot};

    const BOUNDS: [f64; 3] = [0.1, 0.25, 1.0];

    fn series(route: &str, status: u16, cumulative: [u64; 4], sum: f64) -> SeriesSnapshot {
        SeriesSnapshot {
            method: "GET",
            route: route.to_owned(),
            status,
            url_scheme: Some("http"),
            protocol_version: Some("1.1"),
            request_label: None,
            duration: HistogramSnapshot {
                count: cumulative[3],
                sum,
                buckets: BOUNDS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(cumulative)
                    .map(|(upper_bound, cumulative_count)| Bucket {
                        upper_bound,
                        cumulative_count,
                    })
                    .collect(),
            },
            request_size: None,
            response_size: None,
        }
    }

    /// Ten samples a second apart (t = 1..=10 s). Each second `/a` gets 10 responses 200
    /// (4 up to 100 ms, 4 more up to 250 ms, 2 more up to 1 s) and one 500 (under 100 ms);
    /// `/b` appears at t = 6 s with 2 fast responses a second.
    fn history() -> History {
        let mut history = History::new(100, 10, BOUNDS.to_vec());
        for t in 1..=10u64 {
            let mut all = vec![
                series("/a", 200, [4 * t, 8 * t, 10 * t, 10 * t], 2.0 * t as f64),
                series("/a", 500, [t, t, t, t], 0.05 * t as f64),
            ];
            if t >= 6 {
                let n = 2 * (t - 5);
                all.push(series("/b", 200, [n, n, n, n], 0.01 * n as f64));
            }
            let snapshot = Snapshot {
                naming: Naming::Otel,
                series: all,
                active: Vec::new(),
                exceptions: Vec::new(),
                collected: Collected {
                    info: AppInfo {
                        service_name: String::new(),
                        version: String::new(),
                        environment: String::new(),
                    },
                    process: None,
                    runtime: None,
                },
            };
            history.push(t as i64 * 1000, &snapshot);
        }
        history
    }

    fn settings() -> Settings {
        Settings {
            rate_window_ms: 5000,
            latency_threshold_s: 0.25,
            threshold_bucket: 1,
            objective: 0.999,
            prometheus_url: None,
            resolution_ms: 1000,
        }
    }

    fn close(actual: Option<f64>, expected: f64) {
        let actual = actual.unwrap_or(f64::NAN);
        assert!(
            (actual - expected).abs() < 1e-9,
            "{actual} instead of {expected}"
        );
    }

    fn line<'a>(lines: &'a [Line], name: &str) -> &'a [Option<f64>] {
        &lines.iter().find(|l| l.name == name).unwrap().values
    }

    #[test]
    fn panels_sum_per_series_rates_as_prometheus_does() {
        let mut history = history();
        let data = compute(&mut history, &settings(), &DataQuery::new(10, None));
        assert_eq!(
            data.times_ms,
            (1..=10).map(|t| t * 1000).collect::<Vec<_>>()
        );
        // At t = 10 s the window (5 s, 10 s] holds 5 samples; /a 200 rose 40 in 4 s and is
        // extrapolated 1 s back to the window's start: 50 / 5 s = 10/s. Its 500s: 1/s.
        close(line(&data.requests_per_s, "/a")[9], 11.0);
        close(line(&data.errors_per_s, "/a")[9], 1.0);
        // /b starts at t = 6 s with 2: extrapolated 1 s back (where it would reach zero).
        close(line(&data.requests_per_s, "/b")[9], 2.0);
        close(line(&data.responses_per_s_by_status, "200")[9], 12.0);
        close(line(&data.responses_per_s_by_status, "500")[9], 1.0);
        // Summed bucket rates of /a: 5, 9, 11, 11. p50: rank 5.5 in (0.1, 0.25] holding 4.
        close(line(&data.p50_s, "/a")[9], 0.1 + 0.15 * 0.5 / 4.0);
        close(line(&data.under_threshold_ratio, "/a")[9], 9.0 / 11.0);
        close(line(&data.average_latency_s, "/a")[9], 2.05 / 11.0);
        // Only one sample in the first window: no value, as in Prometheus.
        assert_eq!(line(&data.requests_per_s, "/a")[0], None);
        // The heatmap de-accumulates increase() = rate * 5 s: (7, 11, 13, 13) * 5.
        let at_end: Vec<Option<f64>> = data.heatmap.rows.iter().map(|row| row[9]).collect();
        assert_eq!(at_end, vec![Some(35.0), Some(20.0), Some(10.0), Some(0.0)]);
        // Over the whole range (0, 10 s]: /a 10/s + 1/s; /b starts 6 s into it, so it is
        // extrapolated only half a sample gap back: 8 * 4.5/4 / 10 s = 0.9/s.
        let availability = 1.0 - 1.0 / 11.9;
        close(data.availability, availability);
        close(data.range_burn_rate, (1.0 / 11.9) / (1.0 - 0.999));
        close(data.burn_rate[9], (1.0 / 13.0) / (1.0 - 0.999));
        let rows: Vec<(&str, u64)> = data
            .routes
            .iter()
            .map(|row| (row.route.as_str(), row.count))
            .collect();
        assert_eq!(rows, vec![("/a", 110), ("/b", 10)]);
        close(data.routes[0].error_ratio, 1.0 / 11.0);
    }

    #[test]
    fn a_drill_down_shows_one_route_and_still_lists_all() {
        let mut history = history();
        let data = compute(
            &mut history,
            &settings(),
            &DataQuery::new(10, Some("/b".into())),
        );
        let names: Vec<&str> = data
            .requests_per_s
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, vec!["/b"]);
        close(line(&data.requests_per_s, "/b")[9], 2.0);
        assert!(data.errors_per_s.is_empty(), "/b never failed: no 5xx line");
        assert_eq!(data.routes.len(), 2);
        // Before /b existed there is nothing to show.
        assert_eq!(line(&data.requests_per_s, "/b")[4], None);
    }

    #[test]
    fn ranges_are_clamped_to_the_history() {
        let mut history = history();
        let data = compute(&mut history, &settings(), &DataQuery::new(86_400, None));
        assert_eq!(data.range_s, 100);
    }
}
