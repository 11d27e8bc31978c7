//! Tests over minutes to days of constant traffic: exact recorded values, every burn-rate tier,
//! the static thresholds, target health, and the minimum-events guard of each.

use super::super::rules::names;
use super::super::units::{PromDuration, num};
use super::super::{alerts, dashboard};
use super::resources::{ROUND_TO, rounded};
use super::{Ctx, ExpectedSample, ExprTest, InputSeries, Phase, TestGroup, round_up};

pub(super) fn slo_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let mut groups = vec![recording_test(ctx), dashboard_slo_test(ctx)];
    groups.extend(clusters_test(ctx));
    groups.extend(burn_tests(ctx));
    groups
}

/// Recording rules: two instances, exact binary fractions so the expected values are exact.
fn recording_test(ctx: &Ctx) -> TestGroup {
    let s = ctx.settings;
    let job = &s.job;
    let route = s.names(ctx.preset).route;
    let (input, eval, total) = steady_traffic(ctx);
    let mut group = ctx.group(
        "recording rules aggregate instances into exact job-level values",
        input,
    );
    let w = s.rate_window;
    let job_labels = format!("{{job=\"{job}\"}}");
    let mut expect = |expr: String, labels: String, value: f64| {
        group.promql_expr_test.push(ExprTest {
            expr,
            eval_time: eval.to_string(),
            exp_samples: vec![ExpectedSample { labels, value }],
        });
    };
    for (series, value) in [
        (names::requests(w), total),
        (names::errors(w), total * 0.25),
        (names::error_ratio(w), 0.25),
        (names::slow_ratio(w), 0.5),
        (names::mean_latency(w), 0.125),
    ] {
        expect(series.clone(), format!("{series}{job_labels}"), value);
    }
    for (series, value) in [
        (names::route_requests(w), total),
        (names::route_error_ratio(w), 0.25),
    ] {
        expect(
            series.clone(),
            format!("{series}{{job=\"{job}\", {route}=\"/ep_one\"}}"),
            value,
        );
    }
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
    group
}

/// The recording test's traffic and evaluation time: two instances on `/ep_one`, a quarter of
/// the requests failing, half of them slower than the threshold.
fn steady_traffic(ctx: &Ctx) -> (Vec<InputSeries>, PromDuration, f64) {
    let (eval, steps, base) = steady_timing(ctx);
    let mut input = ctx.traffic("a", &[Phase::steady(steps, 4.0 * base, 0.25, 0.5, 0.125)]);
    input.extend(ctx.traffic("b", &[Phase::steady(steps, 12.0 * base, 0.25, 0.5, 0.125)]));
    (input, eval, 16.0 * base)
}

/// The evaluation time, input steps and unit rate (requests per second) of the tests of steady
/// traffic.
fn steady_timing(ctx: &Ctx) -> (PromDuration, u64, f64) {
    let s = ctx.settings;
    // One evaluation more than the windows need: promtool may evaluate the groups of one tick in
    // any order, so the slow group can see the fast group's samples one evaluation late.
    let eval = round_up(s.rate_window.times(2), ctx.coarse).plus(ctx.coarse);
    let steps = ctx.steps(eval) + 2;
    // Whole requests per step keep every counter an integer.
    let base = (1.0 / ctx.fine.secs_f64()).ceil().max(1.0);
    (eval, steps, base)
}

/// One cluster's steady traffic in [`clusters_test`].
struct ClusterTraffic {
    cluster: &'static str,
    /// Requests per second, in units of [`steady_timing`]'s base rate.
    rate: f64,
    errors: f64,
    slow: f64,
    latency: f64,
}

/// The two clusters of [`clusters_test`]: different rates and shares, so that merging them would
/// show.
const CLUSTERS: [ClusterTraffic; 2] = [
    ClusterTraffic {
        cluster: "a",
        rate: 4.0,
        errors: 0.25,
        slow: 0.5,
        latency: 0.125,
    },
    ClusterTraffic {
        cluster: "b",
        rate: 12.0,
        errors: 0.5,
        slow: 0.25,
        latency: 0.25,
    },
];

/// A central store's view (remote write, Thanos, Mimir): two clusters' series, labelled by the
/// `cluster` of each Prometheus's `external_labels`, with the same instance name in both. The
/// recorded series stay per cluster, with each cluster's own values; their sum over clusters
/// is the global rate; and the dashboard's SLO row and route table show each cluster alone and
/// both together. Only when the rules keep `cluster` (`--aggregation-labels`).
fn clusters_test(ctx: &Ctx) -> Option<TestGroup> {
    let s = ctx.settings;
    if !s.aggregation_labels.iter().any(|label| label == "cluster") {
        return None;
    }
    let job = &s.job;
    let route = s.names(ctx.preset).route;
    let (eval, steps, base) = steady_timing(ctx);
    let input = CLUSTERS
        .iter()
        .flat_map(|c| {
            let phase = Phase::steady(steps, c.rate * base, c.errors, c.slow, c.latency);
            ctx.traffic_in(Some(c.cluster), "api:5000", &[phase])
        })
        .collect();
    let mut group = ctx.group(
        "recording rules keep clusters apart on a central store, and the dashboard shows each and all",
        input,
    );
    let w = s.rate_window;
    // The rules divide by the budget as printed, so compute with the same literal.
    let budget = num(s.error_budget()).parse::<f64>().unwrap_or(f64::NAN);
    let mut expect = |expr: String, exp_samples: Vec<ExpectedSample>| {
        group.promql_expr_test.push(ExprTest {
            expr,
            eval_time: eval.to_string(),
            exp_samples,
        });
    };
    // One sample per cluster of `series`, with `extra` labels and the cluster's `value`.
    let per_cluster = |series: &str, extra: &str, value: fn(&ClusterTraffic) -> f64, scale: f64| {
        CLUSTERS
            .iter()
            .map(|c| ExpectedSample {
                labels: format!(
                    "{series}{{cluster=\"{}\", job=\"{job}\"{extra}}}",
                    c.cluster
                ),
                value: value(c) * scale,
            })
            .collect::<Vec<_>>()
    };
    let requests: fn(&ClusterTraffic) -> f64 = |c| c.rate;
    for (series, value, scale) in [
        (names::requests(w), requests, base),
        (
            names::errors(w),
            |c: &ClusterTraffic| c.rate * c.errors,
            base,
        ),
        (names::error_ratio(w), |c: &ClusterTraffic| c.errors, 1.0),
        (names::slow_ratio(w), |c: &ClusterTraffic| c.slow, 1.0),
        (names::mean_latency(w), |c: &ClusterTraffic| c.latency, 1.0),
    ] {
        expect(series.clone(), per_cluster(&series, "", value, scale));
    }
    let route_requests = names::route_requests(w);
    let on_route = format!(", {route}=\"/ep_one\"");
    expect(
        route_requests.clone(),
        per_cluster(&route_requests, &on_route, requests, base),
    );
    let mut remaining = per_cluster(
        names::BUDGET_REMAINING,
        ", slo=\"availability\"",
        |c| c.errors,
        1.0,
    );
    for sample in &mut remaining {
        sample.value = 1.0 - sample.value / budget;
    }
    expect(
        format!("{}{{slo=\"availability\"}}", names::BUDGET_REMAINING),
        remaining,
    );
    // The global rate: the clusters' recorded rates summed.
    let total: f64 = CLUSTERS.iter().map(|c| c.rate * base).sum();
    expect(
        format!("sum without (cluster) ({})", names::requests(w)),
        vec![ExpectedSample {
            labels: format!("{{job=\"{job}\"}}"),
            value: total,
        }],
    );
    // The dashboard with one cluster chosen, then "All".
    let board = dashboard::api_overview(ctx.preset, s);
    let expr_of = |title: &str, ref_id: &str, cluster: &str| -> String {
        let panels = board["panels"].as_array().into_iter().flatten();
        let expr = panels
            .filter(|panel| panel["title"] == title)
            .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
            .find(|target| target["refId"] == ref_id)
            .and_then(|target| target["expr"].as_str())
            .unwrap_or_else(|| panic!("no query {ref_id} of dashboard panel {title:?}"));
        expr.replace("$__range", &eval.to_string())
            .replace("$cluster", cluster)
            .replace("$job", job)
            .replace("$route", ".+")
    };
    let all_requests: f64 = CLUSTERS.iter().map(|c| c.rate).sum();
    let all_errors: f64 = CLUSTERS.iter().map(|c| c.rate * c.errors).sum();
    let choices = CLUSTERS
        .iter()
        .map(|c| (c.cluster, 1.0 - c.errors, c.rate * base))
        .chain([(
            dashboard::ALL_CLUSTERS,
            1.0 - all_errors / all_requests,
            total,
        )]);
    for (cluster, availability, requests) in choices {
        expect(
            format!(
                "round(\n{}\n, {ROUND_TO})",
                expr_of("Availability (selected range)", "A", cluster)
            ),
            vec![ExpectedSample {
                labels: "{}".to_owned(),
                value: rounded(availability),
            }],
        );
        expect(
            format!("round(\n{}\n, {ROUND_TO})", expr_of("Routes", "A", cluster)),
            vec![ExpectedSample {
                labels: format!("{{{route}=\"/ep_one\"}}"),
                value: rounded(requests),
            }],
        );
    }
    Some(group)
}

/// What the overview's SLO row and route table show on [`steady_traffic`], computed by hand:
/// the expected samples of the target `ref_id` of the panel titled `title`.
fn dashboard_expected(ctx: &Ctx, title: &str, ref_id: &str, total: f64) -> Vec<ExpectedSample> {
    let s = ctx.settings;
    let route = s.names(ctx.preset).route;
    // Queries divide by the budgets as printed, so compute with the same literals.
    let literal = |value: f64| num(value).parse::<f64>().unwrap_or(f64::NAN);
    let (error_budget, latency_budget) = (literal(s.error_budget()), literal(s.latency_budget()));
    let one = |value: f64| {
        vec![ExpectedSample {
            labels: "{}".to_owned(),
            value: rounded(value),
        }]
    };
    let on_route = |value: f64| {
        vec![ExpectedSample {
            labels: format!("{{{route}=\"/ep_one\"}}"),
            value: rounded(value),
        }]
    };
    match (title, ref_id) {
        ("Availability (selected range)", _) => one(0.75),
        (title, _) if title.starts_with("Requests under") => one(0.5),
        (title, _) if title.starts_with("Error budget remaining") => one(1.0 - 0.25 / error_budget),
        (title, _) if title.starts_with("Latency budget remaining") => {
            one(1.0 - 0.5 / latency_budget)
        }
        ("Error budget burn rate", _) => one(0.25 / error_budget),
        ("Latency budget burn rate", _) => one(0.5 / latency_budget),
        ("Objectives", _) => vec![
            ExpectedSample {
                labels: "{slo=\"availability\"}".to_owned(),
                value: rounded(s.availability),
            },
            ExpectedSample {
                labels: "{slo=\"latency\"}".to_owned(),
                value: rounded(s.latency_objective),
            },
        ],
        ("Routes", "A") => on_route(total),
        ("Routes", "B") => on_route(0.25),
        // Half the requests are above the threshold bucket, so p99 is that bucket's bound
        // (histogram_quantile's answer for the +Inf bucket).
        ("Routes", "C") => on_route(s.threshold_le()),
        _ => panic!("no expected values for dashboard panel {title:?} ({ref_id})"),
    }
}

/// The overview's SLO row and route table on recorded series: each query, with the variables
/// as Grafana sends them for this job and the whole test as the range, gives the hand-computed
/// value.
fn dashboard_slo_test(ctx: &Ctx) -> TestGroup {
    let (input, eval, total) = steady_traffic(ctx);
    let mut group = ctx.group(
        "dashboard: the SLO row and the route table read exact values from recorded series",
        input,
    );
    let board = dashboard::api_overview(ctx.preset, ctx.settings);
    let mut in_slo_row = false;
    for panel in board["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        if panel["type"] == "row" {
            in_slo_row = title == "SLO";
            continue;
        }
        if !(in_slo_row || title == "Routes") {
            continue;
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let ref_id = target["refId"].as_str().unwrap_or_default();
            // With --native-histograms the p99 column's rule reads the native series, which
            // promtool 2.42's test input cannot express; the classic case checks the column.
            if ctx.settings.native_histograms && (title, ref_id) == ("Routes", "C") {
                continue;
            }
            let expr = target["expr"]
                .as_str()
                .unwrap_or_default()
                .replace("$__range", &eval.to_string())
                .replace("$job", &ctx.settings.job)
                .replace("$cluster", dashboard::ALL_CLUSTERS)
                .replace("$route", ".+");
            group.promql_expr_test.push(ExprTest {
                expr: format!("round(\n{expr}\n, {ROUND_TO})"),
                eval_time: eval.to_string(),
                exp_samples: dashboard_expected(ctx, title, ref_id, total),
            });
        }
    }
    // Five stats, a burn rate per SLO and tier (at least one window each), three columns.
    assert!(
        group.promql_expr_test.len() >= 10,
        "too few SLO panel queries: {}",
        group.promql_expr_test.len()
    );
    group
}

/// Burn rates: constant traffic over the longest window, so every window sees the same ratio.
fn burn_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let case = BurnCase::new(ctx);
    let mut groups = vec![burn_above_every_threshold(&case)];
    groups.extend(burn_between_ticket_and_page(&case));
    groups.push(burn_within_budget(&case));
    groups.extend(burn_in_one_cluster(&case));
    groups
}

/// What the burn-rate cases share: one evaluation time and traffic shape, the tiers' factors.
struct BurnCase<'a> {
    ctx: &'a Ctx<'a>,
    eval: PromDuration,
    steps: u64,
    rate: f64,
    max_factor: f64,
    min_factor: f64,
    page_min: f64,
    ticket_max: f64,
}

impl<'a> BurnCase<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        let s = ctx.settings;
        let tiers = || s.page.iter().chain(&s.ticket);
        let longest = tiers().map(|w| w.long).max().unwrap_or(s.rate_window);
        let eval = round_up(longest.plus(ctx.coarse.times(2)), ctx.coarse);
        // Plenty of events: a hundred times the minimum in the shortest long window.
        let shortest_long = tiers().map(|w| w.long).min().unwrap_or(s.rate_window);
        Self {
            ctx,
            eval,
            steps: ctx.steps(eval) + 2,
            rate: 100.0 * f64::from(s.min_events) / shortest_long.secs_f64(),
            max_factor: tiers().map(|w| w.factor).fold(0.0, f64::max),
            min_factor: tiers().map(|w| w.factor).fold(f64::INFINITY, f64::min),
            page_min: s
                .page
                .iter()
                .map(|w| w.factor)
                .fold(f64::INFINITY, f64::min),
            ticket_max: s.ticket.iter().map(|w| w.factor).fold(0.0, f64::max),
        }
    }

    /// The availability and latency burn alerts with their budgets.
    fn alerts(&self) -> [(&'static str, f64); 2] {
        let s = self.ctx.settings;
        [
            (alerts::ERROR_BUDGET_BURN, s.error_budget()),
            (alerts::LATENCY_BUDGET_BURN, s.latency_budget()),
        ]
    }

    /// Traffic of instance `a` with `errors` failed and `slow` slow shares.
    fn traffic(&self, errors: f64, slow: f64) -> Vec<InputSeries> {
        let phase = Phase::steady(self.steps, self.rate, errors, slow, 0.05);
        self.ctx.traffic("a", &[phase])
    }

    /// The traffic where `share(budget)` of requests fail and are slow.
    fn burning(&self, share: impl Fn(f64) -> f64) -> Vec<InputSeries> {
        let s = self.ctx.settings;
        self.traffic(share(s.error_budget()), share(s.latency_budget()))
    }
}

fn burn_above_every_threshold(case: &BurnCase) -> TestGroup {
    let ctx = case.ctx;
    // Halfway between the steepest threshold and 100 %: every window of every tier is exceeded.
    let hot = |budget: f64| (1.0 + case.max_factor * budget) / 2.0;
    let mut group = ctx.group(
        "burn rate above every threshold pages and opens a ticket",
        case.burning(hot),
    );
    for (alert, budget) in case.alerts() {
        group.alert_rule_test.push(Ctx::alert_test(
            case.eval,
            alert,
            vec![
                ctx.expect(alert, Some("critical"), None, Some(hot(budget))),
                ctx.expect(alert, Some("warning"), None, Some(hot(budget))),
            ],
        ));
    }
    group
}

/// Only when the tiers' factors leave a gap between them.
fn burn_between_ticket_and_page(case: &BurnCase) -> Option<TestGroup> {
    let ctx = case.ctx;
    if case.page_min <= case.ticket_max {
        return None;
    }
    let between = |budget: f64| budget * (case.page_min + case.ticket_max) / 2.0;
    let mut group = ctx.group(
        "burn rate between the ticket and paging thresholds only opens a ticket",
        case.burning(between),
    );
    for (alert, budget) in case.alerts() {
        group.alert_rule_test.push(Ctx::alert_test(
            case.eval,
            alert,
            vec![ctx.expect(alert, Some("warning"), None, Some(between(budget)))],
        ));
    }
    Some(group)
}

/// On a central store, a cluster burning its budget pages for that cluster alone, while the
/// other (with the same instance name) stays within budget. Only when the rules keep `cluster`.
fn burn_in_one_cluster(case: &BurnCase) -> Option<TestGroup> {
    let ctx = case.ctx;
    let s = ctx.settings;
    if !s.aggregation_labels.iter().any(|label| label == "cluster") {
        return None;
    }
    let hot = |budget: f64| (1.0 + case.max_factor * budget) / 2.0;
    let calm = |budget: f64| budget * case.min_factor / 2.0;
    let cluster = |name: &str, share: &dyn Fn(f64) -> f64| {
        let phase = Phase::steady(
            case.steps,
            case.rate,
            share(s.error_budget()),
            share(s.latency_budget()),
            0.05,
        );
        ctx.traffic_in(Some(name), "api:5000", &[phase])
    };
    let mut input = cluster("hot", &hot);
    input.extend(cluster("calm", &calm));
    let mut group = ctx.group(
        "on a central store, the cluster burning its budget pages alone",
        input,
    );
    for (alert, budget) in case.alerts() {
        let expected = ["critical", "warning"]
            .into_iter()
            .map(|severity| {
                let mut expected = ctx.expect(alert, Some(severity), None, Some(hot(budget)));
                expected
                    .exp_labels
                    .insert("cluster".to_owned(), "hot".to_owned());
                expected
            })
            .collect();
        group
            .alert_rule_test
            .push(Ctx::alert_test(case.eval, alert, expected));
    }
    Some(group)
}

fn burn_within_budget(case: &BurnCase) -> TestGroup {
    let calm = |budget: f64| budget * case.min_factor / 2.0;
    let mut group = case.ctx.group(
        "burn rate within the budget stays silent",
        case.burning(calm),
    );
    for (alert, _) in case.alerts() {
        group
            .alert_rule_test
            .push(Ctx::alert_test(case.eval, alert, Vec::new()));
    }
    group
}

pub(super) fn alert_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let mut groups = threshold_tests(ctx);
    groups.extend(target_tests(ctx));
    groups
}

/// Static thresholds.
fn threshold_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let case = ThresholdCase::new(ctx);
    vec![
        thresholds_exceeded(&case),
        thresholds_kept(&case),
        thresholds_exceeded_by_too_few_requests(&case),
    ]
}

/// What the static-threshold cases share.
struct ThresholdCase<'a> {
    ctx: &'a Ctx<'a>,
    eval: PromDuration,
    steps: u64,
    /// `--min-events` per rate window, per second.
    events_per_second: f64,
    high_errors: f64,
    high_latency: f64,
}

impl<'a> ThresholdCase<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        let s = ctx.settings;
        let eval = s.rate_window.plus(s.alert_for).plus(ctx.fine.times(2));
        Self {
            ctx,
            eval,
            steps: ctx.steps(eval) + 2,
            events_per_second: f64::from(s.min_events) / s.rate_window.secs_f64(),
            high_errors: (2.0 * s.error_ratio_threshold).min((1.0 + s.error_ratio_threshold) / 2.0),
            high_latency: 2.0 * s.average_latency_threshold.secs_f64(),
        }
    }

    /// The static alerts with the value that breaches each.
    fn alerts(&self) -> [(&'static str, f64); 2] {
        [
            (alerts::ERROR_RATIO_BREACH, self.high_errors),
            (alerts::LATENCY_AVERAGE_BREACH, self.high_latency),
        ]
    }

    /// Traffic of instance `a`. A consistent histogram: every request takes the mean time, so
    /// it is slow iff the mean is.
    fn traffic(&self, errors: f64, latency: f64, rate: f64) -> Vec<InputSeries> {
        let slow = if latency > self.ctx.settings.threshold_le() {
            1.0
        } else {
            0.0
        };
        let phase = Phase::steady(self.steps, rate, errors, slow, latency);
        self.ctx.traffic("a", &[phase])
    }

    /// A group where no static alert fires.
    fn silent(&self, name: &str, input: Vec<InputSeries>) -> TestGroup {
        let mut group = self.ctx.group(name, input);
        for (alert, _) in self.alerts() {
            group
                .alert_rule_test
                .push(Ctx::alert_test(self.eval, alert, Vec::new()));
        }
        group
    }
}

fn thresholds_exceeded(case: &ThresholdCase) -> TestGroup {
    let ctx = case.ctx;
    let mut group = ctx.group(
        "error ratio and average latency above their thresholds",
        case.traffic(
            case.high_errors,
            case.high_latency,
            100.0 * case.events_per_second,
        ),
    );
    for (alert, value) in case.alerts() {
        group.alert_rule_test.push(Ctx::alert_test(
            case.eval,
            alert,
            vec![ctx.expect(alert, None, None, Some(value))],
        ));
    }
    group
}

fn thresholds_kept(case: &ThresholdCase) -> TestGroup {
    case.silent(
        "error ratio and average latency below their thresholds stay silent",
        case.traffic(
            case.ctx.settings.error_ratio_threshold / 2.0,
            case.high_latency / 4.0,
            100.0 * case.events_per_second,
        ),
    )
}

fn thresholds_exceeded_by_too_few_requests(case: &ThresholdCase) -> TestGroup {
    case.silent(
        "thresholds breached by fewer requests than --min-events stay silent",
        case.traffic(
            case.high_errors,
            case.high_latency,
            case.events_per_second / 2.0,
        ),
    )
}

/// Targets and absence: what fires for which instances up, down or missing.
fn target_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let case = TargetCase::new(ctx);
    vec![
        one_of_two_instances_down(&case),
        every_instance_down(&case),
        every_instance_up(&case),
        targets_up_without_request_metrics(&case),
        no_target_at_all(&case),
    ]
}

/// What the target cases share: when they are evaluated, and healthy traffic of instance `a`.
struct TargetCase<'a> {
    ctx: &'a Ctx<'a>,
    eval: PromDuration,
    steps: u64,
    healthy: Vec<InputSeries>,
}

impl<'a> TargetCase<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        let eval = ctx.settings.alert_for.plus(ctx.fine.times(2));
        let steps = ctx.steps(eval) + 2;
        Self {
            ctx,
            eval,
            steps,
            healthy: ctx.traffic("a", &[Phase::steady(steps, 1.0, 0.0, 0.0, 0.01)]),
        }
    }

    /// `up` of instance `name`.
    fn up(&self, name: &str, value: f64) -> InputSeries {
        self.ctx.up(name, value, self.steps)
    }

    fn with_traffic(&self, ups: Vec<InputSeries>) -> Vec<InputSeries> {
        ups.into_iter()
            .chain(self.healthy.iter().cloned())
            .collect()
    }

    /// Expects `alert` to fire once per instance in `instances` (`None`: once, for the job).
    fn fires(&self, alert: &str, instances: &[Option<&str>]) -> super::AlertTest {
        let expected = instances
            .iter()
            .map(|instance| self.ctx.expect(alert, None, *instance, None))
            .collect();
        Ctx::alert_test(self.eval, alert, expected)
    }

    fn quiet(&self, alert: &str) -> super::AlertTest {
        Ctx::alert_test(self.eval, alert, Vec::new())
    }
}

fn one_of_two_instances_down(case: &TargetCase) -> TestGroup {
    let mut group = case.ctx.group(
        "one of two instances down",
        case.with_traffic(vec![case.up("a", 0.0), case.up("b", 1.0)]),
    );
    group
        .alert_rule_test
        .push(case.fires(alerts::TARGET_DOWN, &[Some("a")]));
    for quiet in [alerts::ALL_TARGETS_DOWN, alerts::METRICS_ABSENT] {
        group.alert_rule_test.push(case.quiet(quiet));
    }
    group
}

fn every_instance_down(case: &TargetCase) -> TestGroup {
    let mut group = case.ctx.group(
        "every instance down",
        vec![case.up("a", 0.0), case.up("b", 0.0)],
    );
    group
        .alert_rule_test
        .push(case.fires(alerts::TARGET_DOWN, &[Some("a"), Some("b")]));
    group
        .alert_rule_test
        .push(case.fires(alerts::ALL_TARGETS_DOWN, &[None]));
    group
}

fn every_instance_up(case: &TargetCase) -> TestGroup {
    let mut group = case.ctx.group(
        "every instance up with request metrics",
        case.with_traffic(vec![case.up("a", 1.0), case.up("b", 1.0)]),
    );
    for alert in [
        alerts::TARGET_DOWN,
        alerts::ALL_TARGETS_DOWN,
        alerts::METRICS_ABSENT,
    ] {
        group.alert_rule_test.push(case.quiet(alert));
    }
    group
}

fn targets_up_without_request_metrics(case: &TargetCase) -> TestGroup {
    let mut group = case
        .ctx
        .group("targets up but no request metrics", vec![case.up("a", 1.0)]);
    group
        .alert_rule_test
        .push(case.fires(alerts::METRICS_ABSENT, &[None]));
    group
}

fn no_target_at_all(case: &TargetCase) -> TestGroup {
    let mut group = case.ctx.group("no target at all", Vec::new());
    group
        .alert_rule_test
        .push(case.fires(alerts::METRICS_ABSENT, &[None]));
    group
}
