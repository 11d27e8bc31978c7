//! The run summary: JSON (`--json`) and the human-readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::client::ErrorKind;
use super::compare::Comparison;
use super::record::EndpointStats;
use super::settings::JsonOutput;
use super::threshold::{RunFigures, Threshold, ThresholdResult};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    /// Percentiles of a µs histogram; `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| round3(micros as f64 / 1000.0);
        Some(Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: round3(histogram.mean() / 1000.0),
        })
    }
}

/// A histogram in HdrHistogram's V2 deflate format, base64 (standard alphabet, padded).
pub fn encode_histogram(histogram: &Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::Serializer as _;
    let mut bytes = Vec::new();
    // Serialising into memory fails only for histograms too large to describe, which the fixed
    // bounds rule out; an empty string then reads back as an error, not as wrong numbers.
    if hdrhistogram::serialization::V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .is_err()
    {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The histogram [`encode_histogram`] wrote.
pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("not base64")?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|err| anyhow::anyhow!("not an HdrHistogram: {err:?}"))
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// One endpoint's line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointSummary {
    /// The endpoint's label, as thresholds and the table name it: a scenario entry's name, else
    /// the path, prefixed with the method when not GET.
    pub endpoint: String,
    /// The path from the mix.
    pub path: String,
    /// The HTTP method.
    pub method: String,
    /// Requests completed.
    pub count: u64,
    /// Completed requests per second of the send window.
    pub achieved_rate: f64,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// Failures without a response.
    pub errors: u64,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Latency from the intended send time (coordinated-omission corrected).
    pub latency_ms: Option<Percentiles>,
    /// Latency from the actual send time (what a closed-loop tool would report).
    pub latency_from_send_ms: Option<Percentiles>,
    /// The HDR histograms behind the percentiles, for `redwatch load merge`.
    pub histograms: EndpointHistograms,
}

/// An endpoint's latency histograms (µs, 1 µs to 1 h, 3 significant digits), each in
/// HdrHistogram's V2 deflate format, base64: what `redwatch load merge` adds up exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointHistograms {
    /// Latency from the intended send time.
    pub latency: String,
    /// Latency from the actual send time.
    pub latency_from_send: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// `open` (scheduled rate) or `closed` (fixed concurrency).
    pub mode: String,
    pub target: String,
    /// Seed of the endpoint sequence (pass it to --seed to repeat the run's sequence).
    pub seed: u64,
    /// Requests completed (response or failure).
    pub requests: u64,
    /// Requests that failed without a response (timeout, connect, reset, other).
    pub errors: u64,
    /// Responses with status 500..=599.
    pub server_errors: u64,
    /// (errors + server_errors) / requests; what --fail-on-error-rate compares.
    pub error_rate: f64,
    /// The send window in seconds (start until the schedule or the last worker finished).
    pub duration_s: f64,
    /// Mean scheduled rate over the window (null in closed loop).
    pub target_rate: Option<f64>,
    /// The --rate-profile, if any.
    pub rate_profile: Option<String>,
    /// requests / duration_s.
    pub achieved_rate: f64,
    /// Closed-loop concurrency (null in open loop).
    pub concurrency: Option<usize>,
    pub latency_ms: Option<Percentiles>,
    pub latency_from_send_ms: Option<Percentiles>,
    /// How late each send left relative to its intended time (open loop only).
    pub send_lateness_ms: Option<Percentiles>,
    pub status: BTreeMap<String, u64>,
    pub error_kinds: BTreeMap<String, u64>,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Requests handed to the transport.
    pub sent: u64,
    /// Scheduled requests never sent (--max-in-flight reached until the window closed).
    pub dropped: u64,
    /// Largest number of due-but-unsent requests seen.
    pub max_backlog: u64,
    /// Requests still running when the run stopped waiting (after Ctrl-C).
    pub unfinished: u64,
    /// Ctrl-C ended the run.
    pub interrupted: bool,
    pub endpoints: Vec<EndpointSummary>,
    /// Each --threshold (and --fail-on-error-rate) with its measured value and outcome.
    pub thresholds: Vec<ThresholdResult>,
    /// The send-lateness histogram (as [`EndpointHistograms`]); null in closed loop.
    pub send_lateness_histogram: Option<String>,
    /// `I/N` when the run was one shard of a larger one (`--shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// `--compare-server`: per endpoint, the client's count and latency next to the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_comparison: Option<ServerComparison>,
    /// How many summaries `redwatch load merge` combined into this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<usize>,
}

/// The client's view next to the server's (`--compare-server`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerComparison {
    /// The server metric the figures come from; null when its exposition had none redwatch
    /// knows.
    pub metric: Option<String>,
    pub endpoints: Vec<Comparison>,
}

/// Inputs describing the run (everything but the recorded figures).
pub struct RunFacts {
    pub mode: String,
    pub target: String,
    pub seed: u64,
    pub duration_s: f64,
    pub target_rate: Option<f64>,
    pub rate_profile: Option<String>,
    pub concurrency: Option<usize>,
    pub sent: u64,
    pub dropped: u64,
    pub max_backlog: u64,
    pub unfinished: u64,
    pub interrupted: bool,
    pub shard: Option<String>,
}

fn status_map(stats: &EndpointStats) -> BTreeMap<String, u64> {
    stats
        .statuses
        .iter()
        .map(|(code, n)| (code.to_string(), *n))
        .collect()
}

fn kinds_map(stats: &EndpointStats) -> BTreeMap<String, u64> {
    ErrorKind::ALL
        .iter()
        .map(|kind| (kind.as_str().to_owned(), stats.errors[kind.index()]))
        .collect()
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        round3(count as f64 / seconds)
    } else {
        0.0
    }
}

impl Summary {
    /// Builds the summary from per-endpoint figures (`entries` = (label, path, method) in mix
    /// order).
    pub fn build(
        facts: RunFacts,
        entries: &[(String, String, String)],
        stats: &[EndpointStats],
        lateness: &Histogram<u64>,
        thresholds: &[Threshold],
    ) -> Self {
        let mut all = EndpointStats::new();
        for endpoint in stats {
            all.merge(endpoint);
        }
        let figures = RunFigures {
            all: &all,
            endpoints: entries
                .iter()
                .zip(stats)
                .map(|((label, _, _), stats)| (label.clone(), stats))
                .collect(),
            achieved_rate: rate(all.count, facts.duration_s),
            target_rate: facts.target_rate.map(round3),
            dropped: facts.dropped,
        };
        let thresholds = thresholds.iter().map(|t| t.check(&figures)).collect();
        let all = (!stats.is_empty()).then_some(all);
        let endpoints = entries
            .iter()
            .zip(stats)
            .map(|((label, path, method), stats)| EndpointSummary {
                endpoint: label.clone(),
                path: path.clone(),
                method: method.clone(),
                count: stats.count,
                achieved_rate: rate(stats.count, facts.duration_s),
                status: status_map(stats),
                errors: stats.error_count(),
                error_kinds: kinds_map(stats),
                bytes_received: stats.bytes_received,
                latency_ms: Percentiles::of(&stats.from_intended),
                latency_from_send_ms: Percentiles::of(&stats.from_send),
                histograms: EndpointHistograms {
                    latency: encode_histogram(&stats.from_intended),
                    latency_from_send: encode_histogram(&stats.from_send),
                },
            })
            .collect();
        let (requests, errors, server_errors) = all.as_ref().map_or((0, 0, 0), |all| {
            let server_errors = all.statuses.range(500..=599).map(|(_, n)| n).sum();
            (all.count, all.error_count(), server_errors)
        });
        let error_rate = if requests > 0 {
            (errors + server_errors) as f64 / requests as f64
        } else {
            0.0
        };
        Self {
            mode: facts.mode,
            target: facts.target,
            seed: facts.seed,
            requests,
            errors,
            server_errors,
            error_rate,
            duration_s: round3(facts.duration_s),
            target_rate: facts.target_rate.map(round3),
            rate_profile: facts.rate_profile,
            achieved_rate: rate(requests, facts.duration_s),
            concurrency: facts.concurrency,
            latency_ms: all.as_ref().and_then(|a| Percentiles::of(&a.from_intended)),
            latency_from_send_ms: all.as_ref().and_then(|a| Percentiles::of(&a.from_send)),
            send_lateness_ms: Percentiles::of(lateness),
            status: all.as_ref().map(status_map).unwrap_or_default(),
            error_kinds: all.as_ref().map(kinds_map).unwrap_or_default(),
            bytes_received: all.as_ref().map_or(0, |a| a.bytes_received),
            sent: facts.sent,
            dropped: facts.dropped,
            max_backlog: facts.max_backlog,
            unfinished: facts.unfinished,
            interrupted: facts.interrupted,
            endpoints,
            thresholds,
            send_lateness_histogram: (!lateness.is_empty()).then(|| encode_histogram(lateness)),
            shard: facts.shard,
            server_comparison: None,
            merged_from: None,
        }
    }

    /// Writes the JSON summary to `path` (`-` = stdout); files are written to a temporary name
    /// and renamed, so a reader never sees half a file.
    pub fn write_json(&self, output: &JsonOutput) -> anyhow::Result<()> {
        let mut text =
            serde_json::to_string_pretty(self).context("cannot encode the JSON summary")?;
        text.push('\n');
        let target = match output {
            JsonOutput::Stdout => {
                let mut stdout = std::io::stdout().lock();
                return stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .context("cannot write the JSON summary to stdout");
            }
            JsonOutput::File(path) => path.as_path(),
        };
        crate::write::atomically(target, &text)
            .with_context(|| format!("cannot write --json {}", target.display()))
    }

    /// The human-readable report: a title, the per-endpoint table and the error lines.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        self.write_title(&mut out);
        write_aligned(&mut out, &self.table_rows());
        self.write_footer(&mut out);
        out
    }

    /// What ran against what, for how long, and how close it came to its target.
    fn write_title(&self, out: &mut String) {
        let mode = match (self.mode.as_str(), self.target_rate) {
            ("open", Some(target)) => format!(
                "open loop: target {target:.1} req/s, achieved {:.1} req/s ({:+.2}%)",
                self.achieved_rate,
                if target > 0.0 {
                    (self.achieved_rate / target - 1.0) * 100.0
                } else {
                    0.0
                }
            ),
            _ => format!(
                "closed loop: {} connections, achieved {:.1} req/s",
                self.concurrency.unwrap_or(0),
                self.achieved_rate
            ),
        };
        let _ = writeln!(
            out,
            "redwatch load {}{}: {mode} over {:.2} s, seed {}",
            self.target,
            if self.interrupted {
                " (interrupted: partial summary)"
            } else {
                ""
            },
            self.duration_s,
            self.seed
        );
        let _ = writeln!(out, "latency in ms from the intended send time");
    }

    /// The header, one row per endpoint and the `all` row.
    fn table_rows(&self) -> Vec<[String; 10]> {
        let mut rows = vec![TABLE_HEADER.map(str::to_owned)];
        for endpoint in &self.endpoints {
            rows.push(table_row(
                endpoint.endpoint.clone(),
                endpoint.count,
                endpoint.achieved_rate,
                &endpoint.status,
                endpoint.errors,
                endpoint.latency_ms,
            ));
        }
        rows.push(table_row(
            "all".to_owned(),
            self.requests,
            self.achieved_rate,
            &self.status,
            self.errors,
            self.latency_ms,
        ));
        rows
    }

    /// Latency from the actual send, how late sends left, and the errors by kind.
    fn write_footer(&self, out: &mut String) {
        if let Some(p) = self.latency_from_send_ms {
            let _ = writeln!(
                out,
                "from actual send: p50 {} p90 {} p99 {} p99.9 {} max {}",
                format_ms(p.p50),
                format_ms(p.p90),
                format_ms(p.p99),
                format_ms(p.p999),
                format_ms(p.max)
            );
        }
        if let Some(p) = self.send_lateness_ms {
            let _ = writeln!(
                out,
                "send lateness: p50 {} p99 {} max {}; max backlog {}, dropped {}",
                format_ms(p.p50),
                format_ms(p.p99),
                format_ms(p.max),
                self.max_backlog,
                self.dropped
            );
        }
        let kinds: Vec<String> = self
            .error_kinds
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "errors without response: {}; 5xx responses: {}; error rate {:.2}%{}",
            if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds.join(", ")
            },
            self.server_errors,
            self.error_rate * 100.0,
            if self.unfinished > 0 {
                format!("; {} requests unfinished", self.unfinished)
            } else {
                String::new()
            }
        );
        if self.bytes_received > 0 {
            let _ = writeln!(
                out,
                "response bodies: {} bytes received",
                self.bytes_received
            );
        }
        if let Some(comparison) = &self.server_comparison {
            write_comparison(out, comparison);
        }
        if !self.thresholds.is_empty() {
            let failed = self.thresholds.iter().filter(|t| !t.passed).count();
            let _ = writeln!(
                out,
                "thresholds: {} passed, {failed} failed",
                self.thresholds.len() - failed
            );
            for threshold in &self.thresholds {
                let _ = writeln!(
                    out,
                    "  {}  {}  (measured {})",
                    if threshold.passed { "pass" } else { "FAIL" },
                    threshold.expr,
                    threshold.display
                );
            }
        }
    }
}

/// The comparison table: client count, p50, p99 (from the intended send time) and the server's.
fn write_comparison(out: &mut String, comparison: &ServerComparison) {
    let Some(metric) = &comparison.metric else {
        let _ = writeln!(
            out,
            "server: no request duration histogram in its metrics (redwatch otel or flask names)"
        );
        return;
    };
    let _ = writeln!(
        out,
        "client and server (server: {metric}, p50/p99 from buckets)"
    );
    let ms = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), format_ms);
    let mut rows = vec![
        [
            "endpoint",
            "count",
            "p50",
            "p99",
            "server route",
            "count",
            "p50",
            "p99",
        ]
        .map(str::to_owned),
    ];
    for line in &comparison.endpoints {
        let server = line.server.as_ref();
        rows.push([
            line.endpoint.clone(),
            line.client.count.to_string(),
            ms(line.client.p50_ms),
            ms(line.client.p99_ms),
            server.map_or_else(|| "(no route)".to_owned(), |s| s.route.clone()),
            server.map_or_else(|| "-".to_owned(), |s| s.count.to_string()),
            ms(server.and_then(|s| s.p50_ms)),
            ms(server.and_then(|s| s.p99_ms)),
        ]);
    }
    let mut widths = [0; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut text = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i == 0 || i == 4 {
                let _ = write!(text, "{cell:<width$}  ");
            } else {
                let _ = write!(text, "{cell:>width$}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
}

const TABLE_HEADER: [&str; 10] = [
    "endpoint", "count", "rate/s", "status", "errors", "p50", "p90", "p99", "p99.9", "max",
];

/// One row of the table: an endpoint (or `all`) with its counts and latency percentiles.
fn table_row(
    name: String,
    count: u64,
    rate: f64,
    status: &BTreeMap<String, u64>,
    errors: u64,
    latency: Option<Percentiles>,
) -> [String; 10] {
    let ms = |pick: fn(&Percentiles) -> f64| {
        latency.map_or_else(|| "-".to_owned(), |p| format_ms(pick(&p)))
    };
    let status = if status.is_empty() {
        "-".to_owned()
    } else {
        status
            .iter()
            .map(|(code, n)| format!("{code}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    [
        name,
        count.to_string(),
        format!("{rate:.1}"),
        status,
        errors.to_string(),
        ms(|p| p.p50),
        ms(|p| p.p90),
        ms(|p| p.p99),
        ms(|p| p.p999),
        ms(|p| p.max),
    ]
}

/// Writes `rows` in columns as wide as their widest cell.
fn write_aligned(out: &mut String, rows: &[[String; 10]]) {
    let mut widths = [0; 10];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut text = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Names and statuses read left-aligned, numbers right-aligned.
            if i == 0 || i == 3 {
                let _ = write!(text, "{cell:<width$}  ");
            } else {
                let _ = write!(text, "{cell:>width$}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
}

fn format_ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
