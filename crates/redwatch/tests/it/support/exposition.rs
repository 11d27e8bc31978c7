//! The one reader of exposition text in the tests of both crates (the CLI's include this file).
//! `openmetrics-parser` does the parsing; this module only flattens its typed families back
//! into sample lines (`name{labels} value`), the shape the tests look values up in.
// Each crate's tests use part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use openmetrics_parser::{
    HistogramValue, MetricNumber, MetricsExposition, OpenMetricsValue, PrometheusValue,
    RenderableMetricValue, SummaryValue,
};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: its text, and its samples family by family (families in name order,
/// samples in the order of the text).
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Reads the Prometheus 0.0.4 text format; panics with the parser's error on invalid text.
    pub fn parse(text: &str) -> Exposition {
        let parsed = openmetrics_parser::prometheus::parse_prometheus(text)
            .unwrap_or_else(|error| panic!("invalid Prometheus text ({error:?}):\n{text}"));
        Exposition {
            text: text.to_owned(),
            samples: flatten(&parsed, prometheus_samples),
        }
    }

    /// Reads the OpenMetrics text format; panics with the parser's error on invalid text.
    pub fn parse_openmetrics(text: &str) -> Exposition {
        let adapted =
            for_openmetrics_parser(text).unwrap_or_else(|error| panic!("{error}:\n{text}"));
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&adapted)
            .unwrap_or_else(|error| panic!("invalid OpenMetrics text ({error:?}):\n{text}"));
        Exposition {
            text: text.to_owned(),
            samples: flatten(&parsed, openmetrics_samples),
        }
    }

    /// The value of the one sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted = label_map(labels);
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// The value of the one sample named `name` whose labels include `labels`; others may be
    /// there too (e.g. the otel preset's `url_scheme`). `None` when no sample matches; a panic
    /// when several do, since the caller then meant a sum.
    pub fn value_with(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = find(&self.samples, name, labels);
        assert!(
            found.len() <= 1,
            "{} samples of {name} have {labels:?}: {found:?}",
            found.len()
        );
        found.first().map(|sample| sample.value)
    }

    /// Every sample named `name` (the free [`find`] and [`total`] match on part of the labels).
    pub fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Sample> + use<'a> {
        let name = name.to_owned();
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The samples named `name` summed by the value of their label `label` (samples without it
    /// are left out), as whole counts.
    pub fn sum_by(&self, name: &str, label: &str) -> HashMap<String, u64> {
        let mut sums = HashMap::new();
        for sample in self.named(name) {
            if let Some(value) = sample.labels.get(label) {
                *sums.entry(value.clone()).or_default() += sample.value as u64;
            }
        }
        sums
    }

    /// Whether the exposition declares `# TYPE name kind`.
    pub fn has_type(&self, name: &str, kind: &str) -> bool {
        let declaration = format!("# TYPE {name} {kind}");
        self.text.lines().any(|line| line == declaration)
    }
}

/// The samples named `name` whose labels include every pair of `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The sum of the values of the samples [`find`] returns.
pub fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels).iter().map(|s| s.value).sum()
}

/// One bucket's exemplar in OpenMetrics text.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketExemplar {
    /// The histogram family, e.g. `http_server_request_duration_seconds`.
    pub family: String,
    /// The series' labels, without `le`.
    pub labels: BTreeMap<String, String>,
    /// The bucket's upper bound and the one below it (0 for the first).
    pub upper_bound: f64,
    pub lower_bound: f64,
    /// The exemplar's own labels (`trace_id`, `span_id`).
    pub exemplar_labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp: Option<f64>,
}

/// Every bucket exemplar of the OpenMetrics `text`; panics with the parser's error on invalid text.
pub fn bucket_exemplars(text: &str) -> Vec<BucketExemplar> {
    let adapted = for_openmetrics_parser(text).unwrap_or_else(|error| {
        panic!(
            "{error}:
{text}"
        )
    });
    let parsed =
        openmetrics_parser::openmetrics::parse_openmetrics(&adapted).unwrap_or_else(|error| {
            panic!(
                "invalid OpenMetrics text ({error:?}):
{text}"
            )
        });
    let mut found = Vec::new();
    for (family, metrics) in &parsed.families {
        for sample in metrics.iter_samples() {
            let OpenMetricsValue::Histogram(histogram) = &sample.value else {
                continue;
            };
            let labels: BTreeMap<String, String> = sample
                .get_labelset()
                .map(|set| set.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let mut lower_bound = 0.0;
            for bucket in &histogram.buckets {
                if let Some(exemplar) = &bucket.exemplar {
                    found.push(BucketExemplar {
                        family: family.clone(),
                        labels: labels.clone(),
                        upper_bound: bucket.upper_bound,
                        lower_bound,
                        exemplar_labels: exemplar
                            .labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        value: exemplar.id,
                        timestamp: exemplar.timestamp,
                    });
                }
                lower_bound = bucket.upper_bound;
            }
        }
    }
    found
}

/// `text` adapted to two limits of openmetrics-parser, after checking that what is left out
/// is as expected:
/// - it refuses `# UNIT` on histograms, which OpenMetrics allows (only info and stateset
///   families must have none), and redwatch gives its duration and size histograms one;
/// - it takes the descriptors of a family with no samples (which OpenMetrics allows, e.g. the
///   flask exceptions counter before any panic) for those of the next family.
pub fn for_openmetrics_parser(text: &str) -> Result<String, String> {
    let types: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let sample_names: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let suffixes = [
        "", "_total", "_info", "_bucket", "_count", "_sum", "_created",
    ];
    let empty = |family: &str| {
        !suffixes
            .iter()
            .any(|suffix| sample_names.contains(format!("{family}{suffix}").as_str()))
    };
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        let descriptor = ["# HELP ", "# TYPE ", "# UNIT "]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix))
            .and_then(|rest| rest.split_once(' '));
        if let Some((family, rest)) = descriptor {
            if empty(family) {
                if types.get(family) != Some(&"counter") {
                    return Err(format!("a family other than a counter is empty: {line}"));
                }
                continue;
            }
            if line.starts_with("# UNIT ") && types.get(family) == Some(&"histogram") {
                if !family.ends_with(&format!("_{rest}")) {
                    return Err(format!("the unit is not the name's suffix: {line}"));
                }
                continue;
            }
        }
        kept.push_str(line);
        kept.push('\n');
    }
    Ok(kept)
}

/// Sample lines as a family produces them: name, the label it adds (`le`, `quantile`), value.
type Lines = Vec<(String, Option<(&'static str, String)>, f64)>;

fn label_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every family's samples as lines, families in name order.
fn flatten<T, V>(
    exposition: &MetricsExposition<T, V>,
    lines: fn(&str, &V, &mut Lines),
) -> Vec<Sample>
where
    T: Clone,
    V: RenderableMetricValue + Clone,
{
    let mut names: Vec<&String> = exposition.families.keys().collect();
    names.sort();
    let mut samples = Vec::new();
    for name in names {
        for sample in exposition.families[name].iter_samples() {
            let labels: BTreeMap<String, String> = sample
                .get_labelset()
                .map(|set| {
                    set.iter()
                        .map(|(label, value)| (label.clone(), value.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let mut produced = Vec::new();
            lines(name, &sample.value, &mut produced);
            for (name, extra, value) in produced {
                let mut labels = labels.clone();
                if let Some((label, value)) = extra {
                    labels.insert(label.to_owned(), value);
                }
                samples.push(Sample {
                    name,
                    labels,
                    value,
                });
            }
        }
    }
    samples
}

fn prometheus_samples(family: &str, value: &PrometheusValue, out: &mut Lines) {
    match value {
        PrometheusValue::Unknown(number) | PrometheusValue::Gauge(number) => {
            out.push((family.to_owned(), None, number.as_f64()))
        }
        PrometheusValue::Counter(counter) => {
            out.push((family.to_owned(), None, counter.value.as_f64()))
        }
        PrometheusValue::Histogram(histogram) => histogram_lines(family, histogram, out),
        PrometheusValue::Summary(summary) => summary_lines(family, summary, out),
    }
}

fn openmetrics_samples(family: &str, value: &OpenMetricsValue, out: &mut Lines) {
    match value {
        OpenMetricsValue::Unknown(number)
        | OpenMetricsValue::Gauge(number)
        | OpenMetricsValue::StateSet(number) => {
            out.push((family.to_owned(), None, number.as_f64()))
        }
        OpenMetricsValue::Counter(counter) => {
            out.push((format!("{family}_total"), None, counter.value.as_f64()))
        }
        OpenMetricsValue::Info => out.push((format!("{family}_info"), None, 1.0)),
        OpenMetricsValue::Histogram(histogram) | OpenMetricsValue::GaugeHistogram(histogram) => {
            histogram_lines(family, histogram, out)
        }
        OpenMetricsValue::Summary(summary) => summary_lines(family, summary, out),
    }
}

/// Bucket bounds as Prometheus writes them: `+Inf`, and the shortest decimal that reads back.
fn bound(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        value.to_string()
    }
}

fn histogram_lines(family: &str, histogram: &HistogramValue, out: &mut Lines) {
    for bucket in &histogram.buckets {
        out.push((
            format!("{family}_bucket"),
            Some(("le", bound(bucket.upper_bound))),
            bucket.count.as_f64(),
        ));
    }
    push_sum_and_count(family, histogram.sum.as_ref(), histogram.count, out);
}

fn summary_lines(family: &str, summary: &SummaryValue, out: &mut Lines) {
    for quantile in &summary.quantiles {
        out.push((
            family.to_owned(),
            Some(("quantile", bound(quantile.quantile))),
            quantile.value.as_f64(),
        ));
    }
    push_sum_and_count(family, summary.sum.as_ref(), summary.count, out);
}

fn push_sum_and_count(
    family: &str,
    sum: Option<&MetricNumber>,
    count: Option<u64>,
    out: &mut Lines,
) {
    if let Some(sum) = sum {
        out.push((format!("{family}_sum"), None, sum.as_f64()));
    }
    if let Some(count) = count {
        out.push((format!("{family}_count"), None, count as f64));
    }
}
