//! Recording: per-endpoint HDR histograms and counters, shared by all request tasks. Memory is
//! fixed by the number of endpoints and status codes, however long the run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prometheus_client::metrics::counter::Counter;

use super::client::Outcome;
use super::metrics::{ClientMetrics, EndpointMetrics};

/// Histograms count microseconds from 1 µs to 1 h with 3 significant digits (~0.1% error).
const HISTOGRAM_MAX_MICROS: u64 = 3_600_000_000;

/// A fresh latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Counters and histograms of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    /// Requests completed (with a response or an error).
    pub count: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures without a response, indexed by [`ErrorKind::index`].
    pub errors: [u64; 4],
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Latency from the intended send time, µs (includes failed requests up to their failure).
    pub from_intended: Histogram<u64>,
    /// Latency from the actual send time, µs.
    pub from_send: Histogram<u64>,
}

impl Default for EndpointStats {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointStats {
    /// No requests yet.
    pub fn new() -> Self {
        Self {
            count: 0,
            statuses: BTreeMap::new(),
            errors: [0; 4],
            bytes_received: 0,
            from_intended: new_histogram(),
            from_send: new_histogram(),
        }
    }

    /// Adds another endpoint's figures (for the overall line).
    pub fn merge(&mut self, other: &EndpointStats) {
        self.count += other.count;
        self.bytes_received += other.bytes_received;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = self.from_intended.add(&other.from_intended);
        let _ = self.from_send.add(&other.from_send);
    }

    /// Records one finished request.
    fn add(&mut self, outcome: Outcome, from_intended: Duration, from_send: Duration) {
        self.count += 1;
        match outcome {
            Ok(answer) => {
                *self.statuses.entry(answer.status).or_default() += 1;
                self.bytes_received += answer.bytes;
            }
            Err(kind) => self.errors[kind.index()] += 1,
        }
        let _ = self
            .from_intended
            .record(micros(from_intended).min(HISTOGRAM_MAX_MICROS));
        let _ = self
            .from_send
            .record(micros(from_send).min(HISTOGRAM_MAX_MICROS));
    }

    /// Failures without a response.
    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }
}

struct EndpointSlot {
    stats: EndpointStats,
    /// The figures since the last [`Recorder::take_windows`], when a timeline is written.
    window: Option<EndpointStats>,
    /// Prometheus handles, when `--metrics-listen` is on.
    metrics: Option<(EndpointMetrics, HashMap<u16, Counter>, Counter)>,
}

/// Shared recording state of a run.
pub struct Recorder {
    endpoints: Vec<Mutex<EndpointSlot>>,
    lateness: Mutex<Histogram<u64>>,
    metrics: Option<Arc<ClientMetrics>>,
    /// Requests handed to the transport.
    pub sent: AtomicU64,
    /// Requests finished (response or error).
    pub completed: AtomicU64,
    /// Failures without a response.
    pub errors: AtomicU64,
    /// Requests sent and not finished.
    pub in_flight: AtomicI64,
    /// Scheduled requests never sent (the in-flight limit held them until the run ended).
    pub dropped: AtomicU64,
    /// Largest number of due-but-unsent requests seen.
    pub max_backlog: AtomicU64,
    /// Current lag behind the schedule, in µs (for the gauge and the progress line).
    pub lag_micros: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the counters inconsistent in a way that matters
    // more than losing the whole summary, so keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Recorder {
    /// A recorder for endpoints with the given labels; `windows` also keeps the figures of the
    /// current interval, for the timeline.
    pub fn new(labels: &[String], metrics: Option<Arc<ClientMetrics>>, windows: bool) -> Self {
        let endpoints = labels
            .iter()
            .map(|label| {
                let handles = metrics.as_ref().map(|m| {
                    let endpoint = m.endpoint(label);
                    let error_counter = m.requests_counter(&endpoint, "error");
                    (endpoint, HashMap::new(), error_counter)
                });
                Mutex::new(EndpointSlot {
                    stats: EndpointStats::new(),
                    window: windows.then(EndpointStats::new),
                    metrics: handles,
                })
            })
            .collect();
        Self {
            endpoints,
            lateness: Mutex::new(new_histogram()),
            metrics,
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            dropped: AtomicU64::new(0),
            max_backlog: AtomicU64::new(0),
            lag_micros: AtomicU64::new(0),
        }
    }

    /// The metrics, if exported.
    pub fn metrics(&self) -> Option<&ClientMetrics> {
        self.metrics.as_deref()
    }

    /// Records that a request leaves now; `lateness` = actual minus intended send time (open loop).
    pub fn on_send(&self, lateness: Option<Duration>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(lateness) = lateness {
            let _ = lock(&self.lateness).record(micros(lateness));
            self.lag_micros.store(micros(lateness), Ordering::Relaxed);
        }
        if let Some(metrics) = &self.metrics {
            metrics.in_flight.set(in_flight);
        }
    }

    /// Records a finished request.
    pub fn on_complete(
        &self,
        endpoint: usize,
        outcome: Outcome,
        from_intended: Duration,
        from_send: Duration,
    ) {
        let in_flight = self.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        self.completed.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let Some(slot) = self.endpoints.get(endpoint) else {
            return;
        };
        let mut slot = lock(slot);
        slot.stats.add(outcome, from_intended, from_send);
        if let Some(window) = slot.window.as_mut() {
            window.add(outcome, from_intended, from_send);
        }
        if let (Some(metrics), Some((endpoint_metrics, by_status, error_counter))) =
            (&self.metrics, &mut slot.metrics)
        {
            endpoint_metrics.observe(from_intended.as_secs_f64(), outcome.err());
            match outcome {
                Ok(answer) => by_status
                    .entry(answer.status)
                    .or_insert_with(|| {
                        metrics.requests_counter(endpoint_metrics, &answer.status.to_string())
                    })
                    .inc(),
                Err(_) => error_counter.inc(),
            };
            metrics.in_flight.set(in_flight);
        }
    }

    /// Records the current backlog (due but not yet sent) and the lag of its oldest request.
    pub fn on_backlog(&self, backlog: u64, oldest_due: Option<Instant>) {
        self.max_backlog.fetch_max(backlog, Ordering::Relaxed);
        if let Some(due) = oldest_due {
            self.lag_micros.store(
                micros(Instant::now().saturating_duration_since(due)),
                Ordering::Relaxed,
            );
        }
    }

    /// Adds scheduled requests that were never sent.
    pub fn on_dropped(&self, dropped: u64) {
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.dropped.inc_by(dropped);
        }
    }

    /// Copies of every endpoint's figures, in mix order.
    pub fn snapshot(&self) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .map(|slot| lock(slot).stats.clone())
            .collect()
    }

    /// Every endpoint's figures since the previous call (empty without windows), starting the
    /// next interval.
    pub fn take_windows(&self) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .map(|slot| {
                lock(slot)
                    .window
                    .as_mut()
                    .map(std::mem::take)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Copy of the send-lateness histogram.
    pub fn lateness(&self) -> Histogram<u64> {
        lock(&self.lateness).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::client::{Answer, ErrorKind};

    fn ok(status: u16) -> Outcome {
        Ok(Answer { status, bytes: 10 })
    }

    #[test]
    fn records_and_merges() {
        let recorder = Recorder::new(
            &["/a".into(), "/b".into()],
            Some(Arc::new(ClientMetrics::new())),
            true,
        );
        for (endpoint, outcome, ms) in [
            (0, ok(200), 10),
            (0, ok(500), 20),
            (1, Err(ErrorKind::Timeout), 2000),
            (1, ok(200), 5),
        ] {
            recorder.on_send(Some(Duration::from_millis(1)));
            recorder.on_complete(
                endpoint,
                outcome,
                Duration::from_millis(ms),
                Duration::from_millis(ms / 2),
            );
        }
        let stats = recorder.snapshot();
        let windows = recorder.take_windows();
        assert_eq!(windows[0].count, 2);
        assert_eq!(windows[1].errors, stats[1].errors);
        assert_eq!(
            recorder.take_windows()[0].count,
            0,
            "a new interval starts empty"
        );
        assert_eq!(stats[0].count, 2);
        assert_eq!(stats[0].statuses[&500], 1);
        assert_eq!(stats[1].errors[ErrorKind::Timeout.index()], 1);
        let mut all = stats[0].clone();
        all.merge(&stats[1]);
        assert_eq!(all.count, 4);
        assert_eq!(all.bytes_received, 30);
        assert_eq!(all.statuses[&200], 2);
        assert_eq!(all.error_count(), 1);
        assert!(all.from_intended.max() >= 1_999_000);
        assert_eq!(recorder.in_flight.load(Ordering::Relaxed), 0);
        let text = recorder.metrics().unwrap().render();
        assert!(
            text.contains("redwatch_load_requests_total{endpoint=\"/a\",status=\"500\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("redwatch_load_requests_total{endpoint=\"/b\",status=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("redwatch_load_errors_total{endpoint=\"/b\",kind=\"timeout\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("redwatch_load_request_duration_seconds_count{endpoint=\"/a\"} 2"),
            "{text}"
        );
    }
}
