//! The bounded in-process history: a ring buffer of samples of the registry, one per
//! resolution step, and the background thread that takes them.
//!
//! # Memory bound
//!
//! A sample holds, for each RED series (method × route × status), its cumulative duration
//! buckets (one more than the configured bounds, for `+Inf`) and its sum: `(buckets + 2) × 8`
//! bytes, plus [`SAMPLE_OVERHEAD`] bytes of its own. With `S` series, `B` bucket bounds and
//! capacity `N` samples the history holds at most
//!
//! ```text
//! N × (SAMPLE_OVERHEAD + S × (B + 2) × 8) bytes
//! ```
//!
//! e.g. 900 samples (15 minutes at 1 s) of 40 series with the 14 default buckets:
//! 900 × (96 + 40 × 16 × 8) ≈ 4.7 MB, plus the series' names (method, route, status) once. `S` is capped by the dashboard's `max_series`
//! (default 500; series beyond it are counted but not kept), so the bound holds for any
//! traffic: 900 × (96 + 500 × 128) ≈ 58 MB at most with the defaults.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{Metrics, Snapshot};

/// Bytes a sample takes besides its per-series values: the struct and its two allocations'
/// bookkeeping, rounded up.
pub const SAMPLE_OVERHEAD: usize = 96;

/// The identity of a RED series in the history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) method: &'static str,
    pub(crate) route: String,
    pub(crate) status: u16,
}

/// One reading of the registry.
#[derive(Debug)]
pub(crate) struct Sample {
    /// Milliseconds since the Unix epoch.
    pub(crate) at_ms: i64,
    /// Cumulative bucket counts, `buckets_per_series` per series, in history series order;
    /// series created after this sample are absent (shorter slice).
    pub(crate) buckets: Box<[u64]>,
    /// Duration sums in seconds, one per series present.
    pub(crate) sums: Box<[f64]>,
    pub(crate) active: i64,
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<u64>,
}

impl Sample {
    fn bytes(&self) -> usize {
        SAMPLE_OVERHEAD + self.buckets.len() * 8 + self.sums.len() * 8
    }
}

/// The ring buffer.
#[derive(Debug)]
pub(crate) struct History {
    capacity: usize,
    max_series: usize,
    /// Finite duration bucket bounds, in seconds.
    pub(crate) bounds: Vec<f64>,
    pub(crate) samples: VecDeque<Sample>,
    pub(crate) series: Vec<SeriesKey>,
    index: HashMap<SeriesKey, usize>,
    /// Series seen but not kept, beyond `max_series`.
    pub(crate) dropped_series: usize,
}

impl History {
    pub(crate) fn new(capacity: usize, max_series: usize, bounds: Vec<f64>) -> Self {
        Self {
            capacity: capacity.max(2),
            max_series,
            bounds,
            // Allocated once: the ring never grows past it.
            samples: VecDeque::with_capacity(capacity.max(2)),
            series: Vec::new(),
            index: HashMap::new(),
            dropped_series: 0,
        }
    }

    /// Values kept per series in [`Sample::buckets`]: the finite bounds and `+Inf`.
    pub(crate) fn buckets_per_series(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The most samples kept.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The memory bound of the module docs for this history's settings.
    pub(crate) fn bound_bytes(&self) -> usize {
        self.capacity * (SAMPLE_OVERHEAD + self.max_series * (self.bounds.len() + 2) * 8)
    }

    /// What the samples take now, by the same accounting.
    pub(crate) fn bytes(&self) -> usize {
        self.samples.iter().map(Sample::bytes).sum()
    }

    /// Appends a reading of `snapshot` taken at `at_ms`, dropping the oldest sample when full.
    pub(crate) fn push(&mut self, at_ms: i64, snapshot: &Snapshot) {
        let per_series = self.buckets_per_series();
        let mut dropped = 0;
        for series in &snapshot.series {
            let key = SeriesKey {
                method: series.method,
                route: series.route.clone(),
                status: series.status,
            };
            if !self.index.contains_key(&key) {
                if self.series.len() >= self.max_series {
                    dropped += 1;
                    continue;
                }
                self.index.insert(key.clone(), self.series.len());
                self.series.push(key);
            }
        }
        self.dropped_series = dropped;
        let mut buckets = vec![0u64; self.series.len() * per_series];
        let mut sums = vec![0f64; self.series.len()];
        for series in &snapshot.series {
            let key = SeriesKey {
                method: series.method,
                route: series.route.clone(),
                status: series.status,
            };
            let Some(&i) = self.index.get(&key) else {
                continue;
            };
            // Series that differ only in labels the dashboard does not show (a request label,
            // the otel preset's scheme and version) add up.
            let slot = &mut buckets[i * per_series..(i + 1) * per_series];
            for (value, bucket) in slot.iter_mut().zip(&series.duration.buckets) {
                *value += bucket.cumulative_count;
            }
            sums[i] += series.duration.sum;
        }
        let process = snapshot.collected.process.as_ref();
        if self.samples.len() >= self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_ms,
            buckets: buckets.into(),
            sums: sums.into(),
            active: snapshot.active_requests(),
            cpu_seconds: process.map(|p| p.cpu_seconds),
            resident_bytes: process.map(|p| p.resident_memory_bytes),
        });
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The background thread that samples `metrics` into the history every `every`, off the
/// request path. Dropping the sampler stops the thread and waits for it.
#[derive(Debug)]
pub(crate) struct Sampler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub(crate) fn start(
        metrics: Metrics,
        history: Arc<Mutex<History>>,
        every: Duration,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("redwatch-dashboard".into())
            .spawn(move || {
                let start = Instant::now();
                let mut ticks: u32 = 0;
                loop {
                    let snapshot = metrics.snapshot();
                    history
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(now_ms(), &snapshot);
                    // Ticks on a fixed grid, so the spacing stays even whatever a sample costs.
                    ticks = ticks.saturating_add(1);
                    let wait = every
                        .checked_mul(ticks)
                        .and_then(|offset| start.checked_add(offset))
                        .map_or(every, |next| next.saturating_duration_since(Instant::now()));
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metrics, UriPathRoute};
    use tower::{Layer, Service, ServiceExt};

    /// Sends `requests` through the layer (the route is the path).
    fn serve_all(metrics: &Metrics, requests: Vec<http::Request<()>>) {
        let service = tower::service_fn(|_request: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let mut service = metrics.layer().classify_with(UriPathRoute).layer(service);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for request in requests {
                let response = service.ready().await.unwrap().call(request).await.unwrap();
                drop(response);
            }
        });
    }

    fn traffic(metrics: &Metrics, routes: usize) {
        let requests = (0..routes)
            .map(|route| http::Request::get(format!("/r/{route}")).body(()).unwrap())
            .collect();
        serve_all(metrics, requests);
    }

    #[test]
    fn the_ring_never_exceeds_its_capacity_or_its_memory_bound() {
        let metrics = Metrics::builder().max_routes(10_000).build().unwrap();
        let bounds = crate::DEFAULT_DURATION_BUCKETS.to_vec();
        for routes in [1, 40, 300] {
            traffic(&metrics, routes);
            let mut history = History::new(50, 200, bounds.clone());
            for step in 0..130 {
                history.push(step * 1000, &metrics.snapshot());
                assert!(history.samples.len() <= 50);
                assert!(
                    history.bytes() <= history.bound_bytes(),
                    "{} bytes over the bound {}",
                    history.bytes(),
                    history.bound_bytes()
                );
            }
            assert_eq!(history.samples.len(), 50);
            // The oldest samples went first.
            assert_eq!(history.samples.front().map(|s| s.at_ms), Some(80_000));
            let kept = metrics.snapshot().series.len().min(200);
            assert_eq!(history.series.len(), kept);
            // The estimate is the real size of what is kept, and matches the documented
            // formula for that many series.
            assert_eq!(
                history.bytes(),
                50 * (SAMPLE_OVERHEAD + kept * (bounds.len() + 2) * 8)
            );
            assert_eq!(
                history.dropped_series,
                metrics.snapshot().series.len() - kept
            );
        }
    }

    /// Two series that differ only in a label the dashboard does not show (here the HTTP
    /// version) count together, not the last one alone.
    #[test]
    fn series_differing_in_hidden_labels_add_up() {
        let metrics = Metrics::new();
        let requests = [
            http::Version::HTTP_11,
            http::Version::HTTP_2,
            http::Version::HTTP_2,
        ]
        .into_iter()
        .map(|version| http::Request::get("/r").version(version).body(()).unwrap())
        .collect();
        serve_all(&metrics, requests);
        assert_eq!(metrics.snapshot().series.len(), 2);
        let mut history = History::new(5, 10, crate::DEFAULT_DURATION_BUCKETS.to_vec());
        history.push(0, &metrics.snapshot());
        assert_eq!(history.series.len(), 1);
        let sample = history.samples.back().unwrap();
        let per_series = history.buckets_per_series();
        // The +Inf bucket of the one dashboard series counts all three requests.
        assert_eq!(sample.buckets[per_series - 1], 3);
    }

    #[test]
    fn the_per_sample_overhead_covers_the_sample_itself() {
        // The ring stores samples inline; their two boxes are counted per series.
        assert!(std::mem::size_of::<Sample>() <= SAMPLE_OVERHEAD);
        let history = History::new(900, 10, vec![1.0]);
        assert!(
            history.samples.capacity() >= 900,
            "allocated once, up front"
        );
    }

    #[test]
    fn the_sampler_stops_when_dropped() {
        let metrics = Metrics::new();
        let history = Arc::new(Mutex::new(History::new(10, 10, vec![1.0])));
        let sampler =
            Sampler::start(metrics, Arc::clone(&history), Duration::from_millis(20)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while history.lock().unwrap().samples.len() < 3 {
            assert!(Instant::now() < deadline, "no samples taken");
            std::thread::sleep(Duration::from_millis(10));
        }
        let weak = Arc::downgrade(&history);
        drop(history);
        drop(sampler);
        // The thread held the other reference: it is gone once the sampler is dropped.
        assert!(
            weak.upgrade().is_none(),
            "the sampler thread outlived its sampler"
        );
    }
}
