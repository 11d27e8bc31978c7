//! The exposition is valid for any input (issue 9): arbitrary label values in routes, constant
//! labels, info metrics and user metrics of every prometheus-client type (exemplars included),
//! and arbitrary HELP texts. Both formats must be read back exactly by an independent parser,
//! `openmetrics-parser` (its `prometheus` module for 0.0.4 text, its `openmetrics` module for
//! OpenMetrics), and promtool must accept the 0.0.4 text.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Empty;
use openmetrics_parser::{MetricsExposition, OpenMetricsValue, PrometheusValue, Sample};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::{CounterWithExemplar, HistogramWithExemplars};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use redwatch::{ClassifyRoute, Format, Metrics, Naming};
use tower::{Layer, Service};

type Labels = Vec<(String, String)>;

/// Text for label values and HELP: every character the formats escape or treat as a
/// delimiter, letters, and any Unicode scalar. Carriage returns are left out: both formats
/// allow them in label values, but openmetrics-parser's grammar takes them for line ends.
fn text() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just('"'),
        Just('\\'),
        Just('\n'),
        Just('#'),
        Just('{'),
        Just('}'),
        Just('='),
        Just(','),
        Just(' '),
        Just('é'),
        Just('😀'),
    ];
    let character = prop_oneof![
        3 => special,
        2 => proptest::char::range('a', 'z'),
        1 => any::<char>().prop_filter("no carriage return", |c| *c != '\r'),
    ];
    proptest::collection::vec(character, 0..12).prop_map(String::from_iter)
}

#[derive(Debug, Clone)]
struct Scenario {
    naming: Naming,
    const_value: String,
    service_name: String,
    app_version: String,
    environment: String,
    routes: BTreeSet<String>,
    path_values: BTreeSet<String>,
    /// HELP texts of the seven user metrics, in [`USER_FAMILIES`] order.
    helps: Vec<String>,
    info_value: String,
    exemplar_value: String,
    counter: u64,
    gauge: i64,
    observations: Vec<f64>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(Naming::Otel), Just(Naming::Flask)],
        (text(), text(), text(), text()),
        proptest::collection::btree_set(text(), 1..4),
        proptest::collection::btree_set(text(), 1..4),
        proptest::collection::vec(text(), USER_FAMILIES.len()),
        (text(), text()),
        (0..1_000_000u64, any::<i64>()),
        proptest::collection::vec(0.0..100.0f64, 0..5),
    )
        .prop_map(
            |(
                naming,
                (const_value, service_name, app_version, environment),
                routes,
                path_values,
                helps,
                (info_value, exemplar_value),
                (counter, gauge),
                observations,
            )| Scenario {
                naming,
                const_value,
                service_name,
                app_version,
                environment,
                routes,
                path_values,
                helps,
                info_value,
                exemplar_value,
                counter,
                gauge,
                observations,
            },
        )
}

/// The user metrics' registered names.
const USER_FAMILIES: [&str; 7] = [
    "user_jobs",
    "user_depth",
    "user_wait_seconds",
    "user_build",
    "user_paths",
    "user_traced",
    "user_traced_wait_seconds",
];

/// The route of a request, put there by the test.
#[derive(Clone)]
struct RouteName(String);

#[derive(Clone)]
struct ExtensionRoute;

impl ClassifyRoute for ExtensionRoute {
    fn classify<'a, B>(&self, request: &'a Request<B>) -> Option<std::borrow::Cow<'a, str>> {
        request
            .extensions()
            .get::<RouteName>()
            .map(|route| route.0.as_str().into())
    }
}

/// Records one request per route through the layer (no runtime needed: the service answers
/// at once) and registers one user metric of each kind.
fn metrics_for(scenario: &Scenario) -> Metrics {
    let metrics = Metrics::builder()
        .naming(scenario.naming)
        .const_label("tenant", scenario.const_value.clone())
        .service_name(scenario.service_name.clone())
        .app_version(scenario.app_version.clone())
        .environment(scenario.environment.clone());
    #[cfg(feature = "exemplars")]
    let metrics = metrics.exemplars(true);
    let metrics = metrics.build().unwrap();
    let bare = tower::service_fn(|_request: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())))
    });
    let mut service = metrics.layer().classify_with(ExtensionRoute).layer(bare);
    let mut cx = Context::from_waker(Waker::noop());
    for (index, route) in scenario.routes.iter().enumerate() {
        // Every other request is traced, so that duration buckets carry exemplars.
        let mut request = Request::get("/");
        if index % 2 == 0 {
            let traceparent = format!("00-{:032x}-{:016x}-01", index + 1, index + 1);
            request = request.header("traceparent", traceparent);
        }
        let mut request = request.body(()).unwrap();
        request.extensions_mut().insert(RouteName(route.clone()));
        let mut future = pin!(service.call(request));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the service answers at once");
        };
        let mut body = response.into_body();
        while let Poll::Ready(Some(_)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {}
    }

    let help = |index: usize| scenario.helps[index].clone();
    let jobs: Counter = Counter::default();
    jobs.inc_by(scenario.counter);
    metrics.register(USER_FAMILIES[0], help(0), jobs);
    let depth: Gauge = Gauge::default();
    depth.set(scenario.gauge);
    metrics.register(USER_FAMILIES[1], help(1), depth);
    let wait = Histogram::new([0.1, 1.0, 10.0]);
    for &observation in &scenario.observations {
        wait.observe(observation);
    }
    metrics.register(USER_FAMILIES[2], help(2), wait);
    let build: Info<Labels> = Info::new(vec![("detail".into(), scenario.info_value.clone())]);
    metrics.register(USER_FAMILIES[3], help(3), build);
    let paths = Family::<Labels, Counter>::default();
    for value in &scenario.path_values {
        paths
            .get_or_create(&vec![("path".into(), value.clone())])
            .inc();
    }
    metrics.register(USER_FAMILIES[4], help(4), paths);
    let trace: Labels = vec![("trace_id".into(), scenario.exemplar_value.clone())];
    let traced = CounterWithExemplar::<Labels>::default();
    traced.inc_by(2, Some(trace.clone()), None);
    metrics.register(USER_FAMILIES[5], help(5), traced);
    let traced_wait = HistogramWithExemplars::<Labels>::new([0.5, 5.0].into_iter());
    traced_wait.observe(1.0, Some(trace), None);
    metrics.register(USER_FAMILIES[6], help(6), traced_wait);
    metrics
}

/// One family as read back: its HELP and each sample's labels with its value.
struct ReadFamily<'a, V> {
    help: &'a str,
    samples: Vec<(BTreeMap<String, String>, &'a V)>,
}

fn family<'a, T, V>(
    exposition: &'a MetricsExposition<T, V>,
    name: &str,
) -> Result<ReadFamily<'a, V>, TestCaseError>
where
    T: Clone,
    V: openmetrics_parser::RenderableMetricValue + Clone,
{
    let Some(family) = exposition.families.get(name) else {
        let names: Vec<&String> = exposition.families.keys().collect();
        return Err(TestCaseError::fail(format!(
            "no family {name} in {names:?}"
        )));
    };
    let labels = |sample: &Sample<V>| -> BTreeMap<String, String> {
        sample
            .get_labelset()
            .map(|set| {
                set.iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ReadFamily {
        help: &family.help,
        samples: family
            .iter_samples()
            .map(|sample| (labels(sample), &sample.value))
            .collect(),
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// What both formats must show the same way: HELP texts, label values and sample counts.
fn check_common<'a, V: 'a>(
    scenario: &Scenario,
    read: impl Fn(&str) -> Result<ReadFamily<'a, V>, TestCaseError>,
    names: [&str; 7],
    format: Format,
) -> Result<(), TestCaseError> {
    for (index, name) in names.iter().enumerate() {
        let family = read(name)?;
        let expected = format!("{}.", scenario.helps[index]);
        prop_assert_eq!(
            family.help,
            expected.as_str(),
            "{:?} HELP of {}",
            format,
            name
        );
    }
    let paths: BTreeSet<String> = read(names[4])?
        .samples
        .into_iter()
        .map(|(labels, _)| labels["path"].clone())
        .collect();
    prop_assert_eq!(
        &paths,
        &scenario.path_values,
        "{:?} family label values",
        format
    );
    let info = read(names[3])?;
    prop_assert_eq!(info.samples.len(), 1);
    prop_assert_eq!(
        &info.samples[0].0,
        &labels(&[("detail", &scenario.info_value)]),
        "{:?} info labels",
        format
    );

    let red = scenario.naming.names();
    let duration = read(red.duration)?;
    let routes: BTreeSet<String> = duration
        .samples
        .iter()
        .map(|(labels, _)| labels[red.route_label].clone())
        .collect();
    prop_assert_eq!(&routes, &scenario.routes, "{:?} routes", format);
    for (labels, _) in &duration.samples {
        prop_assert_eq!(&labels["tenant"], &scenario.const_value);
    }
    let info_family = match (scenario.naming, format) {
        (Naming::Otel, Format::OpenMetrics) => "target",
        (Naming::Otel, Format::Prometheus) => "target_info",
        (Naming::Flask, Format::OpenMetrics) => "app",
        (Naming::Flask, Format::Prometheus) => "app_info",
    };
    let info = read(info_family)?;
    prop_assert_eq!(info.samples.len(), 1);
    let mut expected = labels(&[
        (red.version_label, &scenario.app_version),
        (red.environment_label, &scenario.environment),
        ("tenant", &scenario.const_value),
    ]);
    if scenario.naming == Naming::Otel {
        expected.insert("service_name".into(), scenario.service_name.clone());
    }
    prop_assert_eq!(&info.samples[0].0, &expected, "{:?} info metric", format);
    Ok(())
}

fn check_openmetrics(scenario: &Scenario, text: &str) -> Result<(), TestCaseError> {
    let parsed = support::exposition::for_openmetrics_parser(text).map_err(TestCaseError::fail)?;
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&parsed)
        .map_err(|error| TestCaseError::fail(format!("{error:?} in\n{text}")))?;
    let read = |name: &str| family(&exposition, name);
    check_common(scenario, read, USER_FAMILIES, Format::OpenMetrics)?;

    let trace = labels(&[("trace_id", &scenario.exemplar_value)]);
    let counter_value =
        |name: &str| -> Result<(f64, Option<BTreeMap<String, String>>), TestCaseError> {
            let family = read(name)?;
            match family.samples.first().map(|(_, value)| *value) {
                Some(OpenMetricsValue::Counter(counter)) => Ok((
                    counter.value.as_f64(),
                    counter
                        .exemplar
                        .as_ref()
                        .map(|exemplar| exemplar.labels.clone().into_iter().collect()),
                )),
                other => Err(TestCaseError::fail(format!("{name}: {other:?}"))),
            }
        };
    prop_assert_eq!(counter_value("user_jobs")?, (scenario.counter as f64, None));
    prop_assert_eq!(counter_value("user_traced")?, (2.0, Some(trace.clone())));
    match read("user_depth")?.samples.first().map(|(_, value)| *value) {
        Some(OpenMetricsValue::Gauge(gauge)) => {
            prop_assert_eq!(gauge.as_f64(), scenario.gauge as f64)
        }
        other => return Err(TestCaseError::fail(format!("user_depth: {other:?}"))),
    }
    match read("user_wait_seconds")?
        .samples
        .first()
        .map(|(_, value)| *value)
    {
        Some(OpenMetricsValue::Histogram(histogram)) => {
            prop_assert_eq!(histogram.count, Some(scenario.observations.len() as u64))
        }
        other => return Err(TestCaseError::fail(format!("user_wait_seconds: {other:?}"))),
    }
    match read("user_traced_wait_seconds")?
        .samples
        .first()
        .map(|(_, value)| *value)
    {
        Some(OpenMetricsValue::Histogram(histogram)) => {
            let exemplars: Vec<BTreeMap<String, String>> = histogram
                .buckets
                .iter()
                .filter_map(|bucket| bucket.exemplar.as_ref())
                .map(|exemplar| exemplar.labels.clone().into_iter().collect())
                .collect();
            prop_assert_eq!(exemplars, vec![trace]);
        }
        other => return Err(TestCaseError::fail(format!("traced wait: {other:?}"))),
    }
    Ok(())
}

fn check_prometheus(scenario: &Scenario, text: &str) -> Result<(), TestCaseError> {
    let exposition = openmetrics_parser::prometheus::parse_prometheus(text)
        .map_err(|error| TestCaseError::fail(format!("{error:?} in\n{text}")))?;
    let read = |name: &str| family(&exposition, name);
    let names = [
        "user_jobs_total",
        "user_depth",
        "user_wait_seconds",
        "user_build_info",
        "user_paths_total",
        "user_traced_total",
        "user_traced_wait_seconds",
    ];
    check_common(scenario, read, names, Format::Prometheus)?;
    let value = |name: &str| -> Result<f64, TestCaseError> {
        match read(name)?.samples.first().map(|(_, value)| *value) {
            Some(PrometheusValue::Counter(counter)) => Ok(counter.value.as_f64()),
            Some(PrometheusValue::Gauge(gauge)) => Ok(gauge.as_f64()),
            Some(PrometheusValue::Histogram(histogram)) => {
                Ok(histogram.count.unwrap_or_default() as f64)
            }
            other => Err(TestCaseError::fail(format!("{name}: {other:?}"))),
        }
    };
    prop_assert_eq!(value("user_jobs_total")?, scenario.counter as f64);
    prop_assert_eq!(value("user_traced_total")?, 2.0);
    prop_assert_eq!(value("user_depth")?, scenario.gauge as f64);
    prop_assert_eq!(
        value("user_wait_seconds")?,
        scenario.observations.len() as f64
    );
    // An exemplar would follow a sample's value as ` # {trace_id="..."} ...`; HELP texts and
    // label values may contain ` # {` themselves, so look for the exemplar's label on samples.
    prop_assert!(
        !text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .any(|line| line.contains("# {trace_id=")),
        "0.0.4 text carries no exemplars"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn both_formats_read_back_exactly(scenario in scenario()) {
        let metrics = metrics_for(&scenario);
        let openmetrics = String::from_utf8(metrics.render(Format::OpenMetrics)).unwrap();
        check_openmetrics(&scenario, &openmetrics)?;
        let prometheus = String::from_utf8(metrics.render(Format::Prometheus)).unwrap();
        check_prometheus(&scenario, &prometheus)?;
    }
}

/// A few generated expositions, checked by promtool.
#[test]
fn promtool_accepts_generated_expositions() {
    let Some(promtool) = support::tool("promtool") else {
        return;
    };
    let mut runner = TestRunner::deterministic();
    for _ in 0..8 {
        let scenario = scenario().new_tree(&mut runner).unwrap().current();
        let metrics = metrics_for(&scenario);
        let exposition = metrics.render(Format::Prometheus);
        if let Err(report) = support::promtool_check_metrics(&promtool, &exposition) {
            panic!(
                "promtool ({scenario:?}): {report}\n{}",
                String::from_utf8_lossy(&exposition)
            );
        }
    }
}
