//! Prometheus recording rules (`level:metric:operation`) and the rule file that also carries the
//! alerts of [`super::alerts`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::naming::Preset;
use super::promql::Sli;
use super::units::{PromDuration, num};
use super::{Settings, alerts};

/// A Prometheus rule file.
#[derive(Debug, Clone, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// One rule group; rules inside it are evaluated in order, so later rules may use earlier ones.
#[derive(Debug, Clone, Serialize)]
pub struct RuleGroup {
    pub name: String,
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
    fn record(name: String, expr: String) -> Self {
        Self {
            record: Some(name),
            expr,
            ..Self::default()
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
    /// The learned mean of a recorded series over the anomaly window.
    pub fn band_avg(series: &str, window: PromDuration) -> String {
        let (level, metric, operation) = split(series);
        format!("{level}:{metric}_{operation}:avg_over_time{window}")
    }
    /// The learned standard deviation of a recorded series over the anomaly window.
    pub fn band_stddev(series: &str, window: PromDuration) -> String {
        let (level, metric, operation) = split(series);
        format!("{level}:{metric}_{operation}:stddev_over_time{window}")
    }
    pub const OBJECTIVE: &str = "job:redwatch_slo_objective:ratio";
    pub const BUDGET_REMAINING: &str = "job:redwatch_slo_error_budget_remaining:ratio";

    fn split(series: &str) -> (&str, &str, &str) {
        let mut parts = series.splitn(3, ':');
        let level = parts.next().unwrap_or_default();
        let metric = parts.next().unwrap_or_default();
        let operation = parts.next().unwrap_or_default();
        (level, metric, operation)
    }
}

/// The SLI and aggregation recording rules for one preset.
pub fn recording_rules(preset: Preset, settings: &Settings) -> Vec<Rule> {
    let sli = Sli {
        names: preset.names(),
        job: &settings.job,
    };
    let route = preset.names().route;
    let threshold = settings.threshold_le();
    let mut rules = Vec::new();
    for window in settings.slo_windows() {
        rules.push(Rule::record(
            names::requests(window),
            sli.requests("job", window),
        ));
        // `or 0 * requests` keeps the error rate at 0 instead of absent while nothing failed.
        rules.push(Rule::record(
            names::errors(window),
            format!(
                "{}\nor\n0 * {}",
                sli.errors("job", window),
                names::requests(window)
            ),
        ));
        rules.push(Rule::record(
            names::error_ratio(window),
            format!("{}\n/\n{}", names::errors(window), names::requests(window)),
        ));
        rules.push(Rule::record(
            names::slow(window),
            format!(
                "{}\n-\n{}",
                names::requests(window),
                sli.fast_requests("job", window, threshold)
            ),
        ));
        rules.push(Rule::record(
            names::slow_ratio(window),
            format!("{}\n/\n{}", names::slow(window), names::requests(window)),
        ));
    }
    // Over the SLO period, weight every rate window by its traffic: sums of rates, not an average
    // of ratios, so quiet nights do not count as much as busy days.
    let base = settings.rate_window;
    let period = settings.slo_period;
    for (ratio, numerator) in [
        (names::error_ratio(period), names::errors(base)),
        (names::slow_ratio(period), names::slow(base)),
    ] {
        rules.push(Rule::record(
            ratio,
            format!(
                "sum_over_time({numerator}[{period}])\n/\nsum_over_time({}[{period}])",
                names::requests(base)
            ),
        ));
    }
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
    rules.push(Rule::record(
        names::mean_latency(base),
        format!("{}\n/\n{}", sli.seconds("job", base), names::requests(base)),
    ));
    rules.push(Rule::record(
        names::p99_latency(base),
        format!("histogram_quantile(0.99, {})", sli.buckets("job", base)),
    ));
    let by_route = format!("job, {route}");
    rules.push(Rule::record(
        names::route_requests(base),
        sli.requests(&by_route, base),
    ));
    rules.push(Rule::record(
        names::route_error_ratio(base),
        format!(
            "({}\nor\n0 * {})\n/\n{}",
            sli.errors(&by_route, base),
            names::route_requests(base),
            names::route_requests(base)
        ),
    ));
    rules.push(Rule::record(
        names::route_p99_latency(base),
        format!("histogram_quantile(0.99, {})", sli.buckets(&by_route, base)),
    ));
    let history = settings.anomaly_window;
    for series in [names::requests(base), names::mean_latency(base)] {
        rules.push(Rule::record(
            names::band_avg(&series, history),
            format!("avg_over_time({series}[{history}])"),
        ));
        rules.push(Rule::record(
            names::band_stddev(&series, history),
            format!("stddev_over_time({series}[{history}])"),
        ));
    }
    rules
}

/// The complete rule file: one group, recording rules first and then the alerts. One group,
/// because Prometheus evaluates the rules of a group in order but groups independently: an alert
/// in another group could read a recording from the previous evaluation, or none at all when the
/// evaluation interval exceeds the lookback window.
pub fn rule_file(preset: Preset, settings: &Settings) -> RuleFile {
    let mut rules = recording_rules(preset, settings);
    rules.extend(
        alerts::all(preset, settings)
            .iter()
            .map(|spec| spec.to_rule(settings)),
    );
    RuleFile {
        groups: vec![RuleGroup {
            name: format!("redwatch-{}", settings.job),
            rules,
        }],
    }
}

/// Serialises a rule file with the generated-file header.
pub fn to_yaml(file: &RuleFile, settings: &Settings) -> anyhow::Result<String> {
    Ok(settings.header("#") + &serde_yaml_ng::to_string(file)?)
}
