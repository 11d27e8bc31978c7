//! promtool unit tests for the generated rules (`promtool test rules`). For every alert there is a
//! case where it fires and cases where it must stay silent, including its minimum-traffic guard;
//! recording rules are checked for exact values. Inputs are derived from the same settings as the
//! rules, so compressed windows get compressed tests.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Settings;
use super::alerts::{self, AlertSpec};
use super::naming::Preset;
use super::rules::names;
use super::units::{PromDuration, num};

/// File names under `prometheus/tests/`.
pub const SLO_TEST_FILE: &str = "slo.test.yml";
pub const ALERTS_TEST_FILE: &str = "alerts.test.yml";
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

#[derive(Debug, Serialize)]
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
}

/// Values of a counter that grows by `increment` per step in each `(steps, increment)` phase.
fn counter(phases: &[(u64, f64)]) -> String {
    let mut parts = vec!["0".to_owned()];
    let mut current = 0.0;
    for &(steps, increment) in phases.iter().filter(|(steps, _)| *steps > 0) {
        parts.push(format!(
            "{}+{}x{}",
            num(current + increment),
            num(increment),
            steps - 1
        ));
        current += increment * steps as f64;
    }
    parts.join(" ")
}

/// Values of a gauge that holds `value` for `steps + 1` samples.
fn gauge(value: f64, steps: u64) -> String {
    format!("{}+0x{steps}", num(value))
}

struct Ctx<'a> {
    preset: Preset,
    settings: &'a Settings,
    /// Input sample interval and evaluation interval of the fine-grained tests.
    fine: PromDuration,
    /// Evaluation interval of the SLO tests, whose windows are long (a multiple of `fine`).
    coarse: PromDuration,
    specs: Vec<AlertSpec>,
}

impl Ctx<'_> {
    fn steps(&self, duration: PromDuration) -> u64 {
        duration.millis().div_ceil(self.fine.millis())
    }

    fn traffic(&self, instance: &str, phases: &[Phase]) -> Vec<InputSeries> {
        let names = self.preset.names();
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
            let labels = format!(
                "job=\"{job}\", instance=\"{instance}\", {}=\"GET\", {}=\"/ep_one\", {}=\"{status}\"",
                names.method, names.route, names.status
            );
            let per_step = |value: &dyn Fn(&Phase) -> f64| -> String {
                let increments: Vec<(u64, f64)> = phases
                    .iter()
                    .map(|phase| {
                        (
                            phase.steps,
                            phase.rate * share_of(phase) * step * value(phase),
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

    fn group(&self, name: String, input_series: Vec<InputSeries>) -> TestGroup {
        TestGroup {
            name,
            interval: self.fine.to_string(),
            input_series,
            alert_rule_test: Vec::new(),
            promql_expr_test: Vec::new(),
        }
    }

    fn expect(&self, alert: &str, severity: Option<&str>, instance: Option<&str>) -> ExpectedAlert {
        let spec = self
            .specs
            .iter()
            .find(|spec| spec.name == alert && severity.is_none_or(|s| s == spec.severity))
            .unwrap_or_else(|| panic!("no alert {alert} with severity {severity:?}"));
        let mut labels = spec.labels();
        labels.insert("job".to_owned(), self.settings.job.clone());
        if let Some(instance) = instance {
            labels.insert("instance".to_owned(), instance.to_owned());
        }
        let annotations = spec
            .annotations(self.settings)
            .into_iter()
            .map(|(key, text)| {
                let text = text
                    .replace("{{ $labels.job }}", &self.settings.job)
                    .replace("{{ $labels.instance }}", instance.unwrap_or_default());
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
}

fn round_up(duration: PromDuration, unit: PromDuration) -> PromDuration {
    PromDuration::from_millis(duration.millis().div_ceil(unit.millis()) * unit.millis())
}

fn slo_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let s = ctx.settings;
    let job = &s.job;
    let route = ctx.preset.names().route;
    let mut groups = Vec::new();

    // Recording rules: two instances, exact binary fractions so the expected values are exact.
    let eval = round_up(s.rate_window.times(2), ctx.coarse);
    let steps = ctx.steps(eval) + 2;
    let step = ctx.fine.secs_f64();
    // Whole requests per step keep every counter an integer.
    let base = (1.0 / step).ceil().max(1.0);
    let mut input = ctx.traffic(
        "a",
        &[Phase {
            steps,
            rate: 4.0 * base,
            errors: 0.25,
            slow: 0.5,
            latency: 0.125,
        }],
    );
    input.extend(ctx.traffic(
        "b",
        &[Phase {
            steps,
            rate: 12.0 * base,
            errors: 0.25,
            slow: 0.5,
            latency: 0.125,
        }],
    ));
    let mut group = ctx.group(
        "recording rules aggregate instances into exact job-level values".to_owned(),
        input,
    );
    let w = s.rate_window;
    let job_labels = format!("{{job=\"{job}\"}}");
    let total = 16.0 * base;
    let mut expect = |expr: String, labels: String, value: f64| {
        group.promql_expr_test.push(ExprTest {
            expr,
            eval_time: eval.to_string(),
            exp_samples: vec![ExpectedSample { labels, value }],
        });
    };
    expect(
        names::requests(w),
        format!("{}{job_labels}", names::requests(w)),
        total,
    );
    expect(
        names::errors(w),
        format!("{}{job_labels}", names::errors(w)),
        total * 0.25,
    );
    expect(
        names::error_ratio(w),
        format!("{}{job_labels}", names::error_ratio(w)),
        0.25,
    );
    expect(
        names::slow_ratio(w),
        format!("{}{job_labels}", names::slow_ratio(w)),
        0.5,
    );
    expect(
        names::mean_latency(w),
        format!("{}{job_labels}", names::mean_latency(w)),
        0.125,
    );
    expect(
        names::route_requests(w),
        format!(
            "{}{{job=\"{job}\", {route}=\"/ep_one\"}}",
            names::route_requests(w)
        ),
        total,
    );
    expect(
        names::route_error_ratio(w),
        format!(
            "{}{{job=\"{job}\", {route}=\"/ep_one\"}}",
            names::route_error_ratio(w)
        ),
        0.25,
    );
    expect(
        format!("{}{{slo=\"availability\"}}", names::OBJECTIVE),
        format!(
            "{}{{job=\"{job}\", slo=\"availability\"}}",
            names::OBJECTIVE
        ),
        s.availability,
    );
    expect(
        format!("{}{{slo=\"availability\"}}", names::BUDGET_REMAINING),
        format!(
            "{}{{job=\"{job}\", slo=\"availability\"}}",
            names::BUDGET_REMAINING
        ),
        // The rule divides by the budget as printed, so compute with the same literal.
        1.0 - 0.25 / num(1.0 - s.availability).parse::<f64>().unwrap_or(f64::NAN),
    );
    groups.push(group);

    // Burn rates: constant traffic over the longest window, so every window sees the same ratio.
    let longest = s
        .page
        .iter()
        .chain(&s.ticket)
        .map(|w| w.long)
        .max()
        .unwrap_or(s.rate_window);
    let eval = round_up(longest.plus(ctx.coarse.times(2)), ctx.coarse);
    let steps = ctx.steps(eval) + 2;
    let rate = 10.0 * s.min_traffic;
    let max_factor = s
        .page
        .iter()
        .chain(&s.ticket)
        .map(|w| w.factor)
        .fold(0.0, f64::max);
    let min_factor = s
        .page
        .iter()
        .chain(&s.ticket)
        .map(|w| w.factor)
        .fold(f64::INFINITY, f64::min);
    let page_min = s
        .page
        .iter()
        .map(|w| w.factor)
        .fold(f64::INFINITY, f64::min);
    let ticket_max = s.ticket.iter().map(|w| w.factor).fold(0.0, f64::max);
    // Halfway between the steepest threshold and 100 %: every window of every tier is exceeded.
    let hot = |budget: f64| (1.0 + max_factor * budget) / 2.0;
    let both = |errors: f64, slow: f64, rate: f64| Phase {
        steps,
        rate,
        errors,
        slow,
        latency: 0.05,
    };
    let burn_alerts = [(alerts::ERROR_BUDGET_BURN), (alerts::LATENCY_BUDGET_BURN)];

    let mut group = ctx.group(
        "burn rate above every threshold pages and opens a ticket".to_owned(),
        ctx.traffic(
            "a",
            &[both(hot(s.error_budget()), hot(s.latency_budget()), rate)],
        ),
    );
    for alert in burn_alerts {
        group.alert_rule_test.push(Ctx::alert_test(
            eval,
            alert,
            vec![
                ctx.expect(alert, Some("critical"), None),
                ctx.expect(alert, Some("warning"), None),
            ],
        ));
    }
    groups.push(group);

    if page_min > ticket_max {
        let between = |budget: f64| budget * (page_min + ticket_max) / 2.0;
        let mut group = ctx.group(
            "burn rate between the ticket and paging thresholds only opens a ticket".to_owned(),
            ctx.traffic(
                "a",
                &[both(
                    between(s.error_budget()),
                    between(s.latency_budget()),
                    rate,
                )],
            ),
        );
        for alert in burn_alerts {
            group.alert_rule_test.push(Ctx::alert_test(
                eval,
                alert,
                vec![ctx.expect(alert, Some("warning"), None)],
            ));
        }
        groups.push(group);
    }

    let calm = |budget: f64| budget * min_factor / 2.0;
    let mut group = ctx.group(
        "burn rate within the budget stays silent".to_owned(),
        ctx.traffic(
            "a",
            &[both(calm(s.error_budget()), calm(s.latency_budget()), rate)],
        ),
    );
    for alert in burn_alerts {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);

    let mut group = ctx.group(
        "burn rate on too little traffic stays silent (minimum-traffic guard)".to_owned(),
        ctx.traffic(
            "a",
            &[both(
                hot(s.error_budget()),
                hot(s.latency_budget()),
                s.min_traffic / 2.0,
            )],
        ),
    );
    for alert in burn_alerts {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);
    groups
}

fn alert_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let s = ctx.settings;
    let mut groups = Vec::new();

    // Static thresholds.
    let eval = s.rate_window.plus(s.alert_for).plus(ctx.fine.times(2));
    let steps = ctx.steps(eval) + 2;
    let rate = 10.0 * s.min_traffic;
    // A consistent histogram: every request takes the mean time, so it is slow iff the mean is.
    let threshold = s.threshold_le();
    let breach = |errors: f64, latency: f64, rate: f64| Phase {
        steps,
        rate,
        errors,
        slow: if latency > threshold { 1.0 } else { 0.0 },
        latency,
    };
    let high_errors = (2.0 * s.error_ratio_threshold).min((1.0 + s.error_ratio_threshold) / 2.0);
    let high_latency = 2.0 * s.average_latency_threshold.secs_f64();
    let statics = [alerts::ERROR_RATIO_BREACH, alerts::LATENCY_AVERAGE_BREACH];
    let mut group = ctx.group(
        "error ratio and average latency above their thresholds".to_owned(),
        ctx.traffic("a", &[breach(high_errors, high_latency, rate)]),
    );
    for alert in statics {
        group.alert_rule_test.push(Ctx::alert_test(
            eval,
            alert,
            vec![ctx.expect(alert, None, None)],
        ));
    }
    groups.push(group);
    let mut group = ctx.group(
        "error ratio and average latency below their thresholds stay silent".to_owned(),
        ctx.traffic(
            "a",
            &[breach(
                s.error_ratio_threshold / 2.0,
                high_latency / 4.0,
                rate,
            )],
        ),
    );
    for alert in statics {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);
    let mut group = ctx.group(
        "thresholds breached on too little traffic stay silent (minimum-traffic guard)".to_owned(),
        ctx.traffic(
            "a",
            &[breach(high_errors, high_latency, s.min_traffic / 2.0)],
        ),
    );
    for alert in statics {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);

    // Anomalies: a steady history, then a change that lasts the rate window plus the `for` time.
    let span = s.anomaly_for.plus(s.rate_window);
    let history = ctx.steps(span.times(20));
    let change = ctx.steps(span) + 2;
    let eval = ctx.fine.times(history + change);
    let anomalies = [
        alerts::REQUEST_RATE_ANOMALY,
        alerts::LATENCY_AVERAGE_ANOMALY,
    ];
    let base = 20.0 * s.min_traffic;
    let latency = s.average_latency_threshold.secs_f64() / 10.0;
    let phase = |steps: u64, rate: f64, latency: f64| Phase {
        steps,
        rate,
        errors: 0.0,
        slow: if latency > threshold { 1.0 } else { 0.0 },
        latency,
    };
    let mut group = ctx.group(
        "request rate and latency jump tenfold".to_owned(),
        ctx.traffic(
            "a",
            &[
                phase(history, base, latency),
                phase(change, base * 10.0, latency * 10.0),
            ],
        ),
    );
    for alert in anomalies {
        group.alert_rule_test.push(Ctx::alert_test(
            eval,
            alert,
            vec![ctx.expect(alert, None, None)],
        ));
    }
    groups.push(group);
    let mut group = ctx.group(
        "request rate drops tenfold, latency unchanged".to_owned(),
        ctx.traffic(
            "a",
            &[
                phase(history, base, latency),
                phase(change, base / 10.0, latency),
            ],
        ),
    );
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::REQUEST_RATE_ANOMALY,
        vec![ctx.expect(alerts::REQUEST_RATE_ANOMALY, None, None)],
    ));
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::LATENCY_AVERAGE_ANOMALY,
        Vec::new(),
    ));
    groups.push(group);
    let mut group = ctx.group(
        "a change inside the band stays silent".to_owned(),
        ctx.traffic(
            "a",
            &[
                phase(history, base, latency),
                phase(change, base * 1.05, latency * 1.05),
            ],
        ),
    );
    for alert in anomalies {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);
    let low = s.min_traffic / 4.0;
    let mut group = ctx.group(
        "anomalies on too little traffic stay silent (minimum-traffic guard)".to_owned(),
        ctx.traffic(
            "a",
            &[
                phase(history, low, latency),
                phase(change, low * 3.0, latency * 10.0),
            ],
        ),
    );
    for alert in anomalies {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);

    // Targets and absence.
    let eval = s.alert_for.plus(ctx.fine.times(2));
    let steps = ctx.steps(eval) + 2;
    let healthy = ctx.traffic(
        "a",
        &[Phase {
            steps,
            rate: 1.0,
            errors: 0.0,
            slow: 0.0,
            latency: 0.01,
        }],
    );
    let mut input = vec![ctx.up("a", 0.0, steps), ctx.up("b", 1.0, steps)];
    input.extend(healthy.iter().map(|series| InputSeries {
        series: series.series.clone(),
        values: series.values.clone(),
    }));
    let mut group = ctx.group("one of two instances down".to_owned(), input);
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::TARGET_DOWN,
        vec![ctx.expect(alerts::TARGET_DOWN, None, Some("a"))],
    ));
    group
        .alert_rule_test
        .push(Ctx::alert_test(eval, alerts::ALL_TARGETS_DOWN, Vec::new()));
    group
        .alert_rule_test
        .push(Ctx::alert_test(eval, alerts::METRICS_ABSENT, Vec::new()));
    groups.push(group);
    let mut group = ctx.group(
        "every instance down".to_owned(),
        vec![ctx.up("a", 0.0, steps), ctx.up("b", 0.0, steps)],
    );
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::TARGET_DOWN,
        vec![
            ctx.expect(alerts::TARGET_DOWN, None, Some("a")),
            ctx.expect(alerts::TARGET_DOWN, None, Some("b")),
        ],
    ));
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::ALL_TARGETS_DOWN,
        vec![ctx.expect(alerts::ALL_TARGETS_DOWN, None, None)],
    ));
    groups.push(group);
    let mut input = vec![ctx.up("a", 1.0, steps), ctx.up("b", 1.0, steps)];
    input.extend(healthy);
    let mut group = ctx.group("every instance up with request metrics".to_owned(), input);
    for alert in [
        alerts::TARGET_DOWN,
        alerts::ALL_TARGETS_DOWN,
        alerts::METRICS_ABSENT,
    ] {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);
    let mut group = ctx.group(
        "targets up but no request metrics".to_owned(),
        vec![ctx.up("a", 1.0, steps)],
    );
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::METRICS_ABSENT,
        vec![ctx.expect(alerts::METRICS_ABSENT, None, None)],
    ));
    groups.push(group);
    let mut group = ctx.group("no target at all".to_owned(), Vec::new());
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::METRICS_ABSENT,
        vec![ctx.expect(alerts::METRICS_ABSENT, None, None)],
    ));
    groups.push(group);
    groups
}

/// The two promtool test files, as (file name, YAML).
pub fn test_files(
    preset: Preset,
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
    // Burn-rate alerts have no `for`, so the SLO tests can evaluate as rarely as the shortest
    // long window; that keeps a 3-day test fast. Inputs stay fine-grained for the short windows.
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
    let mut files = Vec::new();
    for (name, interval, tests) in [
        (SLO_TEST_FILE, coarse, slo_tests(&ctx)),
        (ALERTS_TEST_FILE, fine, alert_tests(&ctx)),
    ] {
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
