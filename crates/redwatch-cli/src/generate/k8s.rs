//! Kubernetes resources generated from the same rules and dashboards: a PrometheusRule
//! (Prometheus Operator) and a ConfigMap of the dashboards for the Grafana dashboard sidecar,
//! bundled as a kustomization that `deploy/k8s/base` includes.

use std::collections::BTreeMap;

use serde_json::json;

use super::rules::RuleFile;
use super::{GeneratedFile, Settings};
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
