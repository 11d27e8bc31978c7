//! Tests over minutes to days of constant traffic: exact recorded values, every burn-rate tier,
//! the static thresholds, target health, and the minimum-events guard of each.

use super::super::alerts;
use super::super::rules::names;
use super::super::units::num;
use super::{Ctx, ExpectedSample, ExprTest, InputSeries, Phase, TestGroup, round_up};

pub(super) fn slo_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let mut groups = vec![recording_test(ctx)];
    groups.extend(burn_tests(ctx));
    groups
}

/// Recording rules: two instances, exact binary fractions so the expected values are exact.
fn recording_test(ctx: &Ctx) -> TestGroup {
    let s = ctx.settings;
    let job = &s.job;
    let route = s.names(ctx.preset).route;
    // One evaluation more than the windows need: promtool may evaluate the groups of one tick in
    // any order, so the slow group can see the fast group's samples one evaluation late.
    let eval = round_up(s.rate_window.times(2), ctx.coarse).plus(ctx.coarse);
    let steps = ctx.steps(eval) + 2;
    let step = ctx.fine.secs_f64();
    // Whole requests per step keep every counter an integer.
    let base = (1.0 / step).ceil().max(1.0);
    let mut input = ctx.traffic("a", &[Phase::steady(steps, 4.0 * base, 0.25, 0.5, 0.125)]);
    input.extend(ctx.traffic("b", &[Phase::steady(steps, 12.0 * base, 0.25, 0.5, 0.125)]));
    let mut group = ctx.group(
        "recording rules aggregate instances into exact job-level values",
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

/// Burn rates: constant traffic over the longest window, so every window sees the same ratio.
fn burn_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let s = ctx.settings;
    let tiers = || s.page.iter().chain(&s.ticket);
    let longest = tiers().map(|w| w.long).max().unwrap_or(s.rate_window);
    let eval = round_up(longest.plus(ctx.coarse.times(2)), ctx.coarse);
    let steps = ctx.steps(eval) + 2;
    // Plenty of events: a hundred times the minimum in the shortest long window.
    let shortest_long = tiers().map(|w| w.long).min().unwrap_or(s.rate_window);
    let rate = 100.0 * f64::from(s.min_events) / shortest_long.secs_f64();
    let max_factor = tiers().map(|w| w.factor).fold(0.0, f64::max);
    let min_factor = tiers().map(|w| w.factor).fold(f64::INFINITY, f64::min);
    let page_min = s
        .page
        .iter()
        .map(|w| w.factor)
        .fold(f64::INFINITY, f64::min);
    let ticket_max = s.ticket.iter().map(|w| w.factor).fold(0.0, f64::max);
    // Halfway between the steepest threshold and 100 %: every window of every tier is exceeded.
    let hot = |budget: f64| (1.0 + max_factor * budget) / 2.0;
    let both = |errors: f64, slow: f64| Phase::steady(steps, rate, errors, slow, 0.05);
    let burn_alerts = [
        (alerts::ERROR_BUDGET_BURN, s.error_budget()),
        (alerts::LATENCY_BUDGET_BURN, s.latency_budget()),
    ];
    let mut groups = Vec::new();

    let mut group = ctx.group(
        "burn rate above every threshold pages and opens a ticket",
        ctx.traffic("a", &[both(hot(s.error_budget()), hot(s.latency_budget()))]),
    );
    for (alert, budget) in burn_alerts {
        group.alert_rule_test.push(Ctx::alert_test(
            eval,
            alert,
            vec![
                ctx.expect(alert, Some("critical"), None, Some(hot(budget))),
                ctx.expect(alert, Some("warning"), None, Some(hot(budget))),
            ],
        ));
    }
    groups.push(group);

    if page_min > ticket_max {
        let between = |budget: f64| budget * (page_min + ticket_max) / 2.0;
        let mut group = ctx.group(
            "burn rate between the ticket and paging thresholds only opens a ticket",
            ctx.traffic(
                "a",
                &[both(between(s.error_budget()), between(s.latency_budget()))],
            ),
        );
        for (alert, budget) in burn_alerts {
            group.alert_rule_test.push(Ctx::alert_test(
                eval,
                alert,
                vec![ctx.expect(alert, Some("warning"), None, Some(between(budget)))],
            ));
        }
        groups.push(group);
    }

    let calm = |budget: f64| budget * min_factor / 2.0;
    let mut group = ctx.group(
        "burn rate within the budget stays silent",
        ctx.traffic(
            "a",
            &[both(calm(s.error_budget()), calm(s.latency_budget()))],
        ),
    );
    for (alert, _) in burn_alerts {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);

    groups
}

pub(super) fn alert_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let mut groups = threshold_tests(ctx);
    groups.extend(target_tests(ctx));
    groups
}

/// Static thresholds.
fn threshold_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let s = ctx.settings;
    let eval = s.rate_window.plus(s.alert_for).plus(ctx.fine.times(2));
    let steps = ctx.steps(eval) + 2;
    let events_per_second = f64::from(s.min_events) / s.rate_window.secs_f64();
    // A consistent histogram: every request takes the mean time, so it is slow iff the mean is.
    let threshold = s.threshold_le();
    let breach = |errors: f64, latency: f64, rate: f64| {
        Phase::steady(
            steps,
            rate,
            errors,
            if latency > threshold { 1.0 } else { 0.0 },
            latency,
        )
    };
    let high_errors = (2.0 * s.error_ratio_threshold).min((1.0 + s.error_ratio_threshold) / 2.0);
    let high_latency = 2.0 * s.average_latency_threshold.secs_f64();
    let statics = [
        (alerts::ERROR_RATIO_BREACH, high_errors),
        (alerts::LATENCY_AVERAGE_BREACH, high_latency),
    ];
    let mut groups = Vec::new();
    let mut group = ctx.group(
        "error ratio and average latency above their thresholds",
        ctx.traffic(
            "a",
            &[breach(high_errors, high_latency, 100.0 * events_per_second)],
        ),
    );
    for (alert, value) in statics {
        group.alert_rule_test.push(Ctx::alert_test(
            eval,
            alert,
            vec![ctx.expect(alert, None, None, Some(value))],
        ));
    }
    groups.push(group);
    let mut group = ctx.group(
        "error ratio and average latency below their thresholds stay silent",
        ctx.traffic(
            "a",
            &[breach(
                s.error_ratio_threshold / 2.0,
                high_latency / 4.0,
                100.0 * events_per_second,
            )],
        ),
    );
    for (alert, _) in statics {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);
    let mut group = ctx.group(
        "thresholds breached by fewer requests than --min-events stay silent",
        ctx.traffic(
            "a",
            &[breach(high_errors, high_latency, events_per_second / 2.0)],
        ),
    );
    for (alert, _) in statics {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    groups.push(group);
    groups
}

/// Targets and absence.
fn target_tests(ctx: &Ctx) -> Vec<TestGroup> {
    let s = ctx.settings;
    let eval = s.alert_for.plus(ctx.fine.times(2));
    let steps = ctx.steps(eval) + 2;
    let healthy = ctx.traffic("a", &[Phase::steady(steps, 1.0, 0.0, 0.0, 0.01)]);
    let mut groups = Vec::new();
    let with_traffic = |ups: Vec<InputSeries>| -> Vec<InputSeries> {
        ups.into_iter().chain(healthy.iter().cloned()).collect()
    };

    let mut group = ctx.group(
        "one of two instances down",
        with_traffic(vec![ctx.up("a", 0.0, steps), ctx.up("b", 1.0, steps)]),
    );
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::TARGET_DOWN,
        vec![ctx.expect(alerts::TARGET_DOWN, None, Some("a"), None)],
    ));
    for quiet in [alerts::ALL_TARGETS_DOWN, alerts::METRICS_ABSENT] {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, quiet, Vec::new()));
    }
    groups.push(group);

    let mut group = ctx.group(
        "every instance down",
        vec![ctx.up("a", 0.0, steps), ctx.up("b", 0.0, steps)],
    );
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::TARGET_DOWN,
        vec![
            ctx.expect(alerts::TARGET_DOWN, None, Some("a"), None),
            ctx.expect(alerts::TARGET_DOWN, None, Some("b"), None),
        ],
    ));
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::ALL_TARGETS_DOWN,
        vec![ctx.expect(alerts::ALL_TARGETS_DOWN, None, None, None)],
    ));
    groups.push(group);

    let mut group = ctx.group(
        "every instance up with request metrics",
        with_traffic(vec![ctx.up("a", 1.0, steps), ctx.up("b", 1.0, steps)]),
    );
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
        "targets up but no request metrics",
        vec![ctx.up("a", 1.0, steps)],
    );
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::METRICS_ABSENT,
        vec![ctx.expect(alerts::METRICS_ABSENT, None, None, None)],
    ));
    groups.push(group);

    let mut group = ctx.group("no target at all", Vec::new());
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::METRICS_ABSENT,
        vec![ctx.expect(alerts::METRICS_ABSENT, None, None, None)],
    ));
    groups.push(group);
    groups
}
