//! The generator follows the library's configuration: an API whose metrics have a namespace, a
//! constant label, custom duration buckets and body sizes exposes, under each preset, every series
//! the dashboards and the rules generated for that configuration name, with the labels they match
//! on.

use std::collections::BTreeSet;

use redwatch::{Metrics, Naming};
use redwatch_cli::generate::{GenerateFlags, GeneratedFile, List, generate_preset};
use redwatch_cli::serve::{Drain, app};
use serde_json::Value;

use crate::support::generate::{all_panels, rules_of, selectors};
use crate::support::http::get_async;

const NAMESPACE: &str = "shop";
const CONST_LABEL: (&str, &str) = ("service", "checkout");
/// Not the library's defaults; 0.3 is the latency threshold.
const BUCKETS: [f64; 5] = [0.01, 0.1, 0.3, 1.0, 5.0];
const THRESHOLD: &str = "300ms";

/// Aborts the server task when the test ends, passed or not.
struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves the demo API instrumented with `metrics` on 127.0.0.1:0, sends a little of every kind
/// of traffic and returns the exposition.
async fn exposition_after_traffic(metrics: &Metrics) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let router = app(metrics, 0.0, true, &Drain::default());
    let _server = ServerTask(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }));
    for path in [
        "/",
        "/ep_one",
        "/ep_two",
        "/error",
        "/users/7",
        "/no/such/path",
    ] {
        for _ in 0..3 {
            get_async(addr, path, &[]).await;
        }
    }
    let response = get_async(addr, "/metrics", &[]).await;
    assert_eq!(response.status, 200);
    response.body
}

fn file<'a>(files: &'a [GeneratedFile], path: &str) -> &'a str {
    files
        .iter()
        .find(|file| file.path.to_str() == Some(path))
        .unwrap_or_else(|| panic!("no {path} generated"))
        .content
        .as_str()
}

/// Every PromQL expression of the dashboard: panel targets (rows nested) and variable queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let targets = all_panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variable| variable["query"]["query"].as_str().map(str::to_owned));
    targets.chain(variables).collect()
}

fn rule_exprs(rules_yaml: &str) -> Vec<String> {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(rules_yaml).expect("rules YAML");
    rules_of(&rules)
        .iter()
        .filter_map(|rule| rule["expr"].as_str().map(str::to_owned))
        .collect()
}

/// The series names an expression reads by name: `name{...}` and `label_values(name, ...)`.
fn series_read(expr: &str) -> Vec<(String, String)> {
    let mut found = selectors(expr);
    for part in expr.split("label_values(").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !part[name.len()..].starts_with('{') {
            found.push((name, String::new()));
        }
    }
    found
}

/// The label names and exact `le` values a selector's matchers ask for (target labels aside, and
/// `cluster`, which a Prometheus's `external_labels` add on the way to a central store).
fn matched_labels(matchers: &str) -> Vec<(String, Option<String>)> {
    matchers
        .split(", ")
        .filter_map(|matcher| {
            let name: String = matcher
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let exact = matcher[name.len()..]
                .strip_prefix("=\"")
                .and_then(|value| value.strip_suffix('"'))
                .map(str::to_owned);
            (!name.is_empty() && !["job", "instance", "cluster"].contains(&name.as_str()))
                .then_some((name, exact))
        })
        .collect()
}

/// The problems of one series read by a generated expression, against the exposition.
fn check_series(exposition: &str, name: &str, matchers: &str) -> Vec<String> {
    let lines: Vec<&str> = exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect();
    if lines.is_empty() {
        return vec![format!("{name} is not exposed")];
    }
    let mut problems = Vec::new();
    for (label, exact) in matched_labels(matchers) {
        let wanted = match &exact {
            Some(value) if label == "le" => format!("{label}=\"{value}\""),
            _ => format!("{label}=\""),
        };
        if !lines.iter().any(|line| line.contains(&wanted)) {
            problems.push(format!("{name} has no {wanted}"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_dashboards_and_rules_name_only_series_the_configured_api_exposes() {
    for naming in Naming::ALL {
        let metrics = Metrics::builder()
            .naming(naming)
            .namespace(NAMESPACE)
            .const_label(CONST_LABEL.0, CONST_LABEL.1)
            .duration_buckets(BUCKETS.to_vec())
            // The route dashboard reads the opt-in body size histograms too.
            .body_sizes(true)
            .build()
            .expect("a valid library configuration");
        let exposition = exposition_after_traffic(&metrics).await;

        let mut flags = GenerateFlags::defaults().expect("the flags' defaults");
        flags.naming = Some(naming);
        flags.namespace = Some(NAMESPACE.to_owned());
        flags.const_labels = vec![(CONST_LABEL.0.to_owned(), CONST_LABEL.1.to_owned())];
        flags.buckets = Some(List(BUCKETS.to_vec()));
        flags.latency_threshold = THRESHOLD.parse().expect("threshold");
        let settings = flags
            .settings()
            .expect("settings for the same configuration");
        let files = generate_preset(naming, &settings).expect("generate");

        let dashboards: Vec<Value> = ["api-overview.json", "api-route.json"]
            .iter()
            .map(|name| {
                serde_json::from_str(file(&files, &format!("grafana/dashboards/{name}")))
                    .expect("dashboard JSON")
            })
            .collect();
        let exprs: Vec<String> = dashboards
            .iter()
            .flat_map(dashboard_exprs)
            .chain(rule_exprs(file(
                &files,
                "prometheus/rules/redwatch.rules.yml",
            )))
            .collect();
        let mut checked = BTreeSet::new();
        let mut problems = BTreeSet::new();
        for expr in &exprs {
            for (name, matchers) in series_read(expr) {
                // Recorded series, Prometheus's own, the load generator's and the exporters'
                // (cAdvisor, node-exporter: see resources.test.yml and generate_node_live) are
                // not the API's.
                if name.contains(':')
                    || name == "up"
                    || name.starts_with("redwatch_load_")
                    || ["container_", "machine_", "node_"]
                        .iter()
                        .any(|prefix| name.starts_with(prefix))
                {
                    continue;
                }
                problems.extend(check_series(&exposition, &name, &matchers));
                checked.insert(name);
            }
        }
        let names = naming.names();
        for read in [
            format!("{NAMESPACE}_{}_count", names.duration),
            format!("{NAMESPACE}_{}_bucket", names.duration),
            format!("{NAMESPACE}_{}_bucket", names.request_body_size),
            format!("{NAMESPACE}_{}_sum", names.response_body_size),
        ] {
            assert!(
                checked.contains(&read),
                "{naming}: the generated files do not read {read}: {checked:?}"
            );
        }
        assert!(
            problems.is_empty(),
            "{naming}: generated files read series the API does not expose:\n{}\n\nexposition:\n{exposition}",
            problems.into_iter().collect::<Vec<_>>().join("\n")
        );
    }
}
