//! Prometheus, Alertmanager and Grafana provisioning configuration.

use serde_json::{Value, json};

use super::Settings;
use super::units::PromDuration;

/// Where the provisioned dashboards live inside the Grafana container.
pub const GRAFANA_DASHBOARD_DIR: &str = "/var/lib/grafana/dashboards/redwatch";
/// The uid of the provisioned Prometheus data source.
pub const DATASOURCE_UID: &str = "prometheus";

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

/// `alertmanager.yml`: everything goes to a silent default receiver; critical and warning alerts
/// also go to a webhook, as an example of a real integration. Critical inhibits warning of the same
/// alert and job.
pub fn alertmanager(settings: &Settings) -> anyhow::Result<String> {
    let config = json!({
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "job", "slo"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [{
                "receiver": "webhook",
                "matchers": ["severity=~\"critical|warning\""],
                "continue": false,
            }],
        },
        "receivers": [
            { "name": "default" },
            { "name": "webhook", "webhook_configs": [{ "url": settings.webhook_url, "send_resolved": true }] },
        ],
        "inhibit_rules": [{
            "source_matchers": ["severity=\"critical\""],
            "target_matchers": ["severity=\"warning\""],
            "equal": ["alertname", "job"],
        }],
    });
    yaml(settings, &config)
}

/// Grafana data source provisioning. `timeInterval` tells Grafana the scrape interval, which
/// `$__rate_interval` is derived from.
pub fn grafana_datasource(settings: &Settings) -> anyhow::Result<String> {
    let config = json!({
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "uid": DATASOURCE_UID,
            "type": "prometheus",
            "access": "proxy",
            "url": settings.prometheus_url,
            "isDefault": true,
            "editable": false,
            "jsonData": { "timeInterval": settings.scrape_interval.to_string(), "httpMethod": "POST" },
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
