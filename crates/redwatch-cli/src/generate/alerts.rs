//! The alerting rules: multi-window multi-burn-rate SLO alerts, static thresholds, anomaly bands
//! learned from history, and target health.

use std::collections::BTreeMap;

use super::anomaly::{Role, Signal};
use super::rules::{Group, Rule, names, of_job};
use super::units::{PromDuration, num};
use super::{BurnWindow, Settings, dashboard, resources};
use redwatch::Naming;

pub const ERROR_BUDGET_BURN: &str = "ApiErrorBudgetBurn";
pub const LATENCY_BUDGET_BURN: &str = "ApiLatencyBudgetBurn";
pub const ERROR_RATIO_BREACH: &str = "ApiErrorRatioBreach";
pub const LATENCY_AVERAGE_BREACH: &str = "ApiLatencyAverageBreach";
pub const REQUEST_RATE_ANOMALY: &str = "ApiRequestRateAnomaly";
pub const LATENCY_AVERAGE_ANOMALY: &str = "ApiLatencyAverageAnomaly";
pub const ERROR_RATIO_ANOMALY: &str = "ApiErrorRatioAnomaly";
pub const TARGET_DOWN: &str = "ApiTargetDown";
pub const ALL_TARGETS_DOWN: &str = "ApiAllTargetsDown";
pub const METRICS_ABSENT: &str = "ApiMetricsAbsent";
pub const CONTAINER_CPU_THROTTLING: &str = "ApiContainerCpuThrottling";
pub const CONTAINER_MEMORY_NEAR_LIMIT: &str = "ApiContainerMemoryNearLimit";

/// Severity of the anomaly alerts: they tell that something looks unusual, not that users are
/// hurt, so they notify but never page (docs/runbooks.md says why).
pub const ANOMALY_SEVERITY: &str = "info";

/// Templates of the measured value in annotations. Rule tests render them as Prometheus does.
pub mod value {
    pub const PERCENT: &str = "{{ $value | humanizePercentage }}";
    pub const SECONDS: &str = "{{ $value | humanizeDuration }}";
    pub const NUMBER: &str = "{{ $value | humanize }}";
    /// The container an alert is about: `name` on compose, `namespace/pod` on Kubernetes (a
    /// label the alert lacks renders empty).
    pub const CONTAINER: &str =
        "{{ $labels.name }}{{ $labels.namespace }}{{ if $labels.pod }}/{{ $labels.pod }}{{ end }}";
}

/// One alerting rule before serialisation. Annotations may use `{{ $labels.job }}`,
/// `{{ $labels.instance }}` and the templates of [`value`] only, so rule tests can state the
/// expected text exactly.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    pub name: &'static str,
    pub severity: &'static str,
    /// The `slo` label of burn-rate alerts.
    pub slo: Option<&'static str>,
    /// The rule group it is evaluated in.
    pub group: Group,
    pub expr: String,
    pub for_: Option<PromDuration>,
    pub summary: String,
    pub description: String,
    /// Set by [`all`] when a Grafana URL is configured.
    pub dashboard_url: Option<String>,
    /// Labels besides `severity` and `slo`: the API's `job` on alerts whose expression
    /// aggregates it away (resource alerts read the exporter's series).
    pub extra_labels: BTreeMap<String, String>,
}

impl AlertSpec {
    /// Labels the rule adds to its alerts.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([("severity".to_owned(), self.severity.to_owned())]);
        if let Some(slo) = self.slo {
            labels.insert("slo".to_owned(), slo.to_owned());
        }
        labels.extend(self.extra_labels.clone());
        labels
    }

    /// Annotations as written into the rule (with templates).
    pub fn annotations(&self, settings: &Settings) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::from([
            ("summary".to_owned(), self.summary.clone()),
            ("description".to_owned(), self.description.clone()),
            ("runbook_url".to_owned(), runbook_url(settings, self.name)),
        ]);
        if let Some(url) = &self.dashboard_url {
            annotations.insert("dashboard_url".to_owned(), url.clone());
        }
        annotations
    }

    /// The rule as it goes into the rule file.
    pub fn to_rule(&self, settings: &Settings) -> Rule {
        Rule {
            alert: Some(self.name.to_owned()),
            expr: self.expr.clone(),
            for_: self.for_.map(|duration| duration.to_string()),
            labels: self.labels(),
            annotations: self.annotations(settings),
            ..Rule::default()
        }
    }
}

/// The runbook section of an alert: GitHub-style anchors are the lower-cased heading.
pub fn runbook_url(settings: &Settings, alert: &str) -> String {
    format!("{}#{}", settings.runbook_url, alert.to_lowercase())
}

/// The generated dashboard in Grafana, showing the alert's job, when a Grafana URL is set.
fn dashboard_url(preset: Naming, settings: &Settings) -> Option<String> {
    settings.grafana_url.as_ref().map(|grafana| {
        format!(
            "{grafana}/d/{}?var-job={{{{ $labels.job }}}}",
            dashboard::uid(preset)
        )
    })
}

/// At least `--min-events` events in `window`, given their rate series.
fn enough_events(rate: &str, window: PromDuration, settings: &Settings) -> String {
    format!(
        "{} * {} >= {}",
        of_job(rate, settings),
        num(window.secs_f64()),
        settings.min_events
    )
}

/// One branch per tier window: the budget burns `factor` times too fast over both windows, and
/// the long window holds at least `--min-events` bad events. The value is the long window's ratio.
fn burn_expr(
    ratio: fn(PromDuration) -> String,
    bad: fn(PromDuration) -> String,
    windows: &[BurnWindow],
    budget: f64,
    settings: &Settings,
) -> String {
    let branches: Vec<String> = windows
        .iter()
        .map(|window| {
            let threshold = format!("({} * {})", num(window.factor), num(budget));
            format!(
                "(\n  {} > {threshold}\nand\n  {} > {threshold}\nand\n  {}\n)",
                of_job(&ratio(window.long), settings),
                of_job(&ratio(window.short), settings),
                enough_events(&bad(window.long), window.long, settings),
            )
        })
        .collect();
    branches.join("\nor\n")
}

fn window_text(windows: &[BurnWindow]) -> String {
    let parts: Vec<String> = windows
        .iter()
        .map(|w| format!("{}x over {} and {}", num(w.factor), w.long, w.short))
        .collect();
    parts.join(", or ")
}

/// One tier of the burn-rate alerts: a severity and the windows (each with its burn factor) that
/// fire it. The alerts and the dashboard's burn-rate lines both read these, so they cannot drift.
#[derive(Debug, Clone, Copy)]
pub struct BurnTier<'a> {
    pub severity: &'static str,
    pub group: Group,
    pub windows: &'a [BurnWindow],
    urgency: &'static str,
}

/// The paging tier (`--page-windows`) and the ticket tier (`--ticket-windows`), in that order.
pub fn burn_tiers(settings: &Settings) -> [BurnTier<'_>; 2] {
    [
        BurnTier {
            severity: "critical",
            group: Group::Fast,
            windows: &settings.page,
            urgency: "the error budget of the whole period is gone within days",
        },
        BurnTier {
            severity: "warning",
            group: Group::Slo,
            windows: &settings.ticket,
            urgency: "the error budget is used up by the end of the period or sooner",
        },
    ]
}

fn burn_alerts(settings: &Settings) -> Vec<AlertSpec> {
    let mut specs = Vec::new();
    let availability = num(settings.availability * 100.0);
    let latency = num(settings.latency_objective * 100.0);
    let threshold = settings.latency_threshold;
    let period = settings.slo_period;
    let min = settings.min_events;
    for BurnTier {
        severity,
        group,
        windows,
        urgency,
    } in burn_tiers(settings)
    {
        let tiers = window_text(windows);
        specs.push(AlertSpec {
            name: ERROR_BUDGET_BURN,
            severity,
            slo: Some("availability"),
            group,
            expr: burn_expr(
                names::error_ratio,
                names::errors,
                windows,
                settings.error_budget(),
                settings,
            ),
            for_: None,
            summary: format!(
                "{{{{ $labels.job }}}} is burning its {availability}% availability error budget too fast: {} of requests fail",
                value::PERCENT
            ),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "{} of the requests of {{{{ $labels.job }}}} were answered with a 5xx status over the long window of a tier ({tiers}; at least {min} failures), against {} allowed by the SLO of {availability}% over {period}: at this pace {urgency}.",
                value::PERCENT,
                num(settings.error_budget() * 100.0) + "%",
            ),
        });
        specs.push(AlertSpec {
            name: LATENCY_BUDGET_BURN,
            severity,
            slo: Some("latency"),
            group,
            expr: burn_expr(
                names::slow_ratio,
                names::slow,
                windows,
                settings.latency_budget(),
                settings,
            ),
            for_: None,
            summary: format!(
                "{{{{ $labels.job }}}} is burning its latency error budget too fast: {} of requests take longer than {threshold}",
                value::PERCENT
            ),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "{} of the requests of {{{{ $labels.job }}}} took longer than {threshold} over the long window of a tier ({tiers}; at least {min} slow requests), against {} allowed by the SLO of {latency}% under {threshold} over {period}: at this pace {urgency}.",
                value::PERCENT,
                num(settings.latency_budget() * 100.0) + "%",
            ),
        });
    }
    specs
}

fn breach_alerts(settings: &Settings) -> Vec<AlertSpec> {
    let base = settings.rate_window;
    let for_ = settings.alert_for;
    let min = settings.min_events;
    let percent = num(settings.error_ratio_threshold * 100.0);
    let average = settings.average_latency_threshold;
    vec![
        AlertSpec {
            name: ERROR_RATIO_BREACH,
            severity: "warning",
            slo: None,
            group: Group::Fast,
            expr: format!(
                "{} > {}\nand\n{}",
                of_job(&names::error_ratio(base), settings),
                num(settings.error_ratio_threshold),
                enough_events(&names::errors(base), base, settings)
            ),
            for_: Some(for_),
            summary: format!(
                "{} of the requests of {{{{ $labels.job }}}} fail (threshold {percent}%)",
                value::PERCENT
            ),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "Over the last {base}, {} of the requests of {{{{ $labels.job }}}} were answered with a 5xx status (at least {min} of them), above {percent}% for at least {for_}.",
                value::PERCENT
            ),
        },
        AlertSpec {
            name: LATENCY_AVERAGE_BREACH,
            severity: "warning",
            slo: None,
            group: Group::Fast,
            expr: format!(
                "{} > {}\nand\n{}",
                of_job(&names::mean_latency(base), settings),
                num(average.secs_f64()),
                enough_events(&names::requests(base), base, settings)
            ),
            for_: Some(for_),
            summary: format!(
                "The average response time of {{{{ $labels.job }}}} is {} (threshold {average})",
                value::SECONDS
            ),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "Over the last {base}, the mean response time of {{{{ $labels.job }}}} was {} (over at least {min} requests), above {average} for at least {for_}.",
                value::SECONDS
            ),
        },
    ]
}

fn anomaly_alerts(settings: &Settings) -> Vec<AlertSpec> {
    let base = settings.rate_window;
    let anomaly = &settings.anomaly;
    let above = |signal: Signal| {
        format!(
            "{} > {}",
            of_job(&signal.series(settings), settings),
            of_job(&signal.derived(settings, Role::UpperBand), settings)
        )
    };
    let below = |signal: Signal| {
        format!(
            "{} < {}",
            of_job(&signal.series(settings), settings),
            of_job(&signal.derived(settings, Role::LowerBand), settings)
        )
    };
    let band = format!(
        "the band predicted from the same time one {} (or, with less history, one {}) earlier, corrected for the trend of the daily median: ± the larger of {} standard deviations of that time, {}% of the prediction",
        anomaly.week,
        anomaly.day,
        num(anomaly.sigmas),
        num(anomaly.min_change * 100.0)
    );
    let spec = |name, signal: Signal, expr: String, what: &str, value: &str, floor: String| {
        AlertSpec {
            name,
            severity: ANOMALY_SEVERITY,
            slo: None,
            group: Group::Anomaly,
            expr,
            for_: Some(anomaly.for_),
            summary: format!("The {what} of {{{{ $labels.job }}}} is unusual: {value}"),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "The {what} of {{{{ $labels.job }}}} over {base} ({value}) has been outside {band} and {floor}, for {}. Compare with the recorded series {} and its bands; check for a release, a campaign or an upstream outage.",
                anomaly.for_,
                signal.derived(settings, Role::Prediction)
            ),
        }
    };
    vec![
        spec(
            REQUEST_RATE_ANOMALY,
            Signal::RequestRate,
            format!(
                "(\n  {}\nor\n  {}\n)",
                above(Signal::RequestRate),
                below(Signal::RequestRate)
            ),
            "request rate",
            &format!("{} requests/s", value::NUMBER),
            format!(
                "{} requests/s",
                num(Signal::RequestRate.absolute_floor(settings))
            ),
        ),
        spec(
            LATENCY_AVERAGE_ANOMALY,
            Signal::AverageLatency,
            format!(
                "{}\nand\n{}",
                above(Signal::AverageLatency),
                enough_events(&names::requests(base), base, settings)
            ),
            "average response time",
            value::SECONDS,
            format!("{}s", num(Signal::AverageLatency.absolute_floor(settings))),
        ),
        spec(
            ERROR_RATIO_ANOMALY,
            Signal::ErrorRatio,
            format!(
                "{}\nand\n{}",
                above(Signal::ErrorRatio),
                enough_events(&names::errors(base), base, settings)
            ),
            "error ratio",
            value::PERCENT,
            format!(
                "{}%",
                num(Signal::ErrorRatio.absolute_floor(settings) * 100.0)
            ),
        ),
    ]
}

fn target_alerts(preset: Naming, settings: &Settings) -> Vec<AlertSpec> {
    let job = &settings.job;
    let for_ = settings.alert_for;
    let count = settings.names(preset).count();
    vec![
        AlertSpec {
            name: TARGET_DOWN,
            severity: "warning",
            slo: None,
            group: Group::Fast,
            expr: format!("up{{job=\"{job}\"}} == 0"),
            for_: Some(for_),
            summary: "{{ $labels.instance }} of {{ $labels.job }} cannot be scraped".to_owned(),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "Prometheus has failed to scrape {{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) for {for_}: the instance is down, unreachable, or its /metrics fails."
            ),
        },
        AlertSpec {
            name: ALL_TARGETS_DOWN,
            severity: "critical",
            slo: None,
            group: Group::Fast,
            expr: format!("max by ({}) (up{{job=\"{job}\"}}) == 0", settings.by_job()),
            for_: Some(for_),
            summary: "Every instance of {{ $labels.job }} is down".to_owned(),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "No instance of {{{{ $labels.job }}}} has been scrapable for {for_}: the API is most likely unavailable to its users."
            ),
        },
        AlertSpec {
            name: METRICS_ABSENT,
            severity: "warning",
            slo: None,
            group: Group::Fast,
            expr: format!("absent(up{{job=\"{job}\"}})\nor\nabsent({count}{{job=\"{job}\"}})"),
            for_: Some(for_),
            summary: "The request metrics of {{ $labels.job }} are missing".to_owned(),
            dashboard_url: None,
            extra_labels: BTreeMap::new(),
            description: format!(
                "For {for_}, Prometheus has had no target for job {{{{ $labels.job }}}} or no {count} series from it: scrape discovery, the naming preset or the instrumentation is wrong, and every other alert of this job is blind."
            ),
        },
    ]
}

/// Resource alerts on the API's containers, from cAdvisor's series (see [`resources`]); none when
/// no deployment's containers are configured.
fn resource_alerts(settings: &Settings) -> Vec<AlertSpec> {
    let scopes = resources::scopes(settings);
    if scopes.is_empty() {
        return Vec::new();
    }
    let job = &settings.job;
    let container = value::CONTAINER;
    let labels = BTreeMap::from([("job".to_owned(), job.clone())]);
    let throttling = num(resources::THROTTLING_THRESHOLD * 100.0);
    let memory = num(resources::MEMORY_THRESHOLD * 100.0);
    let throttling_for = PromDuration::from_millis(resources::THROTTLING_FOR_MINUTES * 60_000);
    let memory_for = PromDuration::from_millis(resources::MEMORY_FOR_MINUTES * 60_000);
    vec![
        AlertSpec {
            name: CONTAINER_CPU_THROTTLING,
            severity: "info",
            slo: None,
            group: Group::Resources,
            expr: resources::throttling_alert(&scopes),
            for_: Some(throttling_for),
            summary: format!(
                "Container {container} of {job} is CPU-throttled in {} of its scheduling periods",
                value::PERCENT
            ),
            description: format!(
                "Over the last {}, container {container} of {job} was throttled in {} of its CFS periods (threshold {throttling}%) for {throttling_for}: it reaches its CPU limit, and requests wait for CPU time. Raise the limit or find what burns CPU.",
                resources::THROTTLING_WINDOW,
                value::PERCENT
            ),
            dashboard_url: None,
            extra_labels: labels.clone(),
        },
        AlertSpec {
            name: CONTAINER_MEMORY_NEAR_LIMIT,
            severity: "warning",
            slo: None,
            group: Group::Resources,
            expr: resources::memory_alert(&scopes),
            for_: Some(memory_for),
            summary: format!(
                "Container {container} of {job} uses {} of its memory limit",
                value::PERCENT
            ),
            description: format!(
                "The working set of container {container} of {job} has been above {memory}% of its memory limit for {memory_for} (now {}): the next allocation burst may get it OOM-killed.",
                value::PERCENT
            ),
            dashboard_url: None,
            extra_labels: labels,
        },
    ]
}

/// Every alert, in rule-file order within each group: burn rates, static thresholds, targets,
/// anomalies.
pub fn all(preset: Naming, settings: &Settings) -> Vec<AlertSpec> {
    let mut all = burn_alerts(settings);
    all.extend(breach_alerts(settings));
    all.extend(target_alerts(preset, settings));
    all.extend(anomaly_alerts(settings));
    all.extend(resource_alerts(settings));
    let url = dashboard_url(preset, settings);
    for spec in &mut all {
        spec.dashboard_url.clone_from(&url);
    }
    all
}
