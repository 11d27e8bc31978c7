//! Prometheus, Alertmanager and Grafana provisioning configuration.

use serde_json::{Value, json};

use super::units::PromDuration;
use super::{Settings, alerts};

/// Where the provisioned dashboards live inside the Grafana container.
pub const GRAFANA_DASHBOARD_DIR: &str = "/var/lib/grafana/dashboards/redwatch";
/// The uid of the provisioned Prometheus data source.
pub const DATASOURCE_UID: &str = "prometheus";

/// What `deploy/k8s/overlays/without-operator` deploys Prometheus, Alertmanager and Grafana as:
/// their Service names and ports, and where the Prometheus Deployment mounts the rule files.
pub mod in_cluster {
    pub const PROMETHEUS_URL: &str = "http://prometheus:9090";
    pub const ALERTMANAGER: &str = "alertmanager:9093";
    pub const RULES_DIR: &str = "/etc/prometheus/rules";
    /// The API's Service port (`deploy/k8s/base/service.yaml`) and the load generator's
    /// container port, by name.
    pub const API_PORT: &str = "http";
    pub const LOAD_PORT: &str = "metrics";
}

fn yaml(settings: &Settings, value: &Value) -> anyhow::Result<String> {
    Ok(settings.header("#") + &serde_yaml_ng::to_string(value)?)
}

fn static_job(name: &str, targets: &[String], interval: PromDuration) -> Value {
    json!({
        "job_name": name,
        "scrape_interval": interval.to_string(),
        "metrics_path": "/metrics",
        "static_configs": [{ "targets": targets }],
    })
}

/// `prometheus.yml`: scrapes the API and the load generator, loads `rules/*.yml`, alerts to
/// Alertmanager. Paths are relative to the file, so the directory can be mounted anywhere.
pub fn prometheus(settings: &Settings) -> anyhow::Result<String> {
    let interval = settings.scrape_interval;
    let mut jobs = vec![static_job(&settings.job, &settings.api_targets, interval)];
    if !settings.load_targets.is_empty() {
        jobs.push(static_job(
            &settings.load_job,
            &settings.load_targets,
            interval,
        ));
    }
    for (job, target) in &settings.extra_targets {
        jobs.push(static_job(job, std::slice::from_ref(target), interval));
    }
    let mut config = json!({
        "global": {
            "scrape_interval": interval.to_string(),
            "evaluation_interval": settings.evaluation_interval.to_string(),
        },
        "rule_files": ["rules/*.yml"],
        "scrape_configs": jobs,
    });
    if let Some(alertmanager) = &settings.alertmanager {
        config["alerting"] = json!({
            "alertmanagers": [{ "static_configs": [{ "targets": [alertmanager] }] }],
        });
    }
    yaml(settings, &config)
}

/// A scrape job of Kubernetes service discovery in Prometheus' own namespace: the targets whose
/// `name_label` (a discovery meta label) is `name` and whose port is named `port`, labelled with
/// their namespace and pod as the Prometheus Operator does.
fn kubernetes_job(
    job: &str,
    role: &str,
    name_label: &str,
    name: &str,
    port_label: &str,
    port: &str,
    interval: PromDuration,
) -> Value {
    // Job names may hold `.`, the one regex metacharacter they allow.
    let name = name.replace('.', "\\.");
    json!({
        "job_name": job,
        "scrape_interval": interval.to_string(),
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{ "role": role, "namespaces": { "own_namespace": true } }],
        "relabel_configs": [
            {
                "action": "keep",
                "source_labels": [name_label, port_label],
                "regex": format!("{name};{port}"),
            },
            { "source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace" },
            { "source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod" },
        ],
    })
}

/// `prometheus.yml` for Prometheus inside the cluster, without the Prometheus Operator
/// (`deploy/k8s/overlays/without-operator`): Kubernetes service discovery in its namespace finds
/// the API's endpoints behind the Service named after the job (as a ServiceMonitor would) and the
/// load generator's pods labelled `app.kubernetes.io/name: <load job>` (as its PodMonitor would);
/// rules are read from [`in_cluster::RULES_DIR`] and alerts go to the in-cluster Alertmanager.
pub fn prometheus_in_cluster(settings: &Settings) -> anyhow::Result<String> {
    let interval = settings.scrape_interval;
    let config = json!({
        "global": {
            "scrape_interval": interval.to_string(),
            "evaluation_interval": settings.evaluation_interval.to_string(),
        },
        "rule_files": [format!("{}/*.yml", in_cluster::RULES_DIR)],
        "alerting": {
            "alertmanagers": [{ "static_configs": [{ "targets": [in_cluster::ALERTMANAGER] }] }],
        },
        "scrape_configs": [
            kubernetes_job(
                &settings.job,
                "endpointslice",
                "__meta_kubernetes_service_name",
                &settings.job,
                "__meta_kubernetes_endpointslice_port_name",
                in_cluster::API_PORT,
                interval,
            ),
            kubernetes_job(
                &settings.load_job,
                "pod",
                "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                &settings.load_job,
                "__meta_kubernetes_pod_container_port_name",
                in_cluster::LOAD_PORT,
                interval,
            ),
        ],
    });
    yaml(settings, &config)
}

/// `alertmanager.yml`: alerts are grouped per job (and cluster and namespace) and severity.
/// Critical alerts go to a `pager` receiver, warning and info alerts to `tickets`; both are the
/// example webhook, to be replaced by a real pager and chat or ticket integration. A critical alert
/// silences the warning of the same alert and job, and `ApiAllTargetsDown` silences the
/// `ApiTargetDown` of each instance of its job and its `ApiMetricsAbsent` (no target, no series).
pub fn alertmanager(settings: &Settings) -> anyhow::Result<String> {
    let mut group_by = settings.job_labels();
    group_by.push("severity".to_owned());
    let mut same_alert = vec!["alertname".to_owned()];
    same_alert.extend(settings.job_labels());
    let webhook = json!([{ "url": settings.webhook_url, "send_resolved": true }]);
    let config = json!({
        "route": {
            "receiver": "default",
            "group_by": group_by,
            "group_wait": settings.group_wait.to_string(),
            "group_interval": settings.group_interval.to_string(),
            "repeat_interval": settings.repeat_interval.to_string(),
            "routes": [
                { "receiver": "pager", "matchers": ["severity=\"critical\""] },
                { "receiver": "tickets", "matchers": ["severity=~\"warning|info\""] },
            ],
        },
        "receivers": [
            { "name": "default" },
            { "name": "pager", "webhook_configs": webhook },
            { "name": "tickets", "webhook_configs": webhook },
        ],
        "inhibit_rules": [
            {
                "source_matchers": ["severity=\"critical\""],
                "target_matchers": ["severity=\"warning\""],
                "equal": same_alert,
            },
            {
                "source_matchers": [format!("alertname=\"{}\"", alerts::ALL_TARGETS_DOWN)],
                "target_matchers": [format!(
                    "alertname=~\"{}|{}\"",
                    alerts::TARGET_DOWN,
                    alerts::METRICS_ABSENT
                )],
                "equal": settings.job_labels(),
            },
        ],
    });
    yaml(settings, &config)
}

/// Grafana data source provisioning. `timeInterval` tells Grafana the scrape interval, which
/// `$__rate_interval` is derived from.
pub fn grafana_datasource(settings: &Settings) -> anyhow::Result<String> {
    grafana_datasource_at(settings, &settings.prometheus_url)
}

/// The data source of [`grafana_datasource`] with Prometheus at `url`.
pub fn grafana_datasource_at(settings: &Settings, url: &str) -> anyhow::Result<String> {
    let config = json!({
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "uid": DATASOURCE_UID,
            "type": "prometheus",
            "access": "proxy",
            "url": url,
            "isDefault": true,
            "editable": false,
            // `manageAlerts`: Grafana lists this Prometheus's alert rules, which the
            // dashboards' alert list panel shows.
            "jsonData": {
                "timeInterval": settings.scrape_interval.to_string(),
                "httpMethod": "POST",
                "manageAlerts": true,
            },
        }],
    });
    yaml(settings, &config)
}

/// Grafana dashboard provider: loads every JSON file of [`GRAFANA_DASHBOARD_DIR`].
pub fn grafana_dashboard_provider(settings: &Settings) -> anyhow::Result<String> {
    let config = json!({
        "apiVersion": 1,
        "providers": [{
            "name": "redwatch",
            "folder": "redwatch",
            "type": "file",
            "disableDeletion": true,
            "allowUiUpdates": false,
            "updateIntervalSeconds": 30,
            "options": { "path": GRAFANA_DASHBOARD_DIR, "foldersFromFilesStructure": false },
        }],
    });
    yaml(settings, &config)
}
