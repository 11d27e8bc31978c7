//! promtool unit tests for the generated rules (`promtool test rules`). For every alert there is a
//! case where it fires and cases where it must stay silent, including its minimum-events guard;
//! recording rules are checked for exact values; and behaviour over days (seasons, idle nights,
//! restarts, low traffic) is replayed from one-sample-a-minute series. Inputs are derived from the
//! same settings as the rules, so compressed windows get compressed tests.

mod days;
mod humanize;
mod resources;
mod short;

use std::collections::BTreeMap;

use serde::Serialize;

use super::Settings;
use super::alerts::{self, AlertSpec};
use super::units::{PromDuration, num};
use redwatch::Naming;

/// File names under `prometheus/tests/`.
pub const SLO_TEST_FILE: &str = "slo.test.yml";
pub const ALERTS_TEST_FILE: &str = "alerts.test.yml";
pub const DAYS_TEST_FILE: &str = "days.test.yml";
pub const RESOURCES_TEST_FILE: &str = "resources.test.yml";
const RULE_FILE: &str = "../rules/redwatch.rules.yml";

#[derive(Debug, Serialize)]
struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: String,
    tests: Vec<TestGroup>,
}

#[derive(Debug, Serialize)]
struct TestGroup {
    name: String,
    interval: String,
    input_series: Vec<InputSeries>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alert_rule_test: Vec<AlertTest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Debug, Clone, Serialize)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Debug, Serialize)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Debug, Serialize)]
struct ExpectedAlert {
    exp_labels: BTreeMap<String, String>,
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct ExprTest {
    expr: String,
    eval_time: String,
    exp_samples: Vec<ExpectedSample>,
}

#[derive(Debug, Serialize)]
struct ExpectedSample {
    labels: String,
    value: f64,
}

/// A stretch of constant traffic.
#[derive(Debug, Clone, Copy)]
struct Phase {
    steps: u64,
    /// Requests per second.
    rate: f64,
    /// Share of requests answered with 500.
    errors: f64,
    /// Share of requests slower than the latency threshold.
    slow: f64,
    /// Mean response time in seconds.
    latency: f64,
    /// The process restarted as the phase began: its counters start again from 0.
    restart: bool,
}

impl Phase {
    fn steady(steps: u64, rate: f64, errors: f64, slow: f64, latency: f64) -> Self {
        Self {
            steps,
            rate,
            errors,
            slow,
            latency,
            restart: false,
        }
    }
}

/// Values of a counter that grows by `increment` per step in each `(steps, increment, restart)`
/// phase. Increments are rounded to multiples of 2^-20 and printed exactly, so every sum is
/// exact: a phase never starts a hair below where the last one ended, which Prometheus would
/// read as a counter reset.
fn counter(phases: &[(u64, f64, bool)]) -> String {
    const GRID: f64 = 1_048_576.0;
    let mut parts = vec!["0".to_owned()];
    let mut current = 0.0;
    for &(steps, increment, restart) in phases.iter().filter(|(steps, ..)| *steps > 0) {
        let increment = (increment * GRID).round() / GRID;
        let mut steps = steps;
        if restart {
            parts.push("0".to_owned());
            current = 0.0;
            steps -= 1;
            if steps == 0 {
                continue;
            }
        }
        parts.push(format!("{}+{increment}x{}", current + increment, steps - 1));
        current += increment * steps as f64;
    }
    parts.join(" ")
}

/// Values of a gauge that holds `value` for `steps + 1` samples.
fn gauge(value: f64, steps: u64) -> String {
    format!("{}+0x{steps}", num(value))
}

struct Ctx<'a> {
    preset: Naming,
    settings: &'a Settings,
    /// Input sample interval and evaluation interval of the fine-grained tests.
    fine: PromDuration,
    /// Evaluation interval of the SLO tests, whose windows are long (a multiple of `fine`).
    coarse: PromDuration,
    specs: Vec<AlertSpec>,
}

/// `, name="value"` for each constant label, as the API's series carry them.
fn const_matchers(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!(", {name}=\"{escaped}\"")
        })
        .collect()
}

impl Ctx<'_> {
    fn steps(&self, duration: PromDuration) -> u64 {
        duration.millis().div_ceil(self.fine.millis())
    }

    fn traffic(&self, instance: &str, phases: &[Phase]) -> Vec<InputSeries> {
        self.traffic_in(None, instance, phases)
    }

    /// [`Ctx::traffic`] of an instance in `cluster`, labelled as a central store (remote write,
    /// Thanos, Mimir) holds it: by the `cluster` of its Prometheus's `external_labels`.
    fn traffic_in(
        &self,
        cluster: Option<&str>,
        instance: &str,
        phases: &[Phase],
    ) -> Vec<InputSeries> {
        let names = self.settings.names(self.preset);
        let step = self.fine.secs_f64();
        let threshold = num(self.settings.threshold_le());
        let job = &self.settings.job;
        let mut series = Vec::new();
        for (status, share_of) in [
            ("200", (|p: &Phase| 1.0 - p.errors) as fn(&Phase) -> f64),
            ("500", |p: &Phase| p.errors),
        ] {
            if phases.iter().all(|phase| share_of(phase) == 0.0) {
                continue;
            }
            let cluster = cluster
                .map(|cluster| format!("cluster=\"{cluster}\", "))
                .unwrap_or_default();
            let labels = format!(
                "{cluster}job=\"{job}\", instance=\"{instance}\", {}=\"GET\", {}=\"/ep_one\", {}=\"{status}\"{}",
                names.method,
                names.route,
                names.status,
                const_matchers(&self.settings.app.const_labels)
            );
            let per_step = |value: &dyn Fn(&Phase) -> f64| -> String {
                let increments: Vec<(u64, f64, bool)> = phases
                    .iter()
                    .map(|phase| {
                        (
                            phase.steps,
                            phase.rate * share_of(phase) * step * value(phase),
                            phase.restart,
                        )
                    })
                    .collect();
                counter(&increments)
            };
            series.push(InputSeries {
                series: format!("{}{{{labels}}}", names.count()),
                values: per_step(&|_| 1.0),
            });
            series.push(InputSeries {
                series: format!("{}{{{labels}}}", names.sum()),
                values: per_step(&|p| p.latency),
            });
            series.push(InputSeries {
                series: format!("{}{{{labels}, le=\"{threshold}\"}}", names.bucket()),
                values: per_step(&|p| 1.0 - p.slow),
            });
            series.push(InputSeries {
                series: format!("{}{{{labels}, le=\"+Inf\"}}", names.bucket()),
                values: per_step(&|_| 1.0),
            });
        }
        series
    }

    fn up(&self, instance: &str, value: f64, steps: u64) -> InputSeries {
        InputSeries {
            series: format!(
                "up{{job=\"{}\", instance=\"{instance}\"}}",
                self.settings.job
            ),
            values: gauge(value, steps),
        }
    }

    fn group(&self, name: &str, input_series: Vec<InputSeries>) -> TestGroup {
        TestGroup {
            name: name.to_owned(),
            interval: self.fine.to_string(),
            input_series,
            alert_rule_test: Vec::new(),
            promql_expr_test: Vec::new(),
        }
    }

    fn spec(&self, alert: &str, severity: Option<&str>) -> &AlertSpec {
        self.specs
            .iter()
            .find(|spec| spec.name == alert && severity.is_none_or(|s| s == spec.severity))
            .unwrap_or_else(|| panic!("no alert {alert} with severity {severity:?}"))
    }

    /// The alert as Prometheus sends it: labels, and annotations rendered with `value`.
    fn expect(
        &self,
        alert: &str,
        severity: Option<&str>,
        instance: Option<&str>,
        value: Option<f64>,
    ) -> ExpectedAlert {
        let spec = self.spec(alert, severity);
        let mut labels = spec.labels();
        labels.insert("job".to_owned(), self.settings.job.clone());
        if let Some(instance) = instance {
            labels.insert("instance".to_owned(), instance.to_owned());
        }
        let annotations = spec
            .annotations(self.settings)
            .into_iter()
            .map(|(key, text)| {
                let mut text = text
                    .replace("{{ $labels.job }}", &self.settings.job)
                    .replace("{{ $labels.instance }}", instance.unwrap_or_default());
                for (template, render) in [
                    (
                        alerts::value::PERCENT,
                        humanize::humanize_percentage as fn(f64) -> String,
                    ),
                    (alerts::value::SECONDS, humanize::humanize_duration),
                    (alerts::value::NUMBER, humanize::humanize),
                ] {
                    if text.contains(template) {
                        let value =
                            value.unwrap_or_else(|| panic!("{alert}: the test names no value"));
                        text = text.replace(template, &render(value));
                    }
                }
                (key, text)
            })
            .collect();
        ExpectedAlert {
            exp_labels: labels,
            exp_annotations: annotations,
        }
    }

    fn alert_test(eval: PromDuration, alert: &str, expected: Vec<ExpectedAlert>) -> AlertTest {
        AlertTest {
            eval_time: eval.to_string(),
            alertname: alert.to_owned(),
            exp_alerts: expected,
        }
    }

    /// `ALERTS` of this job that are firing, as `promql_expr_test` expects them.
    fn firing(&self, alert: &str, severity: Option<&str>) -> ExpectedSample {
        let spec = self.spec(alert, severity);
        let mut labels = spec.labels();
        labels.insert("alertname".to_owned(), alert.to_owned());
        labels.insert("alertstate".to_owned(), "firing".to_owned());
        labels.insert("job".to_owned(), self.settings.job.clone());
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key}=\"{value}\""))
            .collect();
        ExpectedSample {
            labels: format!("ALERTS{{{}}}", labels.join(", ")),
            value: 1.0,
        }
    }
}

fn round_up(duration: PromDuration, unit: PromDuration) -> PromDuration {
    PromDuration::from_millis(duration.millis().div_ceil(unit.millis()) * unit.millis())
}

/// The promtool test files, as (file name, YAML).
pub fn test_files(
    preset: Naming,
    settings: &Settings,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let shortest = settings
        .page
        .iter()
        .chain(&settings.ticket)
        .map(|window| window.short)
        .chain([settings.rate_window])
        .min()
        .unwrap_or(settings.rate_window);
    // Burn-rate alerts have no `for`, so the SLO tests of constant traffic can evaluate as
    // rarely as the shortest long window; that keeps a 3-day test fast. Inputs stay fine-grained
    // for the short windows. (The slow group then sees one recorded sample per evaluation, which
    // is exact for constant traffic; anything that changes is tested in the days file.)
    let coarse = settings
        .page
        .iter()
        .chain(&settings.ticket)
        .map(|window| window.long)
        .min()
        .unwrap_or(shortest);
    let fine = PromDuration::from_millis((shortest.millis() / 5 / 1000).max(1) * 1000);
    let specs = alerts::all(preset, settings);
    let ctx = Ctx {
        preset,
        settings,
        fine,
        coarse,
        specs,
    };
    // Days tests evaluate once per rate window, unless that leaves fewer than four samples of a
    // reference window (compressed settings); then at the configured interval.
    let days_eval = if settings.rate_window.times(4) <= settings.anomaly.smoothing {
        settings.rate_window
    } else {
        settings.evaluation_interval
    };
    let days_ctx = Ctx {
        fine: PromDuration::from_millis(settings.rate_window.millis() / 5).min(days_eval),
        coarse: days_eval,
        specs: ctx.specs.clone(),
        ..ctx
    };
    let mut files = Vec::new();
    // The resource alerts' windows and `for` are fixed (kubernetes-mixin's), whatever the settings.
    let resources_eval: PromDuration = resources::EVALUATION.parse().map_err(anyhow::Error::msg)?;
    for (name, interval, tests) in [
        (SLO_TEST_FILE, coarse, short::slo_tests(&ctx)),
        (ALERTS_TEST_FILE, fine, short::alert_tests(&ctx)),
        (DAYS_TEST_FILE, days_eval, days::tests(&days_ctx)),
        (RESOURCES_TEST_FILE, resources_eval, resources::tests(&ctx)),
    ] {
        if tests.is_empty() {
            continue;
        }
        let file = TestFile {
            rule_files: vec![RULE_FILE.to_owned()],
            evaluation_interval: interval.to_string(),
            tests,
        };
        files.push((
            name,
            settings.header("#") + &serde_yaml_ng::to_string(&file)?,
        ));
    }
    Ok(files)
}
