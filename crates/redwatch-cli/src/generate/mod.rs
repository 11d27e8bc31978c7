//! `redwatch generate`: Grafana dashboards, Prometheus recording and alert rules with their
//! promtool unit tests, Prometheus/Alertmanager/Grafana configuration and Kubernetes resources,
//! all derived from one table of metric names ([`naming`]) and one set of SLO settings
//! ([`Settings`]).

mod alerts;
mod anomaly;
mod configs;
mod dashboard;
mod k8s;
pub mod naming;
mod promql;
pub mod resources;
mod rule_tests;
mod rules;
mod settings;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use redwatch::Naming;

pub use naming::{AppMetrics, MetricNames};
pub(crate) use settings::nonzero_duration;
pub use settings::{
    AnomalySettings, BurnWindow, GenerateArgs, GenerateFlags, GenerateSettings, List, MAX_TILES,
    Optional, Settings,
};
pub use units::PromDuration;

/// One generated file: a path relative to the output directory and its content.
#[derive(Debug)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub content: String,
}

/// Everything the generator writes for one preset, paths relative to the preset's directory.
pub fn generate_preset(preset: Naming, settings: &Settings) -> anyhow::Result<Vec<GeneratedFile>> {
    let rule_file = rules::rule_file(preset, settings);
    let rules_yaml = rules::to_yaml(&rule_file, settings)?;
    // (file name, JSON) of every dashboard.
    let dashboards = [
        (
            dashboard::FILE_NAME,
            dashboard::api_overview(preset, settings),
        ),
        (
            dashboard::ROUTE_FILE_NAME,
            dashboard::api_route(preset, settings),
        ),
    ]
    .into_iter()
    .map(|(name, board)| Ok((name, serde_json::to_string_pretty(&board)? + "\n")))
    .collect::<anyhow::Result<Vec<(&str, String)>>>()?;
    let alertmanager_yaml = configs::alertmanager(settings)?;
    let provider_yaml = configs::grafana_dashboard_provider(settings)?;
    let mut files = vec![
        GeneratedFile {
            path: "prometheus/prometheus.yml".into(),
            content: configs::prometheus(settings)?,
        },
        GeneratedFile {
            path: "prometheus/rules/redwatch.rules.yml".into(),
            content: rules_yaml.clone(),
        },
        GeneratedFile {
            path: "alertmanager/alertmanager.yml".into(),
            content: alertmanager_yaml.clone(),
        },
        GeneratedFile {
            path: "grafana/provisioning/datasources/redwatch.yml".into(),
            content: configs::grafana_datasource(settings)?,
        },
        GeneratedFile {
            path: "grafana/provisioning/dashboards/redwatch.yml".into(),
            content: provider_yaml.clone(),
        },
    ];
    for (name, content) in &dashboards {
        files.push(GeneratedFile {
            path: format!("grafana/dashboards/{name}").into(),
            content: content.clone(),
        });
    }
    for (name, content) in rule_tests::test_files(preset, settings)? {
        files.push(GeneratedFile {
            path: format!("prometheus/tests/{name}").into(),
            content,
        });
    }
    files.extend(k8s::files(preset, settings, &rule_file, &dashboards)?);
    files.extend(k8s::without_operator_files(
        settings,
        &k8s::SharedFiles {
            rules_yaml: &rules_yaml,
            dashboards: &dashboards,
            alertmanager_yaml: &alertmanager_yaml,
            provider_yaml: &provider_yaml,
        },
    )?);
    Ok(files)
}

/// Entry point of `redwatch generate`.
pub async fn run(generate: GenerateSettings) -> anyhow::Result<ExitCode> {
    // Render everything before writing anything, so a failure leaves no half-written set.
    let mut all = Vec::new();
    for &preset in &generate.presets {
        for file in generate_preset(preset, &generate.settings)? {
            all.push(GeneratedFile {
                path: generate.out.join(preset.as_str()).join(&file.path),
                content: file.content,
            });
        }
    }
    for file in &all {
        crate::write::atomically(&file.path, &file.content)?;
    }
    println!(
        "redwatch generate: wrote {} files under {}",
        all.len(),
        generate.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
