//! The PromQL functions the dashboard needs, computed as Prometheus computes them, so the
//! page shows the numbers the generated Grafana dashboard shows:
//!
//! - [`rate`] and [`increase`]: `rate(counter[range])`, Prometheus's extrapolated rate over
//!   the samples in the left-open range `(at - range, at]`, with counter resets,
//!   extrapolation to the range's edges limited to half a sampling interval when the series
//!   starts or ends inside it, and no extrapolation below zero.
//! - [`histogram_quantile`]: `histogram_quantile(q, ...)` over classic cumulative buckets:
//!   linear interpolation inside the bucket, the first bucket starting at 0, a quantile in the
//!   `+Inf` bucket answered with the highest finite bound, and non-monotonic counts flattened.
//!
//! Written from the behaviour of Prometheus 3 (`promql/functions.go`, `promql/quantile.go`).
//! Prometheus 2 differs in two corners: its ranges include a sample exactly at the start,
//! and it limits the backward extrapolation of a series that starts inside the range after
//! (not before) clamping it at the counter's zero point, which changes the result only when
//! that zero point lies between 0.5 and 1.1 sample intervals before the first sample.
//!
//! ```
//! use redwatch::dashboard::promql::{histogram_quantile, rate};
//!
//! // A counter sampled every 15 s: rate(x[1m]) at t = 67 s.
//! let samples = [(15_000, 100.0), (30_000, 130.0), (45_000, 10.0), (60_000, 40.0)];
//! let per_second = rate(&samples, 67_000, 60_000).unwrap();
//! assert!((per_second - 1.5555555555555556).abs() < 1e-12);
//!
//! // (upper bound, cumulative count) pairs, `+Inf` included.
//! let buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (f64::INFINITY, 40.0)];
//! assert!((histogram_quantile(0.5, &buckets).unwrap() - 0.3).abs() < 1e-12);
//! ```

/// The samples of a sorted sample list inside the left-open range `(end - range, end]`, as
/// a range selector selects them in Prometheus 3.
pub(crate) fn in_range<T>(
    samples: &[T],
    time_ms: impl Fn(&T) -> i64,
    start_ms: i64,
    end_ms: i64,
) -> &[T] {
    let from = samples.partition_point(|sample| time_ms(sample) <= start_ms);
    let to = samples.partition_point(|sample| time_ms(sample) <= end_ms);
    &samples[from..to.max(from)]
}

/// `rate(counter[range])` evaluated at `at_ms`: the per-second increase of a counter whose
/// samples `(time in ms, value)` are sorted by time, over those in
/// `(at_ms - range_ms, at_ms]`. `None` with fewer than two samples there, as Prometheus
/// returns no value then.
pub fn rate(samples: &[(i64, f64)], at_ms: i64, range_ms: i64) -> Option<f64> {
    let start_ms = at_ms.saturating_sub(range_ms);
    let points = in_range(samples, |sample| sample.0, start_ms, at_ms);
    extrapolated(points, start_ms, at_ms, true)
}

/// `increase(counter[range])` evaluated at `at_ms`: [`rate`] times the range.
pub fn increase(samples: &[(i64, f64)], at_ms: i64, range_ms: i64) -> Option<f64> {
    let start_ms = at_ms.saturating_sub(range_ms);
    let points = in_range(samples, |sample| sample.0, start_ms, at_ms);
    extrapolated(points, start_ms, at_ms, false)
}

/// The extrapolated increase (per second when `per_second`) of `points`, which all lie in
/// `(start_ms, end_ms]`.
fn extrapolated(
    points: &[(i64, f64)],
    start_ms: i64,
    end_ms: i64,
    per_second: bool,
) -> Option<f64> {
    let (&(first_t, first_v), &(last_t, last_v)) = (points.first()?, points.last()?);
    if points.len() < 2 || last_t <= first_t || end_ms <= start_ms {
        return None;
    }
    // The increase, with each reset counted as a restart from zero.
    let mut increase = last_v - first_v;
    for pair in points.windows(2) {
        if pair[1].1 < pair[0].1 {
            increase += pair[0].1;
        }
    }
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average_gap = sampled / (points.len() - 1) as f64;
    // A sample missing where the spacing predicts one means the series starts (or ends)
    // inside the range: extrapolate only half a gap then.
    let threshold = average_gap * 1.1;
    let mut to_start = (first_t - start_ms) as f64 / 1000.0;
    if to_start >= threshold {
        to_start = average_gap / 2.0;
    }
    // A counter is never negative: extrapolate back at most to where it would reach zero.
    if increase > 0.0 && first_v >= 0.0 {
        to_start = to_start.min(sampled * (first_v / increase));
    }
    let mut to_end = (end_ms - last_t) as f64 / 1000.0;
    if to_end >= threshold {
        to_end = average_gap / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= (end_ms - start_ms) as f64 / 1000.0;
    }
    Some(increase * factor)
}

/// `histogram_quantile(q, buckets)` for classic buckets `(upper bound, cumulative count)`,
/// in any order and possibly with repeated bounds (their counts are added, as when series
/// are summed by `le`). `None` where Prometheus returns NaN: no `+Inf` bucket, fewer than
/// two buckets, or no observations. `q` outside `[0, 1]` gives `-Inf` / `+Inf`.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let mut sorted: Vec<(f64, f64)> = buckets.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Buckets with the same bound are one bucket.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(sorted.len());
    for (bound, count) in sorted {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    if merged.last().is_none_or(|last| last.0 != f64::INFINITY) {
        return None;
    }
    make_monotonic(&mut merged);
    if merged.len() < 2 {
        return None;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return None;
    }
    let rank = q * observations;
    // The first bucket whose count reaches the rank, among all but `+Inf`.
    let finite = merged.len() - 1;
    let b = merged[..finite].partition_point(|bucket| bucket.1 < rank);
    if b == finite {
        return Some(merged[finite - 1].0);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return Some(merged[0].0);
    }
    let (start, below) = if b > 0 { merged[b - 1] } else { (0.0, 0.0) };
    let (end, count) = merged[b];
    Some(start + (end - start) * ((rank - below) / (count - below)))
}

/// Flattens decreases of the cumulative counts (the envelope Prometheus takes), treating
/// relative differences up to 1e-12 as floating-point noise.
fn make_monotonic(buckets: &mut [(f64, f64)]) {
    const TOLERANCE: f64 = 1e-12;
    let Some(first) = buckets.first() else { return };
    let mut previous = first.1;
    for bucket in buckets.iter_mut().skip(1) {
        let current = bucket.1;
        if current == previous {
            continue;
        }
        let noise = (current - previous).abs() / (current.abs() + previous.abs()) < TOLERANCE;
        if noise || current < previous {
            bucket.1 = previous;
        } else {
            previous = current;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|actual| (actual - expected).abs() < 1e-9)
    }

    fn at(seconds: &[(i64, f64)]) -> Vec<(i64, f64)> {
        seconds.iter().map(|&(t, v)| (t * 1000, v)).collect()
    }

    #[test]
    fn rate_extrapolates_to_the_edges_but_not_below_zero() {
        // rate(x[60s]) at t=60 s; samples every 10 s from t=10 s. The start gap (10 s) is
        // within 1.1 gaps, so Prometheus would extrapolate 10 s back, but the counter reaches
        // zero after 50 s * 5/55 = 4.545 s: increase = 55 * 54.545/50 = 60, rate = 1.
        let points = at(&[
            (10, 5.0),
            (20, 20.0),
            (30, 30.0),
            (40, 40.0),
            (50, 50.0),
            (60, 60.0),
        ]);
        assert!(close(rate(&points, 60_000, 60_000), 1.0));
        assert!(close(increase(&points, 60_000, 60_000), 60.0));
    }

    #[test]
    fn rate_counts_resets_as_restarts() {
        // 100, 130, reset, 10, 40 every 15 s: increase 40 - 100 + 130 = 70 over 45 s, the
        // start gap 15 s is extrapolated (zero point 45*100/70 s back is further), the end
        // gap is 0: 70 * 60/45 / 60 = 1.5556 per second.
        let points = at(&[(15, 100.0), (30, 130.0), (45, 10.0), (60, 40.0)]);
        assert!(close(rate(&points, 60_000, 60_000), 70.0 / 45.0));
    }

    #[test]
    fn rate_extrapolates_half_a_gap_where_a_series_starts_or_ends_inside_the_range() {
        // Starts at t=40 s inside (0, 60]: the 40 s gap exceeds 1.1 * 10 s, so at most 5 s
        // back, and the zero point 20*3/20 = 3 s back is nearer: (20 + 3)/20 * 20 = 23.
        let late = at(&[(40, 3.0), (50, 13.0), (60, 23.0)]);
        assert!(close(rate(&late, 60_000, 60_000), 23.0 / 60.0));
        // Ends at t=30 s: 5 s forward instead of 30; starts from 0 so no backward part:
        // (20 + 0 + 5)/20 * 20 = 25.
        let early = at(&[(10, 0.0), (20, 10.0), (30, 20.0)]);
        assert!(close(rate(&early, 60_000, 60_000), 25.0 / 60.0));
    }

    #[test]
    fn rate_needs_two_samples() {
        assert_eq!(rate(&at(&[(30, 5.0)]), 60_000, 60_000), None);
        assert_eq!(rate(&[], 60_000, 60_000), None);
        // A sample exactly at the range start is outside it.
        let edge = at(&[(0, 0.0), (30, 5.0)]);
        assert_eq!(rate(&edge, 60_000, 60_000), None);
    }

    #[test]
    fn ranges_are_left_open() {
        let times = [0i64, 1000, 2000, 3000];
        let selected = in_range(&times, |t| *t, 1000, 3000);
        assert_eq!(selected, &[2000, 3000]);
        assert!(in_range(&times, |t| *t, 3000, 3000).is_empty());
    }

    #[test]
    fn quantiles_interpolate_inside_buckets_from_zero() {
        let buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (f64::INFINITY, 40.0)];
        // Rank 20 falls in (0.1, 0.5] holding 20: 0.1 + 0.4 * 10/20.
        assert!(close(histogram_quantile(0.5, &buckets), 0.3));
        // Rank 39.6 in (0.5, 1]: 0.5 + 0.5 * 9.6/10.
        assert!(close(histogram_quantile(0.99, &buckets), 0.98));
        // Rank 4 in the first bucket, which starts at 0: 0.1 * 4/10.
        assert!(close(histogram_quantile(0.1, &buckets), 0.04));
    }

    #[test]
    fn a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let buckets = [(0.1, 10.0), (0.5, 10.0), (f64::INFINITY, 20.0)];
        assert!(close(histogram_quantile(0.9, &buckets), 0.5));
    }

    #[test]
    fn decreasing_counts_are_flattened_and_equal_bounds_merged() {
        // 10, 4, 12 becomes 10, 10, 12: rank 10.8 in (0.5, 1] holding 2: 0.5 + 0.5 * 0.8/2.
        // Unflattened it would be 0.5 + 0.5 * 6.8/8 = 0.925.
        let buckets = [(0.1, 10.0), (0.5, 4.0), (1.0, 12.0), (f64::INFINITY, 12.0)];
        assert!(close(histogram_quantile(0.9, &buckets), 0.7));
        // Two series summed by le arrive as repeated bounds in any order.
        let split = [
            (f64::INFINITY, 20.0),
            (0.1, 5.0),
            (0.5, 15.0),
            (0.1, 5.0),
            (0.5, 15.0),
            (1.0, 20.0),
            (1.0, 20.0),
            (f64::INFINITY, 20.0),
        ];
        assert!(close(histogram_quantile(0.5, &split), 0.3));
    }

    #[test]
    fn quantiles_without_data_are_nan_like_prometheus() {
        assert_eq!(
            histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.5, &[(0.1, 3.0), (1.0, 4.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 4.0)]), None);
        assert_eq!(
            histogram_quantile(1.5, &[(0.1, 1.0), (f64::INFINITY, 1.0)]),
            Some(f64::INFINITY)
        );
        assert_eq!(
            histogram_quantile(-0.5, &[(0.1, 1.0), (f64::INFINITY, 1.0)]),
            Some(f64::NEG_INFINITY)
        );
    }
}
