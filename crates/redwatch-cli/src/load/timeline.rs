//! `--timeline PATH`: one JSON line per second of the run, per endpoint: requests completed in
//! that second, status counts, errors, p50 and p99 from the intended and from the actual send
//! time. The last line covers the rest of the run (the final partial second and the requests
//! that finished after sending stopped), so the counts of all lines add up to the summary's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::record::{EndpointStats, Recorder};

/// Writes the lines; shared by the per-second task and the final line.
#[derive(Debug)]
pub struct Timeline {
    out: BufWriter<File>,
    labels: Vec<String>,
    started: Instant,
    /// End of the previous line's interval, seconds since the start.
    previous_end: f64,
    path: String,
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    /// End of the interval, seconds since the start of the run.
    t_s: f64,
    /// Length of the interval (1 except for the last line).
    interval_s: f64,
    /// Requests completed in the interval, all endpoints.
    requests: u64,
    endpoints: Vec<EndpointLine<'a>>,
}

#[derive(Debug, Serialize)]
struct EndpointLine<'a> {
    endpoint: &'a str,
    count: u64,
    status: BTreeMap<String, u64>,
    /// Failures without a response.
    errors: u64,
    /// p50 and p99 from the intended send time (coordinated-omission corrected).
    latency_ms: Option<TwoQuantiles>,
    /// p50 and p99 from the actual send time.
    latency_from_send_ms: Option<TwoQuantiles>,
}

#[derive(Debug, Serialize)]
struct TwoQuantiles {
    p50: f64,
    p99: f64,
}

impl TwoQuantiles {
    fn of(histogram: &Histogram<u64>) -> Option<Self> {
        let ms = |q: f64| (histogram.value_at_quantile(q) as f64).round() / 1000.0;
        (!histogram.is_empty()).then(|| Self {
            p50: ms(0.5),
            p99: ms(0.99),
        })
    }
}

impl Timeline {
    /// Creates (or empties) `path`.
    pub fn create(path: &Path, labels: Vec<String>, started: Instant) -> anyhow::Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("cannot write --timeline {}", path.display()))?;
        Ok(Self {
            out: BufWriter::new(file),
            labels,
            started,
            previous_end: 0.0,
            path: path.display().to_string(),
        })
    }

    /// Writes the line for the interval that ends now, with the recorder's window.
    pub fn write_line(&mut self, recorder: &Recorder) -> anyhow::Result<()> {
        let windows = recorder.take_windows();
        let end = self.started.elapsed().as_secs_f64();
        let line = Line {
            t_s: round3(end),
            interval_s: round3(end - self.previous_end),
            requests: windows.iter().map(|w| w.count).sum(),
            endpoints: self
                .labels
                .iter()
                .zip(&windows)
                .map(|(label, window)| endpoint_line(label, window))
                .collect(),
        };
        self.previous_end = end;
        serde_json::to_writer(&mut self.out, &line)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                self.out.write_all(b"\n")?;
                // Flushed per line, so that `tail -f` follows the run.
                self.out.flush()?;
                Ok(())
            })
            .with_context(|| format!("cannot write --timeline {}", self.path))
    }
}

fn endpoint_line<'a>(label: &'a str, window: &EndpointStats) -> EndpointLine<'a> {
    EndpointLine {
        endpoint: label,
        count: window.count,
        status: window
            .statuses
            .iter()
            .map(|(code, n)| (code.to_string(), *n))
            .collect(),
        errors: window.error_count(),
        latency_ms: TwoQuantiles::of(&window.from_intended),
        latency_from_send_ms: TwoQuantiles::of(&window.from_send),
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Writes a line at the end of every second from the start, until aborted. A write error is
/// reported once and ends the timeline (the run itself goes on).
pub async fn every_second(
    timeline: Arc<Mutex<Timeline>>,
    recorder: Arc<Recorder>,
    started: Instant,
) {
    let first = tokio::time::Instant::from_std(started + Duration::from_secs(1));
    let mut ticks = tokio::time::interval_at(first, Duration::from_secs(1));
    // A late tick must not be followed by a burst of short intervals.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !write_line_or_report(&timeline, &recorder) {
            return;
        }
    }
}

/// Writes the next line; a write error is reported on stderr (the run and its summary matter
/// more than the timeline) and returns `false`.
pub fn write_line_or_report(timeline: &Mutex<Timeline>, recorder: &Recorder) -> bool {
    let written = timeline
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .write_line(recorder);
    if let Err(err) = &written {
        eprintln!("redwatch load: {err:#}");
    }
    written.is_ok()
}
