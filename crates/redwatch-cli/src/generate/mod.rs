//! `redwatch generate`: Grafana dashboards, Prometheus recording and alert rules with their
//! promtool unit tests, Prometheus/Alertmanager/Grafana configuration and Kubernetes resources,
//! all derived from one table of metric names ([`naming`]) and one set of SLO settings
//! ([`Settings`]).

mod alerts;
mod anomaly;
mod configs;
mod dashboard;
mod k8s;
mod naming;
mod promql;
mod rule_tests;
mod rules;
mod units;
mod write;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

pub use naming::Preset;
use units::PromDuration;

/// Flags of `redwatch generate` (boxed: there are many, and the subcommand enum stays small).
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    flags: Box<GenerateFlags>,
}

/// The flags themselves.
#[derive(Debug, clap::Args)]
pub struct GenerateFlags {
    /// Naming preset of the API's metrics (as `redwatch serve --naming`), or both presets, each
    /// in its own directory, when not set [default: both]
    #[arg(long, env = "REDWATCH_NAMING", value_enum)]
    pub naming: Option<Preset>,

    /// Prometheus job name of the API
    #[arg(long, env = "REDWATCH_JOB", default_value = "redwatch")]
    pub job: String,

    /// Prometheus job name of the load generator (`redwatch load --metrics-listen`)
    ///
    #[arg(long, env = "REDWATCH_LOAD_JOB", default_value = "redwatch-load")]
    pub load_job: String,

    /// Availability objective in percent of requests answered without a 5xx
    #[arg(long, env = "REDWATCH_SLO", default_value = "99.9")]
    pub slo: f64,

    /// Latency objective in percent of requests faster than --latency-threshold
    #[arg(long, env = "REDWATCH_LATENCY_SLO", default_value = "99")]
    pub latency_slo: f64,

    /// Latency threshold of the latency SLO; must be a histogram bucket bound
    #[arg(long, env = "REDWATCH_LATENCY_THRESHOLD", default_value = "250ms")]
    pub latency_threshold: PromDuration,

    /// Output directory; each preset gets a subdirectory
    #[arg(long, env = "REDWATCH_OUT", default_value = "deploy/generated")]
    pub out: PathBuf,

    /// SLO period: the window the error budget is measured over
    #[arg(long, env = "REDWATCH_SLO_PERIOD", default_value = "30d")]
    pub slo_period: PromDuration,

    /// Paging (critical) burn-rate windows as FACTOR:LONG/SHORT,...
    #[arg(
        long,
        env = "REDWATCH_PAGE_WINDOWS",
        default_value = "14.4:1h/5m,6:6h/30m"
    )]
    pub page_windows: String,

    /// Ticket (warning) burn-rate windows as FACTOR:LONG/SHORT,...
    #[arg(
        long,
        env = "REDWATCH_TICKET_WINDOWS",
        default_value = "3:1d/2h,1:3d/6h"
    )]
    pub ticket_windows: String,

    /// Rate window of the static and anomaly alerts and of per-route recording rules
    #[arg(long, env = "REDWATCH_RATE_WINDOW", default_value = "5m")]
    pub rate_window: PromDuration,

    /// Prometheus scrape interval
    #[arg(long, env = "REDWATCH_SCRAPE_INTERVAL", default_value = "15s")]
    pub scrape_interval: PromDuration,

    /// Evaluation interval of the fast rule group: short windows, paging alerts, targets
    #[arg(long, env = "REDWATCH_EVALUATION_INTERVAL", default_value = "15s")]
    pub evaluation_interval: PromDuration,

    /// Evaluation interval of the slow rule groups: windows of the ticket tier and the SLO period
    /// (derived from recorded rate-window series), anomaly baselines and their alerts
    #[arg(long, env = "REDWATCH_LONG_EVALUATION_INTERVAL", default_value = "1m")]
    pub long_evaluation_interval: PromDuration,

    /// How long a static-threshold, target or absence condition must hold before alerting
    ///
    #[arg(long, env = "REDWATCH_ALERT_FOR", default_value = "5m")]
    pub alert_for: PromDuration,

    /// Daily season of the anomaly baselines: the prediction starts from the value this long ago
    #[arg(long, env = "REDWATCH_ANOMALY_DAY", default_value = "1d")]
    pub anomaly_day: PromDuration,

    /// Weekly season of the anomaly baselines: preferred over the daily one once there is this
    /// much history (plus a day)
    #[arg(long, env = "REDWATCH_ANOMALY_WEEK", default_value = "1w")]
    pub anomaly_week: PromDuration,

    /// Window around the same time a season ago that the prediction and its noise are taken from
    #[arg(long, env = "REDWATCH_ANOMALY_SMOOTHING", default_value = "1h")]
    pub anomaly_smoothing: PromDuration,

    /// How long a value must stay outside its band before the anomaly alert fires
    #[arg(long, env = "REDWATCH_ANOMALY_FOR", default_value = "15m")]
    pub anomaly_for: PromDuration,

    /// Half-width of the anomaly band in standard deviations of the reference window
    #[arg(long, env = "REDWATCH_ANOMALY_SIGMAS", default_value = "3")]
    pub anomaly_sigmas: f64,

    /// Smallest half-width of the anomaly band, in percent of the prediction
    #[arg(long, env = "REDWATCH_ANOMALY_MIN_CHANGE", default_value = "20")]
    pub anomaly_min_change: f64,

    /// Static error-ratio threshold in percent of requests
    #[arg(long, env = "REDWATCH_ERROR_RATIO_THRESHOLD", default_value = "5")]
    pub error_ratio_threshold: f64,

    /// Static threshold on the average response time
    #[arg(
        long,
        env = "REDWATCH_AVERAGE_LATENCY_THRESHOLD",
        default_value = "500ms"
    )]
    pub average_latency_threshold: PromDuration,

    /// Minimum number of events: burn-rate alerts need this many failed (or slow) requests in
    /// their long window, breach and anomaly alerts this many in the rate window
    #[arg(long, env = "REDWATCH_MIN_EVENTS", default_value = "10")]
    pub min_events: u32,

    /// Labels kept by every aggregation besides `job`, comma-separated (absent ones cost
    /// nothing), so one rule set serves many clusters and namespaces in Thanos or Mimir
    #[arg(
        long,
        env = "REDWATCH_AGGREGATION_LABELS",
        default_value = "cluster,namespace",
        value_delimiter = ','
    )]
    pub aggregation_labels: Vec<String>,

    /// Scrape targets (host:port) of the API, comma-separated
    #[arg(
        long,
        env = "REDWATCH_API_TARGETS",
        default_value = "api:5000",
        value_delimiter = ','
    )]
    pub api_targets: Vec<String>,

    /// Scrape targets of the load generator's metrics listener, comma-separated; empty for none
    ///
    #[arg(
        long,
        env = "REDWATCH_LOAD_TARGETS",
        default_value = "load:9091",
        value_delimiter = ','
    )]
    pub load_targets: Vec<String>,

    /// Extra scrape jobs as JOB=host:port, comma-separated; empty for none
    ///
    #[arg(
        long,
        env = "REDWATCH_EXTRA_TARGETS",
        default_value = "node-exporter=node-exporter:9100,cadvisor=cadvisor:8080",
        value_delimiter = ','
    )]
    pub extra_targets: Vec<String>,

    /// Alertmanager address (host:port); empty for none
    #[arg(
        long,
        env = "REDWATCH_ALERTMANAGER",
        default_value = "alertmanager:9093"
    )]
    pub alertmanager: String,

    /// URL the Alertmanager webhook example posts to
    #[arg(
        long,
        env = "REDWATCH_WEBHOOK_URL",
        default_value = "http://webhook:9000/alerts"
    )]
    pub webhook_url: String,

    /// Prometheus URL of the provisioned Grafana data source
    #[arg(
        long,
        env = "REDWATCH_PROMETHEUS_URL",
        default_value = "http://prometheus:9090"
    )]
    pub prometheus_url: String,

    /// Where docs/runbooks.md is read: alert `runbook_url` annotations append `#alertname`. The
    /// default is the path from the repository root, which resolves for a reader of the
    /// committed files; point it at your copy (e.g. a Git web URL) for Alertmanager links
    #[arg(long, env = "REDWATCH_RUNBOOK_URL", default_value = "docs/runbooks.md")]
    pub runbook_url: String,

    /// Grafana base URL (e.g. https://grafana.example.com); when set, alerts carry a
    /// `dashboard_url` annotation that opens the generated dashboard on the alert's job
    #[arg(long, env = "REDWATCH_GRAFANA_URL", default_value = "")]
    pub grafana_url: String,

    /// Labels of the Kubernetes PrometheusRule as KEY=VALUE, comma-separated. kube-prometheus-stack
    /// selects rules by its Helm release name: set `release=<your release>`
    #[arg(
        long,
        env = "REDWATCH_RULE_LABELS",
        default_value = "release=kube-prometheus-stack",
        value_delimiter = ','
    )]
    pub rule_labels: Vec<String>,

    /// Alertmanager: how long to wait for more alerts of a new group before notifying
    #[arg(long, env = "REDWATCH_GROUP_WAIT", default_value = "30s")]
    pub group_wait: PromDuration,

    /// Alertmanager: how long to wait before notifying about changes of a notified group
    #[arg(long, env = "REDWATCH_GROUP_INTERVAL", default_value = "5m")]
    pub group_interval: PromDuration,

    /// Alertmanager: how long to wait before repeating a notification that did not change
    #[arg(long, env = "REDWATCH_REPEAT_INTERVAL", default_value = "4h")]
    pub repeat_interval: PromDuration,
}

/// How a burn-rate alert tier is evaluated: the budget must burn `factor` times faster than
/// sustainable over both the long and the short window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnWindow {
    pub factor: f64,
    pub long: PromDuration,
    pub short: PromDuration,
}

/// How the anomaly baselines are learned (see docs/alerts.md).
#[derive(Debug, Clone)]
pub struct AnomalySettings {
    /// The daily season.
    pub day: PromDuration,
    /// The weekly season.
    pub week: PromDuration,
    /// The window around the same time a season ago.
    pub smoothing: PromDuration,
    pub for_: PromDuration,
    pub sigmas: f64,
    /// Smallest half-width of the band as a share of the prediction.
    pub min_change: f64,
}

/// Most steps a slow window's subquery takes.
pub const MAX_TILES: u64 = 1000;

/// Validated settings shared by every generated file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job: String,
    pub load_job: String,
    /// Availability objective as a ratio, e.g. 0.999.
    pub availability: f64,
    /// Latency objective as a ratio, e.g. 0.99.
    pub latency_objective: f64,
    pub latency_threshold: PromDuration,
    pub slo_period: PromDuration,
    pub page: Vec<BurnWindow>,
    pub ticket: Vec<BurnWindow>,
    pub rate_window: PromDuration,
    pub scrape_interval: PromDuration,
    pub evaluation_interval: PromDuration,
    pub long_evaluation_interval: PromDuration,
    pub alert_for: PromDuration,
    pub anomaly: AnomalySettings,
    /// Static error-ratio threshold as a ratio.
    pub error_ratio_threshold: f64,
    pub average_latency_threshold: PromDuration,
    pub min_events: u32,
    /// Labels every aggregation keeps besides `job`.
    pub aggregation_labels: Vec<String>,
    pub api_targets: Vec<String>,
    pub load_targets: Vec<String>,
    /// (job, target) pairs.
    pub extra_targets: Vec<(String, String)>,
    pub alertmanager: Option<String>,
    pub webhook_url: String,
    pub prometheus_url: String,
    pub runbook_url: String,
    pub grafana_url: Option<String>,
    /// (key, value) labels of the PrometheusRule resource.
    pub rule_labels: Vec<(String, String)>,
    pub group_wait: PromDuration,
    pub group_interval: PromDuration,
    pub repeat_interval: PromDuration,
}

impl Settings {
    /// Windows recorded by the fast group: the rate window (from the raw counters) and both
    /// windows of every paging tier (averages of the rate-window series), ascending.
    pub fn fast_windows(&self) -> Vec<PromDuration> {
        let mut windows: Vec<PromDuration> = self
            .page
            .iter()
            .flat_map(|window| [window.long, window.short])
            .chain([self.rate_window])
            .collect();
        windows.sort();
        windows.dedup();
        windows
    }

    /// Windows derived in the slow group from the recorded rate-window series: those of the
    /// ticket tiers that the fast group does not record, and the SLO period, ascending.
    pub fn slow_windows(&self) -> Vec<PromDuration> {
        let fast = self.fast_windows();
        let mut windows: Vec<PromDuration> = self
            .ticket
            .iter()
            .flat_map(|window| [window.long, window.short])
            .chain([self.slo_period])
            .filter(|window| !fast.contains(window))
            .collect();
        windows.sort();
        windows.dedup();
        windows
    }

    /// The fast window a slow window is derived from: the shortest that tiles it in at most
    /// [`MAX_TILES`] steps, so a 1-day window averages 288 five-minute rates and a 30-day window
    /// 720 hourly ones. Each result is at most one step old.
    pub fn slow_window_step(&self, window: PromDuration) -> PromDuration {
        self.fast_windows()
            .into_iter()
            .find(|step| {
                window.millis().is_multiple_of(step.millis())
                    && window.millis() / step.millis() <= MAX_TILES
            })
            .unwrap_or(self.rate_window)
    }

    /// The `by (...)` list of job-level aggregations, e.g. `cluster, namespace, job`.
    pub fn by_job(&self) -> String {
        let mut labels = self.aggregation_labels.clone();
        labels.push("job".to_owned());
        labels.join(", ")
    }

    /// The labels alerts of one job are told apart by, for Alertmanager's `equal` and `group_by`.
    pub fn job_labels(&self) -> Vec<String> {
        let mut labels = self.aggregation_labels.clone();
        labels.push("job".to_owned());
        labels
    }

    /// Error budget of the availability SLO, e.g. 0.001.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.availability
    }

    /// Error budget of the latency SLO, e.g. 0.01.
    pub fn latency_budget(&self) -> f64 {
        1.0 - self.latency_objective
    }

    /// The first lines of every generated text file, as comments starting with `comment`.
    pub fn header(&self, comment: &str) -> String {
        format!(
            "{comment} Generated by `redwatch generate` (job {}, availability SLO {}%, latency SLO {}% under {}).\n\
             {comment} Do not edit: change the generator's flags and regenerate.\n",
            self.job,
            units::num(self.availability * 100.0),
            units::num(self.latency_objective * 100.0),
            self.latency_threshold
        )
    }

    /// The latency threshold in seconds as it appears in the `le` label.
    pub fn threshold_le(&self) -> f64 {
        self.latency_threshold.secs_f64()
    }
}

fn percent_to_ratio(flag: &str, percent: f64) -> anyhow::Result<f64> {
    if !(percent.is_finite() && percent > 0.0 && percent < 100.0) {
        bail!("--{flag} {percent} must be a percentage strictly between 0 and 100");
    }
    // Round away the binary noise of e.g. 99.9 / 100 so budgets print as written.
    Ok((percent * 1e8).round() / 1e10)
}

fn parse_windows(flag: &str, spec: &str) -> anyhow::Result<Vec<BurnWindow>> {
    let mut windows = Vec::new();
    for item in spec
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let shape = || format!("--{flag}: {item:?} is not FACTOR:LONG/SHORT (e.g. 14.4:1h/5m)");
        let (factor, durations) = item.split_once(':').with_context(shape)?;
        let (long, short) = durations.split_once('/').with_context(shape)?;
        let factor: f64 = factor.trim().parse().ok().with_context(shape)?;
        let long: PromDuration = long
            .trim()
            .parse()
            .map_err(|err| anyhow::anyhow!("--{flag}: {err}"))?;
        let short: PromDuration = short
            .trim()
            .parse()
            .map_err(|err| anyhow::anyhow!("--{flag}: {err}"))?;
        if !(factor.is_finite() && factor > 0.0) {
            bail!("--{flag}: burn factor in {item:?} must be positive");
        }
        if short >= long {
            bail!("--{flag}: in {item:?} the short window must be shorter than the long window");
        }
        windows.push(BurnWindow {
            factor,
            long,
            short,
        });
    }
    if windows.is_empty() {
        bail!("--{flag} needs at least one FACTOR:LONG/SHORT window");
    }
    Ok(windows)
}

fn non_empty(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

fn is_label_value_safe(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

fn is_label_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Kubernetes label keys (optionally prefixed) and values, as the API server accepts them.
fn is_kubernetes_label(key: &str, value: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    let part = |text: &str, max: usize| {
        text.len() <= max
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && text
                .chars()
                .next()
                .is_none_or(|c| c.is_ascii_alphanumeric())
            && text
                .chars()
                .last()
                .is_none_or(|c| c.is_ascii_alphanumeric())
    };
    !name.is_empty() && part(name, 63) && part(value, 63)
}

impl Settings {
    /// Validates the flags into settings; every error is one line naming the flag.
    pub fn from_args(args: &GenerateFlags) -> anyhow::Result<Self> {
        for (flag, value) in [("job", &args.job), ("load-job", &args.load_job)] {
            if !is_label_value_safe(value) {
                bail!(
                    "--{flag} {value:?} must be non-empty and use only letters, digits, - _ . : /"
                );
            }
        }
        let availability = percent_to_ratio("slo", args.slo)?;
        let latency_objective = percent_to_ratio("latency-slo", args.latency_slo)?;
        let threshold = args.latency_threshold.secs_f64();
        if !naming::BUCKETS
            .iter()
            .any(|bound| (bound - threshold).abs() < 1e-9)
        {
            let bounds: Vec<String> = naming::BUCKETS
                .iter()
                .map(|b| format!("{}ms", b * 1000.0))
                .collect();
            bail!(
                "--latency-threshold {} is not a histogram bucket bound (one of {})",
                args.latency_threshold,
                bounds.join(" ")
            );
        }
        let page = parse_windows("page-windows", &args.page_windows)?;
        let ticket = parse_windows("ticket-windows", &args.ticket_windows)?;
        for (name, budget) in [
            ("--slo", 1.0 - availability),
            ("--latency-slo", 1.0 - latency_objective),
        ] {
            for window in page.iter().chain(&ticket) {
                if window.factor * budget >= 1.0 {
                    bail!(
                        "{name}: burn factor {} x error budget {} >= 1, so that alert could never fire; \
                         raise the objective or lower the factor",
                        units::num(window.factor),
                        units::num(budget)
                    );
                }
            }
        }
        for (flag, duration) in [
            ("scrape-interval", args.scrape_interval),
            ("evaluation-interval", args.evaluation_interval),
            ("long-evaluation-interval", args.long_evaluation_interval),
            ("rate-window", args.rate_window),
            ("slo-period", args.slo_period),
            ("anomaly-day", args.anomaly_day),
            ("anomaly-smoothing", args.anomaly_smoothing),
            ("group-interval", args.group_interval),
            ("repeat-interval", args.repeat_interval),
        ] {
            if duration.millis() == 0 {
                bail!("--{flag} must be longer than 0s");
            }
        }
        if args.long_evaluation_interval < args.evaluation_interval {
            bail!(
                "--long-evaluation-interval {} must not be shorter than --evaluation-interval {}",
                args.long_evaluation_interval,
                args.evaluation_interval
            );
        }
        // Slow rules read series of the fast group; they must still be within the lookback.
        if args.long_evaluation_interval > PromDuration::from_millis(5 * 60_000) {
            bail!(
                "--long-evaluation-interval {} must be at most 5m (Prometheus's lookback)",
                args.long_evaluation_interval
            );
        }
        // rate() needs two samples inside its window; four make it robust to one missed scrape.
        let shortest = page
            .iter()
            .chain(&ticket)
            .map(|w| w.short)
            .chain([args.rate_window])
            .min();
        if let Some(shortest) =
            shortest.filter(|shortest| *shortest < args.scrape_interval.times(4))
        {
            bail!(
                "window {shortest} is shorter than 4 x --scrape-interval {}; rate() would be unreliable",
                args.scrape_interval
            );
        }
        let longest = page.iter().chain(&ticket).map(|w| w.long).max();
        if let Some(longest) = longest.filter(|longest| *longest > args.slo_period) {
            bail!(
                "burn-rate window {longest} is longer than --slo-period {}",
                args.slo_period
            );
        }
        let anomaly = Self::anomaly_settings(args)?;
        let error_ratio_threshold =
            percent_to_ratio("error-ratio-threshold", args.error_ratio_threshold)?;
        if args.average_latency_threshold.millis() == 0 {
            bail!("--average-latency-threshold must be longer than 0s");
        }
        if args.min_events == 0 {
            bail!("--min-events must be at least 1");
        }
        let aggregation_labels = non_empty(&args.aggregation_labels);
        for label in &aggregation_labels {
            if !is_label_name(label) || matches!(label.as_str(), "job" | "le" | "instance") {
                bail!(
                    "--aggregation-labels: {label:?} is not a label name that can be kept (not job, le or instance)"
                );
            }
        }
        let api_targets = non_empty(&args.api_targets);
        if api_targets.is_empty() {
            bail!("--api-targets needs at least one host:port");
        }
        let load_targets = non_empty(&args.load_targets);
        let mut extra_targets = Vec::new();
        for item in non_empty(&args.extra_targets) {
            let (job, target) = item
                .split_once('=')
                .with_context(|| format!("--extra-targets: {item:?} is not JOB=host:port"))?;
            if !is_label_value_safe(job) || target.is_empty() {
                bail!("--extra-targets: {item:?} is not JOB=host:port");
            }
            extra_targets.push((job.to_owned(), target.to_owned()));
        }
        for (flag, target) in api_targets
            .iter()
            .map(|t| ("api-targets", t))
            .chain(load_targets.iter().map(|t| ("load-targets", t)))
            .chain(extra_targets.iter().map(|(_, t)| ("extra-targets", t)))
        {
            if target.contains("://") || target.contains('/') {
                bail!(
                    "--{flag}: scrape target {target:?} must be host:port, without scheme or path"
                );
            }
        }
        let mut jobs = vec![args.job.as_str()];
        if !load_targets.is_empty() {
            jobs.push(args.load_job.as_str());
        }
        jobs.extend(extra_targets.iter().map(|(job, _)| job.as_str()));
        for (index, job) in jobs.iter().enumerate() {
            if jobs[..index].contains(job) {
                bail!("scrape job name {job:?} is used twice (--job, --load-job, --extra-targets)");
            }
        }
        let alertmanager = Some(args.alertmanager.trim().to_owned()).filter(|a| !a.is_empty());
        if let Some(address) = alertmanager.as_deref().filter(|a| a.contains('/')) {
            bail!("--alertmanager {address:?} must be host:port, without scheme or path");
        }
        for (flag, url) in [
            ("webhook-url", &args.webhook_url),
            ("prometheus-url", &args.prometheus_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--{flag} {url:?} must be an http:// or https:// URL");
            }
        }
        let runbook_url = args.runbook_url.trim().to_owned();
        if runbook_url.is_empty() || runbook_url.contains(char::is_whitespace) {
            bail!("--runbook-url {runbook_url:?} must be a URL or path without spaces");
        }
        let grafana_url = Some(args.grafana_url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty());
        if let Some(url) = grafana_url
            .as_deref()
            .filter(|url| !(url.starts_with("http://") || url.starts_with("https://")))
        {
            bail!("--grafana-url {url:?} must be an http:// or https:// URL");
        }
        let mut rule_labels = Vec::new();
        for item in non_empty(&args.rule_labels) {
            let (key, value) = item
                .split_once('=')
                .filter(|(key, value)| is_kubernetes_label(key, value))
                .with_context(|| {
                    format!("--rule-labels: {item:?} is not a Kubernetes label KEY=VALUE")
                })?;
            rule_labels.push((key.to_owned(), value.to_owned()));
        }
        Ok(Self {
            job: args.job.clone(),
            load_job: args.load_job.clone(),
            availability,
            latency_objective,
            latency_threshold: args.latency_threshold,
            slo_period: args.slo_period,
            page,
            ticket,
            rate_window: args.rate_window,
            scrape_interval: args.scrape_interval,
            evaluation_interval: args.evaluation_interval,
            long_evaluation_interval: args.long_evaluation_interval,
            alert_for: args.alert_for,
            anomaly,
            error_ratio_threshold,
            average_latency_threshold: args.average_latency_threshold,
            min_events: args.min_events,
            aggregation_labels,
            api_targets,
            load_targets,
            extra_targets,
            alertmanager,
            webhook_url: args.webhook_url.clone(),
            prometheus_url: args.prometheus_url.clone(),
            runbook_url,
            grafana_url,
            rule_labels,
            group_wait: args.group_wait,
            group_interval: args.group_interval,
            repeat_interval: args.repeat_interval,
        })
        .and_then(Self::check_slow_windows)
    }

    fn anomaly_settings(args: &GenerateFlags) -> anyhow::Result<AnomalySettings> {
        let (day, week, smoothing) = (args.anomaly_day, args.anomaly_week, args.anomaly_smoothing);
        // The reference window holds several recorded samples and fits a season many times, so
        // "the same time a day ago" stays a time of day.
        if smoothing < args.evaluation_interval.times(2) {
            bail!(
                "--anomaly-smoothing {smoothing} must be at least 2 x --evaluation-interval {}",
                args.evaluation_interval
            );
        }
        if day < smoothing.times(12) {
            bail!(
                "--anomaly-day {day} must be at least 12 x --anomaly-smoothing {smoothing} = {}",
                smoothing.times(12)
            );
        }
        if week < day.times(2) {
            bail!("--anomaly-week {week} must be at least 2 x --anomaly-day {day}");
        }
        if args.anomaly_for.plus(args.rate_window).times(2) > day {
            bail!(
                "--anomaly-day {day} must be at least 2 x (--anomaly-for + --rate-window), or an anomaly would move the daily median it is measured against"
            );
        }
        if !(args.anomaly_sigmas.is_finite() && args.anomaly_sigmas > 0.0) {
            bail!("--anomaly-sigmas {} must be positive", args.anomaly_sigmas);
        }
        let min_change = percent_to_ratio("anomaly-min-change", args.anomaly_min_change)?;
        Ok(AnomalySettings {
            day,
            week,
            smoothing,
            for_: args.anomaly_for,
            sigmas: args.anomaly_sigmas,
            min_change,
        })
    }

    /// Slow windows are averages of rate-window samples taken one rate window apart, so they
    /// must be whole multiples of it.
    fn check_slow_windows(self) -> anyhow::Result<Self> {
        for window in self.slow_windows() {
            if !window.millis().is_multiple_of(self.rate_window.millis()) {
                bail!(
                    "window {window} (--ticket-windows or --slo-period) is not a multiple of --rate-window {}",
                    self.rate_window
                );
            }
        }
        Ok(self)
    }
}

/// One generated file: a path relative to the output directory and its content.
#[derive(Debug)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub content: String,
}

/// Everything the generator writes for one preset, paths relative to the preset's directory.
pub fn generate_preset(preset: Preset, settings: &Settings) -> anyhow::Result<Vec<GeneratedFile>> {
    let rule_file = rules::rule_file(preset, settings);
    let rules_yaml = rules::to_yaml(&rule_file, settings)?;
    let dashboard = dashboard::api_overview(preset, settings);
    let dashboard_json = serde_json::to_string_pretty(&dashboard)? + "\n";
    let mut files = vec![
        GeneratedFile {
            path: "prometheus/prometheus.yml".into(),
            content: configs::prometheus(settings)?,
        },
        GeneratedFile {
            path: "prometheus/rules/redwatch.rules.yml".into(),
            content: rules_yaml,
        },
        GeneratedFile {
            path: "alertmanager/alertmanager.yml".into(),
            content: configs::alertmanager(settings)?,
        },
        GeneratedFile {
            path: format!("grafana/dashboards/{}", dashboard::FILE_NAME).into(),
            content: dashboard_json.clone(),
        },
        GeneratedFile {
            path: "grafana/provisioning/datasources/redwatch.yml".into(),
            content: configs::grafana_datasource(settings)?,
        },
        GeneratedFile {
            path: "grafana/provisioning/dashboards/redwatch.yml".into(),
            content: configs::grafana_dashboard_provider(settings)?,
        },
    ];
    for (name, content) in rule_tests::test_files(preset, settings)? {
        files.push(GeneratedFile {
            path: format!("prometheus/tests/{name}").into(),
            content,
        });
    }
    files.extend(k8s::files(preset, settings, &rule_file, &dashboard_json)?);
    Ok(files)
}

/// Entry point of `redwatch generate`.
pub async fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let args = *args.flags;
    let settings = Settings::from_args(&args)?;
    if args.out.exists() && !args.out.is_dir() {
        bail!("--out {} is not a directory", args.out.display());
    }
    let presets: &[Preset] = match &args.naming {
        None => &Preset::ALL,
        Some(preset) => std::slice::from_ref(preset),
    };
    // Render everything before writing anything, so a failure leaves no half-written set.
    let mut all = Vec::new();
    for &preset in presets {
        for file in generate_preset(preset, &settings)? {
            all.push(GeneratedFile {
                path: args.out.join(preset.name()).join(&file.path),
                content: file.content,
            });
        }
    }
    for file in &all {
        write::atomically(&file.path, &file.content)?;
    }
    println!(
        "redwatch generate: wrote {} files under {}",
        all.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
