//! The flags of `redwatch generate` and the [`Settings`] every generated file is derived from.
//! Each value is checked by its clap value parser; [`GenerateFlags::settings`] adds the checks
//! that involve several flags.

use std::path::PathBuf;

use redwatch::Naming;

use super::naming::{AppMetrics, MetricNames};
use super::units::{self, PromDuration};

/// Flags of `redwatch generate` (boxed: there are many, and the subcommand enum stays small).
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub flags: Box<GenerateFlags>,
}

/// The flags themselves, each already parsed to its type.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateFlags {
    /// Naming preset of the API's metrics (as `redwatch serve --naming`), or both presets, each
    /// in its own directory, when not set [default: both]
    #[arg(long, env = "REDWATCH_NAMING", value_parser = naming_parser())]
    pub naming: Option<Naming>,

    /// Prometheus job name of the API
    #[arg(long, env = "REDWATCH_JOB", default_value = "redwatch", value_parser = job_name)]
    pub job: String,

    /// Prometheus job name of the load generator (`redwatch load --metrics-listen`)
    ///
    #[arg(long, env = "REDWATCH_LOAD_JOB", default_value = "redwatch-load", value_parser = job_name)]
    pub load_job: String,

    /// Availability objective in percent of requests answered without a 5xx
    #[arg(long, env = "REDWATCH_SLO", default_value = "99.9", value_parser = percent_as_ratio)]
    pub slo: f64,

    /// Latency objective in percent of requests faster than --latency-threshold
    #[arg(long, env = "REDWATCH_LATENCY_SLO", default_value = "99", value_parser = percent_as_ratio)]
    pub latency_slo: f64,

    /// Latency threshold of the latency SLO; must be a histogram bucket bound (see --buckets)
    #[arg(long, env = "REDWATCH_LATENCY_THRESHOLD", default_value = "250ms")]
    pub latency_threshold: PromDuration,

    /// Prefix of the API's RED metric names, as given to the library's
    /// `MetricsBuilder::namespace` (e.g. `shop` for `shop_http_server_request_duration_seconds`)
    /// [default: none]
    #[arg(long, env = "REDWATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// A constant label of the API's metrics as NAME=VALUE, as given to the library's
    /// `MetricsBuilder::const_label`; repeatable or comma-separated. The generated rule tests'
    /// series carry them [default: none]
    #[arg(long = "const-label", env = "REDWATCH_CONST_LABEL", value_name = "NAME=VALUE",
          value_delimiter = ',', value_parser = const_label)]
    pub const_labels: Vec<(String, String)>,

    /// Upper bounds of the API's duration buckets in seconds, comma-separated, as given to the
    /// library's `MetricsBuilder::duration_buckets` [default: the library's OpenTelemetry
    /// buckets, 0.005 to 10]
    #[arg(long, env = "REDWATCH_BUCKETS", value_name = "SECONDS,...", value_parser = list(seconds))]
    pub buckets: Option<List<f64>>,

    /// Output directory; each preset gets a subdirectory
    #[arg(long, env = "REDWATCH_OUT", default_value = "deploy/generated")]
    pub out: PathBuf,

    /// SLO period: the window the error budget is measured over
    #[arg(long, env = "REDWATCH_SLO_PERIOD", default_value = "30d", value_parser = nonzero_duration)]
    pub slo_period: PromDuration,

    /// Paging (critical) burn-rate windows as FACTOR:LONG/SHORT,...
    #[arg(
        long,
        env = "REDWATCH_PAGE_WINDOWS",
        default_value = "14.4:1h/5m,6:6h/30m",
        value_parser = burn_windows
    )]
    pub page_windows: List<BurnWindow>,

    /// Ticket (warning) burn-rate windows as FACTOR:LONG/SHORT,...
    #[arg(
        long,
        env = "REDWATCH_TICKET_WINDOWS",
        default_value = "3:1d/2h,1:3d/6h",
        value_parser = burn_windows
    )]
    pub ticket_windows: List<BurnWindow>,

    /// Rate window of the static and anomaly alerts and of per-route recording rules
    #[arg(long, env = "REDWATCH_RATE_WINDOW", default_value = "5m", value_parser = nonzero_duration)]
    pub rate_window: PromDuration,

    /// Prometheus scrape interval
    #[arg(long, env = "REDWATCH_SCRAPE_INTERVAL", default_value = "15s", value_parser = nonzero_duration)]
    pub scrape_interval: PromDuration,

    /// Evaluation interval of the fast rule group: short windows, paging alerts, targets
    #[arg(long, env = "REDWATCH_EVALUATION_INTERVAL", default_value = "15s", value_parser = nonzero_duration)]
    pub evaluation_interval: PromDuration,

    /// Evaluation interval of the slow rule groups: windows of the ticket tier and the SLO period
    /// (derived from recorded rate-window series), anomaly baselines and their alerts
    #[arg(long, env = "REDWATCH_LONG_EVALUATION_INTERVAL", default_value = "1m", value_parser = nonzero_duration)]
    pub long_evaluation_interval: PromDuration,

    /// How long a static-threshold, target or absence condition must hold before alerting
    ///
    #[arg(long, env = "REDWATCH_ALERT_FOR", default_value = "5m")]
    pub alert_for: PromDuration,

    /// Daily season of the anomaly baselines: the prediction starts from the value this long ago
    #[arg(long, env = "REDWATCH_ANOMALY_DAY", default_value = "1d", value_parser = nonzero_duration)]
    pub anomaly_day: PromDuration,

    /// Weekly season of the anomaly baselines: preferred over the daily one once there is this
    /// much history (plus a day)
    #[arg(long, env = "REDWATCH_ANOMALY_WEEK", default_value = "1w")]
    pub anomaly_week: PromDuration,

    /// Window around the same time a season ago that the prediction and its noise are taken from
    #[arg(long, env = "REDWATCH_ANOMALY_SMOOTHING", default_value = "1h", value_parser = nonzero_duration)]
    pub anomaly_smoothing: PromDuration,

    /// How long a value must stay outside its band before the anomaly alert fires
    #[arg(long, env = "REDWATCH_ANOMALY_FOR", default_value = "15m")]
    pub anomaly_for: PromDuration,

    /// Half-width of the anomaly band in standard deviations of the reference window
    #[arg(long, env = "REDWATCH_ANOMALY_SIGMAS", default_value = "3", value_parser = positive_number)]
    pub anomaly_sigmas: f64,

    /// Smallest half-width of the anomaly band, in percent of the prediction
    #[arg(long, env = "REDWATCH_ANOMALY_MIN_CHANGE", default_value = "20", value_parser = percent_as_ratio)]
    pub anomaly_min_change: f64,

    /// Static error-ratio threshold in percent of requests
    #[arg(long, env = "REDWATCH_ERROR_RATIO_THRESHOLD", default_value = "5", value_parser = percent_as_ratio)]
    pub error_ratio_threshold: f64,

    /// Static threshold on the average response time
    #[arg(
        long,
        env = "REDWATCH_AVERAGE_LATENCY_THRESHOLD",
        default_value = "500ms",
        value_parser = nonzero_duration
    )]
    pub average_latency_threshold: PromDuration,

    /// Minimum number of events: burn-rate alerts need this many failed (or slow) requests in
    /// their long window, breach and anomaly alerts this many in the rate window
    #[arg(long, env = "REDWATCH_MIN_EVENTS", default_value = "10",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub min_events: u32,

    /// Labels kept by every aggregation besides `job`, comma-separated (absent ones cost
    /// nothing), so one rule set serves many clusters and namespaces in Thanos or Mimir
    #[arg(
        long,
        env = "REDWATCH_AGGREGATION_LABELS",
        default_value = "cluster,namespace",
        value_parser = list(aggregation_label)
    )]
    pub aggregation_labels: List<String>,

    /// Scrape targets (host:port) of the API, comma-separated
    #[arg(
        long,
        env = "REDWATCH_API_TARGETS",
        default_value = "api:5000",
        value_parser = list(scrape_target)
    )]
    pub api_targets: List<String>,

    /// Scrape targets of the load generator's metrics listener, comma-separated; empty for none
    ///
    #[arg(
        long,
        env = "REDWATCH_LOAD_TARGETS",
        default_value = "load:9091",
        value_parser = list(scrape_target)
    )]
    pub load_targets: List<String>,

    /// Extra scrape jobs as JOB=host:port, comma-separated; empty for none
    ///
    #[arg(
        long,
        env = "REDWATCH_EXTRA_TARGETS",
        default_value = "node-exporter=node-exporter:9100,cadvisor=cadvisor:8080",
        value_parser = list(extra_target)
    )]
    pub extra_targets: List<(String, String)>,

    /// Compose service of the API: cAdvisor's series of its containers
    /// (`container_label_com_docker_compose_service`) feed the container panels and alerts; empty
    /// for none
    #[arg(long, env = "REDWATCH_COMPOSE_SERVICE", default_value = "api", value_parser = compose_service)]
    pub compose_service: Optional<String>,

    /// PromQL label matchers of the API's pods in the kubelet's cAdvisor series (comma-separated
    /// inside one value); they feed the container panels and alerts next to the compose service's
    /// series; empty for none
    #[arg(
        long,
        env = "REDWATCH_KUBERNETES_PODS",
        default_value = "namespace=\"redwatch\", pod=~\"redwatch-[a-z0-9]+-[a-z0-9]+\"",
        value_parser = label_matchers
    )]
    pub kubernetes_pods: Optional<String>,

    /// Alertmanager address (host:port); empty for none
    #[arg(
        long,
        env = "REDWATCH_ALERTMANAGER",
        default_value = "alertmanager:9093",
        value_parser = alertmanager_address
    )]
    pub alertmanager: Optional<String>,

    /// URL the Alertmanager webhook example posts to
    #[arg(
        long,
        env = "REDWATCH_WEBHOOK_URL",
        default_value = "http://webhook:9000/alerts",
        value_parser = http_url
    )]
    pub webhook_url: String,

    /// Prometheus URL of the provisioned Grafana data source
    #[arg(
        long,
        env = "REDWATCH_PROMETHEUS_URL",
        default_value = "http://prometheus:9090",
        value_parser = http_url
    )]
    pub prometheus_url: String,

    /// Where docs/runbooks.md is read: alert `runbook_url` annotations append `#alertname`. The
    /// default is the path from the repository root, which resolves for a reader of the
    /// committed files; point it at your copy (e.g. a Git web URL) for Alertmanager links
    #[arg(long, env = "REDWATCH_RUNBOOK_URL", default_value = "docs/runbooks.md", value_parser = runbook_url)]
    pub runbook_url: String,

    /// Grafana base URL (e.g. https://grafana.example.com); when set, alerts carry a
    /// `dashboard_url` annotation that opens the generated dashboard on the alert's job
    #[arg(long, env = "REDWATCH_GRAFANA_URL", default_value = "", value_parser = grafana_url)]
    pub grafana_url: Optional<String>,

    /// Labels of the Kubernetes PrometheusRule as KEY=VALUE, comma-separated. kube-prometheus-stack
    /// selects rules by its Helm release name: set `release=<your release>`
    #[arg(
        long,
        env = "REDWATCH_RULE_LABELS",
        default_value = "release=kube-prometheus-stack",
        value_parser = list(kubernetes_label)
    )]
    pub rule_labels: List<(String, String)>,

    /// Latency quantiles read the API's native histograms (`redwatch serve --native-histograms`,
    /// the library's `MetricsBuilder::native_histograms`) instead of its classic buckets.
    /// Prometheus must scrape them (`--enable-feature=native-histograms`) and keep the classic
    /// series too (`always_scrape_classic_histograms: true`), which the other rules read
    /// [default: off]
    #[arg(long, env = "REDWATCH_NATIVE_HISTOGRAMS")]
    pub native_histograms: bool,

    /// Alertmanager: how long to wait for more alerts of a new group before notifying
    #[arg(long, env = "REDWATCH_GROUP_WAIT", default_value = "30s")]
    pub group_wait: PromDuration,

    /// Alertmanager: how long to wait before notifying about changes of a notified group
    #[arg(long, env = "REDWATCH_GROUP_INTERVAL", default_value = "5m", value_parser = nonzero_duration)]
    pub group_interval: PromDuration,

    /// Alertmanager: how long to wait before repeating a notification that did not change
    #[arg(long, env = "REDWATCH_REPEAT_INTERVAL", default_value = "4h", value_parser = nonzero_duration)]
    pub repeat_interval: PromDuration,
}

/// A comma-separated list given as one value; empty items are skipped, so an empty value is an
/// empty list.
#[derive(Debug, Clone, PartialEq)]
pub struct List<T>(pub Vec<T>);

/// A value whose empty form means "none".
#[derive(Debug, Clone, PartialEq)]
pub struct Optional<T>(pub Option<T>);

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

/// Checked settings shared by every generated file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job: String,
    pub load_job: String,
    /// Availability objective as a ratio, e.g. 0.999.
    pub availability: f64,
    /// Latency objective as a ratio, e.g. 0.99.
    pub latency_objective: f64,
    pub latency_threshold: PromDuration,
    /// How the API configured the library's metrics.
    pub app: AppMetrics,
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
    /// Compose service of the API (cAdvisor's `container_label_com_docker_compose_service`).
    pub compose_service: Option<String>,
    /// Label matchers of the API's pods in the kubelet's cAdvisor series.
    pub kubernetes_pods: Option<String>,
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
    /// Latency quantiles read the native histograms.
    pub native_histograms: bool,
}

/// What `redwatch generate` writes, and where.
#[derive(Debug, Clone)]
pub struct GenerateSettings {
    /// The presets to write, each in its own directory.
    pub presets: Vec<Naming>,
    pub out: PathBuf,
    pub settings: Settings,
}

impl GenerateArgs {
    /// The checked settings of a `redwatch generate` run.
    pub fn settings(self) -> Result<GenerateSettings, clap::Error> {
        let flags = *self.flags;
        // Checked here rather than by a value parser: the flags' defaults (the start of settings
        // built in code) do not depend on what the working directory holds.
        if flags.out.exists() && !flags.out.is_dir() {
            return Err(crate::invalid(format!(
                "--out {} is not a directory",
                flags.out.display()
            )));
        }
        let settings = flags.settings().map_err(crate::invalid)?;
        Ok(GenerateSettings {
            presets: flags.presets(),
            out: flags.out,
            settings,
        })
    }
}

impl GenerateFlags {
    /// The flags' defaults, without the environment: the start of settings built in code.
    pub fn defaults() -> Result<Self, clap::Error> {
        crate::defaults()
    }

    /// The presets written: the one given, or both.
    pub fn presets(&self) -> Vec<Naming> {
        match self.naming {
            Some(naming) => vec![naming],
            None => Naming::ALL.to_vec(),
        }
    }

    /// Checks the combinations of flags; every error is one line naming a flag.
    pub fn settings(&self) -> Result<Settings, String> {
        let app = self.app_metrics(&self.presets())?;
        self.check_latency_threshold(&app)?;
        self.check_burn_factors()?;
        self.check_intervals()?;
        self.check_windows()?;
        self.check_scrape_jobs()?;
        let settings = Settings {
            job: self.job.clone(),
            load_job: self.load_job.clone(),
            availability: self.slo,
            latency_objective: self.latency_slo,
            latency_threshold: self.latency_threshold,
            app,
            slo_period: self.slo_period,
            page: self.page_windows.0.clone(),
            ticket: self.ticket_windows.0.clone(),
            rate_window: self.rate_window,
            scrape_interval: self.scrape_interval,
            evaluation_interval: self.evaluation_interval,
            long_evaluation_interval: self.long_evaluation_interval,
            alert_for: self.alert_for,
            anomaly: self.anomaly_settings()?,
            error_ratio_threshold: self.error_ratio_threshold,
            average_latency_threshold: self.average_latency_threshold,
            min_events: self.min_events,
            aggregation_labels: self.aggregation_labels.0.clone(),
            api_targets: self.api_targets.0.clone(),
            load_targets: self.load_targets.0.clone(),
            extra_targets: self.extra_targets.0.clone(),
            compose_service: self.compose_service.0.clone(),
            kubernetes_pods: self.kubernetes_pods.0.clone(),
            alertmanager: self.alertmanager.0.clone(),
            webhook_url: self.webhook_url.clone(),
            prometheus_url: self.prometheus_url.clone(),
            runbook_url: self.runbook_url.clone(),
            grafana_url: self.grafana_url.0.clone(),
            rule_labels: self.rule_labels.0.clone(),
            group_wait: self.group_wait,
            group_interval: self.group_interval,
            repeat_interval: self.repeat_interval,
            native_histograms: self.native_histograms,
        };
        settings.check_slow_windows()?;
        Ok(settings)
    }

    /// The library configuration the API uses, checked by the library itself for every preset
    /// written, one flag at a time so the error names the flag.
    fn app_metrics(&self, presets: &[Naming]) -> Result<AppMetrics, String> {
        let app = AppMetrics {
            namespace: self.namespace.clone(),
            const_labels: self.const_labels.clone(),
            duration_buckets: match &self.buckets {
                Some(buckets) => buckets.0.clone(),
                None => redwatch::DEFAULT_DURATION_BUCKETS.to_vec(),
            },
        };
        for &naming in presets {
            let only = |namespace, const_labels, buckets| AppMetrics {
                namespace,
                const_labels,
                duration_buckets: buckets,
            };
            let default_buckets = redwatch::DEFAULT_DURATION_BUCKETS.to_vec();
            let parts = [
                (
                    "--namespace",
                    only(app.namespace.clone(), Vec::new(), default_buckets.clone()),
                ),
                (
                    "--const-label",
                    only(None, app.const_labels.clone(), default_buckets),
                ),
                (
                    "--buckets",
                    only(None, Vec::new(), app.duration_buckets.clone()),
                ),
            ];
            for (flag, part) in parts {
                part.check(naming)
                    .map_err(|err| format!("invalid {flag}: {err}"))?;
            }
        }
        Ok(app)
    }

    fn check_latency_threshold(&self, app: &AppMetrics) -> Result<(), String> {
        let threshold = self.latency_threshold.secs_f64();
        if app
            .duration_buckets
            .iter()
            .any(|bound| (bound - threshold).abs() < 1e-9)
        {
            return Ok(());
        }
        let bounds: Vec<String> = app
            .duration_buckets
            .iter()
            .map(|b| format!("{}ms", b * 1000.0))
            .collect();
        Err(format!(
            "--latency-threshold {} is not a histogram bucket bound (one of {})",
            self.latency_threshold,
            bounds.join(" ")
        ))
    }

    /// A burn factor times the budget of 1 or more is an alert that can never fire.
    fn check_burn_factors(&self) -> Result<(), String> {
        for (name, budget) in [
            ("--slo", 1.0 - self.slo),
            ("--latency-slo", 1.0 - self.latency_slo),
        ] {
            for window in self.page_windows.0.iter().chain(&self.ticket_windows.0) {
                if window.factor * budget >= 1.0 {
                    return Err(format!(
                        "{name}: burn factor {} x error budget {} >= 1, so that alert could never fire; \
                         raise the objective or lower the factor",
                        units::num(window.factor),
                        units::num(budget)
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_intervals(&self) -> Result<(), String> {
        if self.long_evaluation_interval < self.evaluation_interval {
            return Err(format!(
                "--long-evaluation-interval {} must not be shorter than --evaluation-interval {}",
                self.long_evaluation_interval, self.evaluation_interval
            ));
        }
        // Slow rules read series of the fast group; they must still be within the lookback.
        if self.long_evaluation_interval > PromDuration::from_millis(5 * 60_000) {
            return Err(format!(
                "--long-evaluation-interval {} must be at most 5m (Prometheus's lookback)",
                self.long_evaluation_interval
            ));
        }
        Ok(())
    }

    /// Windows long enough for rate() and no longer than the SLO period.
    fn check_windows(&self) -> Result<(), String> {
        let windows = || self.page_windows.0.iter().chain(&self.ticket_windows.0);
        // rate() needs two samples inside its window; four make it robust to one missed scrape.
        let shortest = windows().map(|w| w.short).chain([self.rate_window]).min();
        if let Some(shortest) =
            shortest.filter(|shortest| *shortest < self.scrape_interval.times(4))
        {
            return Err(format!(
                "window {shortest} is shorter than 4 x --scrape-interval {}; rate() would be unreliable",
                self.scrape_interval
            ));
        }
        let longest = windows().map(|w| w.long).max();
        if let Some(longest) = longest.filter(|longest| *longest > self.slo_period) {
            return Err(format!(
                "burn-rate window {longest} is longer than --slo-period {}",
                self.slo_period
            ));
        }
        Ok(())
    }

    /// One API target at least, and a distinct job name per scrape job.
    fn check_scrape_jobs(&self) -> Result<(), String> {
        if self.api_targets.0.is_empty() {
            return Err("--api-targets needs at least one host:port".to_owned());
        }
        let mut jobs = vec![self.job.as_str()];
        if !self.load_targets.0.is_empty() {
            jobs.push(self.load_job.as_str());
        }
        jobs.extend(self.extra_targets.0.iter().map(|(job, _)| job.as_str()));
        for (index, job) in jobs.iter().enumerate() {
            if jobs[..index].contains(job) {
                return Err(format!(
                    "scrape job name {job:?} is used twice (--job, --load-job, --extra-targets)"
                ));
            }
        }
        Ok(())
    }

    fn anomaly_settings(&self) -> Result<AnomalySettings, String> {
        let (day, week, smoothing) = (self.anomaly_day, self.anomaly_week, self.anomaly_smoothing);
        // The reference window holds several recorded samples and fits a season many times, so
        // "the same time a day ago" stays a time of day.
        if smoothing < self.evaluation_interval.times(2) {
            return Err(format!(
                "--anomaly-smoothing {smoothing} must be at least 2 x --evaluation-interval {}",
                self.evaluation_interval
            ));
        }
        if day < smoothing.times(12) {
            return Err(format!(
                "--anomaly-day {day} must be at least 12 x --anomaly-smoothing {smoothing} = {}",
                smoothing.times(12)
            ));
        }
        if week < day.times(2) {
            return Err(format!(
                "--anomaly-week {week} must be at least 2 x --anomaly-day {day}"
            ));
        }
        if self.anomaly_for.plus(self.rate_window).times(2) > day {
            return Err(format!(
                "--anomaly-day {day} must be at least 2 x (--anomaly-for + --rate-window), or an anomaly would move the daily median it is measured against"
            ));
        }
        Ok(AnomalySettings {
            day,
            week,
            smoothing,
            for_: self.anomaly_for,
            sigmas: self.anomaly_sigmas,
            min_change: self.anomaly_min_change,
        })
    }
}

impl Settings {
    /// The metric and label names the API exposes under `naming`, with its namespace.
    pub fn names(&self, naming: Naming) -> MetricNames {
        self.app.names(naming)
    }

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
        self.job_labels().join(", ")
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

    /// Slow windows are averages of rate-window samples taken one rate window apart, so they
    /// must be whole multiples of it.
    fn check_slow_windows(&self) -> Result<(), String> {
        for window in self.slow_windows() {
            if !window.millis().is_multiple_of(self.rate_window.millis()) {
                return Err(format!(
                    "window {window} (--ticket-windows or --slo-period) is not a multiple of --rate-window {}",
                    self.rate_window
                ));
            }
        }
        Ok(())
    }
}

// Value parsers: each checks one value and says what is expected.

fn naming_parser() -> impl clap::builder::TypedValueParser<Value = Naming> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new(Naming::Otel.as_str())
            .help("OpenTelemetry HTTP semantic conventions as exported to Prometheus"),
        PossibleValue::new(Naming::Flask.as_str())
            .help("prometheus_flask_exporter compatible names"),
    ])
    .try_map(|name| name.parse::<Naming>())
}

/// A list of `item`s, comma-separated; empty items are skipped.
fn list<T>(
    item: fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<List<T>, String> + Clone + Send + Sync + 'static
where
    T: Send + Sync + 'static,
{
    move |text| {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(item)
            .collect::<Result<Vec<T>, String>>()
            .map(List)
    }
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

fn job_name(text: &str) -> Result<String, String> {
    if is_label_value_safe(text) {
        Ok(text.to_owned())
    } else {
        Err("must be non-empty and use only letters, digits, - _ . : /".to_owned())
    }
}

fn percent_as_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        // Round away the binary noise of e.g. 99.9 / 100 so budgets print as written.
        Ok(percent) if percent.is_finite() && percent > 0.0 && percent < 100.0 => {
            Ok((percent * 1e8).round() / 1e10)
        }
        _ => Err("expected a percentage strictly between 0 and 100".to_owned()),
    }
}

fn positive_number(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err("expected a number greater than 0".to_owned()),
    }
}

fn seconds(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .map_err(|_| format!("{text:?} is not a number of seconds"))
}

/// A Prometheus duration longer than zero (the generator's interval and window flags).
pub(crate) fn nonzero_duration(text: &str) -> Result<PromDuration, String> {
    let duration: PromDuration = text.parse()?;
    if duration.millis() == 0 {
        return Err("must be longer than 0s".to_owned());
    }
    Ok(duration)
}

fn burn_windows(text: &str) -> Result<List<BurnWindow>, String> {
    let windows = list(burn_window)(text)?;
    if windows.0.is_empty() {
        return Err("needs at least one FACTOR:LONG/SHORT window".to_owned());
    }
    Ok(windows)
}

fn burn_window(item: &str) -> Result<BurnWindow, String> {
    let shape = || format!("{item:?} is not FACTOR:LONG/SHORT (e.g. 14.4:1h/5m)");
    let (factor, durations) = item.split_once(':').ok_or_else(shape)?;
    let (long, short) = durations.split_once('/').ok_or_else(shape)?;
    let factor: f64 = factor.trim().parse().map_err(|_| shape())?;
    let long: PromDuration = long.trim().parse()?;
    let short: PromDuration = short.trim().parse()?;
    if !(factor.is_finite() && factor > 0.0) {
        return Err(format!("burn factor in {item:?} must be positive"));
    }
    if short >= long {
        return Err(format!(
            "in {item:?} the short window must be shorter than the long window"
        ));
    }
    Ok(BurnWindow {
        factor,
        long,
        short,
    })
}

fn aggregation_label(label: &str) -> Result<String, String> {
    if !is_label_name(label) || matches!(label, "job" | "le" | "instance") {
        return Err(format!(
            "{label:?} is not a label name that can be kept (not job, le or instance)"
        ));
    }
    Ok(label.to_owned())
}

fn scrape_target(target: &str) -> Result<String, String> {
    if target.contains("://") || target.contains('/') {
        return Err(format!(
            "scrape target {target:?} must be host:port, without scheme or path"
        ));
    }
    Ok(target.to_owned())
}

fn extra_target(item: &str) -> Result<(String, String), String> {
    let not_a_job = || format!("{item:?} is not JOB=host:port");
    let (job, target) = item.split_once('=').ok_or_else(not_a_job)?;
    if !is_label_value_safe(job) || target.is_empty() {
        return Err(not_a_job());
    }
    Ok((job.to_owned(), scrape_target(target)?))
}

fn compose_service(text: &str) -> Result<Optional<String>, String> {
    let name = text.trim();
    if name.is_empty() {
        return Ok(Optional(None));
    }
    if !is_label_value_safe(name) {
        return Err(format!(
            "{name:?} is not a compose service name (letters, digits, - _ . only)"
        ));
    }
    Ok(Optional(Some(name.to_owned())))
}

/// PromQL label matchers such as `namespace="redwatch", pod=~"redwatch-.+"`: each a label name,
/// an operator and a double-quoted value without quotes or backslashes inside; empty for none.
fn label_matchers(text: &str) -> Result<Optional<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Optional(None));
    }
    // Split on the commas outside the quoted values, so a value may hold a regex like `{1,10}`.
    let mut items = vec![String::new()];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            ',' if !quoted => items.push(String::new()),
            _ => {
                quoted ^= c == '"';
                if let Some(last) = items.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    let mut matchers = Vec::new();
    for item in items.iter().map(|item| item.trim()) {
        let shape = || {
            format!("{item:?} is not a label matcher NAME=\"VALUE\" (or !=, =~, !~) in {text:?}")
        };
        let at = item.find(['=', '!']).ok_or_else(shape)?;
        let (name, rest) = item.split_at(at);
        let name = name.trim();
        let operator = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(shape)?;
        let value = rest[operator.len()..].trim();
        let inner = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(shape)?;
        if !is_label_name(name) || inner.contains(['"', '\\']) {
            return Err(shape());
        }
        matchers.push(format!("{name}{operator}\"{inner}\""));
    }
    Ok(Optional(Some(matchers.join(", "))))
}

fn const_label(item: &str) -> Result<(String, String), String> {
    let (name, value) = item
        .split_once('=')
        .ok_or_else(|| format!("{item:?} is not NAME=VALUE"))?;
    Ok((name.trim().to_owned(), value.to_owned()))
}

fn alertmanager_address(text: &str) -> Result<Optional<String>, String> {
    let address = text.trim();
    if address.contains('/') {
        return Err(format!(
            "{address:?} must be host:port, without scheme or path"
        ));
    }
    Ok(Optional(Some(address.to_owned()).filter(|a| !a.is_empty())))
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn http_url(url: &str) -> Result<String, String> {
    if !is_http_url(url) {
        return Err(format!("{url:?} must be an http:// or https:// URL"));
    }
    Ok(url.to_owned())
}

fn runbook_url(text: &str) -> Result<String, String> {
    let url = text.trim();
    if url.is_empty() || url.contains(char::is_whitespace) {
        return Err(format!("{url:?} must be a URL or path without spaces"));
    }
    Ok(url.to_owned())
}

fn grafana_url(text: &str) -> Result<Optional<String>, String> {
    let url = text.trim().trim_end_matches('/');
    if url.is_empty() {
        return Ok(Optional(None));
    }
    Ok(Optional(Some(http_url(url)?)))
}

/// Kubernetes label keys (optionally prefixed) and values, as the API server accepts them.
fn kubernetes_label(item: &str) -> Result<(String, String), String> {
    let valid = |key: &str, value: &str| {
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
    };
    item.split_once('=')
        .filter(|(key, value)| valid(key, value))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{item:?} is not a Kubernetes label KEY=VALUE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_settings() {
        let flags = GenerateFlags::defaults().unwrap();
        assert_eq!(flags.job, "redwatch");
        assert_eq!(flags.slo, 0.999);
        let settings = flags.settings().unwrap();
        assert_eq!(
            settings.app.duration_buckets,
            redwatch::DEFAULT_DURATION_BUCKETS
        );
        assert_eq!(settings.alertmanager.as_deref(), Some("alertmanager:9093"));
        assert_eq!(settings.grafana_url, None);
    }

    #[test]
    fn the_library_configuration_is_checked_by_the_library() {
        let mut flags = GenerateFlags::defaults().unwrap();
        flags.namespace = Some("1shop".to_owned());
        assert!(
            flags
                .settings()
                .unwrap_err()
                .starts_with("invalid --namespace")
        );
        flags.namespace = Some("shop".to_owned());
        // `path` is the route label of the flask preset only.
        flags.const_labels = vec![("path".to_owned(), "x".to_owned())];
        assert!(
            flags
                .settings()
                .unwrap_err()
                .starts_with("invalid --const-label")
        );
        flags.naming = Some(Naming::Otel);
        assert!(flags.settings().is_ok());
        flags.buckets = Some(List(vec![0.5, 0.25]));
        assert!(
            flags
                .settings()
                .unwrap_err()
                .starts_with("invalid --buckets")
        );
        flags.buckets = Some(List(vec![0.1, 0.3]));
        assert!(
            flags
                .settings()
                .unwrap_err()
                .contains("--latency-threshold 250ms is not a histogram bucket bound")
        );
        flags.latency_threshold = "300ms".parse().unwrap();
        assert!(flags.settings().is_ok());
    }

    #[test]
    fn label_matchers_are_checked_and_normalised() {
        assert_eq!(
            label_matchers(" namespace = \"a\",pod=~\"b-[a-z]{1,5}\" "),
            Ok(Optional(Some(
                "namespace=\"a\", pod=~\"b-[a-z]{1,5}\"".to_owned()
            )))
        );
        assert_eq!(label_matchers(""), Ok(Optional(None)));
        for bad in [
            "namespace",
            "namespace=a",
            "1a=\"x\"",
            "a=\"x\\\"\"",
            "a=\"x\",",
            "a==\"x\"",
        ] {
            assert!(label_matchers(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lists_skip_empty_items() {
        assert_eq!(list(scrape_target)(""), Ok(List(Vec::new())));
        assert_eq!(
            list(scrape_target)("a:1, ,b:2"),
            Ok(List(vec!["a:1".to_owned(), "b:2".to_owned()]))
        );
        assert!(list(scrape_target)("http://a:1").is_err());
        assert!(burn_windows(",").is_err());
    }
}
