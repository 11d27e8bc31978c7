//! `redwatch load` with real requests: `--header`, `--scenario` (methods, headers, bodies,
//! weights, templated values), and response bodies streamed and counted.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::Group;
use crate::support::load::{BIG_BODY_BYTES, RecordingServer, run_load};
use crate::support::process::{Proc, redwatch};

const LIMIT: Duration = Duration::from_secs(30);

const SCENARIO: &str = r#"
variables:
  user: {kind: random_int, min: 1, max: 5}
  order: {kind: sequence, start: 100}
  email: {kind: csv, file: users.csv, column: email}
endpoints:
  - name: user
    path: /users/{{ user }}
    headers: {x-scope: users}
    weight: 2
  - name: order
    method: POST
    path: /orders?by={{ email | urlencode }}
    headers:
      content-type: application/json
    body: '{"order": {{ order }}, "email": "{{ email }}"}'
    weight: 1
"#;

/// A scenario and its CSV file in a fresh temporary directory.
fn scenario_dir(scenario: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("users.csv"),
        "id,email\n1,a@x.org\n2,b+c@x.org\n",
    )
    .expect("csv");
    std::fs::write(dir.path().join("scenario.yaml"), scenario).expect("scenario");
    dir
}

#[test]
fn a_scenario_sends_its_methods_headers_bodies_and_values() {
    let _group = support::shared(Group::Timing);
    let dir = scenario_dir(SCENARIO);
    let file = dir.path().join("scenario.yaml");
    let file = file.to_str().expect("utf-8 path");
    let server = RecordingServer::start();
    let url = server.url();
    let run = |seed: &str| {
        let run = run_load(
            &[
                "--target",
                &url,
                "--scenario",
                file,
                "--rate",
                "200",
                "--requests",
                "150",
                "--seed",
                seed,
                "--header",
                "Authorization: Bearer t0k",
                "--header",
                "X-Run: a, b",
                "--json",
                "-",
            ],
            LIMIT,
        );
        assert!(run.status.success(), "{}", run.stderr);
        run.json()
    };
    let summary = run("9");
    let seen = server.seen();
    assert_eq!(seen.len(), 150);
    let endpoints = summary["endpoints"].as_array().expect("endpoints");
    let users: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/users/"))
        .collect();
    let orders: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/orders"))
        .collect();
    assert_eq!(endpoints[0]["count"].as_u64(), Some(users.len() as u64));
    assert_eq!(endpoints[1]["count"].as_u64(), Some(orders.len() as u64));
    assert_eq!(endpoints[1]["method"], "POST");
    assert!(
        (70..=130).contains(&users.len()),
        "weights 2:1 over 150 requests, {} users",
        users.len()
    );
    for request in &seen {
        assert_eq!(request.headers["authorization"], "Bearer t0k");
        assert_eq!(request.headers["x-run"], "a, b");
    }
    // Random integers stay in their range and take every value.
    let ids: BTreeSet<&str> = users.iter().map(|s| &s.path["/users/".len()..]).collect();
    assert_eq!(ids, BTreeSet::from(["1", "2", "3", "4", "5"]));
    assert!(
        users
            .iter()
            .all(|s| s.method == "GET" && s.headers["x-scope"] == "users")
    );
    // The sequence counts the requests that use it; CSV rows take turns; values are
    // URL-encoded in the path where the template says so.
    let mut bodies: Vec<serde_json::Value> = orders
        .iter()
        .map(|s| {
            assert_eq!(s.method, "POST");
            assert_eq!(s.headers["content-type"], "application/json");
            assert!(s.headers.get("x-scope").is_none());
            let body: serde_json::Value = serde_json::from_str(&s.body).expect("JSON body");
            let by = if body["email"] == "a@x.org" {
                "a%40x.org"
            } else {
                "b%2Bc%40x.org"
            };
            assert_eq!(s.path, format!("/orders?by={by}"));
            body
        })
        .collect();
    bodies.sort_by_key(|b| b["order"].as_u64());
    for (k, body) in bodies.iter().enumerate() {
        assert_eq!(body["order"].as_u64(), Some(100 + k as u64), "{body}");
        let email = if k % 2 == 0 { "a@x.org" } else { "b+c@x.org" };
        assert_eq!(body["email"], email, "{body}");
    }
    // The same seed sends the same requests, in the same schedule order.
    let paths = |seen: &[support::load::Seen]| {
        let mut paths: Vec<String> = seen
            .iter()
            .map(|s| format!("{} {}", s.path, s.body))
            .collect();
        paths.sort();
        paths
    };
    let first = paths(&seen);
    let again = run("9");
    let counts =
        |summary: &serde_json::Value| [0, 1].map(|i| summary["endpoints"][i]["count"].as_u64());
    assert_eq!(counts(&again), counts(&summary));
    let second = server.seen();
    assert_eq!(first, paths(&second[150..]), "same seed, same requests");
    run("10");
    assert_ne!(
        first,
        paths(&server.seen()[300..]),
        "another seed, other values"
    );
}

#[test]
fn bad_scenarios_and_headers_are_refused_with_exit_2() {
    let _group = support::shared(Group::Timing);
    let dir = scenario_dir("endpoints:\n  - path: /a/{{ missing }}\n");
    let file = dir.path().join("scenario.yaml");
    let file = file.to_str().expect("utf-8 path");
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--scenario", file],
            &["scenario.yaml", "endpoints[0]", "missing"],
        ),
        (
            &["--scenario", "/nonexistent/s.yaml"],
            &["/nonexistent/s.yaml", "cannot read"],
        ),
        (&["--header", "No colon"], &["--header", "'Name: value'"]),
        (
            &["--header", "Bad Name: x"],
            &["--header", "invalid header name"],
        ),
    ];
    for (args, needles) in cases {
        let run = run_load(&[&["--rate", "10"], args].concat(), LIMIT);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        for needle in needles {
            assert!(
                run.stderr.contains(needle),
                "{args:?}: {needle:?} in {}",
                run.stderr
            );
        }
    }
}

/// Runs `redwatch load ARGS` to its exit within [`LIMIT`]; its stdout and its peak resident
/// memory in KiB: the `VmHWM` of its own address space, read every 20 ms while it runs (the high
/// water mark only grows, so the last reading holds all but its last moments). Not wait4's
/// `ru_maxrss`: Linux carries the forking process's high water mark over exec into it, and this
/// test process, running the whole suite, can be larger than the bound.
fn run_with_peak_memory(args: &[&str]) -> (String, i64) {
    let mut command = redwatch();
    command
        .arg("load")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut load = Proc::start("redwatch load", &mut command);
    let mut stdout = load.child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let pid = libc::pid_t::try_from(load.pid()).expect("pid");
    let started = Instant::now();
    let mut peak_kib = 0i64;
    loop {
        if let Some(hwm) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        {
            peak_kib = peak_kib.max(hwm);
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child, with a valid pointer; WNOHANG never blocks.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped == pid {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "status {status}"
            );
            assert!(peak_kib > 0, "no VmHWM read while the load ran");
            return (reader.join().unwrap_or_default(), peak_kib);
        }
        assert!(reaped == 0, "waitpid failed");
        assert!(started.elapsed() < LIMIT, "load did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn response_bodies_are_streamed_and_counted() {
    let _group = support::shared(Group::Timing);
    let server = RecordingServer::start();
    let url = server.url();
    let (stdout, peak_kib) = run_with_peak_memory(&[
        "--target",
        &url,
        "--mix",
        "/big=1,/small=1",
        "--concurrency",
        "1",
        "--requests",
        "4",
        "--seed",
        "1",
        "--timeout",
        "20s",
        "--json",
        "-",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    let endpoints = summary["endpoints"].as_array().expect("endpoints");
    let (big, small) = (&endpoints[0], &endpoints[1]);
    let big_count = big["count"].as_u64().expect("count");
    assert!(big_count >= 1, "{summary}");
    assert_eq!(
        big["bytes_received"].as_u64(),
        Some(big_count * BIG_BODY_BYTES)
    );
    assert_eq!(
        small["bytes_received"].as_u64(),
        small["count"].as_u64().map(|n| n * 2)
    );
    assert_eq!(
        summary["bytes_received"].as_u64(),
        Some(big_count * BIG_BODY_BYTES + small["count"].as_u64().expect("count") * 2)
    );
    // 256 MiB per response went through a process that never grew past a fraction of it.
    assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB");
}
