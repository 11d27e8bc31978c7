//! The Prometheus protobuf exposition: length-delimited `io.prometheus.client.MetricFamily`
//! messages, the only format that carries native histograms to Prometheus.
//!
//! The messages are prometheus-client's, generated from its copy of the upstream definition
//! (<https://github.com/prometheus/client_model/blob/master/io/prometheus/client/metrics.proto>),
//! so that redwatch's families and the user's registered ones (which prometheus-client encodes
//! itself) are one data model. Every family of the text formats is here, under the names of the
//! 0.0.4 text format (counters end in `_total`, info metrics are gauges); the duration
//! histograms carry their classic buckets and, when on, their native buckets in one message.

use std::collections::BTreeMap;

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;
use prost::Message;

use crate::collect::{self, AppInfo, ProcessStats, RuntimeStats};
use crate::encode::{
    CPU_HELP, DURATION_HELP, EXPORTER_INFO, EXPORTER_INFO_HELP, INFO_HELP, START_TIME_HELP,
    active_samples, exporter_info_labels, info_labels, process_gauges, runtime_gauges,
    size_families,
};
use crate::naming::process_names;
use crate::native;
use crate::registry::{Config, ExemplarSlot, Series, Shared};

/// The content type of a protobuf exposition.
pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Encodes redwatch's families of `shared` and the `user` families (prometheus-client's
/// encoding of the registry) into `out`. When the registry cannot be encoded (a custom collector
/// failed), its families are left out, as the text formats keep what was written before the
/// failure.
pub(crate) fn encode(
    shared: &Shared,
    user: Result<Vec<pb::MetricFamily>, std::fmt::Error>,
    out: &mut Vec<u8>,
) {
    let config = &shared.config;
    let const_labels = label_pairs(config.const_labels.strip_prefix(',').unwrap_or(""));
    let mut families = Vec::new();
    if config.request_metrics {
        red_families(shared, &const_labels, &mut families);
    }
    let collected = collect::collect(config);
    let mut builder = Families {
        families: &mut families,
        const_labels: &const_labels,
        namespace: "",
    };
    info_families(&mut builder, config, &collected.info);
    if let Some(process) = &collected.process {
        process_families(&mut builder, process);
    }
    if let Some(runtime) = &collected.runtime {
        runtime_families(&mut builder, runtime);
    }
    families.extend(user.unwrap_or_default());
    for family in families {
        // Encoding into a Vec cannot run out of space.
        let _ = family.encode_length_delimited(out);
    }
}

/// Appends families whose names start with `namespace` and whose samples carry `const_labels`.
struct Families<'a> {
    families: &'a mut Vec<pb::MetricFamily>,
    const_labels: &'a [pb::LabelPair],
    namespace: &'a str,
}

impl Families<'_> {
    /// Starts a family; its metrics are pushed onto the returned vector.
    fn family(&mut self, name: &str, kind: pb::MetricType, help: &str) -> &mut Vec<pb::Metric> {
        self.families.push(pb::MetricFamily {
            name: format!("{}{name}", self.namespace),
            help: help.to_owned(),
            r#type: kind as i32,
            ..Default::default()
        });
        let last = self.families.len() - 1;
        &mut self.families[last].metric
    }

    /// `labels` (rendered `name="value",...`) and the constant labels.
    fn labels(&self, labels: &str) -> Vec<pb::LabelPair> {
        let mut pairs = label_pairs(labels);
        pairs.extend_from_slice(self.const_labels);
        pairs
    }

    fn gauge(&mut self, name: &str, help: &str, samples: Vec<(String, f64)>) {
        let metrics: Vec<pb::Metric> = samples
            .into_iter()
            .map(|(labels, value)| pb::Metric {
                label: self.labels(&labels),
                gauge: Some(pb::Gauge { value }),
                ..Default::default()
            })
            .collect();
        self.family(name, pb::MetricType::Gauge, help)
            .extend(metrics);
    }

    fn counter(&mut self, name: &str, help: &str, samples: Vec<(String, f64)>) {
        let metrics: Vec<pb::Metric> = samples
            .into_iter()
            .map(|(labels, value)| pb::Metric {
                label: self.labels(&labels),
                counter: Some(pb::Counter {
                    value,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        self.family(name, pb::MetricType::Counter, help)
            .extend(metrics);
    }
}

/// The request families: durations (classic and native), body sizes, the flask counters,
/// requests in flight; as `encode::encode_red` writes them.
fn red_families(shared: &Shared, const_labels: &[pb::LabelPair], out: &mut Vec<pb::MetricFamily>) {
    let config = &shared.config;
    let names = config.names();
    let mut families = Families {
        families: out,
        const_labels,
        namespace: &config.namespace,
    };
    let mut cumulative = Vec::with_capacity(config.duration_bounds_nanos.len() + 1);
    let mut totals: BTreeMap<(u8, u16), u64> = BTreeMap::new();
    let mut durations = Vec::new();
    for s in shared.series() {
        let histogram = duration_histogram(config, s, &mut cumulative);
        if names.requests_total.is_some() {
            *totals.entry((s.method, s.status)).or_insert(0) += histogram.sample_count;
        }
        durations.push(pb::Metric {
            label: label_pairs(&s.labels),
            histogram: Some(histogram),
            ..Default::default()
        });
    }
    families
        .family(names.duration, pb::MetricType::Histogram, DURATION_HELP)
        .extend(durations);

    if let Some(bounds) = &config.size_bounds_bytes {
        let bounds: Vec<f64> = bounds.iter().map(|&bound| bound as f64).collect();
        for (name, help, histogram_of) in size_families(names) {
            let metrics: Vec<pb::Metric> = shared
                .series()
                .filter_map(|s| {
                    let histogram = histogram_of(s)?;
                    let sum = histogram.snapshot(&mut cumulative);
                    Some(pb::Metric {
                        label: label_pairs(&s.labels),
                        histogram: Some(pb::Histogram {
                            sample_count: cumulative.last().copied().unwrap_or(0),
                            sample_sum: sum as f64,
                            bucket: classic_buckets(&bounds, &cumulative, u64::MAX, None),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                })
                .collect();
            families
                .family(name, pb::MetricType::Histogram, help)
                .extend(metrics);
        }
    }

    let method_status = |method: u8, status: u16| {
        format!(
            "{}=\"{}\",{}=\"{status}\"",
            names.method_label,
            config.method_name(method),
            names.status_label,
        )
    };
    if let Some(requests_total) = names.requests_total {
        let samples = totals
            .into_iter()
            .map(|((method, status), count)| (method_status(method, status), count as f64))
            .collect();
        families.counter(requests_total, "Total number of HTTP requests.", samples);
    }
    if let Some(exceptions_total) = names.exceptions_total {
        // A copy, so that a panicking handler never waits for this encode.
        let exceptions = shared.exceptions().clone();
        let samples = exceptions
            .into_iter()
            .map(|((method, status), count)| (method_status(method, status), count as f64))
            .collect();
        families.counter(
            exceptions_total,
            "Total number of HTTP requests whose handler panicked.",
            samples,
        );
    }
    let active = active_samples(shared)
        .into_iter()
        .map(|(labels, value)| (labels, value as f64))
        .collect();
    families.gauge(
        names.active_requests,
        "Number of HTTP server requests in flight.",
        active,
    );
}

/// One duration series: its classic buckets (with their exemplars) and, when on, its native
/// buckets, in one histogram.
///
/// The count of a native histogram must equal the sum of its buckets, and Prometheus reads the
/// classic `_count` from the same field. So with native buckets the count is theirs, read after
/// the classic buckets (a request is counted in the native histogram before the classic one), and
/// the classic buckets are capped at it: a request recorded between the two reads shows in the
/// native buckets and the classic `+Inf` bucket of this scrape, and in its own classic bucket
/// from the next scrape on. Nothing ever decreases.
fn duration_histogram(config: &Config, s: &Series, cumulative: &mut Vec<u64>) -> pb::Histogram {
    let sum_nanos = s.duration.snapshot(cumulative);
    let classic_count = cumulative.last().copied().unwrap_or(0);
    let mut histogram = pb::Histogram {
        sample_count: classic_count,
        sample_sum: sum_nanos as f64 / 1e9,
        ..Default::default()
    };
    let mut cap = u64::MAX;
    if let Some(native) = &s.native_duration {
        let snapshot = native.snapshot();
        cap = snapshot.count;
        histogram.sample_count = snapshot.count;
        histogram.schema = native::SCHEMA;
        histogram.zero_threshold = native::ZERO_THRESHOLD;
        histogram.zero_count = snapshot.zero_count;
        histogram.positive_span = snapshot
            .spans
            .iter()
            .map(|&(offset, length)| pb::BucketSpan { offset, length })
            .collect();
        if histogram.positive_span.is_empty() {
            // A no-op span marks a histogram without observations as native.
            histogram.positive_span.push(pb::BucketSpan {
                offset: 0,
                length: 0,
            });
        }
        histogram.positive_delta = snapshot.deltas;
    }
    histogram.bucket = classic_buckets(
        &config.duration_bounds_seconds,
        cumulative,
        cap,
        s.duration_exemplars.as_deref(),
    );
    histogram
}

/// The cumulative classic buckets, `+Inf` included, each capped at `cap`.
fn classic_buckets(
    bounds: &[f64],
    cumulative: &[u64],
    cap: u64,
    exemplars: Option<&[ExemplarSlot]>,
) -> Vec<pb::Bucket> {
    bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(cumulative)
        .enumerate()
        .map(|(index, (upper_bound, &count))| pb::Bucket {
            cumulative_count: count.min(cap),
            upper_bound,
            exemplar: exemplars
                .and_then(|slots| slots.get(index))
                .and_then(exemplar),
            ..Default::default()
        })
        .collect()
}

/// The exemplar of one bucket, if it has one.
fn exemplar(slot: &ExemplarSlot) -> Option<pb::Exemplar> {
    let exemplar = (*slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner))?;
    let mut labels = Vec::new();
    exemplar.context.write_labels(&mut labels);
    Some(pb::Exemplar {
        label: label_pairs(&String::from_utf8_lossy(&labels)),
        value: exemplar.value_nanos as f64 / 1e9,
        timestamp: Some(prost_types::Timestamp {
            seconds: (exemplar.unix_nanos / 1_000_000_000) as i64,
            nanos: (exemplar.unix_nanos % 1_000_000_000) as i32,
        }),
    })
}

fn info_families(families: &mut Families<'_>, config: &Config, info: &AppInfo) {
    if let Some(exporter) = exporter_info_labels(config) {
        families.gauge(EXPORTER_INFO, EXPORTER_INFO_HELP, vec![(exporter, 1.0)]);
    }
    families.gauge(
        config.names().info,
        INFO_HELP,
        vec![(info_labels(config, info), 1.0)],
    );
}

fn process_families(families: &mut Families<'_>, process: &ProcessStats) {
    families.counter(
        process_names::CPU_SECONDS,
        CPU_HELP,
        vec![(String::new(), process.cpu_seconds)],
    );
    for (name, help, value) in process_gauges(process) {
        families.gauge(name, help, vec![(String::new(), value as f64)]);
    }
    families.gauge(
        process_names::START_TIME,
        START_TIME_HELP,
        vec![(String::new(), process.start_time_seconds)],
    );
}

fn runtime_families(families: &mut Families<'_>, runtime: &RuntimeStats) {
    for (name, help, value) in runtime_gauges(runtime) {
        families.gauge(name, help, vec![(String::new(), value as f64)]);
    }
}

/// Reads back a label set as redwatch renders it, `name="escaped value",...` (escapes `\\`,
/// `\"`, `\n`), into pairs with the values unescaped. The input is always redwatch's own
/// rendering, so it is well-formed; anything after a malformed pair is dropped.
fn label_pairs(rendered: &str) -> Vec<pb::LabelPair> {
    let mut pairs = Vec::new();
    let mut rest = rendered;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                '"' => {
                    end = Some(at + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { break };
        // An empty value is no label (the otel preset's `error_type` off 5xx series), as
        // Prometheus reads it in the text formats.
        if !value.is_empty() {
            pairs.push(pb::LabelPair {
                name: name.trim_start_matches(',').to_owned(),
                value,
            });
        }
        rest = &after[end..];
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, Metrics};

    fn decode(mut bytes: &[u8]) -> Vec<pb::MetricFamily> {
        let mut families = Vec::new();
        while !bytes.is_empty() {
            families.push(pb::MetricFamily::decode_length_delimited(&mut bytes).unwrap());
        }
        families
    }

    fn family<'a>(families: &'a [pb::MetricFamily], name: &str) -> &'a pb::MetricFamily {
        families
            .iter()
            .find(|family| family.name == name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    /// Bucket index -> count, from spans and deltas.
    fn native_buckets(histogram: &pb::Histogram) -> BTreeMap<i32, u64> {
        let mut buckets = BTreeMap::new();
        let (mut index, mut count, mut deltas) = (0, 0i64, histogram.positive_delta.iter());
        // The first offset is an index, the others gaps after the previous span.
        for span in &histogram.positive_span {
            index += span.offset;
            for _ in 0..span.length {
                count += deltas.next().unwrap();
                buckets.insert(index, u64::try_from(count).unwrap());
                index += 1;
            }
        }
        assert!(deltas.next().is_none(), "more deltas than buckets");
        buckets
    }

    #[test]
    fn the_protobuf_exposition_decodes_to_every_family_with_native_and_classic_buckets() {
        let builder = Metrics::builder()
            .native_histograms(true)
            .const_label("region", "eu \"west\"")
            .naming(crate::Naming::Flask);
        #[cfg(feature = "exemplars")]
        let builder = builder.exemplars(true);
        let metrics = builder.build().unwrap();
        let core = metrics.inner_core();
        let bounds = core.shared.config.duration_bounds_nanos.clone();
        let entry = core.route("/users/{id}");
        // Durations (ns) and the native bucket each belongs in, by the logarithm.
        let durations: Vec<u64> = vec![
            0,
            700,
            1_000,
            120_000,
            4_000_000,
            4_000_000,
            30_000_000,
            250_000_000,
            1_000_000_000,
            7_200_000_000,
        ];
        let mut expected: BTreeMap<i32, u64> = BTreeMap::new();
        let mut zero = 0;
        for &nanos in &durations {
            entry.with_series(0, 200, |series| {
                series.observe_duration(&bounds, nanos);
            });
            let seconds = nanos as f64 / 1e9;
            if seconds <= native::ZERO_THRESHOLD {
                zero += 1;
            } else {
                *expected
                    .entry((seconds.log2() * 8.0).ceil() as i32)
                    .or_insert(0) += 1;
            }
        }
        entry.with_series(2, 503, |series| {
            series.observe_duration(&bounds, 2_000_000);
        });
        entry.with_series(0, 200, |series| {
            let _bucket = series.observe_duration(&bounds, 3_000_000);
            #[cfg(feature = "exemplars")]
            crate::registry::offer_exemplar(
                series.duration_exemplars.as_deref().unwrap(),
                _bucket,
                crate::registry::Exemplar {
                    context: crate::TraceContext::new([7; 16], [9; 8]).unwrap(),
                    value_nanos: 3_000_000,
                    unix_nanos: 1_700_000_000_123_456_789,
                },
            );
        });
        *expected
            .entry((0.003f64.log2() * 8.0).ceil() as i32)
            .or_insert(0) += 1;
        let jobs = prometheus_client::metrics::counter::Counter::<u64>::default();
        metrics.register("jobs", "Jobs done", jobs.clone());
        jobs.inc_by(3);

        let families = decode(&metrics.render_protobuf());
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        // Every family of the text format, under the text format's names.
        let text = String::from_utf8(metrics.render(Format::Prometheus)).unwrap();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = line.split(' ').next().unwrap();
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert_eq!(
            family(&families, "jobs_total").metric[0]
                .counter
                .as_ref()
                .unwrap()
                .value,
            3.0
        );
        let totals = family(&families, "flask_http_request_total");
        assert_eq!(totals.r#type, pb::MetricType::Counter as i32);
        assert_eq!(totals.metric.len(), 2);

        let durations_family = family(&families, "flask_http_request_duration_seconds");
        assert_eq!(durations_family.r#type, pb::MetricType::Histogram as i32);
        let get = &durations_family.metric[0];
        let labels: Vec<(&str, &str)> = get
            .label
            .iter()
            .map(|pair| (pair.name.as_str(), pair.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("method", "GET"),
                ("path", "/users/{id}"),
                ("status", "200"),
                ("region", "eu \"west\""),
            ]
        );
        let histogram = get.histogram.as_ref().unwrap();
        assert_eq!(histogram.schema, 3);
        assert_eq!(histogram.zero_threshold, native::ZERO_THRESHOLD);
        assert_eq!(histogram.zero_count, zero);
        assert_eq!(native_buckets(histogram), expected);
        assert_eq!(histogram.sample_count, durations.len() as u64 + 1);
        let sum: u64 = durations.iter().sum::<u64>() + 3_000_000;
        assert!((histogram.sample_sum - sum as f64 / 1e9).abs() < 1e-9);
        // The classic buckets are the text format's.
        let classic: Vec<(f64, u64)> = histogram
            .bucket
            .iter()
            .map(|b| (b.upper_bound, b.cumulative_count))
            .collect();
        let snapshot = metrics.snapshot();
        let from_snapshot: Vec<(f64, u64)> = snapshot.series[0]
            .duration
            .buckets
            .iter()
            .map(|b| (b.upper_bound, b.cumulative_count))
            .collect();
        assert_eq!(classic, from_snapshot);
        // The exemplar of the 5 ms bucket.
        #[cfg(feature = "exemplars")]
        {
            let with_exemplar: Vec<&pb::Bucket> = histogram
                .bucket
                .iter()
                .filter(|b| b.exemplar.is_some())
                .collect();
            assert_eq!(with_exemplar.len(), 1);
            assert_eq!(with_exemplar[0].upper_bound, 0.005);
            let exemplar = with_exemplar[0].exemplar.as_ref().unwrap();
            assert_eq!(exemplar.label[0].value, "07".repeat(16));
            assert_eq!(exemplar.value, 0.003);
            assert_eq!(exemplar.timestamp.unwrap().nanos, 123_456_789);
        }
    }

    #[test]
    fn without_native_histograms_the_protobuf_has_classic_buckets_only() {
        let metrics = Metrics::new();
        let core = metrics.inner_core();
        let bounds = core.shared.config.duration_bounds_nanos.clone();
        core.route("/").with_series(0, 200, |series| {
            series.observe_duration(&bounds, 1_000_000);
        });
        let families = decode(&metrics.render_protobuf());
        let histogram = family(&families, "http_server_request_duration_seconds").metric[0]
            .histogram
            .clone()
            .unwrap();
        assert_eq!((histogram.schema, histogram.zero_threshold), (0, 0.0));
        assert!(histogram.positive_span.is_empty());
        assert_eq!(histogram.sample_count, 1);
        assert_eq!(histogram.bucket.len(), 15);
    }

    #[test]
    fn rendered_label_sets_read_back_unescaped() {
        let pairs = label_pairs(r#"a="x",route="/a\"b\\c\nd",e="""#);
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|pair| (pair.name.as_str(), pair.value.as_str()))
            .collect();
        // The empty `e` is left out: no label, as in the text formats.
        assert_eq!(pairs, [("a", "x"), ("route", "/a\"b\\c\nd")]);
        assert!(label_pairs("").is_empty());
    }
}
