//! `redwatch demo`, end to end: the real binary with the API on an ephemeral loopback port, its
//! in-process load, the dashboard and (when installed) a real Prometheus.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::support;
use crate::support::Group;
use crate::support::demo_run::{Demo, MIX_ROUTES};
use crate::support::exposition::Exposition;
use crate::support::http::get_async;
use crate::support::process::{Proc, Server, redwatch, run_to_exit};
use crate::support::tools::require_tool;

/// Requests per route on /metrics (summed over methods and status codes).
fn metrics_counts(exposition: &Exposition) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for sample in exposition.named("http_server_request_duration_seconds_count") {
        *counts
            .entry(sample.labels["http_route"].clone())
            .or_default() += sample.value as u64;
    }
    counts
}

/// Requests per route in /dashboard/data (its route table's counts).
fn dashboard_counts(data: &serde_json::Value) -> BTreeMap<String, u64> {
    data["routes"]
        .as_array()
        .expect("routes is an array")
        .iter()
        .map(|route| {
            (
                route["route"].as_str().expect("route name").to_owned(),
                route["count"].as_u64().expect("route count"),
            )
        })
        .collect()
}

/// The `all` row's count in the load summary table.
fn summary_count(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("all "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no `all` row in {stdout}"))
}

/// `the API recorded N requests; the load generator completed M` → (N, M).
fn recorded_and_completed(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("redwatch demo: the API recorded "))
        .unwrap_or_else(|| panic!("no count line in {stdout}"));
    let (recorded, rest) = line
        .split_once(" requests; the load generator completed ")
        .unwrap();
    (recorded.parse().unwrap(), rest.trim().parse().unwrap())
}

/// Children of `pid` named `name`, from /proc.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid ...`; comm may contain spaces, so split at the last ')'.
            let Some((head, tail)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map_or("", |(_, comm)| comm);
            let ppid = tail.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            comm == name && ppid == Some(pid)
        })
        .collect()
}

/// Whether process `pid` still exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, tail)| tail.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_serves_the_dashboard_and_its_counts_agree_with_metrics_and_the_load() {
    let _group = support::shared(Group::Patient);
    let mut demo = Demo::start(
        &["--duration", "5s", "--rate", "50", "--prometheus", "none"],
        &[],
    );
    assert!(
        demo.stdout()
            .contains("  Prometheus:   not running: off (--prometheus none)"),
        "{}",
        demo.stdout()
    );

    let page = get_async(demo.api, "/dashboard", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    let content_type = page.headers[hyper::header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.body.contains("<svg") && page.body.contains("dashboard/data"));
    assert!(
        !page.body.contains("://"),
        "the page must be self-contained (no external URLs)"
    );

    // Counts grow, and /dashboard/data reads the same counters as /metrics: each of its route
    // counts lies between a /metrics read before its latest sample (taken every second) and
    // one just after it. Rates need two samples with the route: at most 3.5 s of traffic.
    let first = demo.dashboard_data().await;
    let before = metrics_counts(&demo.metrics().await);
    let since = Instant::now();
    let data = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let data = demo.dashboard_data().await;
        let rates = data["requests_per_s"].as_array().unwrap();
        let with_rate = |route: &&str| {
            rates.iter().any(|line| {
                line["name"] == *route
                    && line["values"]
                        .as_array()
                        .and_then(|values| values.last()?.as_f64())
                        .is_some()
            })
        };
        let complete = MIX_ROUTES.iter().all(with_rate);
        // 1.5 s: the latest sample was taken after `before`.
        if (complete && since.elapsed() > Duration::from_millis(1500))
            || since.elapsed() > Duration::from_millis(3500)
        {
            break data;
        }
    };
    let after = metrics_counts(&demo.metrics().await);
    let dashboard = dashboard_counts(&data);
    // The load sends a sampled `traceparent` with every request, so the latency buckets carry
    // exemplars (OpenMetrics shows them) for the demo's Prometheus to keep.
    let openmetrics = get_async(
        demo.api,
        "/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
    )
    .await;
    assert!(
        openmetrics.body.lines().any(|line| line
            .starts_with("http_server_request_duration_seconds_bucket{")
            && line.contains(" # {trace_id=\"")),
        "no exemplar on a latency bucket: {}",
        openmetrics.body
    );
    assert!(
        dashboard.values().sum::<u64>() > dashboard_counts(&first).values().sum::<u64>(),
        "request counts do not grow: {first} then {data}"
    );
    for route in MIX_ROUTES {
        // A route the seeded mix has not picked yet counts 0 everywhere.
        let count = |counts: &BTreeMap<String, u64>| counts.get(route).copied().unwrap_or(0);
        let (low, high) = (count(&before), count(&after));
        let seen = dashboard.get(route).copied().unwrap_or(0);
        assert!(
            low <= seen && seen <= high,
            "{route}: /metrics said {low} then {high}, the dashboard {seen}"
        );
    }
    // Only the load's routes were recorded: the dashboard's own polling is not API traffic.
    assert!(
        dashboard
            .keys()
            .all(|route| MIX_ROUTES.contains(&route.as_str())),
        "{dashboard:?}"
    );
    // Errors are the 5xx responses: all of /error, none of the others.
    let last = |lines: &serde_json::Value, name: &str| {
        lines
            .as_array()
            .expect("lines are an array")
            .iter()
            .find(|line| line["name"] == name)
            .and_then(|line| line["values"].as_array()?.last()?.as_f64())
    };
    let error_rate = last(&data["requests_per_s"], "/error");
    assert!(error_rate.is_some_and(|rate| rate > 0.0), "{data}");
    assert_eq!(last(&data["errors_per_s"], "/error"), error_rate, "{data}");
    let error_lines: Vec<&str> = data["errors_per_s"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|line| line["name"].as_str())
        .collect();
    assert_eq!(error_lines, ["/error"], "{data}");
    for field in ["cpu_cores", "resident_memory_bytes"] {
        let values = data[field].as_array().unwrap();
        assert!(
            values.last().and_then(|v| v.as_f64()).is_some(),
            "{field} missing in {data}"
        );
    }
    // Without Prometheus the data says so, and the page says it in one line.
    assert!(data["prometheus_url"].is_null(), "{data}");

    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}; stderr: {}", demo.stderr());
    let stdout = demo.stdout();
    let (recorded, completed) = recorded_and_completed(&stdout);
    // 50 req/s on one schedule for 5 s: requests due at 0, 20 ms, ..., 4.98 s.
    assert_eq!(summary_count(&stdout), 250, "{stdout}");
    assert_eq!(completed, 250);
    assert_eq!(
        recorded, 250,
        "the API's /metrics count differs from the load's"
    );
    assert!(after.values().sum::<u64>() <= recorded);
    assert!(stdout.ends_with("redwatch demo: stopped\n"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_api_and_sigterm_stops_everything() {
    let _group = support::shared(Group::Patient);
    let Some(prometheus_binary) = require_tool("prometheus", "Debian package prometheus") else {
        return;
    };
    let binary = prometheus_binary.to_str().expect("UTF-8 path");
    let mut demo = Demo::start(
        &[
            "--rate",
            "20",
            "--prometheus",
            binary,
            "--prometheus-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let (prometheus, dir) = demo
        .prometheus
        .clone()
        .unwrap_or_else(|| panic!("Prometheus did not start: {}", demo.stdout()));
    assert!(dir.join("prometheus.yml").is_file(), "{}", dir.display());
    let running = children_named(demo.proc.pid(), "prometheus");
    assert_eq!(running.len(), 1, "one Prometheus child: {running:?}");
    // The dashboard reads its alerts from this Prometheus.
    assert_eq!(
        demo.dashboard_data().await["prometheus_url"],
        format!("http://{prometheus}").as_str()
    );

    // Both targets up, and the API's series stored, within a bounded time (scrape interval 5 s).
    let api_instance = demo.api.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = get_async(prometheus, "/api/v1/query?query=up", &[]).await;
        let stored = get_async(
            prometheus,
            "/api/v1/query?query=sum(http_server_request_duration_seconds_count)",
            &[],
        )
        .await;
        let up: serde_json::Value = serde_json::from_str(&up.body).expect("query JSON");
        let stored: serde_json::Value = serde_json::from_str(&stored.body).expect("query JSON");
        let results = up["data"]["result"].as_array().cloned().unwrap_or_default();
        let is_up = |job: &str| {
            results.iter().any(|r| {
                r["metric"]["job"] == job
                    && (job != "redwatch" || r["metric"]["instance"] == api_instance.as_str())
                    && r["value"][1] == "1"
            })
        };
        let requests: f64 = stored["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if is_up("redwatch") && is_up("redwatch-load") && requests > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not up within 30 s: up: {up}; requests: {stored}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    demo.signal(libc::SIGTERM);
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}; stderr: {}", demo.stderr());
    let stdout = demo.stdout();
    assert!(
        stdout.contains("(interrupted: partial summary)"),
        "{stdout}"
    );
    // The demo itself stopped Prometheus, gracefully, before exiting.
    assert!(
        stdout
            .contains("redwatch demo: Prometheus stopped (exit status: 0), its directory removed"),
        "{stdout}"
    );
    for pid in running {
        assert!(!is_running(pid), "Prometheus {pid} still running");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_on_path_it_runs_and_sigint_stops_it() {
    let _group = support::shared(Group::Patient);
    let empty = tempfile::tempdir().expect("temporary directory");
    let path = empty.path().to_str().expect("UTF-8 path");
    let mut demo = Demo::start(&["--rate", "40"], &[("PATH", path)]);
    assert!(
        demo.stdout().contains(
            "  Prometheus:   not running: no `prometheus` on PATH (install it, or give --prometheus PATH)"
        ),
        "{}",
        demo.stdout()
    );
    assert!(demo.stdout().contains("until Ctrl-C or SIGTERM"));
    // Runs until told to stop: traffic keeps arriving well past the default bound of `load`.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let early: u64 = dashboard_counts(&demo.dashboard_data().await)
        .values()
        .sum();
    assert!(early > 0);
    demo.signal(libc::SIGINT);
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}; stderr: {}", demo.stderr());
    let stdout = demo.stdout();
    let (recorded, completed) = recorded_and_completed(&stdout);
    assert_eq!(completed, summary_count(&stdout));
    assert!(completed >= early, "{stdout}");
    // Requests the load gave up on after the interrupt still reach the API's count.
    assert!(recorded >= completed, "{stdout}");
}

#[test]
fn bad_input_is_one_line_and_exit_2_with_nothing_started() {
    let _group = support::shared(Group::Patient);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().unwrap().to_string();
    let not_executable = tempfile::NamedTempFile::new().expect("temporary file");
    let not_executable = not_executable
        .path()
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--prometheus", "/nonexistent/prometheus"],
            "--prometheus /nonexistent/prometheus",
        ),
        (&["--prometheus", &not_executable], "not an executable file"),
        (&["--prometheus", "/bin/true"], "not a Prometheus server"),
        (&["--rate", "0"], "--rate"),
        (&["--rate", "fast"], "--rate"),
        (
            &["--listen", &taken_addr, "--prometheus", "none"],
            "cannot listen on",
        ),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["demo", "--duration", "1s"];
        argv.extend_from_slice(args);
        let finished = run_to_exit(&argv, &[], Duration::from_secs(30));
        assert_eq!(finished.status.code(), Some(2), "{argv:?}: {finished:?}");
        let stderr = finished.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "{argv:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{argv:?}: {stderr}"
        );
        assert!(finished.stdout.is_empty(), "{argv:?}: {}", finished.stdout);
    }
    // The load generator's mix is the demo's --mix (REDWATCH_MIX); checked up front.
    let finished = run_to_exit(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "1s",
            "--prometheus",
            "none",
        ],
        &[("REDWATCH_MIX", "/ep_one=x")],
        Duration::from_secs(30),
    );
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert!(
        finished
            .stderr
            .starts_with("error: invalid value '/ep_one=x' for '--mix <MIX>'")
            && finished.stderr.trim_end().lines().count() == 1,
        "{}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty(), "{}", finished.stdout);
    drop(taken);
}

/// One environment, with every variable that more than one subcommand reads, runs every
/// subcommand: a variable means the same to each of them.
#[test]
fn one_environment_runs_every_subcommand() {
    let _group = support::shared(Group::Patient);
    let temp = tempfile::tempdir().expect("temp dir");
    let out = temp.path().join("generated");
    // A fixed port for serve's metrics: the load generator, running at the same time, must not
    // read the same variable and try to bind it too.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let env: Vec<(&str, String)> = vec![
        ("REDWATCH_LISTEN", "127.0.0.1:0".to_owned()),
        ("REDWATCH_NAMING", "flask".to_owned()),
        (
            "REDWATCH_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        ),
        ("REDWATCH_LOAD_METRICS_LISTEN", "127.0.0.1:0".to_owned()),
        ("REDWATCH_RATE", "50".to_owned()),
        ("REDWATCH_DURATION", "1s".to_owned()),
        ("REDWATCH_LATENCY_SCALE", "0".to_owned()),
        ("REDWATCH_MIX", "/health=1".to_owned()),
        ("REDWATCH_PROMETHEUS", "none".to_owned()),
        ("REDWATCH_JOB", "shop".to_owned()),
        ("REDWATCH_OUT", out.to_string_lossy().into_owned()),
        ("REDWATCH_LOG_LEVEL", "warn".to_owned()),
    ];
    let command = |subcommand: &str| {
        let mut command = redwatch();
        command.envs(env.iter().map(|(name, value)| (name, value)));
        command.arg(subcommand);
        command
    };

    let generate = command("generate").output().expect("run generate");
    assert!(
        generate.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&generate.stderr)
    );
    assert!(
        out.join("flask/prometheus/rules/redwatch.rules.yml")
            .is_file()
    );
    assert!(!out.join("otel").exists(), "REDWATCH_NAMING=flask ignored");

    let env_refs: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let serve = Server::start_with_env(&["serve"], &env_refs);
    assert_ne!(
        serve.addr, serve.metrics_addr,
        "REDWATCH_METRICS_LISTEN ignored"
    );
    let api = serve.addr;

    // The environment's open loop, then a closed loop on the command line, which sets aside
    // the environment's other run mode (REDWATCH_RATE).
    for run_mode in [&[][..], &["--concurrency", "1", "--requests", "5"]] {
        let load = command("load")
            .args(["--target", &format!("http://{api}")])
            .args(run_mode)
            .output()
            .expect("run load");
        assert!(
            load.status.success(),
            "load {run_mode:?}: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }

    let demo = command("demo").output().expect("run demo");
    assert!(
        demo.status.success(),
        "demo: {}",
        String::from_utf8_lossy(&demo.stderr)
    );
    drop(serve);
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        })
        .filter(|pid| is_running(*pid))
        .collect()
}

/// SIGINT at any moment of the start, including while Prometheus is starting: the demo exits
/// within seconds and leaves no Prometheus and no temporary directory behind.
#[test]
fn ctrl_c_while_starting_leaves_nothing_behind() {
    let _group = support::shared(Group::Patient);
    let Some(_) = require_tool("prometheus", "Debian package prometheus") else {
        return;
    };
    for delay_ms in [0u64, 50, 200, 500, 1000, 2000] {
        let temp = tempfile::tempdir().expect("temp dir");
        let tmpdir = temp.path().to_string_lossy().into_owned();
        let mut demo = Proc::start(
            "redwatch demo",
            redwatch()
                .env("TMPDIR", &tmpdir)
                .args([
                    "demo",
                    "--listen",
                    "127.0.0.1:0",
                    "--prometheus-listen",
                    "127.0.0.1:0",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        let pid = libc::pid_t::try_from(demo.pid()).expect("pid fits");
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = demo.wait_within(Duration::from_secs(20));
        // Killed and reaped if it did not exit.
        drop(demo);
        // Prometheus's config lives in the demo's temporary directory, so its command line
        // names it; give a killed child a moment to go.
        let mut left = processes_mentioning(&tmpdir);
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = processes_mentioning(&tmpdir);
        }
        for pid in &left {
            if let Ok(pid) = libc::pid_t::try_from(*pid) {
                // SAFETY: kill(2) of a leftover this test started; cleanup before failing.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let remaining: Vec<_> = std::fs::read_dir(temp.path())
            .expect("read TMPDIR")
            .filter_map(|entry| entry.ok().map(|e| e.file_name()))
            .collect();
        assert!(
            status.is_some(),
            "SIGINT after {delay_ms} ms: the demo did not exit within 20 s"
        );
        assert!(
            left.is_empty(),
            "SIGINT after {delay_ms} ms: processes left behind: {left:?}"
        );
        assert!(
            remaining.is_empty(),
            "SIGINT after {delay_ms} ms: left in TMPDIR: {remaining:?}"
        );
    }
}
