//! Kubernetes resources generated from the same rules and dashboards: a PrometheusRule
//! (Prometheus Operator) and a ConfigMap of the dashboards for the Grafana dashboard sidecar,
//! bundled as a kustomization that `deploy/k8s/base` includes; and, for clusters without the
//! Operator, the configuration of Prometheus, Alertmanager and Grafana as ConfigMaps, a
//! kustomization that `deploy/k8s/overlays/without-operator` includes.

use std::collections::BTreeMap;

use serde_json::json;

use super::configs::{self, in_cluster};
use super::rules::RuleFile;
use super::{GeneratedFile, Settings};

/// Where the configuration for clusters without the Operator goes, below the preset's directory.
/// kustomize reads files below a kustomization only, so the files its ConfigMaps are made of are
/// written there too (the same content as `prometheus/`, `alertmanager/` and `grafana/`).
pub const WITHOUT_OPERATOR_DIR: &str = "k8s/without-operator";

/// The ConfigMaps of [`without_operator_files`], by name, with the files each holds. The overlay's
/// Deployments mount them by these names (kustomize adds a content hash to them, so a changed
/// file rolls the Deployment).
pub const PROMETHEUS_CONFIG: &str = "prometheus-config";
pub const PROMETHEUS_RULES: &str = "prometheus-rules";
pub const ALERTMANAGER_CONFIG: &str = "alertmanager-config";
pub const GRAFANA_DATASOURCES: &str = "grafana-datasources";
pub const GRAFANA_DASHBOARD_PROVIDERS: &str = "grafana-dashboard-providers";
pub const GRAFANA_DASHBOARDS: &str = "grafana-dashboards";

/// Files rendered once for every target, reused for Kubernetes.
pub struct SharedFiles<'a> {
    pub rules_yaml: &'a str,
    /// (file name, JSON) of every dashboard.
    pub dashboards: &'a [(&'a str, String)],
    pub alertmanager_yaml: &'a str,
    pub provider_yaml: &'a str,
}
use redwatch::Naming;

fn yaml(settings: &Settings, value: &serde_json::Value) -> anyhow::Result<String> {
    Ok(settings.header("#") + &serde_yaml_ng::to_string(value)?)
}

/// `k8s/prometheusrule.yaml`, `k8s/grafana-dashboards.yaml` and `k8s/kustomization.yaml`.
pub fn files(
    preset: Naming,
    settings: &Settings,
    rules: &RuleFile,
    dashboards: &[(&str, String)],
) -> anyhow::Result<Vec<GeneratedFile>> {
    let labels = json!({
        "app.kubernetes.io/name": "redwatch",
        "app.kubernetes.io/part-of": "redwatch",
        "app.kubernetes.io/component": "monitoring",
    });
    // The Prometheus Operator loads rules whose labels match its `ruleSelector`
    // (kube-prometheus-stack: `release: <Helm release>`), set by --rule-labels.
    let mut rule_labels = labels.clone();
    for (key, value) in &settings.rule_labels {
        rule_labels[key] = json!(value);
    }
    let prometheus_rule = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": { "name": format!("{}-rules", settings.job), "labels": rule_labels },
        "spec": serde_json::to_value(rules)?,
    });
    let mut dashboard_labels = labels.clone();
    // The label the Grafana sidecar (kube-prometheus-stack, grafana Helm chart) watches for.
    dashboard_labels["grafana_dashboard"] = json!("1");
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("{}-dashboards-{}", settings.job, preset.as_str()),
            "labels": dashboard_labels,
            "annotations": { "grafana_folder": "redwatch" },
        },
        // One key per dashboard file: the sidecar writes each key as a file.
        "data": dashboards.iter().cloned().collect::<BTreeMap<&str, String>>(),
    });
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["prometheusrule.yaml", "grafana-dashboards.yaml"],
    });
    Ok(vec![
        GeneratedFile {
            path: "k8s/prometheusrule.yaml".into(),
            content: yaml(settings, &prometheus_rule)?,
        },
        GeneratedFile {
            path: "k8s/grafana-dashboards.yaml".into(),
            content: yaml(settings, &config_map)?,
        },
        GeneratedFile {
            path: "k8s/kustomization.yaml".into(),
            content: yaml(settings, &kustomization)?,
        },
    ])
}

/// `k8s/without-operator/`: a kustomization of ConfigMaps made from the generated files, with a
/// Prometheus config for inside the cluster (Kubernetes service discovery instead of the compose
/// hosts) and a Grafana data source at the in-cluster Prometheus.
pub fn without_operator_files(
    settings: &Settings,
    shared: &SharedFiles<'_>,
) -> anyhow::Result<Vec<GeneratedFile>> {
    let rules_file = "redwatch.rules.yml";
    let datasource_file = "grafana-datasource.yml";
    let provider_file = "grafana-dashboard-provider.yml";
    let config_map = |name: &str, files: &[&str]| json!({ "name": name, "files": files });
    let dashboard_files: Vec<&str> = shared.dashboards.iter().map(|(name, _)| *name).collect();
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "generatorOptions": {
            "labels": {
                "app.kubernetes.io/part-of": "redwatch",
                "app.kubernetes.io/component": "monitoring",
            },
        },
        "configMapGenerator": [
            config_map(PROMETHEUS_CONFIG, &["prometheus.yml"]),
            config_map(PROMETHEUS_RULES, &[rules_file]),
            config_map(ALERTMANAGER_CONFIG, &["alertmanager.yml"]),
            config_map(GRAFANA_DATASOURCES, &[datasource_file]),
            config_map(GRAFANA_DASHBOARD_PROVIDERS, &[provider_file]),
            config_map(GRAFANA_DASHBOARDS, &dashboard_files),
        ],
    });
    let mut files = vec![
        ("kustomization.yaml", yaml(settings, &kustomization)?),
        ("prometheus.yml", configs::prometheus_in_cluster(settings)?),
        (rules_file, shared.rules_yaml.to_owned()),
        ("alertmanager.yml", shared.alertmanager_yaml.to_owned()),
        (
            datasource_file,
            configs::grafana_datasource_at(settings, in_cluster::PROMETHEUS_URL)?,
        ),
        (provider_file, shared.provider_yaml.to_owned()),
    ];
    files.extend(
        shared
            .dashboards
            .iter()
            .map(|(name, json)| (*name, json.clone())),
    );
    Ok(files
        .into_iter()
        .map(|(name, content)| GeneratedFile {
            path: format!("{WITHOUT_OPERATOR_DIR}/{name}").into(),
            content,
        })
        .collect())
}
