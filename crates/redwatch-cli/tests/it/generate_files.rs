//! `redwatch generate`: the committed set does not drift, flags are validated, the dashboard
//! follows its conventions, deploy files parse and reference files that exist.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::generate::*;
use crate::support::process::redwatch;
use crate::support::tools::{find_tool, require_tool};

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

fn dashboard(preset: &str) -> Value {
    let path = committed_dir()
        .join(preset)
        .join("grafana/dashboards/api-overview.json");
    serde_json::from_str(&read(&path)).expect("dashboard JSON")
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
const REQUIRED_PANELS: [&str; 36] = [
    "SLO / Availability",
    "SLO / Error budget remaining",
    "SLO / Error budget burn rate",
    "SLO / Objectives",
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
}

/// Every panel, with the panels of collapsed rows (nested in them) in place.
fn all_panels(board: &Value) -> Vec<Value> {
    let mut panels = Vec::new();
    for panel in board["panels"].as_array().expect("panels") {
        panels.push(panel.clone());
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
    }
    panels
}

/// A panel's data source, description, unit and targets.
fn assert_panel_conventions(context: &str, row: &str, panel: &Value) {
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
        if panel["type"] == "stat" {
            assert_eq!(
                target["instant"], true,
                "{context}: stats must use instant queries"
            );
        }
        assert_query_conventions(context, row, target["expr"].as_str().expect("expr"));
    }
}

/// The committed settings' selectors of the API's containers: the compose service and the
/// Kubernetes pods.
const CONTAINER_SELECTORS: [&str; 2] = [
    "container_label_com_docker_compose_service=\"api\"",
    "namespace=\"redwatch\", pod=~\"redwatch-[a-z0-9]+-[a-z0-9]+\"",
];

/// A panel query filters on the dashboard's variables and uses the allowed ranges only.
fn assert_query_conventions(context: &str, row: &str, expr: &str) {
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
        } else if name.starts_with("job:") {
            // Recorded per job (objectives): there is no instance to filter on.
            assert!(matchers.contains("job=~\"$job\""), "{context}: {expr}");
        } else {
            assert!(matchers.contains("job=~\"$job\""), "{context}: {expr}");
            assert!(
                matchers.contains("instance=~\"$instance\""),
                "{context}: {expr}"
            );
        }
    }
    assert!(
        !selectors(expr).is_empty() || expr.contains("machine_cpu_cores"),
        "{context}: {expr} selects nothing"
    );
    for range in ranges(expr) {
        let allowed = range == "$__rate_interval"
            || (row == "SLO"
                && (range == "$__range" || ["1h", "6h", "30d"].contains(&range.as_str())));
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
            assert_panel_conventions(&format!("{preset}: panel {title:?}"), &row, panel);
        }
        assert!(kinds.contains("heatmap"), "{preset}: no heatmap");
        for wanted in REQUIRED_PANELS {
            assert!(
                titles.iter().any(|title| title.starts_with(wanted)),
                "{preset}: no panel {wanted:?} in {titles:#?}"
            );
        }
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
    // Rendering with kustomize proves the kustomizations compose (optional tool: kubectl).
    if find_tool("kubectl").is_some() {
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
    } else {
        eprintln!("NOTICE: kubectl not found; kustomize rendering not checked");
    }
}
