//! Behaviour over days, replayed from series with one sample per fifth of the rate window (one a
//! minute by default) and evaluated once per rate window (`ctx.coarse`): what a live test cannot
//! wait for.
//! Traffic changes once per `--anomaly-smoothing` (an hour by default) with deterministic noise,
//! which keeps the files small; the anomaly alerts need a week and a day of history, so most
//! cases run for nine days.

use super::super::alerts;
use super::super::anomaly::{Role, Signal};
use super::super::units::PromDuration;
use super::{Ctx, ExpectedSample, ExprTest, InputSeries, Phase, TestGroup, round_up};

/// Deterministic noise in [-1, 1] (splitmix64), so the generated files never change by chance.
fn noise(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// The timeline of a days test: seasons in input steps and segments.
struct Calendar<'a> {
    ctx: &'a Ctx<'a>,
    /// Input steps per segment (one `--anomaly-smoothing`).
    segment: u64,
    /// Segments per day.
    segments_per_day: u64,
    /// Days per week.
    week_days: u64,
}

impl<'a> Calendar<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        let anomaly = &ctx.settings.anomaly;
        let segment = ctx.steps(anomaly.smoothing).max(1);
        let segments_per_day = (ctx.steps(anomaly.day) / segment).max(1);
        let week_days = (anomaly.week.millis() / anomaly.day.millis()).max(2);
        Self {
            ctx,
            segment,
            segments_per_day,
            week_days,
        }
    }

    /// The first day on which anomaly alerts can fire: after a week and a day of history.
    fn first_alerting_day(&self) -> u64 {
        self.week_days + 1
    }

    /// The time `segment` segments into `day`.
    fn at(&self, day: u64, segment: u64) -> PromDuration {
        self.ctx
            .fine
            .times((day * self.segments_per_day + segment) * self.segment)
    }

    /// The daily cycle at `segment`: 1 ± 0.5, peak a quarter into the day, trough at three
    /// quarters.
    fn cycle(&self, segment: u64) -> f64 {
        let phase = (segment as f64 + 0.5) / self.segments_per_day as f64;
        1.0 + 0.5 * (std::f64::consts::TAU * phase).sin()
    }

    fn peak(&self) -> u64 {
        self.segments_per_day / 4
    }

    fn trough(&self) -> u64 {
        3 * self.segments_per_day / 4
    }

    /// One phase per segment for `days` days, from `traffic(day, segment)`.
    fn phases(&self, days: u64, traffic: impl Fn(u64, u64) -> Phase) -> Vec<Phase> {
        let mut phases = Vec::new();
        for day in 0..days {
            for segment in 0..self.segments_per_day {
                phases.push(Phase {
                    steps: self.segment,
                    ..traffic(day, segment)
                });
            }
        }
        // Two more samples, so the last evaluation sees complete windows.
        phases.push(Phase {
            steps: 2,
            ..traffic(days - 1, self.segments_per_day - 1)
        });
        phases
    }

    /// The average latency of healthy traffic: 50 ms, or twice the anomaly floor (the first
    /// duration bucket) when that is more, so that doubling it is a change beyond the floor.
    fn usual_latency(&self) -> f64 {
        (2.0 * Signal::AverageLatency.absolute_floor(self.ctx.settings)).max(0.05)
    }

    /// Healthy traffic around `rate` requests/s with ±5 % noise per segment.
    fn healthy(&self, rate: f64, day: u64, segment: u64) -> Phase {
        let seed = day * self.segments_per_day + segment;
        let wobble = 1.0 + 0.05 * noise(seed);
        Phase::steady(
            1,
            rate * wobble,
            0.0005 * (1.0 + 0.2 * noise(seed + 1_000_003)),
            0.001,
            self.usual_latency() * (1.0 + 0.05 * noise(seed + 2_000_003)),
        )
    }

    /// Input series of one instance, with its `up`.
    fn input(&self, phases: &[Phase]) -> Vec<InputSeries> {
        let steps: u64 = phases.iter().map(|phase| phase.steps).sum();
        let mut input = vec![self.ctx.up("a", 1.0, steps)];
        input.extend(self.ctx.traffic("a", phases));
        input
    }

    /// A requests/s rate with comfortably more than `--min-events` requests per rate window.
    fn busy(&self) -> f64 {
        let s = self.ctx.settings;
        100.0 * f64::from(s.min_events) / s.rate_window.secs_f64()
    }

    /// When a change at `start` has had time to fill the rate window and outlast `--anomaly-for`.
    fn detected(&self, start: PromDuration) -> PromDuration {
        let s = self.ctx.settings;
        round_up(
            start
                .plus(s.rate_window.times(2))
                .plus(s.anomaly.for_)
                .plus(s.long_evaluation_interval),
            s.rate_window,
        )
    }
}

fn expr_test(expr: String, eval: PromDuration, exp_samples: Vec<ExpectedSample>) -> ExprTest {
    ExprTest {
        expr,
        eval_time: eval.to_string(),
        exp_samples,
    }
}

impl Ctx<'_> {
    /// `ALERTS` of this job firing at one time (optionally of one alert).
    fn alerts_query(&self, alert: Option<&str>) -> String {
        self.alerts_query_with(alert, "")
    }

    /// [`Self::alerts_query`] with `extra` label matchers, e.g. `, severity="critical"`.
    fn alerts_query_with(&self, alert: Option<&str>, extra: &str) -> String {
        let name = alert
            .map(|alert| format!(", alertname=\"{alert}\""))
            .unwrap_or_default()
            + extra;
        format!(
            "ALERTS{{job=\"{}\", alertstate=\"firing\"{name}}}",
            self.settings.job
        )
    }

    /// No alert of this job fired during the `span` before `eval`.
    fn nothing_fired(&self, span: PromDuration, eval: PromDuration) -> ExprTest {
        expr_test(
            format!("count_over_time({}[{span}])", self.alerts_query(None)),
            eval,
            Vec::new(),
        )
    }

    /// The anomaly machinery is live at `eval`: every signal has an upper band.
    fn bands_exist(&self, eval: PromDuration) -> Vec<ExprTest> {
        Signal::ALL
            .iter()
            .map(|signal| {
                expr_test(
                    format!(
                        "count({}{{job=\"{}\"}})",
                        signal.derived(self.settings, Role::UpperBand),
                        self.settings.job
                    ),
                    eval,
                    vec![ExpectedSample {
                        labels: "{}".to_owned(),
                        value: 1.0,
                    }],
                )
            })
            .collect()
    }
}

pub(super) fn tests(ctx: &Ctx) -> Vec<TestGroup> {
    let calendar = Calendar::new(ctx);
    vec![
        healthy_weeks_with_a_restart(&calendar),
        idle_nights_then_slower_and_failing(&calendar),
        half_the_traffic_lost_at_the_peak(&calendar),
        young_service(&calendar),
        low_traffic_failing_everything(&calendar),
        too_few_events(&calendar),
    ]
}

/// Healthy, noisy traffic with a daily cycle and a quieter weekend, for a week and a day of
/// history and then three alerting days: the weekend and the Monday after it, on which every
/// counter restarts from 0 (a deploy). Nothing fires.
fn healthy_weeks_with_a_restart(c: &Calendar) -> TestGroup {
    let days = c.first_alerting_day() + 3;
    let monday = c.first_alerting_day() + 2;
    let rate = c.busy();
    let restart_at = c.segments_per_day / 2;
    let phases = c.phases(days, |day, segment| {
        // Day 0 is a Monday, so the alerting days begin with a weekend.
        let weekend = matches!(day % c.week_days, 1 | 2);
        let weekly = if weekend { 0.6 } else { 1.0 };
        let mut phase = c.healthy(rate * weekly * c.cycle(segment), day, segment);
        phase.restart = day == monday && segment == restart_at;
        phase
    });
    let mut group = c.ctx.group(
        "healthy noisy traffic with daily and weekly cycles and a restart fires nothing",
        c.input(&phases),
    );
    let end = c.at(days, 0);
    let alerting = end.minus(c.at(c.first_alerting_day(), 0));
    group
        .promql_expr_test
        .push(c.ctx.nothing_fired(alerting, end));
    group.promql_expr_test.extend(c.ctx.bands_exist(end));
    group
}

/// Idle nights (no traffic at all for a third of each day). On the first alerting day, in the
/// morning, the average latency doubles, staying under every static latency threshold, and half
/// the requests fail: both anomaly alerts fire, with the measured value in their annotations.
fn idle_nights_then_slower_and_failing(c: &Calendar) -> TestGroup {
    let night = c.segments_per_day / 3;
    let rate = c.busy();
    let test_day = c.first_alerting_day();
    let days = test_day + 1;
    let changed_from = night + 1;
    let (usual, doubled) = (c.usual_latency(), 2.0 * c.usual_latency());
    let phases = c.phases(days, |day, segment| {
        let mut phase = Phase::steady(1, rate, 0.0, 0.0, usual);
        if segment < night {
            phase.rate = 0.0;
        }
        if day == test_day && segment >= changed_from {
            phase.latency = doubled;
            phase.errors = 0.5;
        }
        phase
    });
    let mut group = c.ctx.group(
        "idle nights, then the latency doubles under every static threshold and half the requests fail: ApiLatencyAverageAnomaly, ApiErrorRatioAnomaly",
        c.input(&phases),
    );
    let slower = c.at(test_day, changed_from);
    let eval = c.detected(slower);
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::LATENCY_AVERAGE_ANOMALY,
        vec![
            c.ctx
                .expect(alerts::LATENCY_AVERAGE_ANOMALY, None, None, Some(doubled)),
        ],
    ));
    for quiet in [alerts::LATENCY_AVERAGE_BREACH, alerts::LATENCY_BUDGET_BURN] {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, quiet, Vec::new()));
    }
    // Quiet until then: the nights neither blinded nor tripped anything.
    group.promql_expr_test.push(
        c.ctx
            .nothing_fired(slower.minus(c.at(test_day - 1, 0)), slower),
    );
    group.alert_rule_test.push(Ctx::alert_test(
        eval,
        alerts::ERROR_RATIO_ANOMALY,
        vec![
            c.ctx
                .expect(alerts::ERROR_RATIO_ANOMALY, None, None, Some(0.5)),
        ],
    ));
    group
}

/// A daily cycle; on the first alerting day half the traffic is lost for two segments at the
/// usual peak. That fires, with the measured rate in its annotations; the usual trough later that
/// day does not.
fn half_the_traffic_lost_at_the_peak(c: &Calendar) -> TestGroup {
    let days = c.first_alerting_day() + 1;
    let rate = c.busy();
    let test_day = c.first_alerting_day();
    let first = c.peak() - 1;
    let start = c.at(test_day, first);
    let eval = c.detected(start);
    // The segment the rate window lies in when the alert is checked; the loss lasts until then.
    let window = eval
        .minus(c.ctx.settings.rate_window)
        .minus(c.at(test_day, 0));
    let measured_segment = window.millis() / c.at(0, 1).millis();
    let lost = first..(measured_segment + 1).max(first + 2);
    assert!(
        eval <= c.at(test_day, measured_segment + 1),
        "the rate window spans two segments"
    );
    assert!(lost.end < c.trough(), "the loss reaches the trough");
    let phases = c.phases(days, |day, segment| {
        let mut phase = Phase::steady(1, rate * c.cycle(segment), 0.0005, 0.001, c.usual_latency());
        if day == test_day && lost.contains(&segment) {
            phase.rate /= 2.0;
        }
        phase
    });
    let mut group = c.ctx.group(
        "a daily cycle: half the traffic lost at the usual peak fires ApiRequestRateAnomaly, the usual trough does not",
        c.input(&phases),
    );
    // promtool may evaluate the anomaly group before the fast group of the same tick, so the
    // value comes from this tick's rate window or the previous one: the annotation is exact
    // only when both lie in one segment (always, unless the settings are compressed to seconds).
    let previous = window.minus(c.ctx.coarse);
    if previous >= c.at(0, measured_segment) {
        let measured = rate * c.cycle(measured_segment) / 2.0;
        group.alert_rule_test.push(Ctx::alert_test(
            eval,
            alerts::REQUEST_RATE_ANOMALY,
            vec![
                c.ctx
                    .expect(alerts::REQUEST_RATE_ANOMALY, None, None, Some(measured)),
            ],
        ));
    } else {
        group.promql_expr_test.push(expr_test(
            c.ctx.alerts_query(Some(alerts::REQUEST_RATE_ANOMALY)),
            eval,
            vec![c.ctx.firing(alerts::REQUEST_RATE_ANOMALY, None)],
        ));
    }
    group
        .promql_expr_test
        .push(c.ctx.nothing_fired(start.minus(c.at(test_day, 0)), start));
    let trough_end = c.at(test_day, c.trough() + 2);
    group
        .promql_expr_test
        .push(c.ctx.nothing_fired(c.at(0, 2), trough_end));
    group
}

/// A young service: three days of steady traffic, then the rate triples and the latency doubles.
/// Without a week and a day of history there is no prediction, so no anomaly alert.
fn young_service(c: &Calendar) -> TestGroup {
    let days = 4;
    let rate = c.busy();
    let jump = c.segments_per_day / 2;
    let phases = c.phases(days, |day, segment| {
        if day == days - 1 && segment >= jump {
            Phase::steady(1, 3.0 * rate, 0.0, 0.0, 2.0 * c.usual_latency())
        } else {
            Phase::steady(1, rate, 0.0, 0.0, c.usual_latency())
        }
    });
    let mut group = c.ctx.group(
        "a young service with three days of history gets no anomaly alert for a tripled rate",
        c.input(&phases),
    );
    let end = c.at(days, 0);
    group.promql_expr_test.push(c.ctx.nothing_fired(end, end));
    for alert in [
        alerts::REQUEST_RATE_ANOMALY,
        alerts::LATENCY_AVERAGE_ANOMALY,
    ] {
        group
            .alert_rule_test
            .push(Ctx::alert_test(end, alert, Vec::new()));
    }
    group
}

/// A service that gets a request every 20 s (at the default settings) and fails every one: it
/// pages, opens a ticket and breaches the error-ratio threshold.
fn low_traffic_failing_everything(c: &Calendar) -> TestGroup {
    let s = c.ctx.settings;
    let rate = 1.5 * f64::from(s.min_events) / s.rate_window.secs_f64();
    let longest_short = s
        .page
        .iter()
        .chain(&s.ticket)
        .map(|w| w.short)
        .max()
        .unwrap_or(s.rate_window);
    let eval = round_up(
        longest_short.plus(s.alert_for).plus(s.rate_window.times(2)),
        s.rate_window,
    );
    let steps = c.ctx.steps(eval) + 2;
    let mut group = c.ctx.group(
        "a low-traffic API failing every request pages, opens a ticket and breaches",
        c.input(&[Phase::steady(steps, rate, 1.0, 0.0, 0.01)]),
    );
    for (alert, severity) in [
        (alerts::ERROR_BUDGET_BURN, "critical"),
        (alerts::ERROR_BUDGET_BURN, "warning"),
        (alerts::ERROR_RATIO_BREACH, "warning"),
    ] {
        group.promql_expr_test.push(expr_test(
            c.ctx
                .alerts_query_with(Some(alert), &format!(", severity=\"{severity}\"")),
            eval,
            vec![c.ctx.firing(alert, Some(severity))],
        ));
    }
    group
}

/// An otherwise idle service whose last requests all fail and are slow, one fewer than
/// `--min-events`: every window's ratio is 100 %, and still nobody is paged or ticketed.
fn too_few_events(c: &Calendar) -> TestGroup {
    let s = c.ctx.settings;
    let longest = s
        .page
        .iter()
        .chain(&s.ticket)
        .map(|w| w.long)
        .max()
        .unwrap_or(s.rate_window);
    let eval = round_up(longest.plus(s.rate_window), s.rate_window);
    let end = c.ctx.steps(eval);
    let burst = c.ctx.steps(s.rate_window);
    let few = f64::from(s.min_events - 1) / s.rate_window.secs_f64();
    let mut group = c.ctx.group(
        "fewer failed and slow requests than --min-events stay silent, whatever their ratio",
        c.input(&[
            Phase::steady(end - burst, 0.0, 0.0, 0.0, 0.0),
            Phase::steady(burst, few, 1.0, 1.0, 10.0),
            Phase::steady(2, 0.0, 0.0, 0.0, 0.0),
        ]),
    );
    for alert in [
        alerts::ERROR_BUDGET_BURN,
        alerts::LATENCY_BUDGET_BURN,
        alerts::ERROR_RATIO_BREACH,
        alerts::LATENCY_AVERAGE_BREACH,
    ] {
        group
            .alert_rule_test
            .push(Ctx::alert_test(eval, alert, Vec::new()));
    }
    group
}
