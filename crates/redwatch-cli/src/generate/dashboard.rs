//! The Grafana dashboard "API overview".

use serde_json::{Value, json};

use super::Settings;
use redwatch::Naming;

use super::naming::{MetricNames, load, process};
use super::resources::{self, CONTAINER_LEGEND, Host, cadvisor, node};
use super::units::num;

/// File name of the dashboard under `grafana/dashboards/`.
pub const FILE_NAME: &str = "api-overview.json";
/// Dashboard schema of Grafana 11.0 (read unchanged by Grafana 11.x and 12.x).
/// The dashboard's uid, which Grafana URLs (`/d/UID`) use.
pub fn uid(preset: Naming) -> String {
    format!("redwatch-api-overview-{}", preset.as_str())
}

pub const SCHEMA_VERSION: u64 = 39;

/// Panels are laid out left to right on Grafana's 24-column grid.
struct Layout {
    panels: Vec<Value>,
    x: u64,
    y: u64,
    row_height: u64,
    next_id: u64,
}

/// A query of a panel: PromQL and the legend.
struct Query {
    expr: String,
    legend: String,
    /// Grafana also asks Prometheus for the exemplars of the series the query reads.
    exemplars: bool,
}

fn q(expr: impl Into<String>, legend: impl Into<String>) -> Query {
    Query {
        expr: expr.into(),
        legend: legend.into(),
        exemplars: false,
    }
}

impl Query {
    /// Shows the exemplars (trace ids) of the server's duration buckets with this query: only
    /// they carry exemplars, so only queries of them ask.
    fn with_exemplars(mut self) -> Self {
        self.exemplars = true;
        self
    }
}

fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": "${datasource}" })
}

impl Layout {
    fn new() -> Self {
        Self {
            panels: Vec::new(),
            x: 0,
            y: 0,
            row_height: 0,
            next_id: 1,
        }
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn row(&mut self, title: &str) {
        if self.x > 0 {
            self.y += self.row_height;
        }
        let id = self.id();
        self.panels.push(json!({
            "type": "row",
            "id": id,
            "title": title,
            "collapsed": false,
            "gridPos": { "h": 1, "w": 24, "x": 0, "y": self.y },
            "panels": [],
        }));
        self.y += 1;
        self.x = 0;
        self.row_height = 0;
    }

    /// Moves the panels after the last row into it and collapses it.
    fn collapse_last_row(&mut self) {
        let Some(row_index) = self.panels.iter().rposition(|panel| panel["type"] == "row") else {
            return;
        };
        let children: Vec<Value> = self.panels.drain(row_index + 1..).collect();
        let row = &mut self.panels[row_index];
        row["collapsed"] = json!(true);
        row["panels"] = json!(children);
        // A collapsed row takes one grid line; the next row follows it directly.
        self.y = row["gridPos"]["y"].as_u64().unwrap_or(self.y) + 1;
        self.x = 0;
        self.row_height = 0;
    }

    fn place(&mut self, width: u64, height: u64) -> Value {
        if self.x + width > 24 {
            self.y += self.row_height;
            self.x = 0;
            self.row_height = 0;
        }
        let pos = json!({ "h": height, "w": width, "x": self.x, "y": self.y });
        self.x += width;
        self.row_height = self.row_height.max(height);
        pos
    }

    #[allow(clippy::too_many_arguments)]
    fn panel(
        &mut self,
        kind: &str,
        title: &str,
        description: &str,
        unit: &str,
        width: u64,
        queries: Vec<Query>,
        options: Value,
    ) {
        let height = if kind == "stat" { 5 } else { 8 };
        let grid = self.place(width, height);
        let id = self.id();
        let targets: Vec<Value> = queries
            .into_iter()
            .zip('A'..='Z')
            .map(|(query, ref_id)| {
                let mut target = json!({
                    "datasource": datasource(),
                    "refId": ref_id.to_string(),
                    "expr": query.expr,
                    "legendFormat": query.legend,
                    // Stats show one value: an instant query, not a window per graph step
                    // (which over `[30d]` would be very expensive).
                    "range": kind != "stat",
                    "instant": kind == "stat",
                });
                if kind == "heatmap" {
                    target["format"] = json!("heatmap");
                }
                if query.exemplars {
                    target["exemplar"] = json!(true);
                }
                target
            })
            .collect();
        let mut panel = json!({
            "type": kind,
            "id": id,
            "title": title,
            "description": description,
            "datasource": datasource(),
            "gridPos": grid,
            "targets": targets,
            "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
            "options": options,
        });
        if kind == "timeseries" {
            panel["fieldConfig"]["defaults"]["custom"] = json!({ "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never" });
            panel["options"]["legend"] = json!({ "showLegend": true, "displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"] });
            panel["options"]["tooltip"] = json!({ "mode": "multi", "sort": "desc" });
        }
        self.panels.push(panel);
    }
}

/// Stat options. Every option Grafana's types (`@grafana/schema`) require is set, those we do not
/// choose to Grafana's defaults, so the JSON type-checks as Grafana saves it.
fn stat_options(text_mode: &str) -> Value {
    json!({
        "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
        "colorMode": "value",
        "graphMode": "none",
        "textMode": text_mode,
        "justifyMode": "auto",
        "orientation": "auto",
        "wideLayout": true,
        "showPercentChange": false,
        "percentChangeColorMode": "standard",
    })
}

/// A query variable. Without a value chosen here, `current` is left out rather than `{}`, and a
/// single-value variable has no `allValue` rather than `null`: Grafana's types allow neither. Nor
/// do they have `definition`, which Grafana's editor fills in from the query for display.
fn variable_query(name: &str, label: &str, query: &str, multi: bool) -> Value {
    let mut variable = json!({
        "type": "query",
        "name": name,
        "label": label,
        "datasource": datasource(),
        "query": { "qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery" },
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "options": [],
        "hide": 0,
    });
    if multi {
        variable["allValue"] = json!(".+");
    }
    variable
}

/// The API's series on the selected jobs and instances.
const SELECTED: &str = "job=~\"$job\", instance=~\"$instance\"";
/// The load generator's series on the selected jobs and instances.
const LOAD_SELECTED: &str = "job=~\"$load_job\", instance=~\"$load_instance\"";
const RATE_INTERVAL: &str = "$__rate_interval";
/// The hosts selected by the `node` variable (node-exporter's instances).
const NODE_SELECTED: &str = "instance=~\"$node\"";

/// What the rows' queries are built from.
struct Queries<'a> {
    settings: &'a Settings,
    names: MetricNames,
    count: String,
    sum: String,
    bucket: String,
    /// [`SELECTED`] and the selected routes.
    rsel: String,
}

impl<'a> Queries<'a> {
    fn new(preset: Naming, settings: &'a Settings) -> Self {
        let names = settings.names(preset);
        Self {
            settings,
            count: names.count(),
            sum: names.sum(),
            bucket: names.bucket(),
            rsel: format!("{SELECTED}, {}=~\"$route\"", names.route),
            names,
        }
    }

    /// The share of requests answered with a 5xx over `window`.
    fn error_share(&self, selector: &str, window: &str) -> String {
        let (count, status) = (&self.count, self.names.status);
        format!(
            "(sum(rate({count}{{{selector}, {status}=~\"5..\"}}[{window}])) or vector(0))\n/\nsum(rate({count}{{{selector}}}[{window}]))"
        )
    }
}

/// The SLO row: availability, latency objective, error budget and its burn rate.
fn slo_row(layout: &mut Layout, queries: &Queries) {
    let settings = queries.settings;
    let count = &queries.count;
    let bucket = &queries.bucket;
    let sel = SELECTED;
    let threshold = settings.latency_threshold;
    let le = super::promql::le_matcher(settings.threshold_le());
    let budget = num(settings.error_budget());
    let period = settings.slo_period;
    layout.row("SLO");
    layout.panel(
        "stat",
        "Availability (selected range)",
        "Share of requests answered without a 5xx status over the dashboard's time range.",
        "percentunit",
        5,
        vec![q(
            format!("1 - (\n{}\n)", queries.error_share(sel, "$__range")),
            "availability",
        )],
        stat_options("value"),
    );
    layout.panel(
        "stat",
        &format!("Requests under {threshold} (selected range)"),
        &format!("Share of requests faster than the latency SLO threshold ({threshold}) over the dashboard's time range."),
        "percentunit",
        5,
        vec![q(
            format!("sum(rate({bucket}{{{sel}, {le}}}[$__range]))\n/\nsum(rate({count}{{{sel}}}[$__range]))"),
            "under threshold",
        )],
        stat_options("value"),
    );
    layout.panel(
        "stat",
        &format!("Error budget remaining ({period})"),
        &format!(
            "Share of the availability error budget ({}% of requests) left over the SLO period of {period}; negative means the SLO is breached.",
            num(settings.error_budget() * 100.0)
        ),
        "percentunit",
        5,
        vec![q(format!("1 - (\n{}\n) / {budget}", queries.error_share(sel, &period.to_string())), "budget remaining")],
        stat_options("value"),
    );
    layout.panel(
        "stat",
        "Objectives",
        "The SLO objectives the alert rules were generated with (recorded per job, so not filtered by instance).",
        "percentunit",
        9,
        vec![q(format!("max by (slo) ({}{{job=~\"$job\"}})", super::rules::names::OBJECTIVE), "{{slo}}")],
        stat_options("value_and_name"),
    );
    let burn_queries: Vec<Query> = settings
        .page
        .iter()
        .map(|window| {
            q(
                format!(
                    "(\n{}\n) / {budget}",
                    queries.error_share(sel, &window.long.to_string())
                ),
                format!("burn rate {}", window.long),
            )
        })
        .collect();
    layout.panel(
        "timeseries",
        "Error budget burn rate",
        "How many times faster than sustainable the availability error budget is being spent, over the long windows of the paging alerts (1 = exactly on budget).",
        "none",
        24,
        burn_queries,
        json!({}),
    );
}

/// The traffic row: requests per second by route and per minute by status.
fn traffic_row(layout: &mut Layout, queries: &Queries) {
    let route = queries.names.route;
    let status = queries.names.status;
    let count = &queries.count;
    let rsel = &queries.rsel;
    let ri = RATE_INTERVAL;
    layout.row("Traffic");
    layout.panel(
        "timeseries",
        "Requests per second by route",
        "Request rate per route template, all methods and statuses.",
        "reqps",
        12,
        vec![q(
            format!("sum by ({route}) (rate({count}{{{rsel}}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Requests per minute by status",
        "Request rate per HTTP status code, in requests per minute. 499 = the client went away before the response.",
        "suffix: req/min",
        12,
        vec![q(format!("sum by ({status}) (rate({count}{{{rsel}}}[{ri}])) * 60"), format!("{{{{{status}}}}}"))],
        json!({}),
    );
}

/// The errors row: 5xx by route, error ratio, 4xx against 5xx.
fn errors_row(layout: &mut Layout, queries: &Queries) {
    let route = queries.names.route;
    let status = queries.names.status;
    let count = &queries.count;
    let rsel = &queries.rsel;
    let ri = RATE_INTERVAL;
    layout.row("Errors");
    layout.panel(
        "timeseries",
        "Server errors (5xx) per second by route",
        "Rate of responses with a 5xx status, per route.",
        "reqps",
        8,
        vec![q(
            format!("sum by ({route}) (rate({count}{{{rsel}, {status}=~\"5..\"}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Error ratio by route",
        "Share of requests of each route answered with a 5xx status. Routes without errors have no line.",
        "percentunit",
        8,
        vec![q(
            format!(
                "sum by ({route}) (rate({count}{{{rsel}, {status}=~\"5..\"}}[{ri}]))\n/\nsum by ({route}) (rate({count}{{{rsel}}}[{ri}]))"
            ),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Client (4xx) vs server (5xx) errors",
        "Rate of 4xx responses (the client's fault, including 404 for unknown paths and 499 for abandoned requests) next to 5xx responses (the server's fault).",
        "reqps",
        8,
        vec![
            q(format!("sum(rate({count}{{{rsel}, {status}=~\"4..\"}}[{ri}]))"), "4xx"),
            q(format!("sum(rate({count}{{{rsel}, {status}=~\"5..\"}}[{ri}]))"), "5xx"),
        ],
        json!({}),
    );
}

/// The latency row: averages, share under the threshold, percentiles, heatmap.
fn latency_row(layout: &mut Layout, queries: &Queries) {
    let settings = queries.settings;
    let route = queries.names.route;
    let count = &queries.count;
    let sum = &queries.sum;
    let bucket = &queries.bucket;
    let rsel = &queries.rsel;
    let ri = RATE_INTERVAL;
    let threshold = settings.latency_threshold;
    let le = super::promql::le_matcher(settings.threshold_le());
    layout.row("Latency");
    layout.panel(
        "timeseries",
        "Average response time by route",
        "Mean time from request to response per route (histogram sum / count).",
        "s",
        12,
        vec![q(
            format!("sum by ({route}) (rate({sum}{{{rsel}}}[{ri}]))\n/\nsum by ({route}) (rate({count}{{{rsel}}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    layout.panel(
        "timeseries",
        &format!("Requests under {threshold} by route"),
        &format!("Share of requests of each route that finished within the latency SLO threshold of {threshold} (exact: the threshold is a bucket bound)."),
        "percentunit",
        12,
        vec![q(
            format!("sum by ({route}) (rate({bucket}{{{rsel}, {le}}}[{ri}]))\n/\nsum by ({route}) (rate({count}{{{rsel}}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    let quantiles: Vec<Query> = [0.5, 0.9, 0.99]
        .iter()
        .map(|quantile| {
            q(
                format!("histogram_quantile({quantile}, sum by ({route}, le) (rate({bucket}{{{rsel}}}[{ri}])))"),
                format!("p{} {{{{{route}}}}}", num(quantile * 100.0)),
            )
            .with_exemplars()
        })
        .collect();
    layout.panel(
        "timeseries",
        "Response time percentiles by route (p50 / p90 / p99)",
        "Percentiles estimated from the histogram buckets by linear interpolation inside a bucket; precise to the bucket bounds.",
        "s",
        12,
        quantiles,
        json!({}),
    );
    layout.panel(
        "heatmap",
        "Response time distribution",
        "Requests per histogram bucket and time interval; darker cells hold more requests.",
        "short",
        12,
        vec![q(
            format!("sum by (le) (increase({bucket}{{{rsel}}}[{ri}]))"),
            "{{le}}",
        )],
        json!({
            "calculate": false,
            "yAxis": { "unit": "s", "axisPlacement": "left" },
            "rowsFrame": { "layout": "le" },
            // Grafana's defaults besides the scheme, which its types require.
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "steps": 64,
                "fill": "dark-orange",
                "exponent": 0.5,
                "reverse": false,
            },
            "cellGap": 1,
            "tooltip": { "mode": "single", "yHistogram": true },
            "legend": { "show": true },
            "showValue": "auto",
            "exemplars": { "color": "rgba(255,0,255,0.7)" },
        }),
    );
}

/// The saturation row: active requests, CPU, memory and descriptors, then [`process_panels`].
fn saturation_row(layout: &mut Layout, queries: &Queries) {
    let names = &queries.names;
    let sel = SELECTED;
    let ri = RATE_INTERVAL;
    layout.row("Saturation");
    layout.panel(
        "timeseries",
        "Active requests",
        "Requests being served right now, per instance.",
        "short",
        8,
        vec![q(
            format!("sum by (instance) ({}{{{sel}}})", names.active_requests),
            "{{instance}}",
        )],
        json!({}),
    );
    let cpu = format!("rate({}{{{sel}}}[{ri}])", process::CPU_SECONDS);
    layout.panel(
        "timeseries",
        "CPU cores used",
        "CPU time the process used per second of wall time, per instance: 1 = one core busy.",
        "suffix: cores",
        8,
        vec![q(cpu.clone(), "{{instance}}")],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "CPU % of the host",
        "CPU time the process used as a share of all cores of its host (cAdvisor's machine_cpu_cores, else node-exporter's count of cores; empty without either exporter). Against a container's CPU limit: see the Containers row.",
        "percentunit",
        8,
        vec![q(
            format!("{cpu}\n/ on () group_left ()\n({})", resources::host_cores()),
            "{{instance}}",
        )],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Resident memory",
        "Resident set size of the process, per instance.",
        "bytes",
        8,
        vec![q(
            format!("{}{{{sel}}}", process::RESIDENT_MEMORY),
            "{{instance}}",
        )],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Open file descriptors",
        "Open file descriptors (sockets included) against the process limit, per instance.",
        "short",
        8,
        vec![
            q(
                format!("{}{{{sel}}}", process::OPEN_FDS),
                "open {{instance}}",
            ),
            q(
                format!("{}{{{sel}}}", process::MAX_FDS),
                "limit {{instance}}",
            ),
        ],
        json!({}),
    );
    process_panels(layout, queries);
}

/// The rest of the saturation row: threads and the Tokio runtime, uptime and version.
fn process_panels(layout: &mut Layout, queries: &Queries) {
    let names = &queries.names;
    let sel = SELECTED;
    layout.panel(
        "timeseries",
        "Threads and Tokio runtime",
        "OS threads of the process, Tokio worker threads, tasks alive and tasks waiting in the global queue, per instance.",
        "short",
        8,
        vec![
            q(format!("{}{{{sel}}}", process::THREADS), "threads {{instance}}"),
            q(format!("{}{{{sel}}}", process::TOKIO_WORKERS), "tokio workers {{instance}}"),
            q(format!("{}{{{sel}}}", process::TOKIO_ALIVE_TASKS), "tokio tasks {{instance}}"),
            q(format!("{}{{{sel}}}", process::TOKIO_GLOBAL_QUEUE), "global queue {{instance}}"),
        ],
        json!({}),
    );
    layout.panel(
        "stat",
        "Uptime",
        "Time since each instance's process started.",
        "s",
        4,
        vec![q(
            format!("time() - {}{{{sel}}}", process::START_TIME),
            "{{instance}}",
        )],
        stat_options("value_and_name"),
    );
    layout.panel(
        "stat",
        "Version",
        "Service version(s) currently running, from the info metric.",
        "none",
        4,
        vec![q(
            format!(
                "count by ({0}) ({1}{{{sel}}})",
                names.version_label, names.info
            ),
            format!("{{{{{}}}}}", names.version_label),
        )],
        stat_options("name"),
    );
}

/// Whether the generated Prometheus configuration scrapes an exporter: an `--extra-targets` job
/// whose name contains `name`.
fn scrapes(settings: &Settings, name: &str) -> bool {
    settings
        .extra_targets
        .iter()
        .any(|(job, _)| job.to_lowercase().contains(name))
}

/// The containers row: CPU, memory, disk and network of the API's containers from cAdvisor (see
/// [`resources`] for how they are selected on compose and Kubernetes). Collapsed when the
/// generated configuration scrapes no cAdvisor: its panels would be empty.
fn containers_row(layout: &mut Layout, queries: &Queries) {
    let settings = queries.settings;
    let scopes = resources::scopes(settings);
    if scopes.is_empty() {
        return;
    }
    let ri = RATE_INTERVAL;
    let legend = CONTAINER_LEGEND;
    let rx = |name: &str| format!("{legend} {name}");
    layout.row("Containers (cAdvisor)");
    layout.panel(
        "timeseries",
        "Container CPU % of limit",
        "CPU time used per container as a share of its CPU limit (cgroup quota / period); of its host's cores when it has no limit (cAdvisor's machine_cpu_cores, else node-exporter's count of cores).",
        "percentunit",
        8,
        vec![q(resources::cpu_ratio(&scopes, ri), legend)],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Container CPU cores used",
        "CPU time used per container per second of wall time: 1 = one core busy.",
        "suffix: cores",
        8,
        vec![q(resources::cpu_cores(&scopes, ri), legend)],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Container CPU throttling",
        "Share of CFS scheduling periods in which the container was throttled because it reached its CPU limit (containers with a limit only). Above 25% for 15 minutes alerts (ApiContainerCpuThrottling).",
        "percentunit",
        8,
        vec![q(resources::throttled_ratio(&scopes, ri), legend)],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Container memory % of limit",
        "Working set (what the kernel cannot reclaim; the OOM killer's and the kubelet's measure) as a share of the container's memory limit; containers without a limit have no line. Above 90% for 15 minutes alerts (ApiContainerMemoryNearLimit).",
        "percentunit",
        8,
        vec![q(resources::memory_ratio(&scopes), legend)],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Container memory",
        "Working set and resident set size (anonymous memory) per container.",
        "bytes",
        8,
        vec![
            q(
                resources::container_gauge(&scopes, cadvisor::MEMORY_WORKING_SET),
                rx("working set"),
            ),
            q(
                resources::container_gauge(&scopes, cadvisor::MEMORY_RSS),
                rx("rss"),
            ),
        ],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Container disk usage",
        "Bytes the container uses on its filesystems (its writable layer and volumes cAdvisor accounts to it).",
        "bytes",
        8,
        vec![q(
            resources::container_gauge(&scopes, cadvisor::FS_USAGE),
            legend,
        )],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Container disk I/O",
        "Bytes read from and written to block devices per second, per container.",
        "Bps",
        12,
        vec![
            q(
                resources::container_rate(&scopes, cadvisor::FS_READS, ri),
                rx("read"),
            ),
            q(
                resources::container_rate(&scopes, cadvisor::FS_WRITES, ri),
                rx("write"),
            ),
        ],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Container network",
        "Bytes received and transmitted per second, per container (compose) or pod (Kubernetes: the pod's containers share one network namespace).",
        "Bps",
        12,
        vec![
            q(
                resources::network_rate(&scopes, cadvisor::NETWORK_RECEIVE, ri),
                rx("receive"),
            ),
            q(
                resources::network_rate(&scopes, cadvisor::NETWORK_TRANSMIT, ri),
                rx("transmit"),
            ),
        ],
        json!({}),
    );
    if !scrapes(settings, "cadvisor") {
        layout.collapse_last_row();
    }
}

/// The host row: CPU, memory, filesystems, disks and network of the hosts from node-exporter,
/// selected by the `node` variable. Collapsed when the generated configuration scrapes no
/// node-exporter.
fn host_row(layout: &mut Layout, queries: &Queries) {
    let ri = RATE_INTERVAL;
    let host = Host {
        selector: NODE_SELECTED,
    };
    layout.row("Host (node-exporter)");
    layout.panel(
        "timeseries",
        "Host CPU %",
        "Share of the host's CPU time (all cores) not idle.",
        "percentunit",
        8,
        vec![q(host.cpu_ratio(ri), "{{instance}}")],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Host memory %",
        "Share of the host's memory not available (1 - MemAvailable / MemTotal).",
        "percentunit",
        8,
        vec![q(host.memory_ratio(), "{{instance}}")],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Host filesystem used",
        "Share of each disk-backed filesystem used, of the space unprivileged users may use (memory-backed tmpfs and ramfs left out).",
        "percentunit",
        8,
        vec![q(host.filesystem_ratio(), "{{instance}} {{mountpoint}}")],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Host disk I/O",
        "Bytes read from and written to the host's disks per second.",
        "Bps",
        12,
        vec![
            q(host.rate(node::DISK_READ, "", ri), "{{instance}} read"),
            q(host.rate(node::DISK_WRITTEN, "", ri), "{{instance}} write"),
        ],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Host network",
        "Bytes received and transmitted per second on the host's interfaces other than loopback.",
        "Bps",
        12,
        vec![
            q(
                host.rate(node::NETWORK_RECEIVE, resources::NOT_LOOPBACK, ri),
                "{{instance}} receive",
            ),
            q(
                host.rate(node::NETWORK_TRANSMIT, resources::NOT_LOOPBACK, ri),
                "{{instance}} transmit",
            ),
        ],
        json!({}),
    );
    if !scrapes(queries.settings, "node") {
        layout.collapse_last_row();
    }
}

/// The client view row (collapsed): the load generator's rate and latency next to the server's.
fn client_view_row(layout: &mut Layout, queries: &Queries) {
    let count = &queries.count;
    let bucket = &queries.bucket;
    let sel = SELECTED;
    let load_sel = LOAD_SELECTED;
    let ri = RATE_INTERVAL;
    layout.row("Client view (redwatch load)");
    layout.panel(
        "timeseries",
        "Client vs server request rate",
        "Requests per second sent by the load generator (`redwatch load --metrics-listen`, client side) and its target rate, next to what the server counted. Empty when no load generator is scraped.",
        "reqps",
        12,
        vec![
            q(format!("sum(rate({}{{{load_sel}}}[{ri}]))", load::REQUESTS), "client achieved"),
            q(format!("sum({}{{{load_sel}}})", load::TARGET_RATE), "client target"),
            q(format!("sum(rate({count}{{{sel}}}[{ri}]))"), "server"),
        ],
        json!({}),
    );
    layout.panel(
        "timeseries",
        "Client vs server latency (p50 / p99)",
        "Latency seen by the load generator, measured from the intended send time (so queueing counts), next to the server's own histogram. The gap is network, connection and queueing time.",
        "s",
        12,
        vec![
            q(format!("histogram_quantile(0.5, sum by (le) (rate({}{{{load_sel}}}[{ri}])))", load::DURATION_BUCKET), "client p50"),
            q(format!("histogram_quantile(0.99, sum by (le) (rate({}{{{load_sel}}}[{ri}])))", load::DURATION_BUCKET), "client p99"),
            q(format!("histogram_quantile(0.5, sum by (le) (rate({bucket}{{{sel}}}[{ri}])))"), "server p50").with_exemplars(),
            q(format!("histogram_quantile(0.99, sum by (le) (rate({bucket}{{{sel}}}[{ri}])))"), "server p99").with_exemplars(),
        ],
        json!({}),
    );

    // Grafana cannot repeat a row zero times (grafana/grafana#10764), so a row cannot appear only
    // when the load generator's metrics exist. Collapsed, it stays out of the way and issues no
    // queries until opened.
    layout.collapse_last_row();
}

/// The dashboard for one preset: one row after the other, then the variables.
pub fn api_overview(preset: Naming, settings: &Settings) -> Value {
    let queries = Queries::new(preset, settings);
    let mut layout = Layout::new();
    slo_row(&mut layout, &queries);
    traffic_row(&mut layout, &queries);
    errors_row(&mut layout, &queries);
    latency_row(&mut layout, &queries);
    saturation_row(&mut layout, &queries);
    containers_row(&mut layout, &queries);
    host_row(&mut layout, &queries);
    client_view_row(&mut layout, &queries);
    let count = &queries.count;
    let route = queries.names.route;

    let mut job_variable =
        variable_query("job", "Job", &format!("label_values({count}, job)"), false);
    job_variable["current"] =
        json!({ "selected": true, "text": settings.job, "value": settings.job });
    json!({
        "uid": uid(preset),
        "title": format!("API overview ({})", preset.as_str()),
        "description": format!("HTTP API health from redwatch metrics ({} naming): SLOs, traffic, errors, latency, saturation, the containers' and hosts' resources and the load generator's view.", preset.as_str()),
        "tags": ["redwatch", "http", "slo"],
        "editable": false,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": { "from": "now-1h", "to": "now" },
        "refresh": "30s",
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": false,
        "links": [],
        "annotations": { "list": [{
            "builtIn": 1,
            "datasource": { "type": "grafana", "uid": "-- Grafana --" },
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }] },
        "templating": { "list": [
            {
                "type": "datasource",
                "name": "datasource",
                "label": "Data source",
                "query": "prometheus",
                "hide": 0,
                "refresh": 1,
                "options": [],
            },
            job_variable,
            variable_query("instance", "Instance", &format!("label_values({count}{{job=~\"$job\"}}, instance)"), true),
            variable_query("route", "Route", &format!("label_values({count}{{job=~\"$job\", instance=~\"$instance\"}}, {route})"), true),
            variable_query("node", "Host", &format!("label_values({}{{mode=\"idle\"}}, instance)", node::CPU_SECONDS), true),
            variable_query("load_job", "Load generator job", &format!("label_values({}, job)", load::REQUESTS), true),
            variable_query("load_instance", "Load generator", &format!("label_values({}{{job=~\"$load_job\"}}, instance)", load::REQUESTS), true),
        ] },
        "panels": layout.panels,
    })
}
