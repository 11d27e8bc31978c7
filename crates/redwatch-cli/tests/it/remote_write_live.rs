//! Beyond one Prometheus, live: the shape of Thanos, Mimir and VictoriaMetrics. Two edge
//! Prometheus servers, one per cluster, each scrape their own `redwatch serve` instances with
//! the generated scrape configuration, label everything with their cluster (`external_labels`)
//! and remote-write it to a central Prometheus (`--web.enable-remote-write-receiver`) that
//! evaluates the generated rules. On the central server, the generated dashboards' queries, with
//! the `cluster` variable on one cluster or "All", give each cluster's request rate and their
//! sum, and the recorded series and alerts come out per cluster with each cluster's values.
//! Fails when CI is set and `prometheus` is missing.
//!
//! The rules run on the central server only, as a central ruler (Mimir's, Thanos Ruler) runs
//! them: were the edges to evaluate them too and remote-write the results, the central server
//! would record the same series twice. `deploy/k8s/README.md` describes both placements.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support;
use crate::support::Group;
use crate::support::generate::*;
use crate::support::http::{get_json, url_encode};
use crate::support::live_stack::{daemon, load, tail, wait_ready};
use crate::support::process::{Proc, Server, free_port, loopback};
use crate::support::remote_write::{central_config, edge_config, prometheus};
use crate::support::tools::require_tool;

/// Each cluster and the open-loop rates (requests per second) of its instances: cluster `a`
/// has two instances, `b` one, and their totals differ, so that merged clusters would show.
const CLUSTERS: [(&str, &[f64]); 2] = [("a", &[12.0, 8.0]), ("b", &[10.0])];

/// The load's mix: a quarter server errors, a quarter 404s, so every error panel has data.
const MIX: &str = "/ep_one=2,/error=1,/no/such/path=1";
const ERROR_SHARE: f64 = 0.25;

/// How long the loads run (they stop by themselves; the test ends them earlier).
const LOAD_DURATION: Duration = Duration::from_secs(80);

/// The dashboards' `$__rate_interval` here: twenty 1 s scrapes.
const RATE_INTERVAL: &str = "20s";
const RATE_INTERVAL_SECS: u64 = 20;

/// Queries are evaluated this far in the past, so that every edge has delivered its samples
/// of that moment (remote write batches for up to `batch_send_deadline`, 10 ms here).
const QUERY_LAG_SECS: f64 = 3.0;

/// How long after the loads start the checks may take to pass.
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Relative tolerance of a measured request rate against the load's. The load holds an open-loop
/// schedule, so the true rate is exact; `rate()` over twenty 1 s scrapes is off by at most a
/// request or two at the window's edges (about 1 % at 10 req/s) plus the scrapes' timing jitter,
/// and on this contended two-core machine a delayed burst of the load may straddle a window
/// edge. 10 % holds those with room, and is far from the 33 % and 100 % errors that merged or
/// missing clusters would give (20 against 10 req/s).
const RATE_TOLERANCE: f64 = 0.10;

/// Absolute tolerance of an error share. The mix draws each request at random (weights 2:1:1),
/// so over the 40 s window checked (400 to 800 requests per cluster) the 5xx share has a
/// standard deviation of about 0.02: 0.08 is four of them.
const SHARE_TOLERANCE: f64 = 0.08;

/// The recorded long window of the compressed settings' first paging tier checked for the error
/// share (its series averages the recorded 5 s rates).
const RECORDED_WINDOW: &str = "40s";

/// The running stack; dropping it stops the loads, then the Prometheus servers, then the
/// instances, then removes the directory.
struct Stack {
    central: SocketAddr,
    /// A cluster's generated set (the dashboards are the same in both).
    dir: PathBuf,
    logs: Vec<(String, PathBuf)>,
    _loads: Vec<Proc>,
    _prometheus: Vec<Proc>,
    _servers: Vec<Server>,
    _temp: tempfile::TempDir,
}

impl Stack {
    /// The last lines of every Prometheus log, for a failure message.
    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|(name, path)| format!("--- {name}:\n{}", tail(path, 15)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn start_stack(binary: &Path) -> Stack {
    let job = "live";
    let temp = tempfile::tempdir().expect("temp dir");
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for (cluster, rates) in CLUSTERS {
        let first = servers.len();
        for _ in rates.iter() {
            servers.push(Server::start(&["--latency-scale", "0.05"]));
        }
        let targets: Vec<String> = servers[first..]
            .iter()
            .map(|server| server.addr.to_string())
            .collect();
        let out = temp.path().join(format!("generated-{cluster}"));
        let mut args: Vec<&str> = COMPRESSED.to_vec();
        let targets = targets.join(",");
        args.extend(["--naming", "otel", "--job", job, "--api-targets", &targets]);
        args.extend(["--load-targets", "", "--extra-targets", ""]);
        args.extend(["--alertmanager", ""]);
        generate_ok(&out, &args);
        dirs.push(out.join("otel"));
    }

    let central = loopback(free_port());
    let mut logs = Vec::new();
    let mut processes = Vec::new();
    let mut start = |name: String, mut command: Command| {
        let log = temp.path().join(format!("{name}.log"));
        processes.push(daemon(&name, &mut command, &log).unwrap_or_else(|err| panic!("{err}")));
        logs.push((name, log));
    };
    let mut central_command = prometheus(
        binary,
        &central_config(&dirs[0]),
        &temp.path().join("data-central"),
        central,
    );
    central_command.arg("--web.enable-remote-write-receiver");
    start("central prometheus".to_owned(), central_command);
    let mut edges = Vec::new();
    for ((cluster, _), dir) in CLUSTERS.iter().zip(&dirs) {
        let listen = loopback(free_port());
        start(
            format!("edge prometheus {cluster}"),
            prometheus(
                binary,
                &edge_config(dir, cluster, central),
                &temp.path().join(format!("data-{cluster}")),
                listen,
            ),
        );
        edges.push(listen);
    }
    let stack = Stack {
        central,
        dir: dirs[0].clone(),
        logs,
        _loads: Vec::new(),
        _prometheus: processes,
        _servers: servers,
        _temp: temp,
    };
    for addr in edges.iter().chain([&central]) {
        if let Err(err) = wait_ready(*addr, "/-/ready", Duration::from_secs(30)) {
            panic!("{err}\n{}", stack.logs());
        }
    }
    stack
}

/// Starts one `redwatch load` per instance at its cluster's rates.
fn start_loads(stack: &mut Stack) {
    let rates = CLUSTERS.iter().flat_map(|(_, rates)| rates.iter());
    let loads: Vec<Proc> = stack
        ._servers
        .iter()
        .zip(rates)
        .map(|(server, rate)| {
            load(server.addr, *rate, LOAD_DURATION, MIX).unwrap_or_else(|err| panic!("{err}"))
        })
        .collect();
    stack._loads = loads;
}

/// One series of a query's answer: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// Prometheus's answer to the instant query `expr` at `time` (Unix seconds): each series'
/// labels and value.
fn query_at(prometheus: SocketAddr, expr: &str, time: f64) -> Result<Vec<Series>, String> {
    let body = get_json(
        prometheus,
        &format!("/api/v1/query?query={}&time={time:.3}", url_encode(expr)),
    )?;
    if body["status"] != "success" {
        return Err(format!("{expr}: {body}"));
    }
    let result = body["data"]["result"]
        .as_array()
        .ok_or_else(|| format!("{expr}: no result: {body}"))?;
    Ok(result
        .iter()
        .map(|sample| {
            let labels = sample["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
                .collect();
            let value = sample["value"][1]
                .as_str()
                .and_then(|text| text.parse().ok())
                .unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect())
}

/// The sum of the values of `expr` at `time`; `Err` without a finite value.
fn total_at(prometheus: SocketAddr, expr: &str, time: f64) -> Result<f64, String> {
    let result = query_at(prometheus, expr, time)?;
    let values: Vec<f64> = result.iter().map(|(_, value)| *value).collect();
    if values.is_empty() || !values.iter().all(|value| value.is_finite()) {
        return Err(format!("no finite value from {expr}: {values:?}"));
    }
    Ok(values.iter().sum())
}

/// One dashboard query: where it comes from and its expression with Grafana's variables left.
struct PanelQuery {
    title: String,
    expr: String,
}

/// The dashboards' queries that this stack can answer: not cAdvisor's, node-exporter's or the
/// load generator's series (none are scraped here), nor body sizes (`redwatch serve` does not
/// record them); the drill-down's on `/ep_one`.
fn dashboard_queries(dir: &Path) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for (file, route) in [("api-overview.json", ".+"), ("api-route.json", "/ep_one")] {
        let board: Value =
            serde_json::from_str(&read(&dir.join("grafana/dashboards").join(file))).expect("JSON");
        for panel in all_panels(&board) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let unanswerable = [
                    "container_",
                    "node_",
                    "machine_",
                    "redwatch_load_",
                    "_body_size_",
                ];
                if unanswerable.iter().any(|prefix| expr.contains(prefix)) {
                    continue;
                }
                queries.push(PanelQuery {
                    title: format!(
                        "{file}: {} [{}]",
                        panel["title"].as_str().unwrap_or_default(),
                        target["legendFormat"].as_str().unwrap_or_default()
                    ),
                    expr: expr.replace("$route", route),
                });
            }
        }
    }
    assert!(
        queries.len() >= 30,
        "only {} dashboard queries",
        queries.len()
    );
    queries
}

/// `expr` with the variables as Grafana sends them with `cluster` chosen (a name, or the
/// variable's "All" value `.*`) and every job and instance.
fn with_cluster(expr: &str, cluster: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", RATE_INTERVAL)
        .replace("$__range", RATE_INTERVAL)
        .replace("$cluster", cluster)
        .replace("$job", "live")
        .replace("$instance", ".+")
}

/// The query of the panel whose title starts with `title` and whose legend is `legend`.
fn panel_query<'a>(queries: &'a [PanelQuery], title: &str, legend: &str) -> &'a str {
    let wanted = format!("api-overview.json: {title}");
    queries
        .iter()
        .find(|query| {
            query.title.starts_with(&wanted) && query.title.ends_with(&format!("[{legend}]"))
        })
        .map(|query| query.expr.as_str())
        .unwrap_or_else(|| panic!("no dashboard query {title} [{legend}]"))
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or_default()
}

/// Whether `measured` is within `tolerance` (relative) of `expected`.
fn near(measured: f64, expected: f64, tolerance: f64) -> bool {
    (measured - expected).abs() <= tolerance * expected
}

/// Every check at one moment; the problems found (none: all passed).
fn check_once(stack: &Stack, queries: &[PanelQuery]) -> Vec<String> {
    let central = stack.central;
    let time = now_s() - QUERY_LAG_SECS;
    let mut problems = Vec::new();
    let mut check = |result: Result<(), String>| {
        if let Err(problem) = result {
            problems.push(problem);
        }
    };

    // Every answerable query of both dashboards has data on each cluster and on "All".
    for query in queries {
        for cluster in ["a", "b", ".*"] {
            let expr = with_cluster(&query.expr, cluster);
            check(
                total_at(central, &expr, time)
                    .map(|_| ())
                    .map_err(|err| format!("{} with cluster {cluster:?}: {err}", query.title)),
            );
        }
    }

    // Request rates: the dashboard's on each cluster is that cluster's load; "All" is their sum.
    for (title, legend) in [
        ("Client vs server request rate", "server"),
        ("Requests per second by route", "{{http_route}}"),
    ] {
        let expr = panel_query(queries, title, legend);
        let mut clusters_sum = 0.0;
        for (cluster, rates) in CLUSTERS {
            let expected: f64 = rates.iter().sum();
            match total_at(central, &with_cluster(expr, cluster), time) {
                Ok(rate) if near(rate, expected, RATE_TOLERANCE) => clusters_sum += rate,
                Ok(rate) => {
                    clusters_sum = f64::NAN;
                    check(Err(format!(
                        "{title} on cluster {cluster}: {rate:.3} req/s, the load sends {expected}"
                    )));
                }
                Err(err) => {
                    clusters_sum = f64::NAN;
                    check(Err(format!("{title} on cluster {cluster}: {err}")));
                }
            }
        }
        if clusters_sum.is_finite() {
            // Same data, same moment: only the order of the additions differs.
            check(
                total_at(central, &with_cluster(expr, ".*"), time).and_then(|all| {
                    near(all, clusters_sum, 1e-9).then_some(()).ok_or_else(|| {
                        format!("{title} on All: {all}, the clusters sum to {clusters_sum}")
                    })
                }),
            );
        }
    }

    // The recorded series, one per cluster (none merged, none without a cluster): each
    // cluster's request rate and error share.
    let recorded = |name: &str| -> Result<BTreeMap<String, f64>, String> {
        let series = query_at(central, &format!("{name}{{job=\"live\"}}"), time)?;
        let by_cluster: BTreeMap<String, f64> = series
            .iter()
            .map(|(labels, value)| (labels.get("cluster").cloned().unwrap_or_default(), *value))
            .collect();
        let clusters: Vec<&str> = by_cluster.keys().map(String::as_str).collect();
        if series.len() != CLUSTERS.len() || clusters != ["a", "b"] {
            return Err(format!(
                "{name}: series of clusters {clusters:?} ({series:?})"
            ));
        }
        Ok(by_cluster)
    };
    let requests = format!("job:redwatch_http_requests:rate{RECORDED_WINDOW}");
    let errors = format!("job:redwatch_http_errors_per_request:ratio_rate{RECORDED_WINDOW}");
    check(recorded(&requests).and_then(|rates| {
        let wrong: Vec<String> = CLUSTERS
            .iter()
            .filter_map(|(cluster, loads)| {
                let expected: f64 = loads.iter().sum();
                let rate = rates.get(*cluster).copied().unwrap_or(f64::NAN);
                (!near(rate, expected, RATE_TOLERANCE)).then(|| {
                    format!("cluster {cluster}: {rate:.3} req/s, the load sends {expected}")
                })
            })
            .collect();
        wrong
            .is_empty()
            .then_some(())
            .ok_or_else(|| format!("{requests}: {}", wrong.join("; ")))
    }));
    check(recorded(&errors).and_then(|shares| {
        let wrong: Vec<String> = shares
            .iter()
            .filter(|(_, share)| (*share - ERROR_SHARE).abs() > SHARE_TOLERANCE)
            .map(|(cluster, share)| format!("cluster {cluster}: {share:.3}"))
            .collect();
        wrong.is_empty().then_some(()).ok_or_else(|| {
            format!(
                "{errors}, the mix fails {ERROR_SHARE}: {}",
                wrong.join("; ")
            )
        })
    }));

    // A quarter of requests failing burns the 99.9 % budget in both clusters: the paging alert
    // fires once per cluster.
    let alerts = "ALERTS{alertname=\"ApiErrorBudgetBurn\", severity=\"critical\", alertstate=\"firing\", job=\"live\"}";
    check(query_at(central, alerts, time).and_then(|series| {
        let mut clusters: Vec<&str> = series
            .iter()
            .map(|(labels, _)| {
                labels
                    .get("cluster")
                    .map(String::as_str)
                    .unwrap_or_default()
            })
            .collect();
        clusters.sort_unstable();
        (clusters == ["a", "b"])
            .then_some(())
            .ok_or_else(|| format!("ApiErrorBudgetBurn fires for clusters {clusters:?}"))
    }));
    problems
}

#[test]
fn remote_written_clusters_stay_apart_on_a_central_prometheus() {
    let _group = support::shared(Group::Patient);
    let Some(binary) = require_tool("prometheus", "Debian package prometheus") else {
        return;
    };
    let mut stack = start_stack(&binary);
    let queries = dashboard_queries(&stack.dir);
    start_loads(&mut stack);
    let started = Instant::now();
    // The rate window must fill with the loads' samples before a rate can match them.
    thread::sleep(Duration::from_secs(RATE_INTERVAL_SECS + 5));
    let mut problems;
    loop {
        problems = check_once(&stack, &queries);
        if problems.is_empty() || started.elapsed() > CHECK_LIMIT {
            break;
        }
        thread::sleep(Duration::from_secs(2));
    }
    assert!(
        problems.is_empty(),
        "after {:?}:\n{}\n{}",
        started.elapsed(),
        problems.join("\n"),
        stack.logs()
    );
    eprintln!(
        "remote write: {} dashboard queries on clusters a, b and All, rates, recorded series and alerts per cluster checked {:?} after the loads started",
        queries.len(),
        started.elapsed()
    );
}
