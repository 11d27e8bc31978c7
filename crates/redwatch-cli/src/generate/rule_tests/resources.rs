//! The resource alerts and the dashboard's container and host queries, evaluated on series shaped
//! exactly like those real deployments expose: cAdvisor's on compose (Docker labels, one series per
//! container), the kubelet's cAdvisor on Kubernetes (`namespace`, `pod`, `container`, plus the pod's
//! cgroup and pause container, which must not count), and node-exporter's. Counters grow by a
//! constant per scrape; every expected value is worked out by hand from the inputs below (binary
//! fractions per second, so the rates are exact), never from the queries.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::alerts::{self, value};
use super::super::{dashboard, resources::cadvisor, resources::node};
use super::{Ctx, ExpectedAlert, ExpectedSample, ExprTest, InputSeries, TestGroup, humanize};
use crate::generate::units::PromDuration;

/// Scrape interval of the inputs.
const SCRAPE_SECONDS: f64 = 15.0;
/// Samples per series: 25 minutes, more than the alerts' 5m window and 15m `for`.
const STEPS: u64 = 100;
/// Rule evaluation of the file: once a minute.
pub const EVALUATION: &str = "1m";
/// The compose cAdvisor target.
const CADVISOR: &str = "cadvisor:8080";
/// The kubelet (its `/metrics/cadvisor` endpoint) of the node running the pods.
const KUBELET: &str = "192.168.49.2:10250";
const NODE_EXPORTER: &str = "node-exporter:9100";
const POD_A: &str = "redwatch-7d9f8b6c5d-x2x4z";
const POD_B: &str = "redwatch-7d9f8b6c5d-q8w7e";

/// A counter growing `per_second` (a binary fraction) every scrape.
fn counter(per_second: f64) -> String {
    format!("0+{}x{STEPS}", per_second * SCRAPE_SECONDS)
}

fn gauge(value: f64) -> String {
    format!("{value}+0x{STEPS}")
}

fn input(name: &str, labels: &str, values: String) -> InputSeries {
    InputSeries {
        series: format!("{name}{{{labels}}}"),
        values,
    }
}

/// Labels cAdvisor gives a compose container of `service` (its Docker labels become
/// `container_label_*`).
fn compose(service: &str, replica: u32) -> String {
    format!(
        "container_label_com_docker_compose_project=\"redwatch\", container_label_com_docker_compose_service=\"{service}\", \
         container_label_com_docker_compose_container_number=\"{replica}\", id=\"/system.slice/docker-{service}{replica}.scope\", \
         image=\"redwatch:local\", instance=\"{CADVISOR}\", job=\"cadvisor\", name=\"redwatch-{service}-{replica}\""
    )
}

/// Labels the kubelet's cAdvisor (as kube-prometheus-stack scrapes it) gives container
/// `container` of `pod` in `namespace`; `container` "" is the pod's own cgroup, "POD" the pause
/// container.
fn kubelet(namespace: &str, pod: &str, container: &str) -> String {
    let (image, id) = match container {
        "" => (String::new(), format!("/kubepods/burstable/pod-{pod}")),
        "POD" => (
            "registry.k8s.io/pause:3.9".to_owned(),
            format!("/kubepods/burstable/pod-{pod}/pause"),
        ),
        _ => (
            "registry.example.com/redwatch:0.1.0".to_owned(),
            format!("/kubepods/burstable/pod-{pod}/{container}"),
        ),
    };
    format!(
        "container=\"{container}\", endpoint=\"https-metrics\", id=\"{id}\", image=\"{image}\", instance=\"{KUBELET}\", \
         job=\"kubelet\", metrics_path=\"/metrics/cadvisor\", name=\"{id}\", namespace=\"{namespace}\", node=\"node-1\", \
         pod=\"{pod}\", service=\"kube-prometheus-stack-kubelet\""
    )
}

/// The labels the queries keep for a compose container and a Kubernetes container or pod.
fn compose_out(replica: u32) -> Vec<(&'static str, String)> {
    vec![
        ("instance", CADVISOR.to_owned()),
        ("name", format!("redwatch-api-{replica}")),
    ]
}

fn pod_out(pod: &str, container: Option<&str>) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        ("instance", KUBELET.to_owned()),
        ("namespace", "redwatch".to_owned()),
        ("pod", pod.to_owned()),
    ];
    if let Some(container) = container {
        labels.push(("container", container.to_owned()));
    }
    labels
}

/// Rates over a window carry float noise in the last bit (Prometheus's extrapolation), so panel
/// queries are compared after `round(..., 2^-20)`, which this applies to the hand-computed
/// values exactly as Prometheus does (`floor(v * 2^20 + 0.5) / 2^20`; powers of two are exact).
pub(super) const ROUND_TO: &str = "1/1048576";

pub(super) fn rounded(value: f64) -> f64 {
    (value * 1_048_576.0 + 0.5).floor() / 1_048_576.0
}

fn sample(labels: &[(&str, String)], value: f64) -> ExpectedSample {
    let labels: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect();
    ExpectedSample {
        labels: format!("{{{}}}", labels.join(", ")),
        value: rounded(value),
    }
}

fn minutes(minutes: u64) -> PromDuration {
    PromDuration::from_millis(minutes * 60_000)
}

impl Ctx<'_> {
    /// A resource alert as Prometheus sends it for the container with `labels`.
    fn expect_container(
        &self,
        alert: &str,
        labels: &[(&str, String)],
        value: f64,
    ) -> ExpectedAlert {
        let spec = self.spec(alert, None);
        let mut exp_labels = spec.labels();
        for (name, value) in labels {
            exp_labels.insert((*name).to_owned(), value.clone());
        }
        let get = |name: &str| exp_labels.get(name).cloned().unwrap_or_default();
        let container = match exp_labels.get("pod") {
            Some(pod) => format!("{}/{pod}", get("namespace")),
            None => get("name"),
        };
        let exp_annotations = spec
            .annotations(self.settings)
            .into_iter()
            .map(|(key, text)| {
                let text = text
                    .replace(value::CONTAINER, &container)
                    .replace(value::PERCENT, &humanize::humanize_percentage(value));
                (key, text)
            })
            .collect();
        ExpectedAlert {
            exp_labels,
            exp_annotations,
        }
    }
}

/// The resource test groups (file `resources.test.yml`).
pub(super) fn tests(ctx: &Ctx) -> Vec<TestGroup> {
    if super::super::resources::scopes(ctx.settings).is_empty() {
        return Vec::new();
    }
    vec![
        throttling(ctx),
        memory_near_limit(ctx),
        panels(ctx, true),
        panels(ctx, false),
    ]
}

fn group(name: &str, input_series: Vec<InputSeries>) -> TestGroup {
    TestGroup {
        name: name.to_owned(),
        interval: format!("{SCRAPE_SECONDS}s"),
        input_series,
        alert_rule_test: Vec::new(),
        promql_expr_test: Vec::new(),
    }
}

/// CFS periods and throttled periods of a container with a CPU limit: the CFS period is 100 ms,
/// so ten periods a second, `throttled` of them throttled (3 = 30 %).
fn cfs(labels: &str, throttled: f64) -> Vec<InputSeries> {
    vec![
        input(cadvisor::CFS_PERIODS, labels, counter(10.0)),
        input(cadvisor::CFS_THROTTLED_PERIODS, labels, counter(throttled)),
    ]
}

fn throttling(ctx: &Ctx) -> TestGroup {
    let mut series = Vec::new();
    series.extend(cfs(&compose("api", 1), 3.0));
    series.extend(cfs(&compose("api", 2), 1.0));
    // Another service of the project (same image): not the API's.
    series.extend(cfs(&compose("load", 1), 8.0));
    series.extend(cfs(&kubelet("redwatch", POD_A, "api"), 3.0));
    // The pod's cgroup: counted with the container, pod A would be at 65 %, and would be a
    // series of its own (container="").
    series.extend(cfs(&kubelet("redwatch", POD_A, ""), 10.0));
    series.extend(cfs(&kubelet("redwatch", POD_B, "api"), 1.0));
    // The load generator's pod in the same namespace: not the API's.
    series.extend(cfs(
        &kubelet("redwatch", "redwatch-load-6b8c9d7f5-abcde", "load"),
        8.0,
    ));
    let mut group = group(
        "CPU throttling: 30 % of the periods fires after 15m, 10 % and other containers stay silent",
        series,
    );
    let alert = alerts::CONTAINER_CPU_THROTTLING;
    // Pending, not firing, before the 15 minutes are over.
    group
        .alert_rule_test
        .push(Ctx::alert_test(minutes(10), alert, Vec::new()));
    group.alert_rule_test.push(Ctx::alert_test(
        minutes(20),
        alert,
        vec![
            ctx.expect_container(alert, &compose_out(1), 0.3),
            ctx.expect_container(alert, &pod_out(POD_A, Some("api")), 0.3),
        ],
    ));
    group
}

fn memory(labels: &str, working_set: f64, limit: f64) -> Vec<InputSeries> {
    vec![
        input(cadvisor::MEMORY_WORKING_SET, labels, gauge(working_set)),
        input(cadvisor::MEMORY_LIMIT, labels, gauge(limit)),
    ]
}

fn memory_near_limit(ctx: &Ctx) -> TestGroup {
    const MI512: f64 = 536_870_912.0;
    let mut series = Vec::new();
    series.extend(memory(&compose("api", 1), 950e6, 1e9));
    // No limit: cAdvisor writes 0.
    series.extend(memory(&compose("api", 2), 3e9, 0.0));
    series.extend(memory(&compose("api", 3), 850e6, 1e9));
    series.extend(memory(&compose("load", 1), 990e6, 1e9));
    series.extend(memory(&kubelet("redwatch", POD_A, "api"), 400e6, MI512));
    // The pod's cgroup (its limit is the containers' sum), at 97 %: it would fire as a
    // container of its own (container="") if the queries took it for one.
    series.extend(memory(&kubelet("redwatch", POD_A, ""), 520e6, MI512));
    series.extend(memory(
        &kubelet("redwatch", POD_B, "api"),
        0.9375 * MI512,
        MI512,
    ));
    let mut group = group(
        "memory near the limit: above 90 % fires after 15m; 85 %, no limit and other containers stay silent",
        series,
    );
    let alert = alerts::CONTAINER_MEMORY_NEAR_LIMIT;
    group
        .alert_rule_test
        .push(Ctx::alert_test(minutes(10), alert, Vec::new()));
    group.alert_rule_test.push(Ctx::alert_test(
        minutes(20),
        alert,
        vec![
            ctx.expect_container(alert, &compose_out(1), 0.95),
            ctx.expect_container(alert, &pod_out(POD_B, Some("api")), 0.9375),
        ],
    ));
    group
}

/// The inputs of the panel tests: two compose replicas of the API (one with a CPU limit of half
/// a core, one without), one Kubernetes pod with a limit of one core (with its cgroup and pause
/// container), a load-generator container, a host, and the API's process.
fn panel_inputs(with_machine_cores: bool, job: &str) -> Vec<InputSeries> {
    let (c1, c2, load) = (compose("api", 1), compose("api", 2), compose("load", 1));
    let (pod, pod_cgroup, pause) = (
        kubelet("redwatch", POD_A, "api"),
        kubelet("redwatch", POD_A, ""),
        kubelet("redwatch", POD_A, "POD"),
    );
    let cpu = |labels: &str, cores: f64| {
        input(
            cadvisor::CPU_USAGE,
            &format!("{labels}, cpu=\"total\""),
            counter(cores),
        )
    };
    let mut s = vec![
        cpu(&c1, 0.25),
        cpu(&c2, 0.5),
        cpu(&load, 1.0),
        cpu(&pod, 0.25),
        cpu(&pod_cgroup, 0.375),
        cpu(&pause, 0.0),
        input(cadvisor::CPU_QUOTA, &c1, gauge(50_000.0)),
        input(cadvisor::CPU_PERIOD, &c1, gauge(100_000.0)),
        input(cadvisor::CPU_QUOTA, &pod, gauge(100_000.0)),
        input(cadvisor::CPU_PERIOD, &pod, gauge(100_000.0)),
        input(cadvisor::CPU_QUOTA, &pod_cgroup, gauge(100_000.0)),
        input(cadvisor::CPU_PERIOD, &pod_cgroup, gauge(100_000.0)),
        input(cadvisor::MEMORY_WORKING_SET, &c1, gauge(4e8)),
        input(cadvisor::MEMORY_LIMIT, &c1, gauge(1e9)),
        input(cadvisor::MEMORY_RSS, &c1, gauge(3e8)),
        input(cadvisor::MEMORY_WORKING_SET, &c2, gauge(2e8)),
        input(cadvisor::MEMORY_LIMIT, &c2, gauge(0.0)),
        input(cadvisor::MEMORY_RSS, &c2, gauge(1.5e8)),
        input(cadvisor::MEMORY_WORKING_SET, &pod, gauge(268_435_456.0)),
        input(cadvisor::MEMORY_LIMIT, &pod, gauge(536_870_912.0)),
        input(cadvisor::MEMORY_RSS, &pod, gauge(2e8)),
        input(cadvisor::MEMORY_WORKING_SET, &pod_cgroup, gauge(3e8)),
        input(cadvisor::MEMORY_LIMIT, &pod_cgroup, gauge(536_870_912.0)),
        input(cadvisor::MEMORY_RSS, &pod_cgroup, gauge(2.5e8)),
        input(cadvisor::MEMORY_WORKING_SET, &load, gauge(9e8)),
        input(cadvisor::MEMORY_RSS, &load, gauge(9e8)),
        input(
            cadvisor::FS_USAGE,
            &format!("{c1}, device=\"/dev/sda1\""),
            gauge(1e6),
        ),
        input(
            cadvisor::FS_USAGE,
            &format!("{pod}, device=\"/dev/sda1\""),
            gauge(2e6),
        ),
        input(
            cadvisor::FS_READS,
            &format!("{c1}, device=\"/dev/sda\""),
            counter(4096.0),
        ),
        input(
            cadvisor::FS_WRITES,
            &format!("{c1}, device=\"/dev/sda\""),
            counter(8192.0),
        ),
        input(
            cadvisor::FS_READS,
            &format!("{pod}, device=\"/dev/sda\""),
            counter(1024.0),
        ),
        input(
            cadvisor::FS_WRITES,
            &format!("{pod}, device=\"/dev/sda\""),
            counter(2048.0),
        ),
        input(
            cadvisor::FS_READS,
            &format!("{load}, device=\"/dev/sda\""),
            counter(65536.0),
        ),
    ];
    s.extend(cfs(&c1, 2.5));
    s.extend(cfs(&pod, 5.0));
    s.extend(cfs(&pod_cgroup, 10.0));
    for (labels, rx, tx) in [
        (format!("{c1}, interface=\"eth0\""), 1000.0, 2000.0),
        (format!("{load}, interface=\"eth0\""), 50_000.0, 50_000.0),
        // The pod's network namespace, reported for its cgroup and again for its pause container.
        (format!("{pod_cgroup}, interface=\"eth0\""), 3000.0, 4000.0),
        (format!("{pause}, interface=\"eth0\""), 3000.0, 4000.0),
    ] {
        s.push(input(cadvisor::NETWORK_RECEIVE, &labels, counter(rx)));
        s.push(input(cadvisor::NETWORK_TRANSMIT, &labels, counter(tx)));
    }
    if with_machine_cores {
        s.push(input(
            cadvisor::MACHINE_CORES,
            &format!("instance=\"{CADVISOR}\", job=\"cadvisor\", machine_id=\"m1\""),
            gauge(4.0),
        ));
        s.push(input(
            cadvisor::MACHINE_CORES,
            &format!("instance=\"{KUBELET}\", job=\"kubelet\", node=\"node-1\""),
            gauge(8.0),
        ));
    }
    let host = format!("instance=\"{NODE_EXPORTER}\", job=\"node-exporter\"");
    for cpu in ["0", "1"] {
        for (mode, busy) in [("idle", 0.75), ("user", 0.1875), ("system", 0.0625)] {
            s.push(input(
                node::CPU_SECONDS,
                &format!("{host}, cpu=\"{cpu}\", mode=\"{mode}\""),
                counter(busy),
            ));
        }
    }
    s.push(input(node::MEMORY_AVAILABLE, &host, gauge(3e9)));
    s.push(input(node::MEMORY_TOTAL, &host, gauge(4e9)));
    for (device, fstype, mountpoint, avail, size) in [
        ("/dev/sda1", "ext4", "/", 25e9, 100e9),
        ("tmpfs", "tmpfs", "/run", 1e9, 2e9),
    ] {
        let labels = format!(
            "{host}, device=\"{device}\", fstype=\"{fstype}\", mountpoint=\"{mountpoint}\""
        );
        s.push(input(node::FILESYSTEM_AVAILABLE, &labels, gauge(avail)));
        s.push(input(node::FILESYSTEM_SIZE, &labels, gauge(size)));
    }
    s.push(input(
        node::DISK_READ,
        &format!("{host}, device=\"sda\""),
        counter(1_048_576.0),
    ));
    s.push(input(
        node::DISK_WRITTEN,
        &format!("{host}, device=\"sda\""),
        counter(524_288.0),
    ));
    for (device, rx, tx) in [("eth0", 5000.0, 6000.0), ("lo", 1e6, 1e6)] {
        let labels = format!("{host}, device=\"{device}\"");
        s.push(input(node::NETWORK_RECEIVE, &labels, counter(rx)));
        s.push(input(node::NETWORK_TRANSMIT, &labels, counter(tx)));
    }
    s.push(input(
        "process_cpu_seconds_total",
        &format!("job=\"{job}\", instance=\"api:5000\""),
        counter(0.5),
    ));
    s
}

/// What each panel query must return on [`panel_inputs`], by panel title and legend.
fn expected(
    title: &str,
    legend: &str,
    with_machine_cores: bool,
    job: &str,
) -> Option<Vec<ExpectedSample>> {
    let c1 = compose_out(1);
    let c2 = compose_out(2);
    let pod = pod_out(POD_A, Some("api"));
    let pod_net = pod_out(POD_A, None);
    let host = vec![("instance", NODE_EXPORTER.to_owned())];
    // Cores of the host without a CPU limit: cAdvisor's machine_cpu_cores of its own instance
    // (4), else the host's count of idle counters (2 CPUs).
    let unlimited_cores = if with_machine_cores { 4.0 } else { 2.0 };
    // The process's share of the host: the largest machine_cpu_cores (8), else 2 CPUs.
    let host_cores = if with_machine_cores { 8.0 } else { 2.0 };
    let samples = match (title, legend) {
        ("CPU % of the host", _) => vec![sample(
            &[("instance", "api:5000".to_owned()), ("job", job.to_owned())],
            0.5 / host_cores,
        )],
        ("Container CPU % of limit", _) => vec![
            // Half a core used of a half-core limit (quota 50000 / period 100000).
            sample(&c1, 0.25 / 0.5),
            sample(&c2, 0.5 / unlimited_cores),
            sample(&pod, 0.25 / 1.0),
        ],
        ("Container CPU cores used", _) => {
            vec![sample(&c1, 0.25), sample(&c2, 0.5), sample(&pod, 0.25)]
        }
        ("Container CPU throttling", _) => vec![sample(&c1, 0.25), sample(&pod, 0.5)],
        // No line for the replica without a limit.
        ("Container memory % of limit", _) => vec![sample(&c1, 0.4), sample(&pod, 0.5)],
        ("Container memory", l) if l.ends_with("working set") => vec![
            sample(&c1, 4e8),
            sample(&c2, 2e8),
            sample(&pod, 268_435_456.0),
        ],
        ("Container memory", l) if l.ends_with("rss") => {
            vec![sample(&c1, 3e8), sample(&c2, 1.5e8), sample(&pod, 2e8)]
        }
        ("Container disk usage", _) => vec![sample(&c1, 1e6), sample(&pod, 2e6)],
        ("Container disk I/O", l) if l.ends_with("read") => {
            vec![sample(&c1, 4096.0), sample(&pod, 1024.0)]
        }
        ("Container disk I/O", l) if l.ends_with("write") => {
            vec![sample(&c1, 8192.0), sample(&pod, 2048.0)]
        }
        // The pod's interface once, although two of its cgroups report it.
        ("Container network", l) if l.ends_with("receive") => {
            vec![sample(&c1, 1000.0), sample(&pod_net, 3000.0)]
        }
        ("Container network", l) if l.ends_with("transmit") => {
            vec![sample(&c1, 2000.0), sample(&pod_net, 4000.0)]
        }
        // 0.75 of each CPU's time idle.
        ("Host CPU %", _) => vec![sample(&host, 0.25)],
        ("Host memory %", _) => vec![sample(
            &[
                ("instance", NODE_EXPORTER.to_owned()),
                ("job", "node-exporter".to_owned()),
            ],
            0.25,
        )],
        // tmpfs left out.
        ("Host filesystem used", _) => vec![sample(
            &[
                ("device", "/dev/sda1".to_owned()),
                ("fstype", "ext4".to_owned()),
                ("instance", NODE_EXPORTER.to_owned()),
                ("job", "node-exporter".to_owned()),
                ("mountpoint", "/".to_owned()),
            ],
            0.75,
        )],
        ("Host disk I/O", l) if l.ends_with("read") => vec![sample(&host, 1_048_576.0)],
        ("Host disk I/O", l) if l.ends_with("write") => vec![sample(&host, 524_288.0)],
        // Loopback left out.
        ("Host network", l) if l.ends_with("receive") => vec![sample(&host, 5000.0)],
        ("Host network", l) if l.ends_with("transmit") => vec![sample(&host, 6000.0)],
        _ => return None,
    };
    Some(samples)
}

/// The dashboard's panels that read exporters' series: the container and host rows, and the
/// process's share of its host.
fn exporter_panels(board: &Value) -> Vec<Value> {
    let mut panels = Vec::new();
    let mut in_rows = false;
    for panel in board["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            let title = panel["title"].as_str().unwrap_or_default();
            in_rows = title.starts_with("Containers") || title.starts_with("Host");
            if in_rows {
                panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
            }
        } else if in_rows || panel["title"] == "CPU % of the host" {
            panels.push(panel.clone());
        }
    }
    panels
}

/// Every query of [`exporter_panels`], as Grafana sends it with "All" selected and a rate
/// interval of 5m, against the hand-computed values.
fn panels(ctx: &Ctx, with_machine_cores: bool) -> TestGroup {
    let job = &ctx.settings.job;
    let board = dashboard::api_overview(ctx.preset, ctx.settings);
    let mut group = group(
        if with_machine_cores {
            "dashboard: container and host queries on cAdvisor and node-exporter series"
        } else {
            "dashboard: CPU shares fall back to node-exporter's cores without machine_cpu_cores"
        },
        panel_inputs(with_machine_cores, job),
    );
    let mut seen = BTreeMap::new();
    for panel in exporter_panels(&board) {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            let expr = target["expr"]
                .as_str()
                .unwrap_or_default()
                .replace("$__rate_interval", "5m")
                .replace("$node", ".+")
                .replace("$cluster", dashboard::ALL_CLUSTERS)
                .replace("$job", job)
                .replace("$instance", ".+");
            let exp_samples = expected(&title, legend, with_machine_cores, job)
                .unwrap_or_else(|| panic!("no expected values for panel {title:?} ({legend})"));
            seen.insert(title.clone(), ());
            group.promql_expr_test.push(ExprTest {
                expr: format!("round(\n{expr}\n, {ROUND_TO})"),
                eval_time: "10m".to_owned(),
                exp_samples,
            });
        }
    }
    assert!(seen.len() >= 10, "too few exporter panels: {seen:?}");
    group
}
