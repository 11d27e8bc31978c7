//! The generated Prometheus and Alertmanager files pass promtool/amtool, and the generated rule
//! unit tests pass `promtool test rules` — for the committed set (production windows) and for a
//! compressed set. These fail when CI is set and the tools are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use crate::support;
use crate::support::Group;
use crate::support::generate::*;
use crate::support::tools::require_tool;

/// promtool (required) and amtool, each from its Debian package.
fn promtool_and_amtool() -> Option<(PathBuf, Option<PathBuf>)> {
    let promtool = require_tool("promtool", "Debian package prometheus")?;
    let amtool = require_tool("amtool", "Debian package prometheus-alertmanager");
    Some((promtool, amtool))
}

fn check_preset_dir(promtool: &Path, amtool: Option<&Path>, dir: &Path) {
    let prometheus = dir.join("prometheus");
    run_ok(Command::new(promtool).current_dir(&prometheus).args([
        "check",
        "config",
        "prometheus.yml",
    ]));
    run_ok(Command::new(promtool).current_dir(&prometheus).args([
        "check",
        "rules",
        "--lint=all",
        "--lint-fatal",
        "rules/redwatch.rules.yml",
    ]));
    if let Some(amtool) = amtool {
        run_ok(
            Command::new(amtool)
                .arg("check-config")
                .arg(dir.join("alertmanager/alertmanager.yml")),
        );
    }

    // The PrometheusRule's spec is a plain rule file.
    let resource = yaml(&dir.join("k8s/prometheusrule.yaml"));
    assert_eq!(resource["kind"], "PrometheusRule");
    let spec = serde_yaml_ng::to_string(&resource["spec"]).expect("spec");
    let temp = tempfile::tempdir().expect("temp dir");
    let spec_file = temp.path().join("spec.yml");
    std::fs::write(&spec_file, &spec).expect("write spec");
    run_ok(
        Command::new(promtool)
            .args(["check", "rules", "--lint=all", "--lint-fatal"])
            .arg(&spec_file),
    );
    // ... and the same rules as the rule file.
    let rules = yaml(&prometheus.join("rules/redwatch.rules.yml"));
    assert_eq!(
        resource["spec"], rules,
        "PrometheusRule spec differs from the rule file"
    );
}

fn unit_tests(promtool: &Path, dir: &Path) -> String {
    let tests = dir.join("prometheus/tests");
    let mut files: Vec<String> = files_below(&tests)
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "no rule tests in {}", tests.display());
    run_ok(
        Command::new(promtool)
            .current_dir(&tests)
            .args(["test", "rules"])
            .args(&files),
    )
}

#[test]
fn committed_configs_and_rules_pass_promtool_and_amtool() {
    let _group = support::shared(Group::Patient);
    let Some((promtool, amtool)) = promtool_and_amtool() else {
        return;
    };
    for preset in ["otel", "flask"] {
        check_preset_dir(&promtool, amtool.as_deref(), &committed_dir().join(preset));
    }
    // Beyond one Prometheus: an edge that remote-writes, the central receiver with the rules,
    // and the federation alternative.
    let output = run_ok(
        Command::new(&promtool)
            .current_dir(repo_root().join("deploy/k8s"))
            .args(["check", "config"])
            .args([
                "prometheus-beyond-one.yml",
                "prometheus-central.yml",
                "prometheus-federate.yml",
            ]),
    );
    assert_eq!(
        output.matches("is valid prometheus config").count(),
        3,
        "{output}"
    );
}

#[test]
fn committed_rule_unit_tests_pass() {
    let _group = support::shared(Group::Patient);
    let Some(promtool) = require_tool("promtool", "Debian package prometheus") else {
        return;
    };
    // Both presets in parallel: each takes several seconds of promtool time.
    let handles: Vec<_> = ["otel", "flask"]
        .into_iter()
        .map(|preset| {
            let promtool = promtool.clone();
            thread::spawn(move || unit_tests(&promtool, &committed_dir().join(preset)))
        })
        .collect();
    for handle in handles {
        let output = handle.join().expect("promtool thread");
        assert_eq!(output.matches("SUCCESS").count(), 4, "{output}");
    }
}

#[test]
fn compressed_and_custom_settings_pass_their_own_rule_tests() {
    let _group = support::shared(Group::Patient);
    let Some((promtool, amtool)) = promtool_and_amtool() else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let mut args = COMPRESSED.to_vec();
    args.extend([
        "--job",
        "shop",
        "--slo",
        "99.5",
        "--latency-slo",
        "95",
        "--latency-threshold",
        "1s",
        // An API configured away from the library's defaults.
        "--namespace",
        "shop",
        "--const-label",
        "service=checkout",
        "--buckets",
        "0.05,0.1,0.3,1,2.5",
    ]);
    generate_ok(temp.path(), &args);
    for preset in ["otel", "flask"] {
        let dir = temp.path().join(preset);
        check_preset_dir(&promtool, amtool.as_deref(), &dir);
        let output = unit_tests(&promtool, &dir);
        assert_eq!(output.matches("SUCCESS").count(), 4, "{output}");
    }
}

/// Generates the compressed otel set, applies `mutate` to the file `file` below its
/// `prometheus/` directory and runs the generated unit tests `tests`, which must fail; returns
/// promtool's output.
fn promtool_tests_of_mutated(
    file: &str,
    tests: &[&str],
    mutate: impl Fn(&str) -> String,
) -> Option<String> {
    let promtool = require_tool("promtool", "Debian package prometheus")?;
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(
        temp.path(),
        &[&["--naming", "otel"][..], COMPRESSED].concat(),
    );
    let path = temp.path().join("otel/prometheus").join(file);
    let text = read(&path);
    let broken = mutate(&text);
    assert_ne!(text, broken, "the mutation changed nothing");
    std::fs::write(&path, broken).expect("write");
    let output = Command::new(&promtool)
        .current_dir(temp.path().join("otel/prometheus/tests"))
        .args(["test", "rules"])
        .args(tests)
        .output()
        .expect("run promtool");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the mutation went unnoticed:\n{text}"
    );
    Some(text)
}

/// The rule file's unit tests (all but the resource tests) with `mutate` applied to the rules.
fn unit_tests_of_mutated_rules(mutate: impl Fn(&str) -> String) -> Option<String> {
    promtool_tests_of_mutated(
        "rules/redwatch.rules.yml",
        &["slo.test.yml", "alerts.test.yml", "days.test.yml"],
        mutate,
    )
}

#[test]
fn rule_unit_tests_catch_a_broken_guard() {
    let _group = support::shared(Group::Patient);
    // The generated tests must be able to fail: drop the minimum-events guard from the rules and
    // the guard cases must report the alerts that now fire.
    let Some(text) = unit_tests_of_mutated_rules(|rules| rules.replace(" >= 10\n", " >= 0\n"))
    else {
        return;
    };
    assert!(text.contains("than --min-events"), "{text}");
}

#[test]
fn rule_unit_tests_catch_a_missing_history_requirement() {
    let _group = support::shared(Group::Patient);
    // Without the week-and-a-day history requirement, a young service's first big change is
    // compared with a day of history and fires; the young-service case must notice.
    let Some(text) = unit_tests_of_mutated_rules(|rules| {
        rules.replace(
            "_samples_per_day{job=\"redwatch\"} offset 5m >=",
            "_samples_per_day{job=\"redwatch\"} >=",
        )
    }) else {
        return;
    };
    assert!(text.contains("young service"), "{text}");
}

/// The resource tests with `mutate` applied to `file` below `prometheus/`.
fn resource_tests_with_mutated(file: &str, mutate: impl Fn(&str) -> String) -> Option<String> {
    promtool_tests_of_mutated(file, &["resources.test.yml"], mutate)
}

#[test]
fn resource_tests_catch_a_pod_cgroup_taken_for_a_container() {
    // Without the container filter, the kubelet's pod-level cgroup (container="") is one more
    // "container", throttled at 100 % and at 97 % of its memory limit.
    let Some(text) = resource_tests_with_mutated("rules/redwatch.rules.yml", |rules| {
        rules.replace(", container!=\"\", container!=\"POD\"", "")
    }) else {
        return;
    };
    assert!(text.contains("ApiContainerCpuThrottling"), "{text}");
    assert!(text.contains("ApiContainerMemoryNearLimit"), "{text}");
}

#[test]
fn resource_tests_catch_a_network_namespace_counted_twice() {
    // The pod's interface is reported for its cgroup and its pause container: summed without
    // taking it once, the pod's traffic doubles.
    let Some(text) = resource_tests_with_mutated("tests/resources.test.yml", |tests| {
        tests.replace(
            "(max by (cluster, namespace, pod, instance, interface) (",
            "((",
        )
    }) else {
        return;
    };
    assert!(
        text.contains("container_network_receive_bytes_total"),
        "{text}"
    );
}
