//! Prometheus recording rules (`level:metric:operation`) and the rule file that also carries the
//! alerts of [`super::alerts`].
//!
//! The rules are split by how often they need to run:
//! - the **fast** group, at `--evaluation-interval`, computes the rate window and the windows of
//!   the paging tiers from the raw counters, and holds the alerts that must react within minutes;
//! - the **slo** group, at `--long-evaluation-interval`, derives every longer window (the ticket
//!   tiers, the SLO period) from the recorded rate-window series, so a 30-day ratio reads a few
//!   thousand recorded samples per job instead of every raw series of every route;
//! - the **anomaly** group, at the same slow interval, learns the baselines of
//!   [`super::anomaly`] and holds the anomaly alerts.
//!
//! A group reads the series of another group as recorded at that group's last evaluation, which is
//! at most one slow interval old, well within Prometheus's five-minute lookback.

use std::collections::BTreeMap;

use serde::Serialize;

use super::naming::Preset;
use super::promql::Sli;
use super::units::{PromDuration, num};
use super::{Settings, alerts, anomaly};

/// A Prometheus rule file.
#[derive(Debug, Clone, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// One rule group; rules inside it are evaluated in order, so later rules may use earlier ones.
#[derive(Debug, Clone, Serialize)]
pub struct RuleGroup {
    pub name: String,
    pub interval: String,
    pub rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    pub fn record(name: String, expr: String) -> Self {
        Self {
            record: Some(name),
            expr,
            ..Self::default()
        }
    }
}

/// The rule groups, in file order. Alerts say which group they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Fast,
    Slo,
    Anomaly,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Fast, Group::Slo, Group::Anomaly];

    pub fn name(self, settings: &Settings) -> String {
        let suffix = match self {
            Group::Fast => "fast",
            Group::Slo => "slo",
            Group::Anomaly => "anomaly",
        };
        format!("redwatch-{}-{suffix}", settings.job)
    }

    pub fn interval(self, settings: &Settings) -> PromDuration {
        match self {
            Group::Fast => settings.evaluation_interval,
            Group::Slo | Group::Anomaly => settings.long_evaluation_interval,
        }
    }
}

/// Names of the recorded series, shared by alerts, dashboards and rule tests.
pub mod names {
    use super::PromDuration;

    pub fn requests(window: PromDuration) -> String {
        format!("job:redwatch_http_requests:rate{window}")
    }
    pub fn errors(window: PromDuration) -> String {
        format!("job:redwatch_http_errors:rate{window}")
    }
    pub fn error_ratio(window: PromDuration) -> String {
        format!("job:redwatch_http_errors_per_request:ratio_rate{window}")
    }
    pub fn slow(window: PromDuration) -> String {
        format!("job:redwatch_http_slow_requests:rate{window}")
    }
    pub fn slow_ratio(window: PromDuration) -> String {
        format!("job:redwatch_http_slow_per_request:ratio_rate{window}")
    }
    pub fn mean_latency(window: PromDuration) -> String {
        format!("job:redwatch_http_request_duration_seconds:mean_rate{window}")
    }
    pub fn p99_latency(window: PromDuration) -> String {
        format!("job:redwatch_http_request_duration_seconds:p99_rate{window}")
    }
    pub fn route_requests(window: PromDuration) -> String {
        format!("job_route:redwatch_http_requests:rate{window}")
    }
    pub fn route_error_ratio(window: PromDuration) -> String {
        format!("job_route:redwatch_http_errors_per_request:ratio_rate{window}")
    }
    pub fn route_p99_latency(window: PromDuration) -> String {
        format!("job_route:redwatch_http_request_duration_seconds:p99_rate{window}")
    }
    /// A series derived from a recorded `signal` by an anomaly step (`level`, `prediction`, ...).
    pub fn derived(signal: &str, role: &str) -> String {
        format!("{signal}_{role}")
    }
    pub const OBJECTIVE: &str = "job:redwatch_slo_objective:ratio";
    pub const BUDGET_REMAINING: &str = "job:redwatch_slo_error_budget_remaining:ratio";
}

/// The five job-level SLI series of one window, computed by `rate` and `ratio`.
fn window_rules(
    window: PromDuration,
    rate: impl Fn(&str, PromDuration) -> String,
    ratio: impl Fn(&str, &str) -> String,
) -> Vec<Rule> {
    vec![
        Rule::record(names::requests(window), rate("requests", window)),
        Rule::record(names::errors(window), rate("errors", window)),
        Rule::record(
            names::error_ratio(window),
            ratio(&names::errors(window), &names::requests(window)),
        ),
        Rule::record(names::slow(window), rate("slow", window)),
        Rule::record(
            names::slow_ratio(window),
            ratio(&names::slow(window), &names::requests(window)),
        ),
    ]
}

/// `part / whole`, absent (not NaN) while `whole` is 0: a window without traffic has no ratio,
/// so averages over time skip it instead of turning NaN.
pub fn ratio(part: &str, whole: &str) -> String {
    format!("{part}\n/\n({whole} > 0)")
}

/// The fast group's recording rules: SLIs from the raw counters.
pub fn fast_rules(preset: Preset, settings: &Settings) -> Vec<Rule> {
    let sli = Sli {
        names: preset.names(),
        job: &settings.job,
    };
    let by_job = settings.by_job();
    let threshold = settings.threshold_le();
    let mut rules = Vec::new();
    for window in settings.fast_windows() {
        let rate = |what: &str, window: PromDuration| match what {
            "requests" => sli.requests(&by_job, window),
            // `or 0 * requests` keeps the error rate at 0 instead of absent while nothing failed.
            "errors" => format!(
                "{}\nor\n0 * {}",
                sli.errors(&by_job, window),
                names::requests(window)
            ),
            _ => format!(
                "{}\n-\n{}",
                names::requests(window),
                sli.fast_requests(&by_job, window, threshold)
            ),
        };
        rules.extend(window_rules(window, rate, ratio));
    }
    let base = settings.rate_window;
    rules.push(Rule::record(
        names::mean_latency(base),
        ratio(&sli.seconds(&by_job, base), &names::requests(base)),
    ));
    rules.push(Rule::record(
        names::p99_latency(base),
        format!("histogram_quantile(0.99, {})", sli.buckets(&by_job, base)),
    ));
    let by_route = format!("{by_job}, {}", preset.names().route);
    rules.push(Rule::record(
        names::route_requests(base),
        sli.requests(&by_route, base),
    ));
    rules.push(Rule::record(
        names::route_error_ratio(base),
        ratio(
            &format!(
                "({}\nor\n0 * {})",
                sli.errors(&by_route, base),
                names::route_requests(base)
            ),
            &names::route_requests(base),
        ),
    ));
    rules.push(Rule::record(
        names::route_p99_latency(base),
        format!("histogram_quantile(0.99, {})", sli.buckets(&by_route, base)),
    ));
    rules
}

/// The slow group's recording rules: each long window is the mean of a recorded fast-window
/// series sampled once per that window (a subquery whose steps tile the long window exactly),
/// then the objectives and the error budget left over the SLO period.
pub fn slo_rules(settings: &Settings) -> Vec<Rule> {
    let mut rules = Vec::new();
    for window in settings.slow_windows() {
        let step = settings.slow_window_step(window);
        let rate = |what: &str, window: PromDuration| {
            let series = match what {
                "requests" => names::requests(step),
                "errors" => names::errors(step),
                _ => names::slow(step),
            };
            format!("avg_over_time({series}[{window}:{step}])")
        };
        rules.extend(window_rules(window, rate, ratio));
    }
    let period = settings.slo_period;
    for (slo, objective, ratio) in [
        (
            "availability",
            settings.availability,
            names::error_ratio(period),
        ),
        (
            "latency",
            settings.latency_objective,
            names::slow_ratio(period),
        ),
    ] {
        let labels = BTreeMap::from([
            ("job".to_owned(), settings.job.clone()),
            ("slo".to_owned(), slo.to_owned()),
        ]);
        rules.push(Rule {
            labels: labels.clone(),
            ..Rule::record(
                names::OBJECTIVE.to_owned(),
                format!("vector({})", num(objective)),
            )
        });
        rules.push(Rule {
            labels: BTreeMap::from([("slo".to_owned(), slo.to_owned())]),
            ..Rule::record(
                names::BUDGET_REMAINING.to_owned(),
                format!("1 - {ratio} / {}", num(1.0 - objective)),
            )
        });
    }
    rules
}

/// The complete rule file: per group, its recording rules first and then its alerts.
pub fn rule_file(preset: Preset, settings: &Settings) -> RuleFile {
    let specs = alerts::all(preset, settings);
    let groups = Group::ALL
        .iter()
        .map(|&group| {
            let mut rules = match group {
                Group::Fast => fast_rules(preset, settings),
                Group::Slo => slo_rules(settings),
                Group::Anomaly => anomaly::recording_rules(settings),
            };
            rules.extend(
                specs
                    .iter()
                    .filter(|spec| spec.group == group)
                    .map(|spec| spec.to_rule(settings)),
            );
            RuleGroup {
                name: group.name(settings),
                interval: group.interval(settings).to_string(),
                rules,
            }
        })
        .collect();
    RuleFile { groups }
}

/// Serialises a rule file with the generated-file header.
pub fn to_yaml(file: &RuleFile, settings: &Settings) -> anyhow::Result<String> {
    Ok(settings.header("#") + &serde_yaml_ng::to_string(file)?)
}
