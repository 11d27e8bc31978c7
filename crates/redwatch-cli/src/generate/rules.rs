//! Prometheus recording rules (`level:metric:operation`) and the rule file that also carries the
//! alerts of [`super::alerts`].
//!
//! The rules are split by how often they need to run:
//! - the **fast** group, at `--evaluation-interval`, computes the rate window from the raw
//!   counters and the windows of the paging tiers as averages of that recorded series over the
//!   window (fresh at every evaluation, one series per job to read), and holds the alerts that
//!   must react within minutes;
//! - the **slo** group, at `--long-evaluation-interval`, derives every longer window (the ticket
//!   tiers, the SLO period) from the recorded rate-window series, so a 30-day ratio reads a few
//!   thousand recorded samples per job instead of every raw series of every route;
//! - the **anomaly** group, at the same slow interval, learns the baselines of
//!   [`super::anomaly`] and holds the anomaly alerts;
//! - the **resources** group, at `--evaluation-interval`, holds the alerts on the API's
//!   containers from cAdvisor's series ([`super::resources`]); it is left out when no
//!   deployment's containers are configured.
//!
//! A group reads the series of another group as recorded at that group's last evaluation, which is
//! at most one slow interval old, well within Prometheus's five-minute lookback.

use std::collections::BTreeMap;

use serde::Serialize;

use super::promql::Sli;
use super::units::{PromDuration, num};
use super::{Settings, alerts, anomaly};
use redwatch::Naming;

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
    /// The containers' resource alerts (cAdvisor series), at the fast interval.
    Resources,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Fast, Group::Slo, Group::Anomaly, Group::Resources];

    pub fn name(self, settings: &Settings) -> String {
        let suffix = match self {
            Group::Fast => "fast",
            Group::Slo => "slo",
            Group::Anomaly => "anomaly",
            Group::Resources => "resources",
        };
        format!("redwatch-{}-{suffix}", settings.job)
    }

    pub fn interval(self, settings: &Settings) -> PromDuration {
        match self {
            Group::Fast | Group::Resources => settings.evaluation_interval,
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

/// `series{job="JOB"}`: every reference to a recorded series names its job, so the rules of
/// several jobs can share one Prometheus without writing over each other's series.
pub fn of_job(series: &str, settings: &Settings) -> String {
    format!("{series}{{job=\"{}\"}}", settings.job)
}

/// What a job-level rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    Requests,
    Errors,
    Slow,
}

impl Count {
    fn series(self, window: PromDuration) -> String {
        match self {
            Count::Requests => names::requests(window),
            Count::Errors => names::errors(window),
            Count::Slow => names::slow(window),
        }
    }
}

/// Where a window's ratios take their parts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts {
    /// The series recorded just before: their inputs are recorded series too, fixed by now.
    Recorded,
    /// `rate`'s own expressions, in one query, because their inputs are raw counters. One
    /// query sees one snapshot of the storage (Prometheus isolates it from appends that commit
    /// while it runs), but two rules run at two moments: a scrape or a remote-write request
    /// that commits between them would make a part and its whole disagree (an always-failing
    /// route's 5xx share at 109 %, seen with remote write).
    Computed,
}

/// The five job-level SLI series of one window; `rate` computes each count per second.
fn window_rules(
    window: PromDuration,
    settings: &Settings,
    rate: impl Fn(Count) -> String,
    parts: Parts,
) -> Vec<Rule> {
    let part = |count: Count| match parts {
        Parts::Recorded => of_job(&count.series(window), settings),
        Parts::Computed => rate(count),
    };
    let requests = part(Count::Requests);
    match parts {
        Parts::Recorded => vec![
            Rule::record(names::requests(window), rate(Count::Requests)),
            Rule::record(names::errors(window), rate(Count::Errors)),
            Rule::record(
                names::error_ratio(window),
                ratio(&part(Count::Errors), &requests),
            ),
            Rule::record(names::slow(window), rate(Count::Slow)),
            Rule::record(
                names::slow_ratio(window),
                ratio(&part(Count::Slow), &requests),
            ),
        ],
        // The rate of errors (of slow requests) is its share, part and whole from one query,
        // times the requests recorded just before. Computed apart, a sample that commits
        // between the two rules lands in one and not the other; the longer windows average
        // both, and their ratio kept the skew (a burn rate 8.6 % high, seen with remote write).
        // This way each moment's share is right, and only its weight can be a sample short.
        Parts::Computed => {
            let recorded = of_job(&names::requests(window), settings);
            let mut rules = vec![Rule::record(names::requests(window), rate(Count::Requests))];
            for (count, share) in [
                (Count::Errors, names::error_ratio(window)),
                (Count::Slow, names::slow_ratio(window)),
            ] {
                let of_share = of_job(&share, settings);
                rules.push(Rule::record(share, ratio(&rate(count), &requests)));
                rules.push(Rule::record(
                    count.series(window),
                    format!("{of_share} * {recorded}\nor\n0 * {recorded}"),
                ));
            }
            rules
        }
    }
}

/// `part / whole`, absent (not NaN) while `whole` is 0: a window without traffic has no ratio,
/// so averages over time skip it instead of turning NaN.
pub fn ratio(part: &str, whole: &str) -> String {
    // A part of several lines joins terms with `or` or `-`, which bind less than `/`.
    if part.contains('\n') {
        format!("({part})\n/\n({whole} > 0)")
    } else {
        format!("{part}\n/\n({whole} > 0)")
    }
}

/// The fast group's recording rules: SLIs from the raw counters.
pub fn fast_rules(preset: Naming, settings: &Settings) -> Vec<Rule> {
    let names = settings.names(preset);
    let sli = Sli {
        names: &names,
        job: &settings.job,
        native: settings.native_histograms,
    };
    let by_job = settings.by_job();
    let threshold = settings.threshold_le();
    let mut rules = Vec::new();
    let base = settings.rate_window;
    for window in settings.fast_windows() {
        let requests = of_job(&names::requests(window), settings);
        let rate = |count: Count| {
            if window != base {
                // Longer windows average the recorded rate-window series: one series per job
                // instead of every raw series of every route.
                return format!(
                    "avg_over_time({}[{window}])",
                    of_job(&count.series(base), settings)
                );
            }
            match count {
                Count::Requests => sli.requests(&by_job, window),
                // `or 0 * requests` keeps the error rate at 0 instead of absent while nothing
                // failed.
                Count::Errors => format!("{}\nor\n0 * {requests}", sli.errors(&by_job, window)),
                // Both from the raw counters, in one query (see `Parts::Computed`).
                Count::Slow => format!(
                    "{}\n-\n{}",
                    sli.requests(&by_job, window),
                    sli.fast_requests(&by_job, window, threshold)
                ),
            }
        };
        let parts = if window == base {
            Parts::Computed
        } else {
            Parts::Recorded
        };
        rules.extend(window_rules(window, settings, rate, parts));
    }
    rules.push(Rule::record(
        names::mean_latency(base),
        ratio(&sli.seconds(&by_job, base), &sli.requests(&by_job, base)),
    ));
    rules.push(Rule::record(
        names::p99_latency(base),
        sli.quantile(0.99, &by_job, base),
    ));
    let by_route = format!("{by_job}, {}", names.route);
    rules.push(Rule::record(
        names::route_requests(base),
        sli.requests(&by_route, base),
    ));
    // Part and whole from the raw counters in one query (see `Parts::Computed`).
    let route_requests = sli.requests(&by_route, base);
    rules.push(Rule::record(
        names::route_error_ratio(base),
        ratio(
            &format!("{}\nor\n0 * {route_requests}", sli.errors(&by_route, base)),
            &route_requests,
        ),
    ));
    rules.push(Rule::record(
        names::route_p99_latency(base),
        sli.quantile(0.99, &by_route, base),
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
        let rate = |count: Count| {
            format!(
                "avg_over_time({}[{window}:{step}])",
                of_job(&count.series(step), settings)
            )
        };
        rules.extend(window_rules(window, settings, rate, Parts::Recorded));
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
                format!(
                    "1 - {} / {}",
                    of_job(&ratio, settings),
                    num(1.0 - objective)
                ),
            )
        });
    }
    rules
}

/// The complete rule file: per group, its recording rules first and then its alerts.
pub fn rule_file(preset: Naming, settings: &Settings) -> RuleFile {
    let specs = alerts::all(preset, settings);
    let groups = Group::ALL
        .iter()
        .filter_map(|&group| {
            let mut rules = match group {
                Group::Fast => fast_rules(preset, settings),
                Group::Slo => slo_rules(settings),
                Group::Anomaly => anomaly::recording_rules(settings),
                Group::Resources => Vec::new(),
            };
            rules.extend(
                specs
                    .iter()
                    .filter(|spec| spec.group == group)
                    .map(|spec| spec.to_rule(settings)),
            );
            (!rules.is_empty()).then(|| RuleGroup {
                name: group.name(settings),
                interval: group.interval(settings).to_string(),
                rules,
            })
        })
        .collect();
    RuleFile { groups }
}

/// Serialises a rule file with the generated-file header.
pub fn to_yaml(file: &RuleFile, settings: &Settings) -> anyhow::Result<String> {
    Ok(settings.header("#") + &serde_yaml_ng::to_string(file)?)
}
