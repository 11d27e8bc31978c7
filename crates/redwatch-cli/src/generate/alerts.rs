//! The alerting rules: multi-window multi-burn-rate SLO alerts, static thresholds, anomaly bands
//! learned from history, and target health.

use std::collections::BTreeMap;

use super::naming::Preset;
use super::rules::{Rule, names};
use super::units::{PromDuration, num};
use super::{BurnWindow, Settings};

pub const ERROR_BUDGET_BURN: &str = "ApiErrorBudgetBurn";
pub const LATENCY_BUDGET_BURN: &str = "ApiLatencyBudgetBurn";
pub const ERROR_RATIO_BREACH: &str = "ApiErrorRatioBreach";
pub const LATENCY_AVERAGE_BREACH: &str = "ApiLatencyAverageBreach";
pub const REQUEST_RATE_ANOMALY: &str = "ApiRequestRateAnomaly";
pub const LATENCY_AVERAGE_ANOMALY: &str = "ApiLatencyAverageAnomaly";
pub const TARGET_DOWN: &str = "ApiTargetDown";
pub const ALL_TARGETS_DOWN: &str = "ApiAllTargetsDown";
pub const METRICS_ABSENT: &str = "ApiMetricsAbsent";

/// Relative half-width added to every anomaly band, so a perfectly steady history (standard
/// deviation 0) does not turn every small wobble into an anomaly.
pub const ANOMALY_RELATIVE_MARGIN: f64 = 0.1;

/// One alerting rule before serialisation. Annotations may use `{{ $labels.job }}` and
/// `{{ $labels.instance }}` only, so rule tests can state the expected text exactly.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    pub name: &'static str,
    pub severity: &'static str,
    /// The `slo` label of burn-rate alerts.
    pub slo: Option<&'static str>,
    pub expr: String,
    pub for_: Option<PromDuration>,
    pub summary: String,
    pub description: String,
}

impl AlertSpec {
    /// Labels the rule adds to its alerts.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([("severity".to_owned(), self.severity.to_owned())]);
        if let Some(slo) = self.slo {
            labels.insert("slo".to_owned(), slo.to_owned());
        }
        labels
    }

    /// Annotations as written into the rule (with templates).
    pub fn annotations(&self, settings: &Settings) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("summary".to_owned(), self.summary.clone()),
            ("description".to_owned(), self.description.clone()),
            ("runbook_url".to_owned(), runbook_url(settings, self.name)),
        ])
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

fn burn_expr(
    ratio: fn(PromDuration) -> String,
    windows: &[BurnWindow],
    budget: f64,
    settings: &Settings,
) -> String {
    let job = &settings.job;
    let branches: Vec<String> = windows
        .iter()
        .map(|window| {
            let threshold = format!("({} * {})", num(window.factor), num(budget));
            format!(
                "(\n  {long}{{job=\"{job}\"}} > {threshold}\nand\n  {short}{{job=\"{job}\"}} > {threshold}\nand\n  {traffic}{{job=\"{job}\"}} > {min}\n)",
                long = ratio(window.long),
                short = ratio(window.short),
                traffic = names::requests(window.long),
                min = num(settings.min_traffic),
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

fn burn_alerts(settings: &Settings) -> Vec<AlertSpec> {
    let mut specs = Vec::new();
    let availability = num(settings.availability * 100.0);
    let latency = num(settings.latency_objective * 100.0);
    let threshold = settings.latency_threshold;
    for (severity, windows, urgency) in [
        (
            "critical",
            &settings.page,
            "the error budget of the whole period is gone within days",
        ),
        (
            "warning",
            &settings.ticket,
            "the error budget is used up by the end of the period or sooner",
        ),
    ] {
        specs.push(AlertSpec {
            name: ERROR_BUDGET_BURN,
            severity,
            slo: Some("availability"),
            expr: burn_expr(names::error_ratio, windows, settings.error_budget(), settings),
            for_: None,
            summary: format!("{{{{ $labels.job }}}} is burning its {availability}% availability error budget too fast"),
            description: format!(
                "The share of 5xx responses of {{{{ $labels.job }}}} exceeds the sustainable rate ({}): at this pace {urgency} (SLO {availability}% over {}).",
                window_text(windows),
                settings.slo_period
            ),
        });
        specs.push(AlertSpec {
            name: LATENCY_BUDGET_BURN,
            severity,
            slo: Some("latency"),
            expr: burn_expr(names::slow_ratio, windows, settings.latency_budget(), settings),
            for_: None,
            summary: format!("{{{{ $labels.job }}}} is burning its latency error budget too fast ({latency}% under {threshold})"),
            description: format!(
                "Too many requests of {{{{ $labels.job }}}} take longer than {threshold} ({}): at this pace {urgency} (SLO {latency}% under {threshold} over {}).",
                window_text(windows),
                settings.slo_period
            ),
        });
    }
    specs
}

fn band_alert(
    name: &'static str,
    series: &str,
    guard: String,
    what: &str,
    settings: &Settings,
) -> AlertSpec {
    let job = &settings.job;
    let history = settings.anomaly_window;
    let avg = format!("{}{{job=\"{job}\"}}", names::band_avg(series, history));
    let stddev = format!("{}{{job=\"{job}\"}}", names::band_stddev(series, history));
    let sigmas = num(settings.anomaly_sigmas);
    let up = num(1.0 + ANOMALY_RELATIVE_MARGIN);
    let down = num(1.0 - ANOMALY_RELATIVE_MARGIN);
    AlertSpec {
        name,
        severity: "warning",
        slo: None,
        expr: format!(
            "(\n  {series}{{job=\"{job}\"}} > {avg} * {up} + {sigmas} * {stddev}\nor\n  {series}{{job=\"{job}\"}} < {avg} * {down} - {sigmas} * {stddev}\n)\nand\n{guard}"
        ),
        for_: Some(settings.anomaly_for),
        summary: format!("The {what} of {{{{ $labels.job }}}} is outside its usual band"),
        description: format!(
            "The {what} of {{{{ $labels.job }}}} over {} has left the band learned from the last {history} (its mean ± {}% ± {sigmas} standard deviations) for {}. Informational: check that it is expected (release, campaign, outage upstream).",
            settings.rate_window,
            num(ANOMALY_RELATIVE_MARGIN * 100.0),
            settings.anomaly_for
        ),
    }
}

/// Every alert, in rule-file order: burn rates, static thresholds and anomalies, targets.
pub fn all(preset: Preset, settings: &Settings) -> Vec<AlertSpec> {
    let job = &settings.job;
    let base = settings.rate_window;
    let min = num(settings.min_traffic);
    let traffic_guard = format!("{}{{job=\"{job}\"}} > {min}", names::requests(base));
    let static_alerts = vec![
        AlertSpec {
            name: ERROR_RATIO_BREACH,
            severity: "warning",
            slo: None,
            expr: format!(
                "{}{{job=\"{job}\"}} > {}\nand\n{traffic_guard}",
                names::error_ratio(base),
                num(settings.error_ratio_threshold)
            ),
            for_: Some(settings.alert_for),
            summary: format!(
                "More than {}% of the requests of {{{{ $labels.job }}}} fail",
                num(settings.error_ratio_threshold * 100.0)
            ),
            description: format!(
                "Over the last {base}, more than {}% of the requests of {{{{ $labels.job }}}} were answered with a 5xx status, for at least {}.",
                num(settings.error_ratio_threshold * 100.0),
                settings.alert_for
            ),
        },
        AlertSpec {
            name: LATENCY_AVERAGE_BREACH,
            severity: "warning",
            slo: None,
            expr: format!(
                "{}{{job=\"{job}\"}} > {}\nand\n{traffic_guard}",
                names::mean_latency(base),
                num(settings.average_latency_threshold.secs_f64())
            ),
            for_: Some(settings.alert_for),
            summary: format!(
                "The average response time of {{{{ $labels.job }}}} is above {}",
                settings.average_latency_threshold
            ),
            description: format!(
                "Over the last {base}, the mean response time of {{{{ $labels.job }}}} has been above {} for at least {}.",
                settings.average_latency_threshold, settings.alert_for
            ),
        },
        band_alert(
            REQUEST_RATE_ANOMALY,
            &names::requests(base),
            format!(
                "{}{{job=\"{job}\"}} > {min}",
                names::band_avg(&names::requests(base), settings.anomaly_window)
            ),
            "request rate",
            settings,
        ),
        band_alert(
            LATENCY_AVERAGE_ANOMALY,
            &names::mean_latency(base),
            traffic_guard.clone(),
            "average response time",
            settings,
        ),
    ];
    let count = preset.names().count();
    let target_alerts = vec![
        AlertSpec {
            name: TARGET_DOWN,
            severity: "warning",
            slo: None,
            expr: format!("up{{job=\"{job}\"}} == 0"),
            for_: Some(settings.alert_for),
            summary: "{{ $labels.instance }} of {{ $labels.job }} cannot be scraped".to_owned(),
            description: format!(
                "Prometheus has failed to scrape {{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) for {}: the instance is down, unreachable, or its /metrics fails.",
                settings.alert_for
            ),
        },
        AlertSpec {
            name: ALL_TARGETS_DOWN,
            severity: "critical",
            slo: None,
            expr: format!("max by (job) (up{{job=\"{job}\"}}) == 0"),
            for_: Some(settings.alert_for),
            summary: "Every instance of {{ $labels.job }} is down".to_owned(),
            description: format!(
                "No instance of {{{{ $labels.job }}}} has been scrapable for {}: the API is most likely unavailable to its users.",
                settings.alert_for
            ),
        },
        AlertSpec {
            name: METRICS_ABSENT,
            severity: "warning",
            slo: None,
            expr: format!("absent(up{{job=\"{job}\"}})\nor\nabsent({count}{{job=\"{job}\"}})"),
            for_: Some(settings.alert_for),
            summary: "The request metrics of {{ $labels.job }} are missing".to_owned(),
            description: format!(
                "For {}, Prometheus has had no target for job {{{{ $labels.job }}}} or no {count} series from it: scrape discovery, the naming preset or the instrumentation is wrong, and every other alert of this job is blind.",
                settings.alert_for
            ),
        },
    ];
    let mut all = burn_alerts(settings);
    all.extend(static_alerts);
    all.extend(target_alerts);
    all
}
