//! Encoding into the Prometheus text format 0.0.4 and OpenMetrics 1.0.
//!
//! redwatch's own series are written straight from their atomics with precomputed label
//! strings; user metrics registered through `prometheus-client` are encoded by that crate
//! (OpenMetrics) and rewritten line by line when the scraper asked for the older format.

use std::collections::BTreeMap;
use std::io::Write;

use crate::collect::{self, AppInfo, ProcessStats, RuntimeStats};
use crate::naming::{MetricNames, SCHEMES, process_names};
use crate::registry::{AtomicHistogram, Config, ExemplarSlot, Series, Shared};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.0 text, ending in `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
}

/// Writes metric families to a byte buffer. Writing to a `Vec` cannot fail, so the
/// `io::Result`s of `write!` are discarded.
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    format: Format,
    namespace: &'a str,
    const_labels: &'a str,
}

impl<'a> Encoder<'a> {
    /// An encoder for families named under `namespace` (empty for none), with
    /// `const_labels` (rendered, each pair preceded by `,`) on every sample.
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        format: Format,
        namespace: &'a str,
        const_labels: &'a str,
    ) -> Self {
        Self {
            out,
            format,
            namespace,
            const_labels,
        }
    }

    /// Writes `# HELP`, `# TYPE` and, in OpenMetrics, `# UNIT` for the family whose samples
    /// are named `name` (counters end in `_total`, info metrics in `_info`).
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let (family, type_name) = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Counter) => {
                (name.strip_suffix("_total").unwrap_or(name), "counter")
            }
            (Format::OpenMetrics, Kind::Info) => {
                (name.strip_suffix("_info").unwrap_or(name), "info")
            }
            (_, Kind::Counter) => (name, "counter"),
            (_, Kind::Gauge) => (name, "gauge"),
            (_, Kind::Histogram) => (name, "histogram"),
            (Format::Prometheus, Kind::Info) => (name, "gauge"),
        };
        let ns = self.namespace;
        let _ = writeln!(self.out, "# HELP {ns}{family} {help}");
        let _ = writeln!(self.out, "# TYPE {ns}{family} {type_name}");
        if self.format == Format::OpenMetrics {
            let unit = ["seconds", "bytes"]
                .into_iter()
                .find(|unit| family.ends_with(&format!("_{unit}")));
            if let Some(unit) = unit {
                let _ = writeln!(self.out, "# UNIT {ns}{family} {unit}");
            }
        }
    }

    /// Writes one sample line: `name{labels,const_labels} value`. `labels` already carries
    /// the constant labels when `with_const` is false.
    fn sample_start(&mut self, name: &str, suffix: &str, labels: &str, with_const: bool) {
        self.out.extend_from_slice(self.namespace.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(suffix.as_bytes());
        let const_labels = if with_const {
            self.const_labels.strip_prefix(',').unwrap_or("")
        } else {
            ""
        };
        if !labels.is_empty() || !const_labels.is_empty() {
            self.out.push(b'{');
            self.out.extend_from_slice(labels.as_bytes());
            if !labels.is_empty() && !const_labels.is_empty() {
                self.out.push(b',');
            }
            self.out.extend_from_slice(const_labels.as_bytes());
            self.out.push(b'}');
        }
        self.out.push(b' ');
    }

    fn int_sample(&mut self, name: &str, labels: &str, value: impl itoa::Integer) {
        self.sample_start(name, "", labels, true);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self.out.push(b'\n');
    }

    fn float_sample(&mut self, name: &str, labels: &str, value: f64) {
        self.sample_start(name, "", labels, true);
        write_float(self.out, value, self.format);
        self.out.push(b'\n');
    }

    /// Writes the `_bucket`, `_count` and `_sum` lines of one histogram series and returns
    /// the count written. `labels` is the series' full label set including constant labels (never
    /// empty); `bucket_ends` are the [`bucket_ends`] of its bounds. `exemplars`, one per
    /// bucket, are written in OpenMetrics only (the 0.0.4 format has none).
    #[allow(clippy::too_many_arguments)]
    fn histogram(
        &mut self,
        name: &str,
        labels: &str,
        bucket_ends: &[String],
        histogram: &AtomicHistogram,
        exemplars: Option<&[ExemplarSlot]>,
        sum_unit: SumUnit,
        cumulative: &mut Vec<u64>,
    ) -> u64 {
        let exemplars = exemplars.filter(|_| self.format == Format::OpenMetrics);
        debug_assert!(!labels.is_empty());
        let sum = histogram.snapshot(cumulative);
        let mut digits = itoa::Buffer::new();
        // Every bucket line starts as the first one does: copying that start from the output
        // costs one copy instead of assembling it from four pieces again.
        let line_start = self.out.len();
        self.out.extend_from_slice(self.namespace.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"_bucket{");
        self.out.extend_from_slice(labels.as_bytes());
        let start = line_start..self.out.len();
        for (index, (end, count)) in bucket_ends.iter().zip(cumulative.iter()).enumerate() {
            if index > 0 {
                self.out.extend_from_within(start.clone());
            }
            self.out.extend_from_slice(end.as_bytes());
            self.out.extend_from_slice(digits.format(*count).as_bytes());
            if let Some(slot) = exemplars.and_then(|slots| slots.get(index)) {
                write_exemplar(self.out, slot);
            }
            self.out.push(b'\n');
        }
        let count = cumulative.last().copied().unwrap_or(0);
        self.sample_start(name, "_count", labels, false);
        self.out.extend_from_slice(digits.format(count).as_bytes());
        self.out.push(b'\n');
        self.sample_start(name, "_sum", labels, false);
        match sum_unit {
            SumUnit::Whole => self
                .out
                .extend_from_slice(itoa::Buffer::new().format(sum).as_bytes()),
            SumUnit::Nanos => write_nanos_as_seconds(self.out, sum, self.format),
        }
        self.out.push(b'\n');
        count
    }
}

/// Writes ` # {trace_id="…",span_id="…"} <seconds> <unix seconds>` when the bucket has an
/// exemplar. The slot is held only while copying it out, so a request never waits for text.
fn write_exemplar(out: &mut Vec<u8>, slot: &ExemplarSlot) {
    let exemplar = *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(exemplar) = exemplar else { return };
    out.extend_from_slice(b" # {");
    exemplar.context.write_labels(out);
    out.extend_from_slice(b"} ");
    write_nanos_as_seconds(out, exemplar.value_nanos.into(), Format::OpenMetrics);
    out.push(b' ');
    write_nanos_as_seconds(out, exemplar.unix_nanos.into(), Format::OpenMetrics);
}

/// What a histogram's integer sum counts.
#[derive(Clone, Copy)]
enum SumUnit {
    /// Whole units (bytes), written as they are.
    Whole,
    /// Nanoseconds, written as seconds.
    Nanos,
}

/// Writes `nanos` as seconds in decimal, exactly: as [`write_float`] writes the same value
/// (no exponent; `.0` on whole numbers in OpenMetrics only), but without rounding through an
/// `f64`, which would lose nanoseconds once the sum passes 2^53 ns (104 days), and at a tenth of
/// the cost of float formatting.
fn write_nanos_as_seconds(out: &mut Vec<u8>, nanos: u128, format: Format) {
    const NANOS_PER_SECOND: u128 = 1_000_000_000;
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(nanos / NANOS_PER_SECOND).as_bytes());
    let fraction = (nanos % NANOS_PER_SECOND) as u32;
    if fraction == 0 {
        if format == Format::OpenMetrics {
            out.extend_from_slice(b".0");
        }
        return;
    }
    let fraction = digits.format(fraction);
    out.push(b'.');
    out.extend(std::iter::repeat_n(b'0', 9 - fraction.len()));
    out.extend_from_slice(fraction.trim_end_matches('0').as_bytes());
}

/// Formats `value` as Prometheus expects: shortest round-trip decimal, `+Inf`/`-Inf`/`NaN`,
/// and in OpenMetrics a `.0` on integral values.
pub(crate) fn write_float(out: &mut Vec<u8>, value: f64, format: Format) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        let start = out.len();
        let _ = write!(out, "{value}");
        if format == Format::OpenMetrics && !out[start..].contains(&b'.') {
            out.extend_from_slice(b".0");
        }
    }
}

/// The end of each bucket line's label set, `,le="<bound>"} `, for each of `bounds` and
/// then `+Inf`.
pub(crate) fn bucket_ends(bounds: &[f64], format: Format) -> Vec<String> {
    bounds
        .iter()
        .map(|&bound| {
            let mut text = Vec::new();
            write_float(&mut text, bound, format);
            String::from_utf8_lossy(&text).into_owned()
        })
        .chain(std::iter::once("+Inf".to_owned()))
        .map(|le| format!(",le=\"{le}\"}} "))
        .collect()
}

/// Precomputed [`bucket_ends`] for both formats, so that scrapes format no bucket bounds.
pub(crate) struct LeValues {
    duration: [Vec<String>; 2],
    size: [Vec<String>; 2],
}

impl LeValues {
    pub(crate) fn new(config: &Config) -> Self {
        let sizes: Vec<f64> = config
            .size_bounds_bytes
            .iter()
            .flatten()
            .map(|&b| b as f64)
            .collect();
        let both = |bounds: &[f64]| {
            [
                bucket_ends(bounds, Format::Prometheus),
                bucket_ends(bounds, Format::OpenMetrics),
            ]
        };
        Self {
            duration: both(&config.duration_bounds_seconds),
            size: both(&sizes),
        }
    }
}

fn format_index(format: Format) -> usize {
    match format {
        Format::Prometheus => 0,
        Format::OpenMetrics => 1,
    }
}

/// Encodes every redwatch-owned family: RED histograms, derived counters, gauges, info,
/// process and runtime metrics.
pub(crate) fn encode_core(shared: &Shared, le: &LeValues, format: Format, out: &mut Vec<u8>) {
    let config = &shared.config;
    if config.request_metrics {
        encode_red(shared, le, format, out);
    }

    // Info, process and runtime metrics keep their standard names: no namespace.
    let mut encoder = Encoder::new(out, format, "", &config.const_labels);
    let collected = collect::collect(config);
    encode_info(&mut encoder, config, &collected.info);
    if let Some(process) = &collected.process {
        encode_process(&mut encoder, process);
    }
    if let Some(runtime) = &collected.runtime {
        encode_runtime(&mut encoder, runtime);
    }
}

/// The request (RED) families: durations, body sizes, the flask counters, requests in flight.
fn encode_red(shared: &Shared, le: &LeValues, format: Format, out: &mut Vec<u8>) {
    let config = &shared.config;
    let names = config.names();
    let mut encoder = Encoder::new(out, format, &config.namespace, &config.const_labels);
    let mut cumulative = Vec::with_capacity(config.duration_bounds_nanos.len() + 1);

    encoder.header(names.duration, Kind::Histogram, DURATION_HELP);
    let durations = &le.duration[format_index(format)];
    // `flask_http_request_total` by (method, status), summed from the very counts written
    // here, so that it agrees with `_count` in every scrape; the request path pays nothing.
    let mut totals: BTreeMap<(u8, u16), u64> = BTreeMap::new();
    for s in shared.series() {
        #[cfg(test)]
        test_hook::series_encoded();
        let count = encoder.histogram(
            names.duration,
            &s.labels,
            durations,
            &s.duration,
            s.duration_exemplars.as_deref(),
            SumUnit::Nanos,
            &mut cumulative,
        );
        if names.requests_total.is_some() {
            *totals.entry((s.method, s.status)).or_insert(0) += count;
        }
    }

    if config.size_bounds_bytes.is_some() {
        let sizes = &le.size[format_index(format)];
        for (name, help, histogram_of) in size_families(names) {
            encoder.header(name, Kind::Histogram, help);
            for s in shared.series() {
                if let Some(histogram) = histogram_of(s) {
                    let _ = encoder.histogram(
                        name,
                        &s.labels,
                        sizes,
                        histogram,
                        None,
                        SumUnit::Whole,
                        &mut cumulative,
                    );
                }
            }
        }
    }

    if let Some(requests_total) = names.requests_total {
        encoder.header(
            requests_total,
            Kind::Counter,
            "Total number of HTTP requests.",
        );
        for ((method, status), count) in totals {
            let labels = method_status_labels(config, method, status);
            encoder.int_sample(requests_total, &labels, count);
        }
    }

    if let Some(exceptions_total) = names.exceptions_total {
        encoder.header(
            exceptions_total,
            Kind::Counter,
            "Total number of HTTP requests whose handler panicked.",
        );
        // A copy, so that a panicking handler never waits for this encode.
        let exceptions = shared.exceptions().clone();
        for ((method, status), count) in exceptions {
            let labels = method_status_labels(config, method, status);
            encoder.int_sample(exceptions_total, &labels, count);
        }
    }

    encoder.header(
        names.active_requests,
        Kind::Gauge,
        "Number of HTTP server requests in flight.",
    );
    for (labels, value) in active_samples(shared) {
        encoder.int_sample(names.active_requests, &labels, value);
    }
}

pub(crate) const DURATION_HELP: &str =
    "Duration of HTTP server requests, from arrival until the response body is sent.";

/// Which histogram of a series a family shows.
pub(crate) type HistogramOf = fn(&Series) -> Option<&AtomicHistogram>;

/// The body size families: name, help, and the histogram of a series each shows.
pub(crate) fn size_families(names: &MetricNames) -> [(&'static str, &'static str, HistogramOf); 2] {
    [
        (
            names.request_body_size,
            "Size of HTTP request bodies, from Content-Length.",
            |s| s.request_size.as_ref(),
        ),
        (
            names.response_body_size,
            "Size of HTTP response bodies as sent.",
            |s| s.response_size.as_ref(),
        ),
    ]
}

/// The in-flight gauge's samples, as (rendered labels, value), in every format.
pub(crate) fn active_samples(shared: &Shared) -> Vec<(String, i64)> {
    let config = &shared.config;
    let names = config.names();
    let mut samples = Vec::new();
    for (scheme, method, value) in shared.active_gauges() {
        // Without a scheme label every request counts under scheme 0.
        if scheme != 0 && names.scheme_label.is_none() {
            continue;
        }
        // Methods never seen stay off the exposition; GET of the default scheme is always there
        // so that the gauge exists.
        let name = config.method_name(method);
        if value != 0 || (name == "GET" && scheme == config.default_scheme) {
            let mut labels = format!("{}=\"{name}\"", names.method_label);
            if let Some(scheme_label) = names.scheme_label {
                labels.push_str(&format!(
                    ",{scheme_label}=\"{}\"",
                    SCHEMES[usize::from(scheme)]
                ));
            }
            samples.push((labels, value));
        }
    }
    samples
}

fn method_status_labels(config: &Config, method: u8, status: u16) -> String {
    let names = config.names();
    format!(
        "{}=\"{}\",{}=\"{status}\"",
        names.method_label,
        config.method_name(method),
        names.status_label,
    )
}

fn encode_info(encoder: &mut Encoder<'_>, config: &Config, info: &AppInfo) {
    let names = config.names();
    if let Some(exporter) = exporter_info_labels(config) {
        // prometheus_flask_exporter's own info metric, with the exporter's version.
        encoder.header(EXPORTER_INFO, Kind::Info, EXPORTER_INFO_HELP);
        encoder.int_sample(EXPORTER_INFO, &exporter, 1);
    }
    encoder.header(names.info, Kind::Info, INFO_HELP);
    encoder.int_sample(names.info, &info_labels(config, info), 1);
}

pub(crate) const EXPORTER_INFO: &str = "flask_exporter_info";
pub(crate) const EXPORTER_INFO_HELP: &str = "Information about the Prometheus exporter (redwatch).";
pub(crate) const INFO_HELP: &str = "Application metadata: version and environment.";

/// `name="escaped value",...` of `pairs`.
fn rendered_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The rendered labels of the preset's info metric, in every format.
pub(crate) fn info_labels(config: &Config, info: &AppInfo) -> String {
    let names = config.names();
    let mut labels = vec![
        (names.version_label, info.version.as_str()),
        (names.environment_label, info.environment.as_str()),
    ];
    if config.naming == crate::naming::Naming::Otel {
        labels.insert(0, ("service_name", info.service_name.as_str()));
    }
    rendered_pairs(&labels)
}

/// The labels of `flask_exporter_info`, which only the flask preset has.
pub(crate) fn exporter_info_labels(config: &Config) -> Option<String> {
    (config.naming == crate::naming::Naming::Flask)
        .then(|| rendered_pairs(&[("version", env!("CARGO_PKG_VERSION"))]))
}

/// Process and runtime gauges, collected at scrape time.
fn encode_process(encoder: &mut Encoder<'_>, snapshot: &ProcessStats) {
    encoder.header(process_names::CPU_SECONDS, Kind::Counter, CPU_HELP);
    encoder.float_sample(process_names::CPU_SECONDS, "", snapshot.cpu_seconds);
    for (name, help, value) in process_gauges(snapshot) {
        encoder.header(name, Kind::Gauge, help);
        encoder.int_sample(name, "", value);
    }
    encoder.header(process_names::START_TIME, Kind::Gauge, START_TIME_HELP);
    encoder.float_sample(process_names::START_TIME, "", snapshot.start_time_seconds);
}

pub(crate) const CPU_HELP: &str = "Total user and system CPU time spent in seconds.";
pub(crate) const START_TIME_HELP: &str = "Start time of the process since unix epoch in seconds.";

/// The process gauges that have a value, as (name, help, value), in every format.
pub(crate) fn process_gauges(
    snapshot: &ProcessStats,
) -> impl Iterator<Item = (&'static str, &'static str, u64)> {
    [
        (
            process_names::RESIDENT_MEMORY,
            "Resident memory size in bytes.",
            Some(snapshot.resident_memory_bytes),
        ),
        (
            process_names::VIRTUAL_MEMORY,
            "Virtual memory size in bytes.",
            Some(snapshot.virtual_memory_bytes),
        ),
        (
            process_names::OPEN_FDS,
            "Number of open file descriptors.",
            Some(snapshot.open_fds),
        ),
        (
            process_names::MAX_FDS,
            "Maximum number of open file descriptors.",
            snapshot.max_fds,
        ),
        (
            process_names::THREADS,
            "Number of OS threads in the process.",
            Some(snapshot.threads),
        ),
    ]
    .into_iter()
    .filter_map(|(name, help, value)| Some((name, help, value?)))
}

/// The Tokio runtime gauges from the stable metrics API, as (name, help, value).
pub(crate) fn runtime_gauges(runtime: &RuntimeStats) -> [(&'static str, &'static str, usize); 3] {
    [
        (
            process_names::TOKIO_WORKERS,
            "Number of worker threads of the Tokio runtime.",
            runtime.workers,
        ),
        (
            process_names::TOKIO_ALIVE_TASKS,
            "Number of alive tasks in the Tokio runtime.",
            runtime.alive_tasks,
        ),
        (
            process_names::TOKIO_GLOBAL_QUEUE,
            "Number of tasks in the Tokio runtime's global queue.",
            runtime.global_queue_depth,
        ),
    ]
}

fn encode_runtime(encoder: &mut Encoder<'_>, runtime: &RuntimeStats) {
    for (name, help, value) in runtime_gauges(runtime) {
        encoder.header(name, Kind::Gauge, help);
        encoder.int_sample(name, "", value);
    }
}

/// Rewrites OpenMetrics text from `prometheus-client` into the Prometheus 0.0.4 format:
/// counters and info metrics get their sample names in `# HELP`/`# TYPE`, `# UNIT`, `# EOF`,
/// `_created` samples and exemplars go, and `unknown` becomes `untyped`.
pub(crate) fn openmetrics_to_prometheus(openmetrics: &str, out: &mut Vec<u8>) {
    let mut pending_help: Option<(&str, &str)> = None;
    let mut counter_family: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (sample_name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                "stateset" => (name.to_owned(), "gauge"),
                _ => (name.to_owned(), "untyped"),
            };
            counter_family = (kind == "counter").then_some(name);
            if let Some((help_name, help)) = pending_help.take()
                && help_name == name
            {
                let _ = writeln!(out, "# HELP {sample_name} {}", prometheus_help(help));
            }
            let _ = writeln!(out, "# TYPE {sample_name} {kind}");
        } else if line.starts_with("# ") {
            // `# UNIT` and `# EOF` have no 0.0.4 equivalent.
        } else {
            let sample = &line[..exemplar_start(line)];
            let is_created = counter_family.is_some_and(|family| {
                sample
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with("_created"))
            });
            if !is_created && !sample.is_empty() {
                out.extend_from_slice(sample.as_bytes());
                out.push(b'\n');
            }
        }
    }
}

/// An OpenMetrics-escaped HELP text in the 0.0.4 format, which escapes only `\\` and `\n`:
/// `\"` becomes `"`.
fn prometheus_help(help: &str) -> std::borrow::Cow<'_, str> {
    if !help.contains("\\\"") {
        return help.into();
    }
    let mut text = String::with_capacity(help.len());
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('"')) => {
                text.push('"');
                chars.next();
            }
            ('\\', Some(escaped)) => {
                text.push('\\');
                text.push(escaped);
                chars.next();
            }
            (c, _) => text.push(c),
        }
    }
    text.into()
}

/// Where the exemplar (` # {...} value`) of an OpenMetrics sample line starts, or the line's
/// length when it has none. Label values may contain ` # ` themselves, so the separator is
/// only looked for after the label set's closing brace, found with quotes and escapes honoured.
fn exemplar_start(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut index = 0;
    // The metric name ends at `{` or at the space before the value.
    while index < bytes.len() && bytes[index] != b'{' && bytes[index] != b' ' {
        index += 1;
    }
    if bytes.get(index) == Some(&b'{') {
        let mut in_quotes = false;
        index += 1;
        while index < bytes.len() {
            match bytes[index] {
                // Inside quotes a backslash escapes the next byte (`\\`, `\"`, `\n`).
                b'\\' if in_quotes => index += 1,
                b'"' => in_quotes = !in_quotes,
                b'}' if !in_quotes => break,
                _ => {}
            }
            index += 1;
        }
    }
    // All delimiters are ASCII, so `index` is on a character boundary (or past the end).
    let rest = line.get(index..).unwrap_or("");
    rest.find(" # ").map_or(line.len(), |found| index + found)
}

/// Escapes a label value for the text and OpenMetrics formats.
pub(crate) fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Lets unit tests act in the middle of an encode, on the encoding thread.
#[cfg(test)]
pub(crate) mod test_hook {
    use std::cell::RefCell;

    thread_local! {
        static HOOK: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
    }

    /// Runs `hook` before each duration series this thread encodes, until `clear`.
    pub(crate) fn set(hook: impl FnMut() + 'static) {
        HOOK.with(|cell| *cell.borrow_mut() = Some(Box::new(hook)));
    }

    pub(crate) fn clear() {
        HOOK.with(|cell| *cell.borrow_mut() = None);
    }

    pub(super) fn series_encoded() {
        HOOK.with(|cell| {
            if let Some(hook) = cell.borrow_mut().as_mut() {
                hook();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_loses_only_the_quote_escapes() {
        assert_eq!(prometheus_help("plain"), "plain");
        assert_eq!(
            prometheus_help(r#"a \"b\" c\\ d\n e\\"f"#),
            r#"a "b" c\\ d\n e\\"f"#
        );
    }

    #[test]
    fn exemplars_are_found_only_after_the_label_set() {
        let cases = [
            ("a 1", "a 1"),
            ("a 1 # {t=\"x\"} 2", "a 1"),
            ("a{l=\"x # y\"} 1", "a{l=\"x # y\"} 1"),
            ("a{l=\"x # y\"} 1 # {t=\"z\"} 2", "a{l=\"x # y\"} 1"),
            ("a{l=\"\\\"} # \"} 1", "a{l=\"\\\"} # \"} 1"),
            ("a{l=\"\\\\\"} 1 # {} 2", "a{l=\"\\\\\"} 1"),
            ("a{l=\"unterminated # ", "a{l=\"unterminated # "),
        ];
        for (line, sample) in cases {
            assert_eq!(&line[..exemplar_start(line)], sample, "{line:?}");
        }
    }

    #[test]
    fn floats_follow_each_format() {
        let render = |value: f64, format| {
            let mut out = Vec::new();
            write_float(&mut out, value, format);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(render(0.005, Format::Prometheus), "0.005");
        assert_eq!(render(1.0, Format::Prometheus), "1");
        assert_eq!(render(1.0, Format::OpenMetrics), "1.0");
        assert_eq!(render(f64::INFINITY, Format::OpenMetrics), "+Inf");
    }

    #[test]
    fn nanosecond_sums_read_as_the_same_seconds_in_both_formats() {
        let render = |nanos: u128, format| {
            let mut exact = Vec::new();
            write_nanos_as_seconds(&mut exact, nanos, format);
            String::from_utf8(exact).unwrap()
        };
        for nanos in [
            0,
            1,
            10,
            999_999_999,
            1_000_000_000,
            2_539_462_694,
            120_000_000_000,
            123_456_789_012_345,
        ] {
            for format in [Format::Prometheus, Format::OpenMetrics] {
                let mut float = Vec::new();
                write_float(&mut float, nanos as f64 / 1e9, format);
                assert_eq!(
                    render(nanos, format),
                    String::from_utf8(float).unwrap(),
                    "{nanos} ns"
                );
            }
        }
        // Past 2^53 ns an f64 drops nanoseconds; the exact form keeps them.
        let long = (1u128 << 60) + 1;
        let text = render(long, Format::Prometheus);
        assert_eq!(text, "1152921504.606846977");
        assert_eq!(render(5_000_000, Format::OpenMetrics), "0.005");
    }

    #[test]
    fn openmetrics_counters_and_info_become_prometheus_text() {
        let openmetrics = "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total 3 # {trace_id=\"a\"} 1\njobs_created 1.5\n# HELP build Build.\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# HELP temp_celsius T.\n# TYPE temp_celsius gauge\n# UNIT temp_celsius celsius\ntemp_celsius 20\n# EOF\n";
        let mut out = Vec::new();
        openmetrics_to_prometheus(openmetrics, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total 3\n# HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{v=\"1\"} 1\n# HELP temp_celsius T.\n# TYPE temp_celsius gauge\ntemp_celsius 20\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
    }
}
