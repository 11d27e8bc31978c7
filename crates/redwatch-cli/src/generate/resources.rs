//! Resource KPIs of the API's containers and hosts, from the exporters real deployments run:
//! cAdvisor (`container_*`, `machine_*`; on Kubernetes the kubelet's `/metrics/cadvisor`) and
//! node-exporter (`node_*`). The dashboard's container and host rows, the resource alerts and
//! their rule tests are all built from the queries here.
//!
//! # Which containers are the API's
//!
//! cAdvisor labels a container differently in the two deployments redwatch ships:
//!
//! - **Compose** (cAdvisor as a container): `name` (`redwatch-api-1`), `image`, and the container's
//!   Docker labels, among them `container_label_com_docker_compose_service="api"`. The compose
//!   service is the stable handle: names carry the project and a replica number, the image is
//!   shared with the load generator. One series per container.
//! - **Kubernetes** (the kubelet's cAdvisor): `namespace`, `pod`, `container`, and no Docker
//!   labels. Besides the containers' series there is one for the pod's cgroup (`container=""`)
//!   and, with some runtimes, one for the pause container (`container="POD"`); the per-container
//!   queries leave both out, or a pod's CPU would be counted twice. Network counters exist only
//!   for the pod's network namespace (on the pod cgroup or the pause container), so the network
//!   queries select pods, not containers, and take each interface once.
//!
//! No single matcher selects both, and a dashboard variable could not reach the alert rules, so
//! the API's containers are two settings, one per deployment (`--compose-service`,
//! `--kubernetes-pods`); every query is the `or` of one branch per configured deployment, each
//! aggregated by the labels that tell its containers apart (`name` on compose, `pod` and
//! `container` on Kubernetes). A branch whose series do not exist costs nothing, so one generated
//! set serves both deployments, as the committed one does.

use super::Settings;

/// cAdvisor's metric names (identical in the kubelet's `/metrics/cadvisor`).
pub mod cadvisor {
    pub const CPU_USAGE: &str = "container_cpu_usage_seconds_total";
    pub const CPU_QUOTA: &str = "container_spec_cpu_quota";
    pub const CPU_PERIOD: &str = "container_spec_cpu_period";
    pub const CFS_PERIODS: &str = "container_cpu_cfs_periods_total";
    pub const CFS_THROTTLED_PERIODS: &str = "container_cpu_cfs_throttled_periods_total";
    pub const MEMORY_WORKING_SET: &str = "container_memory_working_set_bytes";
    pub const MEMORY_RSS: &str = "container_memory_rss";
    pub const MEMORY_LIMIT: &str = "container_spec_memory_limit_bytes";
    pub const FS_USAGE: &str = "container_fs_usage_bytes";
    pub const FS_READS: &str = "container_fs_reads_bytes_total";
    pub const FS_WRITES: &str = "container_fs_writes_bytes_total";
    pub const NETWORK_RECEIVE: &str = "container_network_receive_bytes_total";
    pub const NETWORK_TRANSMIT: &str = "container_network_transmit_bytes_total";
    pub const MACHINE_CORES: &str = "machine_cpu_cores";
    /// The compose service label cAdvisor copies from Docker's container labels.
    pub const COMPOSE_SERVICE_LABEL: &str = "container_label_com_docker_compose_service";
}

/// node-exporter's metric names.
pub mod node {
    pub const CPU_SECONDS: &str = "node_cpu_seconds_total";
    pub const MEMORY_AVAILABLE: &str = "node_memory_MemAvailable_bytes";
    pub const MEMORY_TOTAL: &str = "node_memory_MemTotal_bytes";
    pub const FILESYSTEM_AVAILABLE: &str = "node_filesystem_avail_bytes";
    pub const FILESYSTEM_SIZE: &str = "node_filesystem_size_bytes";
    pub const DISK_READ: &str = "node_disk_read_bytes_total";
    pub const DISK_WRITTEN: &str = "node_disk_written_bytes_total";
    pub const NETWORK_RECEIVE: &str = "node_network_receive_bytes_total";
    pub const NETWORK_TRANSMIT: &str = "node_network_transmit_bytes_total";
}

/// Filesystems whose usage is not disk usage (memory-backed).
const MEMORY_FILESYSTEMS: &str = "fstype!~\"tmpfs|ramfs\"";

/// One deployment's way of selecting the API's containers.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Label matchers of the API's series, without braces.
    pub selector: String,
    /// Matchers added for per-container series (none on compose; on Kubernetes not the pod's
    /// cgroup and not the pause container).
    pub container_only: &'static str,
    /// The labels one container is told apart by (the aggregation labels first).
    pub container_by: Vec<String>,
    /// The labels one network namespace is told apart by.
    pub network_by: Vec<String>,
}

impl Scope {
    fn by(&self) -> String {
        self.container_by.join(", ")
    }

    /// `name{selector}` of the API's containers.
    fn containers(&self, name: &str) -> String {
        format!("{name}{{{}{}}}", self.selector, self.container_only)
    }
}

fn labels(settings: &Settings, extra: &[&str]) -> Vec<String> {
    let mut labels = settings.aggregation_labels.clone();
    for label in extra {
        if !labels.iter().any(|have| have == label) {
            labels.push((*label).to_owned());
        }
    }
    labels
}

/// The configured deployments' scopes: compose first, then Kubernetes.
pub fn scopes(settings: &Settings) -> Vec<Scope> {
    let mut scopes = Vec::new();
    if let Some(service) = &settings.compose_service {
        let by = labels(settings, &["instance", "name"]);
        scopes.push(Scope {
            selector: format!("{}=\"{service}\"", cadvisor::COMPOSE_SERVICE_LABEL),
            container_only: "",
            container_by: by.clone(),
            network_by: by,
        });
    }
    if let Some(pods) = &settings.kubernetes_pods {
        scopes.push(Scope {
            selector: pods.clone(),
            container_only: ", container!=\"\", container!=\"POD\"",
            container_by: labels(settings, &["namespace", "pod", "container", "instance"]),
            network_by: labels(settings, &["namespace", "pod", "instance"]),
        });
    }
    scopes
}

/// Grafana legend of a container query: `name` on compose, `pod` on Kubernetes (a label a series
/// lacks renders empty).
pub const CONTAINER_LEGEND: &str = "{{name}}{{pod}}";

/// One branch per scope, joined by `or` (each branch's series keep their own labels).
fn each(scopes: &[Scope], branch: impl Fn(&Scope) -> String) -> String {
    let branches: Vec<String> = scopes.iter().map(branch).collect();
    if branches.len() == 1 {
        return branches.concat();
    }
    branches
        .iter()
        .map(|branch| format!("(\n{branch}\n)"))
        .collect::<Vec<_>>()
        .join("\nor\n")
}

fn cores_of(scope: &Scope, window: &str) -> String {
    format!(
        "sum by ({}) (rate({}[{window}]))",
        scope.by(),
        scope.containers(cadvisor::CPU_USAGE)
    )
}

/// CPU cores used per container.
pub fn cpu_cores(scopes: &[Scope], window: &str) -> String {
    each(scopes, |scope| cores_of(scope, window))
}

/// The host's cores, for a share of CPU time where no limit applies: cAdvisor's
/// `machine_cpu_cores`, else node-exporter's count of idle counters (the largest host's).
pub fn host_cores() -> String {
    format!(
        "max({}) or max(count by (instance) ({}{{mode=\"idle\"}}))",
        cadvisor::MACHINE_CORES,
        node::CPU_SECONDS
    )
}

/// CPU used per container as a share of its limit (`quota / period` cores), or of its host's
/// cores when it has no limit (cAdvisor writes no quota series then): `machine_cpu_cores` of the
/// same cAdvisor (`instance`), else node-exporter's count of cores.
pub fn cpu_ratio(scopes: &[Scope], window: &str) -> String {
    each(scopes, |scope| {
        let cores = cores_of(scope, window);
        format!(
            "{cores}\n/\nsum by ({by}) (({quota} > 0) / {period})\nor\n{cores}\n/ on (instance) group_left ()\nmax by (instance) ({machine})\nor\n{cores}\n/ on () group_left ()\nmax(count by (instance) ({node}{{mode=\"idle\"}}))",
            by = scope.by(),
            quota = scope.containers(cadvisor::CPU_QUOTA),
            period = scope.containers(cadvisor::CPU_PERIOD),
            machine = cadvisor::MACHINE_CORES,
            node = node::CPU_SECONDS,
        )
    })
}

fn throttled_of(scope: &Scope, window: &str) -> String {
    format!(
        "sum by ({by}) (rate({throttled}[{window}]))\n/\n(sum by ({by}) (rate({periods}[{window}])) > 0)",
        by = scope.by(),
        throttled = scope.containers(cadvisor::CFS_THROTTLED_PERIODS),
        periods = scope.containers(cadvisor::CFS_PERIODS),
    )
}

/// Share of CFS periods in which a container was throttled (only containers with a CPU limit
/// have periods; an idle one has none and no value).
pub fn throttled_ratio(scopes: &[Scope], window: &str) -> String {
    each(scopes, |scope| throttled_of(scope, window))
}

fn memory_of(scope: &Scope) -> String {
    format!(
        "sum by ({by}) ({working_set})\n/\nsum by ({by}) ({limit} > 0)",
        by = scope.by(),
        working_set = scope.containers(cadvisor::MEMORY_WORKING_SET),
        limit = scope.containers(cadvisor::MEMORY_LIMIT),
    )
}

/// Working set as a share of the memory limit, for containers that have one (cAdvisor writes a
/// limit of 0 for none).
pub fn memory_ratio(scopes: &[Scope]) -> String {
    each(scopes, memory_of)
}

/// A gauge summed per container.
pub fn container_gauge(scopes: &[Scope], name: &str) -> String {
    each(scopes, |scope| {
        format!("sum by ({}) ({})", scope.by(), scope.containers(name))
    })
}

/// A counter's rate summed per container.
pub fn container_rate(scopes: &[Scope], name: &str, window: &str) -> String {
    each(scopes, |scope| {
        format!(
            "sum by ({}) (rate({}[{window}]))",
            scope.by(),
            scope.containers(name)
        )
    })
}

/// A network counter's rate per pod or container: each interface once, however many cgroups of
/// the network namespace report it.
pub fn network_rate(scopes: &[Scope], name: &str, window: &str) -> String {
    each(scopes, |scope| {
        let by = scope.network_by.join(", ");
        format!(
            "sum by ({by}) (max by ({by}, interface) (rate({name}{{{}}}[{window}])))",
            scope.selector
        )
    })
}

/// Host queries over the node-exporter series matching `selector` (matchers without braces).
/// Per-host aggregations keep `cluster` too: the same instance name may be a host of another
/// cluster in a central store.
pub struct Host<'a> {
    pub selector: &'a str,
}

impl Host<'_> {
    fn of(&self, name: &str, extra: &str) -> String {
        if self.selector.is_empty() {
            format!("{name}{{{extra}}}")
        } else if extra.is_empty() {
            format!("{name}{{{}}}", self.selector)
        } else {
            format!("{name}{{{}, {extra}}}", self.selector)
        }
    }

    /// Share of the host's CPU time not idle.
    pub fn cpu_ratio(&self, window: &str) -> String {
        format!(
            "1 - avg by (cluster, instance) (rate({}[{window}]))",
            self.of(node::CPU_SECONDS, "mode=\"idle\"")
        )
    }

    /// Share of the host's memory not available.
    pub fn memory_ratio(&self) -> String {
        format!(
            "1 - {} / {}",
            self.of(node::MEMORY_AVAILABLE, ""),
            self.of(node::MEMORY_TOTAL, "")
        )
    }

    /// Share of each disk-backed filesystem used (of what unprivileged users may use).
    pub fn filesystem_ratio(&self) -> String {
        format!(
            "1 - {} / {}",
            self.of(node::FILESYSTEM_AVAILABLE, MEMORY_FILESYSTEMS),
            self.of(node::FILESYSTEM_SIZE, MEMORY_FILESYSTEMS)
        )
    }

    /// A counter's rate summed per host, `extra` matchers added.
    pub fn rate(&self, name: &str, extra: &str, window: &str) -> String {
        format!(
            "sum by (cluster, instance) (rate({}[{window}]))",
            self.of(name, extra)
        )
    }
}

/// `ApiContainerCpuThrottling`: kubernetes-mixin's `CPUThrottlingHigh` (more than 25 % of the CFS
/// periods throttled over 5m, for 15m, severity info).
pub const THROTTLING_THRESHOLD: f64 = 0.25;
pub const THROTTLING_WINDOW: &str = "5m";
pub const THROTTLING_FOR_MINUTES: u64 = 15;
/// `ApiContainerMemoryNearLimit`: working set above 90 % of the limit for 15m, severity warning
/// (docs/alerts.md says why).
pub const MEMORY_THRESHOLD: f64 = 0.9;
pub const MEMORY_FOR_MINUTES: u64 = 15;

/// The throttling alert's condition, per container.
pub fn throttling_alert(scopes: &[Scope]) -> String {
    each(scopes, |scope| {
        format!(
            "{}\n> {THROTTLING_THRESHOLD}",
            throttled_of(scope, THROTTLING_WINDOW)
        )
    })
}

/// The memory alert's condition, per container with a limit.
pub fn memory_alert(scopes: &[Scope]) -> String {
    each(scopes, |scope| {
        format!("{}\n> {MEMORY_THRESHOLD}", memory_of(scope))
    })
}

/// Network interfaces left out of the host's traffic.
pub const NOT_LOOPBACK: &str = "device!=\"lo\"";
