//! The Grafana dashboards: "API overview" and its per-route drill-down "API route".

use serde_json::{Value, json};

use super::Settings;
use redwatch::Naming;

use super::alerts::{self, burn_tiers};
use super::naming::{MetricNames, load, process};
use super::resources::{self, CONTAINER_LEGEND, Host, cadvisor, node};
use super::rules::names;
use super::units::{PromDuration, num};

/// File name of the overview dashboard under `grafana/dashboards/`.
pub const FILE_NAME: &str = "api-overview.json";
/// File name of the per-route drill-down dashboard under `grafana/dashboards/`.
pub const ROUTE_FILE_NAME: &str = "api-route.json";

/// The overview dashboard's uid, which Grafana URLs (`/d/UID`) use.
pub fn uid(preset: Naming) -> String {
    format!("redwatch-api-overview-{}", preset.as_str())
}

/// The drill-down dashboard's uid: the route table of the overview links to it.
pub fn route_uid(preset: Naming) -> String {
    format!("redwatch-api-route-{}", preset.as_str())
}

/// Dashboard schema of Grafana 11.0 (read unchanged by Grafana 11.x and 12.x).
pub const SCHEMA_VERSION: u64 = 39;

/// The drill-down dashboard's variable holding the one route it shows.
pub const ROUTE_VARIABLE: &str = "route";

/// Most columns of the latency heatmap: each column is one `$__interval`, wide enough to read.
pub const HEATMAP_MAX_DATA_POINTS: u64 = 60;

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

    /// Adds a panel and returns it, for the settings only some panels have (thresholds, links).
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
    ) -> &mut Value {
        let height = if kind == "stat" { 5 } else { 8 };
        // Stats and tables show one value per series: an instant query, not a window per graph
        // step.
        let instant = kind == "stat" || kind == "table";
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
                    "range": !instant,
                    "instant": instant,
                });
                if kind == "heatmap" || kind == "table" {
                    target["format"] = json!(kind);
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
        self.push(panel)
    }

    /// Adds a finished panel and returns it.
    fn push(&mut self, panel: Value) -> &mut Value {
        let index = self.panels.len();
        self.panels.push(panel);
        &mut self.panels[index]
    }
}

/// Threshold steps: `base` below the first step, then each `(value, colour)` from its value up.
fn thresholds(base: &str, steps: &[(f64, &str)]) -> Value {
    let mut list = vec![json!({ "color": base, "value": null })];
    list.extend(
        steps
            .iter()
            .map(|(value, color)| json!({ "color": color, "value": value })),
    );
    json!({ "mode": "absolute", "steps": list })
}

/// Colours a stat's value by `steps` (see [`thresholds`]).
fn color_by_thresholds(panel: &mut Value, steps: Value) {
    panel["fieldConfig"]["defaults"]["thresholds"] = steps;
    panel["fieldConfig"]["defaults"]["color"] = json!({ "mode": "thresholds" });
}

/// A share that must reach `objective`: red below it, green from it on.
fn objective_thresholds(objective: f64) -> Value {
    thresholds("red", &[(objective, "green")])
}

/// An error budget left: red once spent (below 0), green while some is left.
fn budget_thresholds() -> Value {
    thresholds("red", &[(0.0, "green")])
}

/// The colour of a burn-rate line: the alert's severity.
fn severity_color(severity: &str) -> &'static str {
    match severity {
        "critical" => "red",
        _ => "orange",
    }
}

/// One line per burn factor of the generated burn-rate alerts ([`burn_tiers`]), coloured by
/// the alert's severity; a factor both tiers use is drawn once, in the more severe colour.
fn burn_thresholds(settings: &Settings) -> Value {
    let mut steps: Vec<(f64, &str)> = burn_tiers(settings)
        .iter()
        .flat_map(|tier| {
            let color = severity_color(tier.severity);
            tier.windows
                .iter()
                .map(move |window| (window.factor, color))
        })
        .collect();
    // By factor, red first, so the deduplication keeps red.
    steps.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| (a.1 != "red").cmp(&(b.1 != "red")))
    });
    steps.dedup_by(|later, earlier| later.0 == earlier.0);
    thresholds("green", &steps)
}

/// Draws the thresholds as lines across a time series panel.
fn draw_threshold_lines(panel: &mut Value, steps: Value) {
    panel["fieldConfig"]["defaults"]["thresholds"] = steps;
    panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = json!({ "mode": "line" });
}

/// Panel links to the runbook sections of `alerts` (the URLs of their `runbook_url`
/// annotations).
fn runbook_links(settings: &Settings, alert_names: &[&str]) -> Value {
    alert_names
        .iter()
        .map(|alert| {
            // Every field of Grafana's `DashboardLink`, the type of a panel's links.
            json!({
                "title": format!("Runbook: {alert}"),
                "type": "link",
                "url": alerts::runbook_url(settings, alert),
                "icon": "doc",
                "targetBlank": true,
                "keepTime": false,
                "includeVars": false,
                "asDropdown": false,
                "tags": [],
                "tooltip": "",
            })
        })
        .collect()
}

/// Links the panel to the runbooks of the alerts that watch what it shows.
fn link_runbooks(panel: &mut Value, settings: &Settings, alert_names: &[&str]) {
    panel["links"] = runbook_links(settings, alert_names);
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

/// The cluster variable's value for "All": `.*`, which unlike `.+` also matches a series without
/// the label, so the dashboards work unchanged on one Prometheus, whose series have no
/// `cluster` (only `external_labels` on the way to a central store add it).
pub const ALL_CLUSTERS: &str = ".*";

/// Selects the clusters shown: every query of the API's (and its load generator's, containers'
/// and hosts') series has it.
pub const CLUSTER_SELECTED: &str = "cluster=~\"$cluster\"";

/// The cluster variable: the `cluster` label that `external_labels` give each Prometheus's
/// series in a central store (Thanos, Mimir, VictoriaMetrics, a remote-write receiver).
fn cluster_variable(queries: &Queries) -> Value {
    let mut variable = variable_query(
        "cluster",
        "Cluster",
        &format!("label_values({}, cluster)", queries.count),
        true,
    );
    variable["allValue"] = json!(ALL_CLUSTERS);
    variable
}

/// The API's series on the selected clusters, jobs and instances.
const SELECTED: &str = "cluster=~\"$cluster\", job=~\"$job\", instance=~\"$instance\"";
/// The load generator's series on the selected clusters, jobs and instances.
const LOAD_SELECTED: &str =
    "cluster=~\"$cluster\", job=~\"$load_job\", instance=~\"$load_instance\"";
const RATE_INTERVAL: &str = "$__rate_interval";
/// The hosts selected by the `cluster` and `node` variables (node-exporter's instances).
const NODE_SELECTED: &str = "cluster=~\"$cluster\", instance=~\"$node\"";
/// What panels that sum over instances say about clusters.
const OVER_CLUSTERS: &str =
    "All selected clusters and instances together (pick one cluster to see it alone).";

/// What the rows' queries are built from.
struct Queries<'a> {
    preset: Naming,
    settings: &'a Settings,
    names: MetricNames,
    count: String,
    sum: String,
    bucket: String,
    /// [`SELECTED`] and the shown routes.
    rsel: String,
}

impl<'a> Queries<'a> {
    /// Queries of the routes `route_matcher` selects from the `route` variable (e.g.
    /// `=~"$route"`).
    fn new(preset: Naming, settings: &'a Settings, route_matcher: &str) -> Self {
        let names = settings.names(preset);
        Self {
            preset,
            settings,
            count: names.count(),
            sum: names.sum(),
            bucket: names.bucket(),
            rsel: format!("{SELECTED}, {}{route_matcher}", names.route),
            names,
        }
    }
}

/// A recorded per-job series of the selected clusters and job (recorded per cluster: the rules
/// keep `cluster`).
fn recorded(series: &str) -> String {
    format!("{series}{{cluster=~\"$cluster\", job=~\"$job\"}}")
}

/// The share of the recorded `bad` rate-window series among the recorded requests over the
/// dashboard's range: sums of recorded samples, weighted by traffic like the raw counters would
/// be, without reading a raw series over a range that may be 30 days long.
fn recorded_share_over_range(bad: &str, requests: &str) -> String {
    format!(
        "sum(sum_over_time({}[$__range]))\n/\nsum(sum_over_time({}[$__range]))",
        recorded(bad),
        recorded(requests)
    )
}

/// What the SLO row shows of one SLO: its SLI over the dashboard's range, budget and burn.
struct SloPanels {
    slo: &'static str,
    alert: &'static str,
    objective: f64,
    budget: f64,
    /// The recorded ratio of bad requests over a window.
    bad_ratio: fn(PromDuration) -> String,
}

impl SloPanels {
    fn of(settings: &Settings) -> [SloPanels; 2] {
        [
            SloPanels {
                slo: "availability",
                alert: alerts::ERROR_BUDGET_BURN,
                objective: settings.availability,
                budget: settings.error_budget(),
                bad_ratio: names::error_ratio,
            },
            SloPanels {
                slo: "latency",
                alert: alerts::LATENCY_BUDGET_BURN,
                objective: settings.latency_objective,
                budget: settings.latency_budget(),
                bad_ratio: names::slow_ratio,
            },
        ]
    }

    fn budget_remaining(&self, layout: &mut Layout, settings: &Settings, title: &str) {
        let period = settings.slo_period;
        let panel = layout.panel(
            "stat",
            &format!("{title} ({period})"),
            &format!(
                "Share of the {} SLO's error budget ({}% of requests) left over the SLO period of {period}, from the recorded series {}; red once spent (negative: the SLO is breached). Recorded per cluster: with several clusters selected, the one with the least left.",
                self.slo,
                num(self.budget * 100.0),
                names::BUDGET_REMAINING
            ),
            "percentunit",
            4,
            vec![q(
                format!(
                    "min({}{{cluster=~\"$cluster\", job=~\"$job\", slo=\"{}\"}})",
                    names::BUDGET_REMAINING,
                    self.slo
                ),
                "budget remaining",
            )],
            stat_options("value"),
        );
        color_by_thresholds(panel, budget_thresholds());
        link_runbooks(panel, settings, &[self.alert]);
    }

    /// The burn rate over the long window of every alert tier, with a line at each tier's factor.
    fn burn_rate(&self, layout: &mut Layout, settings: &Settings, title: &str) {
        let budget = num(self.budget);
        let mut queries = Vec::new();
        let mut tiers = Vec::new();
        for tier in burn_tiers(settings) {
            for window in tier.windows {
                queries.push(q(
                    format!(
                        "max({}) / {budget}",
                        recorded(&(self.bad_ratio)(window.long))
                    ),
                    format!(
                        "{} ({} at {}x)",
                        window.long,
                        tier.severity,
                        num(window.factor)
                    ),
                ));
            }
            tiers.push(format!(
                "{} at {}",
                tier.severity,
                tier.windows
                    .iter()
                    .map(|window| format!("{}x over {}", num(window.factor), window.long))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        let panel = layout.panel(
            "timeseries",
            title,
            &format!(
                "How many times faster than sustainable the {} error budget is being spent (1 = exactly on budget), over the long window of each burn-rate alert tier, from recorded series. The lines are the alerts' burn factors ({}); an alert fires when its long and short windows are both above its line. Recorded and alerted per cluster: with several clusters selected, the fastest burn.",
                self.slo,
                tiers.join("; ")
            ),
            "none",
            8,
            queries,
            json!({}),
        );
        draw_threshold_lines(panel, burn_thresholds(settings));
        link_runbooks(panel, settings, &[self.alert]);
    }
}

/// The SLO row: both SLIs over the dashboard's range, the error budgets left and their burn
/// rates, the objectives, and the alerts firing. Every query reads recorded per-job series
/// (the SLOs are the job's, over all its instances).
fn slo_row(layout: &mut Layout, queries: &Queries) {
    let settings = queries.settings;
    let threshold = settings.latency_threshold;
    let base = settings.rate_window;
    let [availability, latency] = SloPanels::of(settings);
    layout.row("SLO");
    let panel = layout.panel(
        "stat",
        "Availability (selected range)",
        &format!(
            "Share of requests answered without a 5xx status over the dashboard's time range, from the recorded {base} rates of the selected clusters together; red below the objective of {}%.",
            num(settings.availability * 100.0)
        ),
        "percentunit",
        4,
        vec![q(
            format!(
                "1 - (\n{}\n)",
                recorded_share_over_range(&names::errors(base), &names::requests(base))
            ),
            "availability",
        )],
        stat_options("value"),
    );
    color_by_thresholds(panel, objective_thresholds(availability.objective));
    link_runbooks(panel, settings, &[availability.alert]);
    availability.budget_remaining(layout, settings, "Error budget remaining");
    let panel = layout.panel(
        "stat",
        &format!("Requests under {threshold} (selected range)"),
        &format!(
            "Share of requests faster than the latency SLO threshold ({threshold}) over the dashboard's time range, from the recorded {base} rates of the selected clusters together; red below the objective of {}%.",
            num(settings.latency_objective * 100.0)
        ),
        "percentunit",
        4,
        vec![q(
            format!(
                "1 - (\n{}\n)",
                recorded_share_over_range(&names::slow(base), &names::requests(base))
            ),
            "under threshold",
        )],
        stat_options("value"),
    );
    color_by_thresholds(panel, objective_thresholds(latency.objective));
    link_runbooks(panel, settings, &[latency.alert]);
    latency.budget_remaining(layout, settings, "Latency budget remaining");
    layout.panel(
        "stat",
        "Objectives",
        "The SLO objectives the alert rules were generated with (constants recorded per job, the same in every cluster, so not filtered by cluster or instance).",
        "percentunit",
        8,
        vec![q(
            format!("max by (slo) ({}{{job=~\"$job\"}})", names::OBJECTIVE),
            "{{slo}}",
        )],
        stat_options("value_and_name"),
    );
    availability.burn_rate(layout, settings, "Error budget burn rate");
    latency.burn_rate(layout, settings, "Latency budget burn rate");
    alert_list(layout, queries.preset, settings, 8);
}

/// The alerts of the selected job that are firing or pending, from the Prometheus rules
/// (Grafana lists data-source-managed rules), with every alert's runbook one click away.
fn alert_list(layout: &mut Layout, preset: Naming, settings: &Settings, width: u64) {
    let grid = layout.place(width, 8);
    let id = layout.id();
    let every_alert: Vec<&str> = alerts::all(preset, settings)
        .iter()
        .map(|spec| spec.name)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    layout.push(json!({
        "type": "alertlist",
        "id": id,
        "title": "Alerts firing and pending",
        "description": "The generated alerts of the selected clusters and job that are firing or pending. The panel's links open each alert's runbook.",
        "gridPos": grid,
        "links": runbook_links(settings, &every_alert),
        "options": {
            "viewMode": "list",
            "groupMode": "default",
            "groupBy": [],
            "maxItems": 20,
            // By importance: firing first.
            "sortOrder": 3,
            "dashboardAlerts": false,
            "alertName": "",
            "alertInstanceLabelFilter": "{cluster=~\"$cluster\", job=~\"$job\"}",
            "showInstances": true,
            "stateFilter": {
                "firing": true,
                "pending": true,
                "noData": false,
                "normal": false,
                "error": true,
            },
        },
        // Required by Grafana's panel type, though the alert list has neither fields nor queries.
        "fieldConfig": { "defaults": {}, "overrides": [] },
        "targets": [],
    }));
}

/// Column titles of the route table.
mod route_columns {
    pub const ROUTE: &str = "Route";
    pub const REQUESTS: &str = "Requests/s";
    pub const ERRORS: &str = "5xx share";
    pub const P99: &str = "p99";
}

/// The URL of the drill-down dashboard on one route, for a data link on a route cell: the
/// time range, data source, clusters, job and instances go along.
fn route_dashboard_link(preset: Naming) -> String {
    format!(
        "/d/{}?${{__url_time_range}}&${{datasource:queryparam}}&${{cluster:queryparam}}&${{job:queryparam}}&${{instance:queryparam}}&var-{ROUTE_VARIABLE}=${{__value.raw}}",
        route_uid(preset)
    )
}

/// A table override: the field named `name` gets `properties`.
fn field_override(name: &str, properties: Value) -> Value {
    json!({ "matcher": { "id": "byName", "options": name }, "properties": properties })
}

/// One row per route from the recorded per-route series (rate, 5xx share, p99 over the rate
/// window); a click on the route opens its drill-down dashboard.
fn route_table(layout: &mut Layout, queries: &Queries) {
    use route_columns::*;
    let settings = queries.settings;
    let route = queries.names.route;
    let base = settings.rate_window;
    let selected = |series: String| {
        format!("{series}{{cluster=~\"$cluster\", job=~\"$job\", {route}=~\"$route\"}}")
    };
    let panel = layout.panel(
        "table",
        "Routes",
        &format!(
            "One row per route, from the recorded per-route series over {base} (per cluster and job, so not filtered by instance): requests per second of the selected clusters together, and the worst selected cluster's share answered with a 5xx (red above the alert threshold of {}%) and p99 response time (red above the latency SLO threshold of {}). Click a route for its own dashboard.",
            num(settings.error_ratio_threshold * 100.0),
            settings.latency_threshold
        ),
        "none",
        24,
        vec![
            q(format!("sum by ({route}) ({})", selected(names::route_requests(base))), ""),
            q(format!("max by ({route}) ({})", selected(names::route_error_ratio(base))), ""),
            q(format!("max by ({route}) ({})", selected(names::route_p99_latency(base))), ""),
        ],
        json!({
            "showHeader": true,
            "cellHeight": "sm",
            // The merged frame is the only one (Grafana's default, which its types require).
            "frameIndex": 0,
            "sortBy": [{ "displayName": REQUESTS, "desc": true }],
        }),
    );
    panel["transformations"] = json!([
        { "id": "merge", "options": {} },
        { "id": "organize", "options": {
            "excludeByName": { "Time": true },
            "indexByName": { route: 0, "Value #A": 1, "Value #B": 2, "Value #C": 3 },
            "renameByName": { route: ROUTE, "Value #A": REQUESTS, "Value #B": ERRORS, "Value #C": P99 },
        } },
    ]);
    let colored = |unit: &str, limit: f64| {
        json!([
            { "id": "unit", "value": unit },
            { "id": "thresholds", "value": thresholds("green", &[(limit, "red")]) },
            { "id": "custom.cellOptions", "value": { "type": "color-text" } },
        ])
    };
    panel["fieldConfig"]["overrides"] = json!([
        field_override(
            ROUTE,
            json!([{ "id": "links", "value": [{
            "title": "Open the dashboard of route ${__value.raw}",
            "url": route_dashboard_link(queries.preset),
        }] }])
        ),
        field_override(REQUESTS, json!([{ "id": "unit", "value": "reqps" }])),
        field_override(
            ERRORS,
            colored("percentunit", settings.error_ratio_threshold)
        ),
        field_override(P99, colored("s", settings.threshold_le())),
    ]);
    link_runbooks(
        panel,
        settings,
        &[alerts::ERROR_RATIO_BREACH, alerts::LATENCY_BUDGET_BURN],
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
    route_table(layout, queries);
    let panel = layout.panel(
        "timeseries",
        "Requests per second by route",
        &format!("Request rate per route template, all methods and statuses. {OVER_CLUSTERS}"),
        "reqps",
        12,
        vec![q(
            format!("sum by ({route}) (rate({count}{{{rsel}}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    link_runbooks(panel, queries.settings, &[alerts::REQUEST_RATE_ANOMALY]);
    layout.panel(
        "timeseries",
        "Requests per minute by status",
        &format!("Request rate per HTTP status code, in requests per minute. 499 = the client went away before the response. {OVER_CLUSTERS}"),
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
    let panel = layout.panel(
        "timeseries",
        "Server errors (5xx) per second by route",
        &format!("Rate of responses with a 5xx status, per route. {OVER_CLUSTERS}"),
        "reqps",
        8,
        vec![q(
            format!("sum by ({route}) (rate({count}{{{rsel}, {status}=~\"5..\"}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    link_runbooks(panel, queries.settings, &[alerts::ERROR_RATIO_BREACH]);
    let panel = layout.panel(
        "timeseries",
        "Error ratio by route",
        &format!("Share of requests of each route answered with a 5xx status. Routes without errors have no line. {OVER_CLUSTERS}"),
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
    link_runbooks(
        panel,
        queries.settings,
        &[alerts::ERROR_RATIO_BREACH, alerts::ERROR_RATIO_ANOMALY],
    );
    layout.panel(
        "timeseries",
        "Client (4xx) vs server (5xx) errors",
        &format!("Rate of 4xx responses (the client's fault, including 404 for unknown paths and 499 for abandoned requests) next to 5xx responses (the server's fault). {OVER_CLUSTERS}"),
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
    let panel = layout.panel(
        "timeseries",
        "Average response time by route",
        &format!("Mean time from request to response per route (histogram sum / count). {OVER_CLUSTERS}"),
        "s",
        12,
        vec![q(
            format!("sum by ({route}) (rate({sum}{{{rsel}}}[{ri}]))\n/\nsum by ({route}) (rate({count}{{{rsel}}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    link_runbooks(
        panel,
        settings,
        &[
            alerts::LATENCY_AVERAGE_BREACH,
            alerts::LATENCY_AVERAGE_ANOMALY,
        ],
    );
    let panel = layout.panel(
        "timeseries",
        &format!("Requests under {threshold} by route"),
        &format!("Share of requests of each route that finished within the latency SLO threshold of {threshold} (exact: the threshold is a bucket bound). {OVER_CLUSTERS}"),
        "percentunit",
        12,
        vec![q(
            format!("sum by ({route}) (rate({bucket}{{{rsel}, {le}}}[{ri}]))\n/\nsum by ({route}) (rate({count}{{{rsel}}}[{ri}]))"),
            format!("{{{{{route}}}}}"),
        )],
        json!({}),
    );
    link_runbooks(panel, settings, &[alerts::LATENCY_BUDGET_BURN]);
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
        &format!("Percentiles estimated from the histogram buckets by linear interpolation inside a bucket; precise to the bucket bounds. {OVER_CLUSTERS}"),
        "s",
        12,
        quantiles,
        json!({}),
    );
    latency_heatmap(layout, queries, 12);
}

/// The shortest time span of a heatmap column: four scrape intervals, so that `increase()` over
/// one column always has samples to work with.
fn heatmap_min_interval(settings: &Settings) -> PromDuration {
    settings.scrape_interval.times(4)
}

/// The latency heatmap: each cell counts the requests of one bucket in one column's time span.
/// The window of `increase()` is the step between columns (`$__interval`), so the columns
/// tile the time range without overlap and each request is counted once.
fn latency_heatmap(layout: &mut Layout, queries: &Queries, width: u64) {
    let bucket = &queries.bucket;
    let rsel = &queries.rsel;
    let min_interval = heatmap_min_interval(queries.settings);
    let panel = layout.panel(
        "heatmap",
        "Response time distribution",
        &format!(
            "Each cell counts the requests whose response time fell in one histogram bucket (the row: above the next lower bucket bound, up to this one) during the cell's time span, which is Grafana's $__interval: the time range split into at most {HEATMAP_MAX_DATA_POINTS} columns, each at least {min_interval} long (four scrape intervals). The counts come from increase() over exactly that span, so they are extrapolated and may be fractional; darker cells hold more requests. {OVER_CLUSTERS}"
        ),
        "short",
        width,
        vec![q(
            format!("sum by (le) (increase({bucket}{{{rsel}}}[$__interval]))"),
            "{{le}}",
        )],
        json!({
            "calculate": false,
            "yAxis": { "unit": "s", "axisPlacement": "left" },
            "rowsFrame": { "layout": "le", "value": "Requests" },
            "cellValues": { "unit": "short", "decimals": 0 },
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
    panel["interval"] = json!(min_interval.to_string());
    panel["maxDataPoints"] = json!(HEATMAP_MAX_DATA_POINTS);
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
        "Requests being served right now, per instance (kept apart by cluster: instance names may repeat in another cluster).",
        "short",
        8,
        vec![q(
            format!("sum by (cluster, instance) ({}{{{sel}}})", names.active_requests),
            "{{instance}} {{cluster}}",
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
    let panel = layout.panel(
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
    link_runbooks(
        panel,
        queries.settings,
        &[
            alerts::TARGET_DOWN,
            alerts::ALL_TARGETS_DOWN,
            alerts::METRICS_ABSENT,
        ],
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
    // The alerts' selectors of the API's containers, narrowed to the selected clusters.
    let scopes: Vec<resources::Scope> = resources::scopes(settings)
        .into_iter()
        .map(|mut scope| {
            scope.selector = format!("{}, {CLUSTER_SELECTED}", scope.selector);
            scope
        })
        .collect();
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
    let panel = layout.panel(
        "timeseries",
        "Container CPU throttling",
        "Share of CFS scheduling periods in which the container was throttled because it reached its CPU limit (containers with a limit only). Above 25% for 15 minutes alerts (ApiContainerCpuThrottling).",
        "percentunit",
        8,
        vec![q(resources::throttled_ratio(&scopes, ri), legend)],
        json!({}),
    );
    link_runbooks(panel, settings, &[alerts::CONTAINER_CPU_THROTTLING]);
    let panel = layout.panel(
        "timeseries",
        "Container memory % of limit",
        "Working set (what the kernel cannot reclaim; the OOM killer's and the kubelet's measure) as a share of the container's memory limit; containers without a limit have no line. Above 90% for 15 minutes alerts (ApiContainerMemoryNearLimit).",
        "percentunit",
        8,
        vec![q(resources::memory_ratio(&scopes), legend)],
        json!({}),
    );
    link_runbooks(panel, settings, &[alerts::CONTAINER_MEMORY_NEAR_LIMIT]);
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
        &format!("Requests per second sent by the load generator (`redwatch load --metrics-listen`, client side) and its target rate, next to what the server counted. Empty when no load generator is scraped. {OVER_CLUSTERS}"),
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
        &format!("Latency seen by the load generator, measured from the intended send time (so queueing counts), next to the server's own histogram. The gap is network, connection and queueing time. {OVER_CLUSTERS}"),
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

/// The data source variable every panel reads through.
fn datasource_variable() -> Value {
    json!({
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "hide": 0,
        "refresh": 1,
        "options": [],
    })
}

/// The job variable, on the generated job by default.
fn job_variable(queries: &Queries) -> Value {
    let (count, job) = (&queries.count, &queries.settings.job);
    let mut variable = variable_query(
        "job",
        "Job",
        &format!("label_values({count}{{{CLUSTER_SELECTED}}}, job)"),
        false,
    );
    variable["current"] = json!({ "selected": true, "text": job, "value": job });
    variable
}

fn instance_variable(queries: &Queries) -> Value {
    let count = &queries.count;
    variable_query(
        "instance",
        "Instance",
        &format!("label_values({count}{{cluster=~\"$cluster\", job=~\"$job\"}}, instance)"),
        true,
    )
}

/// The routes of the selected job and instances; `multi` for the overview's filter, single for
/// the drill-down that shows one route.
fn route_variable(queries: &Queries, multi: bool) -> Value {
    let (count, route) = (&queries.count, queries.names.route);
    variable_query(
        ROUTE_VARIABLE,
        "Route",
        &format!("label_values({count}{{{SELECTED}}}, {route})"),
        multi,
    )
}

/// A link in a dashboard's header to another dashboard, keeping the time range and variables.
fn dashboard_link(title: &str, uid: &str) -> Value {
    json!({
        "title": title,
        "type": "link",
        "url": format!("/d/{uid}"),
        "icon": "dashboard",
        "keepTime": true,
        "includeVars": true,
        "targetBlank": false,
        "asDropdown": false,
        "tags": [],
        "tooltip": "",
    })
}

/// A dashboard around its panels, variables and header links.
fn dashboard(
    uid: String,
    title: String,
    description: String,
    variables: Vec<Value>,
    links: Vec<Value>,
    panels: Vec<Value>,
) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "description": description,
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
        "links": links,
        "annotations": { "list": [{
            "builtIn": 1,
            "datasource": { "type": "grafana", "uid": "-- Grafana --" },
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }] },
        "templating": { "list": variables },
        "panels": panels,
    })
}

/// The overview dashboard for one preset: one row after the other, then the variables.
pub fn api_overview(preset: Naming, settings: &Settings) -> Value {
    let queries = Queries::new(preset, settings, "=~\"$route\"");
    let mut layout = Layout::new();
    slo_row(&mut layout, &queries);
    traffic_row(&mut layout, &queries);
    errors_row(&mut layout, &queries);
    latency_row(&mut layout, &queries);
    saturation_row(&mut layout, &queries);
    containers_row(&mut layout, &queries);
    host_row(&mut layout, &queries);
    client_view_row(&mut layout, &queries);
    let variables = vec![
        datasource_variable(),
        cluster_variable(&queries),
        job_variable(&queries),
        instance_variable(&queries),
        route_variable(&queries, true),
        variable_query(
            "node",
            "Host",
            &format!(
                "label_values({}{{{CLUSTER_SELECTED}, mode=\"idle\"}}, instance)",
                node::CPU_SECONDS
            ),
            true,
        ),
        variable_query(
            "load_job",
            "Load generator job",
            &format!(
                "label_values({}{{{CLUSTER_SELECTED}}}, job)",
                load::REQUESTS
            ),
            true,
        ),
        variable_query(
            "load_instance",
            "Load generator",
            &format!(
                "label_values({}{{{CLUSTER_SELECTED}, job=~\"$load_job\"}}, instance)",
                load::REQUESTS
            ),
            true,
        ),
    ];
    let links = vec![
        json!({
            "title": "Alert runbooks",
            "type": "link",
            "url": settings.runbook_url,
            "icon": "doc",
            "targetBlank": true,
            "keepTime": false,
            "includeVars": false,
            "asDropdown": false,
            "tags": [],
            "tooltip": "What each alert means and what to do about it",
        }),
        dashboard_link("API route", &route_uid(preset)),
    ];
    dashboard(
        uid(preset),
        format!("API overview ({})", preset.as_str()),
        format!(
            "HTTP API health from redwatch metrics ({} naming): SLOs, traffic, errors, latency, saturation, the containers' and hosts' resources and the load generator's view.",
            preset.as_str()
        ),
        variables,
        links,
        layout.panels,
    )
}

/// The drill-down's traffic and errors of the one route.
fn route_traffic_row(layout: &mut Layout, queries: &Queries) {
    let settings = queries.settings;
    let status = queries.names.status;
    let count = &queries.count;
    let rsel = &queries.rsel;
    let ri = RATE_INTERVAL;
    let all = format!("sum(rate({count}{{{rsel}}}[{ri}]))");
    // `or 0 * all` keeps a route without errors at 0 instead of "No data".
    let errors = format!("sum(rate({count}{{{rsel}, {status}=~\"5..\"}}[{ri}]))\nor\n0 * {all}");
    layout.row("Traffic and errors of $route");
    layout.panel(
        "timeseries",
        "Requests per second by status",
        &format!("Request rate of this route per HTTP status code. 499 = the client went away before the response. {OVER_CLUSTERS}"),
        "reqps",
        8,
        vec![q(format!("sum by ({status}) (rate({count}{{{rsel}}}[{ri}]))"), format!("{{{{{status}}}}}"))],
        json!({}),
    );
    let panel = layout.panel(
        "timeseries",
        "Server errors (5xx) per second",
        &format!("Rate of this route's responses with a 5xx status. {OVER_CLUSTERS}"),
        "reqps",
        8,
        vec![q(errors.clone(), "5xx")],
        json!({}),
    );
    link_runbooks(panel, settings, &[alerts::ERROR_RATIO_BREACH]);
    let panel = layout.panel(
        "timeseries",
        "Error ratio",
        &format!(
            "Share of this route's requests answered with a 5xx status; the line is the error-ratio alert's threshold of {}% (which the alert applies to the whole job). {OVER_CLUSTERS}",
            num(settings.error_ratio_threshold * 100.0)
        ),
        "percentunit",
        8,
        vec![q(format!("(\n{errors}\n)\n/\n{all}"), "5xx share")],
        json!({}),
    );
    draw_threshold_lines(
        panel,
        thresholds("green", &[(settings.error_ratio_threshold, "red")]),
    );
    link_runbooks(
        panel,
        settings,
        &[alerts::ERROR_RATIO_BREACH, alerts::ERROR_RATIO_ANOMALY],
    );
}

/// The drill-down's latency of the one route: percentiles and mean, the share under the
/// threshold, the heatmap.
fn route_latency_row(layout: &mut Layout, queries: &Queries) {
    let settings = queries.settings;
    let (count, sum, bucket) = (&queries.count, &queries.sum, &queries.bucket);
    let rsel = &queries.rsel;
    let ri = RATE_INTERVAL;
    let threshold = settings.latency_threshold;
    let le = super::promql::le_matcher(settings.threshold_le());
    layout.row("Latency of $route");
    let mut latencies: Vec<Query> = [0.5, 0.9, 0.99]
        .iter()
        .map(|quantile| {
            q(
                format!(
                    "histogram_quantile({quantile}, sum by (le) (rate({bucket}{{{rsel}}}[{ri}])))"
                ),
                format!("p{}", num(quantile * 100.0)),
            )
            .with_exemplars()
        })
        .collect();
    latencies.push(q(
        format!("sum(rate({sum}{{{rsel}}}[{ri}]))\n/\nsum(rate({count}{{{rsel}}}[{ri}]))"),
        "average",
    ));
    let panel = layout.panel(
        "timeseries",
        "Response time percentiles (p50 / p90 / p99) and average",
        &format!("Percentiles of this route's response time, estimated from the histogram buckets by linear interpolation inside a bucket, and the mean (sum / count). The line is the latency SLO threshold of {threshold}. {OVER_CLUSTERS}"),
        "s",
        12,
        latencies,
        json!({}),
    );
    draw_threshold_lines(
        panel,
        thresholds("green", &[(settings.threshold_le(), "red")]),
    );
    link_runbooks(
        panel,
        settings,
        &[
            alerts::LATENCY_AVERAGE_BREACH,
            alerts::LATENCY_AVERAGE_ANOMALY,
        ],
    );
    let panel = layout.panel(
        "timeseries",
        &format!("Requests under {threshold}"),
        &format!(
            "Share of this route's requests that finished within the latency SLO threshold of {threshold}; the line is the latency objective of {}% (which the SLO applies to the whole job). {OVER_CLUSTERS}",
            num(settings.latency_objective * 100.0)
        ),
        "percentunit",
        12,
        vec![q(
            format!("sum(rate({bucket}{{{rsel}, {le}}}[{ri}]))\n/\nsum(rate({count}{{{rsel}}}[{ri}]))"),
            "under threshold",
        )],
        json!({}),
    );
    draw_threshold_lines(panel, objective_thresholds(settings.latency_objective));
    link_runbooks(panel, settings, &[alerts::LATENCY_BUDGET_BURN]);
    latency_heatmap(layout, queries, 24);
}

/// The drill-down's body sizes of the one route (collapsed: the library records them only with
/// `MetricsBuilder::body_sizes`, so the panels of other APIs stay empty and unqueried).
fn route_body_size_row(layout: &mut Layout, queries: &Queries) {
    let names = &queries.names;
    let rsel = &queries.rsel;
    let ri = RATE_INTERVAL;
    layout.row("Body sizes of $route (MetricsBuilder::body_sizes)");
    for (title, histogram) in [
        ("Request body size (p50 / p99)", &names.request_body_size),
        ("Response body size (p50 / p99)", &names.response_body_size),
    ] {
        let sizes = [0.5, 0.99]
            .iter()
            .map(|quantile| {
                q(
                    format!("histogram_quantile({quantile}, sum by (le) (rate({histogram}_bucket{{{rsel}}}[{ri}])))"),
                    format!("p{}", num(quantile * 100.0)),
                )
            })
            .collect();
        layout.panel(
            "timeseries",
            title,
            &format!("Body size percentiles of this route's requests, estimated from the size histogram's buckets. Empty unless the API records body sizes (MetricsBuilder::body_sizes). {OVER_CLUSTERS}"),
            "bytes",
            8,
            sizes,
            json!({}),
        );
    }
    layout.panel(
        "timeseries",
        "Body bytes per second",
        &format!("Request and response body bytes per second of this route. Empty unless the API records body sizes (MetricsBuilder::body_sizes). {OVER_CLUSTERS}"),
        "Bps",
        8,
        vec![
            q(format!("sum(rate({}_sum{{{rsel}}}[{ri}]))", names.request_body_size), "received"),
            q(format!("sum(rate({}_sum{{{rsel}}}[{ri}]))", names.response_body_size), "sent"),
        ],
        json!({}),
    );
    layout.collapse_last_row();
}

/// The drill-down dashboard of one route (the `route` variable), which the overview's route
/// table links to.
pub fn api_route(preset: Naming, settings: &Settings) -> Value {
    let queries = Queries::new(preset, settings, &format!("=\"${ROUTE_VARIABLE}\""));
    let mut layout = Layout::new();
    route_traffic_row(&mut layout, &queries);
    route_latency_row(&mut layout, &queries);
    route_body_size_row(&mut layout, &queries);
    dashboard(
        route_uid(preset),
        format!("API route ({})", preset.as_str()),
        format!(
            "One route of the HTTP API from redwatch metrics ({} naming): its traffic by status, errors, latency percentiles, heatmap and body sizes. The overview's route table links here.",
            preset.as_str()
        ),
        vec![
            datasource_variable(),
            cluster_variable(&queries),
            job_variable(&queries),
            instance_variable(&queries),
            route_variable(&queries, false),
        ],
        vec![dashboard_link("API overview", &uid(preset))],
        layout.panels,
    )
}
