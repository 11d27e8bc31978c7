//! `redwatch load --timeline`, the histograms in the `--json` summary, and
//! `redwatch load merge`.

use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::Histogram;
use serde_json::Value;

use crate::support;
use crate::support::Group;
use crate::support::load::{demo_server, run_load};
use crate::support::process::{Finished, run_to_exit};

const LIMIT: Duration = Duration::from_secs(30);

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written")).expect("JSON")
}

/// `redwatch load merge ARGS`, run to its exit.
fn merge(args: &[&str]) -> Finished {
    run_to_exit(&[&["load", "merge"], args].concat(), &[], LIMIT)
}

fn histogram(text: &Value) -> Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("base64 text"))
        .expect("base64");
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .expect("V2 histogram")
}

fn count_of(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

#[test]
fn the_timeline_has_a_line_per_second_that_add_up_to_the_summary() {
    let _group = support::shared(Group::Timing);
    let server = demo_server();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("timeline.jsonl");
    let path_arg = path.to_str().expect("utf-8 path");
    let run = run_load(
        &[
            "--target",
            &server.url(),
            "--rate",
            "200",
            "--duration",
            "3s",
            "--timeline",
            path_arg,
            "--json",
            "-",
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let summary = run.json();
    let text = std::fs::read_to_string(&path).expect("timeline written");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    // Three full seconds and the rest of the run (which may be merged into the third when the
    // run ends before the timer fires).
    assert!((3..=4).contains(&lines.len()), "{text}");
    let mut previous = 0.0;
    for (i, line) in lines.iter().enumerate() {
        let t = line["t_s"].as_f64().expect("t_s");
        assert!(t > previous, "{text}");
        previous = t;
        if i < 3 {
            let interval = line["interval_s"].as_f64().expect("interval_s");
            assert!((0.9..1.1).contains(&interval), "{line}");
            let requests = count_of(&line["requests"]);
            assert!((180..=220).contains(&requests), "200/s: {line}");
        }
        for endpoint in line["endpoints"].as_array().expect("endpoints") {
            if count_of(&endpoint["count"]) == 0 {
                continue;
            }
            let (corrected, sent) = (&endpoint["latency_ms"], &endpoint["latency_from_send_ms"]);
            for q in ["p50", "p99"] {
                let (c, s) = (corrected[q].as_f64().expect(q), sent[q].as_f64().expect(q));
                assert!(c >= s, "from intended >= from send: {endpoint}");
            }
            assert!(
                corrected["p50"].as_f64() <= corrected["p99"].as_f64(),
                "{endpoint}"
            );
        }
    }
    // Every request is in exactly one line, with its status.
    for (e, endpoint) in summary["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .enumerate()
    {
        let label = endpoint["endpoint"].as_str().expect("label");
        let lines_for = |field: &dyn Fn(&Value) -> u64| -> u64 {
            lines
                .iter()
                .map(|line| {
                    let mine = &line["endpoints"][e];
                    assert_eq!(mine["endpoint"], label);
                    field(mine)
                })
                .sum()
        };
        assert_eq!(
            lines_for(&|l| count_of(&l["count"])),
            count_of(&endpoint["count"])
        );
        for (status, n) in endpoint["status"].as_object().expect("status") {
            assert_eq!(
                lines_for(&|l| count_of(&l["status"][status])),
                count_of(n),
                "{label}"
            );
        }
    }
}

#[test]
fn merged_summaries_are_exact_and_independent_of_order() {
    let _group = support::shared(Group::Timing);
    let server = demo_server();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<String> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let path = dir.path().join(format!("{name}.json"));
            let path = path.to_str().expect("utf-8 path").to_owned();
            let seed = (i + 1).to_string();
            let run = run_load(
                &[
                    "--target",
                    &url,
                    "--rate",
                    "150",
                    "--duration",
                    "1s",
                    "--seed",
                    &seed,
                    "--json",
                    &path,
                ],
                LIMIT,
            );
            assert!(run.status.success(), "{}", run.stderr);
            path
        })
        .collect();
    let parts: Vec<Value> = files.iter().map(|f| read_json(f.as_ref())).collect();
    let forward = merge(&[&files[0], &files[1], &files[2]]);
    assert!(forward.status.success(), "{}", forward.stderr);
    let backward = merge(&[&files[2], &files[0], &files[1]]);
    assert_eq!(
        forward.stdout, backward.stdout,
        "merge depends on the order of its files"
    );
    let merged = forward.json();
    assert_eq!(merged["merged_from"].as_u64(), Some(3));
    let sum = |field: &dyn Fn(&Value) -> u64| parts.iter().map(field).sum::<u64>();
    assert_eq!(
        count_of(&merged["requests"]),
        sum(&|p| count_of(&p["requests"]))
    );
    assert_eq!(count_of(&merged["requests"]), 450);
    assert_eq!(merged["target_rate"].as_f64(), Some(450.0));
    for (e, endpoint) in merged["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .enumerate()
    {
        assert_eq!(
            count_of(&endpoint["count"]),
            sum(&|p| count_of(&p["endpoints"][e]["count"]))
        );
        // The merged histogram is the sum of the parts', and its quantiles are computed from it.
        let mut expected = histogram(&parts[0]["endpoints"][e]["histograms"]["latency"]);
        for part in &parts[1..] {
            expected
                .add(histogram(&part["endpoints"][e]["histograms"]["latency"]))
                .expect("same bounds");
        }
        let merged_histogram = histogram(&endpoint["histograms"]["latency"]);
        assert_eq!(merged_histogram, expected);
        assert_eq!(merged_histogram.len(), count_of(&endpoint["count"]));
        let p99 = (expected.value_at_quantile(0.99) as f64) / 1000.0;
        assert_eq!(
            endpoint["latency_ms"]["p99"].as_f64(),
            Some(p99),
            "{endpoint}"
        );
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
    for part in &parts {
        for endpoint in part["endpoints"].as_array().expect("endpoints") {
            all.add(histogram(&endpoint["histograms"]["latency"]))
                .expect("same bounds");
        }
    }
    let p50 = (all.value_at_quantile(0.5) as f64) / 1000.0;
    assert_eq!(merged["latency_ms"]["p50"].as_f64(), Some(p50));

    // Thresholds judge the merged figures.
    let failing = merge(&[
        "--threshold",
        "dropped==0",
        "--threshold",
        "max<1us",
        &files[0],
        &files[1],
    ]);
    assert_eq!(failing.status.code(), Some(1), "{}", failing.stderr);
    assert!(
        failing.stderr.contains("FAIL  max<1us"),
        "{}",
        failing.stderr
    );
}

#[test]
fn merge_refuses_what_it_cannot_combine() {
    let _group = support::shared(Group::Timing);
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"requests\": 3}").expect("write");
    let junk = junk.to_str().expect("utf-8 path");
    let run = merge(&[junk]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("junk.json"), "{}", run.stderr);
    let run = merge(&["/nonexistent/summary.json"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("/nonexistent/summary.json"),
        "{}",
        run.stderr
    );
    let run = merge(&[]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
}

#[test]
fn four_shards_merged_match_one_run() {
    let _heavy = support::exclusive();
    let server = demo_server();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let common = [
        "--target",
        &url,
        "--rate",
        "1000",
        "--duration",
        "3s",
        "--seed",
        "5",
    ];
    let whole = run_load(&[&common[..], &["--json", "-"]].concat(), LIMIT);
    assert!(whole.status.success(), "{}", whole.stderr);
    let whole = whole.json();

    // Four shards side by side, as an Indexed Job would run them.
    let files: Vec<String> = (0..4)
        .map(|i| {
            dir.path()
                .join(format!("shard-{i}.json"))
                .to_str()
                .expect("utf-8")
                .to_owned()
        })
        .collect();
    let shards: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let shard = format!("{i}/4");
            support::load::spawn_load(&[&common[..], &["--shard", &shard, "--json", file]].concat())
        })
        .collect();
    for shard in shards {
        let run = shard.finish(LIMIT);
        assert!(run.status.success(), "{}", run.stderr);
    }
    let parts: Vec<Value> = files.iter().map(|f| read_json(f.as_ref())).collect();
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["shard"], format!("{i}/4"));
        assert_eq!(part["seed"].as_u64(), Some(5));
        assert_eq!(part["target_rate"].as_f64(), Some(250.0));
        assert_eq!(part["requests"].as_u64(), Some(750), "{}", part["requests"]);
    }
    assert_ne!(
        parts[0]["endpoints"][0]["count"], parts[1]["endpoints"][0]["count"],
        "each shard has its own seed"
    );
    let forward = merge(&[&files[0], &files[1], &files[2], &files[3]]);
    assert!(forward.status.success(), "{}", forward.stderr);
    let backward = merge(&[&files[3], &files[1], &files[0], &files[2]]);
    assert_eq!(
        forward.stdout, backward.stdout,
        "merge depends on the order of the shards"
    );
    // A directory stands for its *.json files (the volume of the Kubernetes Indexed Job).
    let directory = merge(&[dir.path().to_str().expect("utf-8")]);
    assert_eq!(forward.stdout, directory.stdout);
    let merged = forward.json();
    let (merged_json, backward_json) = (merged.clone(), backward.json());
    for (a, b) in merged_json["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .zip(backward_json["endpoints"].as_array().expect("endpoints"))
    {
        assert_eq!(
            histogram(&a["histograms"]["latency"]),
            histogram(&b["histograms"]["latency"])
        );
    }
    let within_1_percent = |field: &str| {
        let (one, sharded) = (
            whole[field].as_f64().expect(field),
            merged[field].as_f64().expect(field),
        );
        assert!(
            (sharded / one - 1.0).abs() <= 0.01,
            "{field}: one run {one}, shards {sharded}"
        );
    };
    within_1_percent("requests");
    within_1_percent("achieved_rate");
    assert_eq!(merged["target_rate"].as_f64(), Some(1000.0));
    assert_eq!(merged["requests"].as_u64(), Some(3000));
    assert_eq!(merged["dropped"].as_u64(), Some(0));
}
