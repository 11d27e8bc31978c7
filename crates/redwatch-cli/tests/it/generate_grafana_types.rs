//! The generated dashboards against Grafana's own published types: Grafana cannot run here, but
//! its npm package `@grafana/schema` declares the dashboard model (dashboard, rows, panels,
//! variables, field configs) and each panel kind's options, and TypeScript checks a dashboard
//! against them. The structural checks of `generate_files.rs` stay: these types do not know
//! PromQL, units or our conventions.
//!
//! The pinned packages are installed with npm into the target directory once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::support::generate::*;
use crate::support::tools::require_tool;

const GRAFANA_SCHEMA: &str = "13.2.3";
const TYPESCRIPT: &str = "5.9.3";

/// Grafana's types narrowed to our panel kinds; each checked file is this, then a dashboard.
const TYPES: &str = include_str!("grafana_dashboard.ts");

/// One install at a time: both tests use the same directory.
static INSTALL: Mutex<()> = Mutex::new(());

/// Where Grafana's types are installed, and node to run tsc with.
struct TypeChecker {
    /// Holds `node_modules/{@grafana/schema,typescript}` at the pinned versions.
    dir: PathBuf,
    node: PathBuf,
}

/// Grafana's types and TypeScript at the pinned versions, installed if need be, or `None` (with
/// a notice) outside CI when node or npm is missing.
fn grafana_types() -> Option<TypeChecker> {
    let npm = require_tool("npm", "Debian package npm")?;
    let node = require_tool("node", "Debian package nodejs")?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "grafana-schema-{GRAFANA_SCHEMA}-typescript-{TYPESCRIPT}"
    ));
    let _install = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let installed = |package: &str| {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        std::fs::read_to_string(manifest)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|manifest| manifest["version"].as_str().map(str::to_owned))
    };
    if installed("@grafana/schema").as_deref() != Some(GRAFANA_SCHEMA)
        || installed("typescript").as_deref() != Some(TYPESCRIPT)
    {
        std::fs::create_dir_all(&dir).expect("create the npm directory");
        std::fs::write(dir.join("package.json"), "{\"private\": true}\n")
            .expect("write package.json");
        run_ok(
            Command::new(npm)
                .current_dir(&dir)
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--ignore-scripts",
                    "--save-exact",
                ])
                .arg(format!("@grafana/schema@{GRAFANA_SCHEMA}"))
                .arg(format!("typescript@{TYPESCRIPT}")),
        );
    }
    Some(TypeChecker { dir, node })
}

/// Type-checks each dashboard (file stem → dashboard) with `tsc --strict` in a fresh project
/// next to `node_modules`, and returns the errors reported per file stem (none for a dashboard
/// that fits Grafana's types).
fn type_errors(
    checker: &TypeChecker,
    dashboards: &BTreeMap<String, Value>,
) -> BTreeMap<String, Vec<String>> {
    // Inside the install directory, so that `@grafana/schema` resolves from `node_modules`.
    let project = tempfile::tempdir_in(&checker.dir).expect("project dir");
    let mut files = Vec::new();
    for (stem, dashboard) in dashboards {
        let literal = serde_json::to_string_pretty(dashboard).expect("dashboard JSON");
        let source =
            format!("{TYPES}\nexport const dashboard = {literal} satisfies RedwatchDashboard;\n");
        std::fs::write(project.path().join(format!("{stem}.ts")), source).expect("write .ts");
        files.push(format!("{stem}.ts"));
    }
    let tsconfig = json!({
        "compilerOptions": {
            "strict": true,
            "noEmit": true,
            "exactOptionalPropertyTypes": true,
            "module": "nodenext",
            "moduleResolution": "nodenext",
            "target": "es2022",
            "types": [],
            // Grafana's declarations are checked too, so a broken package cannot pass unnoticed.
            "skipLibCheck": false,
        },
        "files": files,
    });
    std::fs::write(
        project.path().join("tsconfig.json"),
        serde_json::to_string_pretty(&tsconfig).expect("tsconfig"),
    )
    .expect("write tsconfig.json");
    let output = Command::new(&checker.node)
        .arg(checker.dir.join("node_modules/typescript/bin/tsc"))
        .args(["--project", "tsconfig.json", "--pretty", "false"])
        .current_dir(project.path())
        .output()
        .expect("run tsc");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in report.lines().filter(|line| line.contains("): error TS")) {
        let file = line.split('(').next().unwrap_or_default();
        let stem = file.strip_suffix(".ts").unwrap_or(file).to_owned();
        errors.entry(stem).or_default().push(line.to_owned());
    }
    // tsc exits non-zero exactly when it reports errors; anything else (a missing module, a bad
    // tsconfig) is reported without a file and would otherwise look like a pass.
    assert_eq!(
        output.status.success(),
        errors.is_empty(),
        "tsc exited {:?}:\n{report}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        errors.keys().all(|stem| dashboards.contains_key(stem)),
        "errors outside the dashboards:\n{report}"
    );
    errors
}

/// Every dashboard of the committed generated set, by `preset-name`.
fn generated_dashboards() -> BTreeMap<String, Value> {
    let committed = committed_dir();
    let mut dashboards = BTreeMap::new();
    for file in files_below(&committed) {
        let mut parts = file.iter().map(|part| part.to_string_lossy());
        let preset = parts.next().unwrap_or_default();
        let path: Vec<_> = parts.collect();
        if path.len() == 3 && path[0] == "grafana" && path[1] == "dashboards" {
            let name = path[2].trim_end_matches(".json").replace('-', "_");
            let dashboard = serde_json::from_str(&read(&committed.join(&file)))
                .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
            dashboards.insert(format!("{preset}_{name}"), dashboard);
        }
    }
    dashboards
}

#[test]
fn every_generated_dashboard_fits_grafanas_types() {
    let Some(checker) = grafana_types() else {
        return;
    };
    let dashboards = generated_dashboards();
    for preset in ["otel", "flask"] {
        assert!(
            dashboards.keys().any(|name| name.starts_with(preset)),
            "no {preset} dashboard in {:?}",
            dashboards.keys()
        );
    }
    let errors = type_errors(&checker, &dashboards);
    assert!(
        errors.is_empty(),
        "dashboards that do not fit Grafana's types:\n{}",
        errors
            .values()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The first top-level panel of `kind`.
fn first_panel<'a>(dashboard: &'a mut Value, kind: &str) -> &'a mut Value {
    let panels = dashboard["panels"].as_array_mut().expect("panels");
    let top = panels
        .iter()
        .position(|panel| panel["type"] == kind)
        .expect("a panel of that kind");
    &mut panels[top]
}

#[test]
fn the_type_check_rejects_broken_dashboards() {
    let Some(checker) = grafana_types() else {
        return;
    };
    let original = generated_dashboards()
        .remove("otel_api_overview")
        .expect("the otel dashboard");
    // Each mutation and a fragment of the error tsc must report for it.
    type Mutation = fn(&mut Value);
    let mutations: [(&str, Mutation, &str); 6] = [
        (
            "grid_position_as_text",
            |board| first_panel(board, "stat")["gridPos"] = json!("0,1 5x5"),
            "not assignable to type '{ h: number;",
        ),
        (
            "unknown_dashboard_field",
            |board| board["notAGrafanaField"] = json!(1),
            "'\"notAGrafanaField\"' does not exist",
        ),
        (
            "unknown_stat_option",
            |board| first_panel(board, "stat")["options"]["notAnOption"] = json!(true),
            "'\"notAnOption\"' does not exist",
        ),
        (
            "draw_style_out_of_range",
            |board| {
                first_panel(board, "timeseries")["fieldConfig"]["defaults"]["custom"]["drawStyle"] =
                    json!("lines")
            },
            "'\"lines\"' is not assignable",
        ),
        (
            "unknown_panel_kind",
            |board| first_panel(board, "row")["type"] = json!("rows"),
            "'\"rows\"' is not assignable",
        ),
        (
            "query_without_ref_id",
            |board| {
                if let Some(target) = first_panel(board, "stat")["targets"][0].as_object_mut() {
                    target.remove("refId");
                }
            },
            "Property 'refId' is missing",
        ),
    ];
    let mut dashboards = BTreeMap::new();
    dashboards.insert("unchanged".to_owned(), original.clone());
    for (name, mutate, _) in &mutations {
        let mut dashboard = original.clone();
        mutate(&mut dashboard);
        assert_ne!(dashboard, original, "{name} changed nothing");
        dashboards.insert((*name).to_owned(), dashboard);
    }
    let errors = type_errors(&checker, &dashboards);
    assert!(
        !errors.contains_key("unchanged"),
        "{:?}",
        errors["unchanged"]
    );
    for (name, _, expected) in &mutations {
        let reported = errors.get(*name).cloned().unwrap_or_default();
        assert!(
            reported.iter().any(|line| line.contains(expected)),
            "{name}: expected an error containing {expected:?}, got {reported:#?}"
        );
    }
}
