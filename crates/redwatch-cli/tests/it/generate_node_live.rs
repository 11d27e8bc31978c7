//! Live check of the dashboard's host row: a real node-exporter (Debian's
//! `prometheus-node-exporter`, only the collectors the queries read) and a `redwatch serve` on
//! ephemeral loopback ports, scraped by a real Prometheus with the generated configuration
//! (`--extra-targets node-exporter=...`). Every query of the host row, and the process's share of
//! its host's cores, must return data; the host's CPU and memory shares and its number of cores
//! must agree with /proc. Fails when CI is set and a tool is missing; everything started is
//! killed on success, failure or panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;
use crate::support::Group;
use crate::support::generate::{COMPRESSED, generate_ok, prometheus_command, read};
use crate::support::live_stack::{daemon, query, tail, wait_ready};
use crate::support::process::{Proc, Server, free_port, loopback};
use crate::support::tools::{find_tool, require_tool};

/// How long the first scrapes and every query may take to have data.
const DATA_LIMIT: Duration = Duration::from_secs(60);
/// The rate window of the compared queries, and the span of the /proc samples.
const WINDOW_SECS: u64 = 10;

/// node-exporter: Debian's `prometheus-node-exporter`, or upstream's `node_exporter`.
fn node_exporter() -> Option<PathBuf> {
    find_tool("node_exporter").or_else(|| {
        require_tool(
            "prometheus-node-exporter",
            "Debian package prometheus-node-exporter",
        )
    })
}

/// Seconds of CPU time per mode summed over the CPUs of /proc/stat, and the number of CPUs:
/// (idle, all modes but guest, cpus).
fn proc_stat() -> (f64, f64, usize) {
    let text = read(Path::new("/proc/stat"));
    let cpus = text
        .lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    let total_line = text
        .lines()
        .find(|line| line.starts_with("cpu "))
        .expect("/proc/stat has a cpu line");
    // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user).
    let ticks: Vec<f64> = total_line
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    assert!(ticks.len() >= 8, "unexpected /proc/stat: {total_line}");
    (ticks[3], ticks[..8].iter().sum(), cpus)
}

/// 1 - MemAvailable / MemTotal from /proc/meminfo.
fn proc_memory_share() -> f64 {
    let text = read(Path::new("/proc/meminfo"));
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/meminfo"))
    };
    1.0 - field("MemAvailable:") / field("MemTotal:")
}

/// The queries of the dashboard's host row and of the process's share of the host, as (title,
/// legend, expression) with Grafana's variables replaced as for "All".
fn host_queries(board: &Value, job: &str) -> Vec<(String, String, String)> {
    let mut queries = Vec::new();
    let mut in_host = false;
    let mut panels = Vec::new();
    for panel in board["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            in_host = panel["title"]
                .as_str()
                .is_some_and(|title| title.starts_with("Host"));
            if in_host {
                panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
            }
        } else if in_host || panel["title"] == "CPU % of the host" {
            panels.push(panel.clone());
        }
    }
    for panel in &panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_default()
                .replace("$__rate_interval", &format!("{WINDOW_SECS}s"))
                .replace("$node", ".+")
                .replace("$cluster", ".*")
                .replace("$job", job)
                .replace("$instance", ".+");
            queries.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                target["legendFormat"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                expr,
            ));
        }
    }
    queries
}

/// The finite values of an instant query.
fn values(prometheus: std::net::SocketAddr, expr: &str) -> Result<Vec<f64>, String> {
    Ok(query(prometheus, expr)?
        .iter()
        .filter_map(|sample| sample.value.parse::<f64>().ok())
        .filter(|value| value.is_finite())
        .collect())
}

#[test]
fn node_exporter_live() {
    let _group = support::shared(Group::Patient);
    let (Some(node_bin), Some(prometheus_bin)) = (
        node_exporter(),
        require_tool("prometheus", "Debian package prometheus"),
    ) else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let node_addr = loopback(free_port());
    let _node = daemon(
        "node-exporter",
        Command::new(&node_bin)
            .arg(format!("--web.listen-address={node_addr}"))
            .args([
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.filesystem",
                "--collector.diskstats",
                "--collector.netdev",
            ]),
        &temp.path().join("node-exporter.log"),
    )
    .expect("start node-exporter");
    wait_ready(node_addr, "/metrics", Duration::from_secs(20)).unwrap_or_else(|err| {
        panic!(
            "{err}\n{}",
            tail(&temp.path().join("node-exporter.log"), 20)
        )
    });
    let serve = Server::start(&["--latency-scale", "0"]);

    let job = "node-live";
    let out = temp.path().join("generated");
    let extra = format!("node-exporter={node_addr}");
    let api = serve.addr.to_string();
    let mut args: Vec<&str> = COMPRESSED.to_vec();
    args.extend(["--naming", "otel", "--job", job, "--api-targets", &api]);
    args.extend([
        "--load-targets",
        "",
        "--extra-targets",
        &extra,
        "--alertmanager",
        "",
    ]);
    generate_ok(&out, &args);
    let dir = out.join("otel");
    let prometheus = loopback(free_port());
    let prometheus_log = temp.path().join("prometheus.log");
    let _prometheus: Proc = daemon(
        "prometheus",
        &mut prometheus_command(&prometheus_bin, &dir, &temp.path().join("data"), prometheus),
        &prometheus_log,
    )
    .expect("start prometheus");
    wait_ready(prometheus, "/-/ready", Duration::from_secs(30))
        .unwrap_or_else(|err| panic!("{err}\n{}", tail(&prometheus_log, 20)));

    let board: Value =
        serde_json::from_str(&read(&dir.join("grafana/dashboards/api-overview.json")))
            .expect("dashboard JSON");
    let queries = host_queries(&board, job);
    assert!(queries.len() >= 8, "too few host queries: {queries:?}");

    // Every query has data once the window holds enough scrapes.
    let deadline = Instant::now() + DATA_LIMIT;
    let missing = loop {
        thread::sleep(Duration::from_secs(2));
        let missing: Vec<String> = queries
            .iter()
            .filter_map(|(title, legend, expr)| match values(prometheus, expr) {
                Ok(found) if !found.is_empty() => None,
                Ok(_) => Some(format!("{title} [{legend}]: no value from {expr}")),
                Err(err) => Some(format!("{title} [{legend}]: {err}")),
            })
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
    };
    assert!(
        missing.is_empty(),
        "after {DATA_LIMIT:?}:\n{}\n--- prometheus log ---\n{}",
        missing.join("\n"),
        tail(&prometheus_log, 20)
    );
    let only = |title: &str| -> String {
        queries
            .iter()
            .find(|(t, ..)| t == title)
            .map(|(.., expr)| expr.clone())
            .unwrap_or_else(|| panic!("no panel {title}"))
    };
    // Shares are shares.
    for title in [
        "Host CPU %",
        "Host memory %",
        "Host filesystem used",
        "CPU % of the host",
    ] {
        let found = values(prometheus, &only(title)).expect("query");
        assert!(
            found.iter().all(|value| (0.0..=1.0).contains(value)),
            "{title}: {found:?}"
        );
    }

    // The host's cores: the denominator of every CPU share without a limit.
    let (_, _, cpus) = proc_stat();
    let cores = values(prometheus, "count(node_cpu_seconds_total{mode=\"idle\"})").expect("query");
    assert_eq!(cores, [cpus as f64], "cores counted from node-exporter");

    // CPU over the same window as /proc/stat; memory now. Both loosely: other processes share
    // the machine, and the scrape lags /proc by up to a scrape interval.
    let (idle_before, total_before, _) = proc_stat();
    thread::sleep(Duration::from_secs(WINDOW_SECS));
    let (idle_after, total_after, _) = proc_stat();
    let proc_cpu = 1.0 - (idle_after - idle_before) / (total_after - total_before).max(1.0);
    let prom_cpu = values(prometheus, &only("Host CPU %")).expect("query");
    assert_eq!(prom_cpu.len(), 1, "{prom_cpu:?}");
    assert!(
        (prom_cpu[0] - proc_cpu).abs() < 0.2,
        "Host CPU %: Prometheus {} against /proc/stat {proc_cpu}",
        prom_cpu[0]
    );
    let prom_memory = values(prometheus, &only("Host memory %")).expect("query");
    let proc_memory = proc_memory_share();
    assert_eq!(prom_memory.len(), 1, "{prom_memory:?}");
    assert!(
        (prom_memory[0] - proc_memory).abs() < 0.05,
        "Host memory %: Prometheus {} against /proc/meminfo {proc_memory}",
        prom_memory[0]
    );
}
