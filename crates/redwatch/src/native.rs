//! Native (exponential, sparse) histograms of request durations: the bucket math and the
//! lock-free storage behind [`crate::MetricsBuilder::native_histograms`].
//!
//! One fixed layout for every series: schema 3 (8 buckets per power of two, each bound
//! 2^(1/8) ≈ 1.09 times the previous, so a quantile read from a bucket is within about 9 % of
//! the truth), buckets from about 1 µs to 2^14 s (4.6 h), and a zero bucket below. Stored densely,
//! one `AtomicU64` per bucket, allocated once when a series is created; recording is a few
//! integer operations on the bits of an `f64` (no logarithm) and one relaxed atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

/// The bucket schema: each power of two is split into 2^SCHEMA buckets.
pub(crate) const SCHEMA: i32 = 3;

/// The index of the lowest regular bucket, (2^(-160/8), 2^(-159/8)] s = (0.95 µs, 1.04 µs].
/// Bucket `i` holds the durations in (2^((i-1)/8), 2^(i/8)] seconds, as Prometheus numbers them.
pub(crate) const MIN_INDEX: i32 = -159;

/// The index of the highest bucket, whose upper bound is 2^(112/8) = 2^14 s (4.6 h). Longer
/// durations are counted in it: their quantiles read as 4.6 h (their sum stays exact).
pub(crate) const MAX_INDEX: i32 = 112;

/// Durations at or below this many seconds, 2^-20 (0.95 µs, the lower bound of [`MIN_INDEX`]),
/// are counted in the zero bucket.
pub(crate) const ZERO_THRESHOLD: f64 = 1.0 / (1u64 << 20) as f64;

/// Slots per series: the zero bucket, then one per index from [`MIN_INDEX`] to [`MAX_INDEX`].
const SLOTS: usize = (MAX_INDEX - MIN_INDEX + 2) as usize;

/// 2^(j/8) for j = 1..7, correctly rounded: the bucket bounds inside one power of two.
const OCTAVE_BOUNDS: [f64; 7] = [
    1.0905077326652577,
    1.189207115002721,
    1.2968395546510096,
    std::f64::consts::SQRT_2,
    1.5422108254079407,
    1.681792830507429,
    1.8340080864093424,
];

const MANTISSA_MASK: u64 = (1 << 52) - 1;

/// The 52 fraction bits of each of [`OCTAVE_BOUNDS`] (all in [1, 2), so they share the exponent
/// of 1.0): comparing fractions as integers compares the values.
const MANTISSA_BOUNDS: [u64; 7] = {
    let mut bounds = [0; 7];
    let mut j = 0;
    while j < 7 {
        bounds[j] = OCTAVE_BOUNDS[j].to_bits() & MANTISSA_MASK;
        j += 1;
    }
    bounds
};

/// The index of the bucket that holds `seconds` (finite, not negative): the smallest `i` with
/// `seconds <= 2^(i/8)`, from the bits of the `f64`. With `seconds = m · 2^e`, m in [1, 2), the
/// index is `8e + j`, where `j` counts the bounds 2^(j/8) that `m` exceeds (0 when `m` is 1, the
/// bound of the power of two itself). Zero and subnormals give very low indexes (zero bucket).
#[inline]
pub(crate) fn bucket_index(seconds: f64) -> i32 {
    let bits = seconds.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = bits & MANTISSA_MASK;
    let mut within = i32::from(mantissa != 0);
    for bound in MANTISSA_BOUNDS {
        within += i32::from(mantissa > bound);
    }
    exponent * (1 << SCHEMA) + within
}

/// The upper bound of bucket `index`, 2^(index/8) seconds, exactly as [`bucket_index`] compares.
#[cfg(test)]
pub(crate) fn upper_bound(index: i32) -> f64 {
    let exponent = index.div_euclid(1 << SCHEMA);
    let within = index.rem_euclid(1 << SCHEMA);
    let mantissa = match within {
        0 => 1.0,
        j => OCTAVE_BOUNDS[(j - 1) as usize],
    };
    mantissa * 2f64.powi(exponent)
}

/// One series' native histogram: counts per bucket, the zero bucket first. Its sum is the classic
/// histogram's, recorded for the same request.
pub(crate) struct NativeHistogram {
    counts: Box<[AtomicU64]>,
}

impl NativeHistogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records a duration of `nanos` nanoseconds.
    #[inline]
    pub(crate) fn observe(&self, nanos: u64) {
        let index = bucket_index(nanos as f64 / 1e9);
        // Everything at or below the zero threshold lands in slot 0, everything above the top
        // bucket in the last slot.
        let slot = (index - (MIN_INDEX - 1)).clamp(0, SLOTS as i32 - 1) as usize;
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every bucket once.
    pub(crate) fn snapshot(&self) -> NativeSnapshot {
        let mut snapshot = NativeSnapshot {
            zero_count: self.counts[0].load(Ordering::Relaxed),
            count: 0,
            spans: Vec::new(),
            deltas: Vec::new(),
        };
        snapshot.count = snapshot.zero_count;
        let mut previous_count = 0i64;
        // The index after the last non-empty bucket written, where a gap starts counting.
        let mut next_index: Option<i32> = None;
        for (slot, count) in self.counts.iter().enumerate().skip(1) {
            let count = count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let index = MIN_INDEX + slot as i32 - 1;
            snapshot.count += count;
            match next_index {
                Some(next) if next == index => {
                    if let Some(span) = snapshot.spans.last_mut() {
                        span.1 += 1;
                    }
                }
                // A new span: the first one's offset is its index, the others' the gap.
                Some(next) => snapshot.spans.push((index - next, 1)),
                None => snapshot.spans.push((index, 1)),
            }
            next_index = Some(index + 1);
            // Counts stay far below 2^63.
            let count = count as i64;
            snapshot.deltas.push(count - previous_count);
            previous_count = count;
        }
        snapshot
    }
}

/// A native histogram as read at one moment, in the protobuf's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NativeSnapshot {
    /// Observations in the zero bucket.
    pub(crate) zero_count: u64,
    /// Observations in all buckets, the zero bucket included: the histogram's count.
    pub(crate) count: u64,
    /// (offset, length) of each run of non-empty buckets.
    pub(crate) spans: Vec<(i32, u32)>,
    /// Each non-empty bucket's count minus the previous one's (the first's minus 0).
    pub(crate) deltas: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: `ceil(8 · log2(x))`, by floating-point logarithm.
    fn reference_index(seconds: f64) -> i32 {
        (seconds.log2() * f64::from(1 << SCHEMA)).ceil() as i32
    }

    #[test]
    fn octave_bounds_are_the_powers_of_the_eighth_root_of_two() {
        for (j, bound) in OCTAVE_BOUNDS.iter().enumerate() {
            let exact = 2f64.powf((j + 1) as f64 / 8.0);
            assert!((bound - exact).abs() <= f64::EPSILON * exact, "{j}");
        }
        assert_eq!(ZERO_THRESHOLD, upper_bound(MIN_INDEX - 1));
        assert_eq!(upper_bound(MAX_INDEX), 16384.0);
        assert!((upper_bound(MIN_INDEX) - 1.04e-6).abs() < 0.01e-6);
    }

    #[test]
    fn every_bound_belongs_to_its_own_bucket_and_the_next_value_to_the_next() {
        for index in (MIN_INDEX - 16)..=(MAX_INDEX + 16) {
            let bound = upper_bound(index);
            assert_eq!(
                bucket_index(bound),
                index,
                "the bound of {index}, {bound:e}"
            );
            assert_eq!(bucket_index(bound.next_up()), index + 1, "above {index}");
            assert_eq!(bucket_index(bound.next_down()), index, "below {index}");
            let exact = 2f64.powf(f64::from(index) / 8.0);
            assert!(
                (bound - exact).abs() <= 2.0 * f64::EPSILON * exact,
                "{index}"
            );
        }
    }

    #[test]
    fn indexes_match_the_logarithm_away_from_the_bounds() {
        // A deterministic spread over 1 ns .. 10^5 s: every nanosecond count of a few orders of
        // magnitude, then a geometric walk with an irrational ratio.
        let mut values: Vec<f64> = (1..5_000u64).map(|nanos| nanos as f64 / 1e9).collect();
        let mut x = 1e-9;
        while x < 1e5 {
            values.push(x);
            x *= 1.000_731_9;
        }
        let mut checked = 0;
        for seconds in values {
            let index = bucket_index(seconds);
            // The logarithm may be off by an ulp or two right at a bound; there the exact
            // comparison with the bound decides, which the test above checks.
            let near_a_bound = [index - 1, index]
                .iter()
                .any(|&i| (seconds / upper_bound(i) - 1.0).abs() < 1e-12);
            if !near_a_bound {
                assert_eq!(index, reference_index(seconds), "{seconds:e} s");
                checked += 1;
            }
            assert!(seconds <= upper_bound(index) && seconds > upper_bound(index - 1));
        }
        assert!(checked > 40_000, "{checked}");
    }

    #[test]
    fn durations_land_in_their_slots_and_read_back_as_spans_and_deltas() {
        let histogram = NativeHistogram::new();
        // 0 ns and 500 ns: zero bucket. 1 s: bucket 0 (bound 1). 1.05 s and 1.09 s: bucket 1.
        // 3 s twice: bucket 13 (2^(12/8) = 2.83 < 3 <= 2^(13/8) = 3.08). A day: the top bucket.
        for nanos in [
            0,
            500,
            1_000_000_000,
            1_050_000_000,
            1_090_000_000,
            3_000_000_000,
            3_000_000_000,
            86_400_000_000_000,
        ] {
            histogram.observe(nanos);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.zero_count, 2);
        assert_eq!(snapshot.count, 8);
        assert_eq!(snapshot.spans, vec![(0, 2), (11, 1), (MAX_INDEX - 14, 1)]);
        assert_eq!(snapshot.deltas, vec![1, 1, 0, -1]);
        // A microsecond is the lowest regular bucket's.
        let low = NativeHistogram::new();
        low.observe(1_000);
        assert_eq!(low.snapshot().spans, vec![(MIN_INDEX, 1)]);
        assert!(NativeHistogram::new().snapshot().spans.is_empty());
    }
}
