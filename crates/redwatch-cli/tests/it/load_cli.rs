//! `redwatch load` behaviour: input errors, failing targets, closed loop, metrics, exit codes.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::exposition::Exposition;
use crate::support::http;
use crate::support::load::{demo_server, run_load, spawn_load};
use crate::support::process::{Finished, Proc, Server, redwatch};
use crate::support::{Group, MachineGuard};

const LIMIT: Duration = Duration::from_secs(30);

/// The machine for the timing group and a fresh demo server to aim at, with its URL.
fn demo_target() -> (MachineGuard, Server, String) {
    let group = support::shared(Group::Timing);
    let server = demo_server();
    let url = server.url();
    (group, server, url)
}

/// Runs `redwatch load --target TARGET ARGS --json -`, which must end successfully within
/// [`LIMIT`]; the run and its JSON summary.
#[track_caller]
fn load_summary(target: &str, args: &[&str]) -> (Finished, serde_json::Value) {
    let run = run_load(
        &[&["--target", target], args, &["--json", "-"]].concat(),
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let summary = run.json();
    (run, summary)
}

/// The run ended (from its start) within `limit`.
#[track_caller]
fn assert_ended_within(run: &Finished, limit: Duration) {
    assert!(run.elapsed < limit, "took {:?}", run.elapsed);
}

#[test]
fn bad_input_gets_one_line_and_exit_2() {
    let _group = support::shared(Group::Timing);
    let cases: &[&[&str]] = &[
        &["--target", "127.0.0.1:5000", "--rate", "10"],
        &["--target", "ftp://127.0.0.1:5000", "--rate", "10"],
        &["--target", "http://", "--rate", "10"],
        &["--rate", "10", "--mix", "/a=0"],
        &["--rate", "10", "--mix", "ep_one=1"],
        &["--rate", "10", "--mix", "/a=1,,/b=2"],
        &["--rate", "0"],
        &["--rate=-5"],
        &["--rate", "abc"],
        &["--concurrency", "0"],
        &["--rate", "10", "--duration", "10parsecs"],
        &["--rate", "10", "--timeout", "0s"],
        &["--rate-profile", "square:1..2"],
        &["--rate", "10", "--fail-on-error-rate", "150%"],
        &["--duration", "1s"],
        &["--rate", "10", "--threshold", "p99<300"],
        &["--rate", "10", "--threshold", "bogus"],
        &["--rate", "10", "--threshold", "/nope:p99<1s"],
        &["--concurrency", "2", "--threshold", "rate>=99%"],
    ];
    for args in cases {
        let run = run_load(args, LIMIT);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: expected one line, got:\n{}",
            run.stderr
        );
        assert!(lines[0].starts_with("error: "), "{args:?}: {}", run.stderr);
        assert!(
            run.stdout.is_empty(),
            "{args:?}: printed a summary for bad input"
        );
    }
}

#[test]
fn bad_thresholds_are_named_in_the_error() {
    let _group = support::shared(Group::Timing);
    for (expr, reason) in [
        ("p99<300", "unit"),
        ("p99<<1s", "duration"),
        ("/nope:p99<1s", "no endpoint \"/nope\""),
        ("latency<1s", "unknown metric"),
    ] {
        let run = run_load(&["--rate", "10", "--threshold", expr], LIMIT);
        assert_eq!(run.status.code(), Some(2), "{expr}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{expr:?}")) && run.stderr.contains(reason),
            "{expr}: {}",
            run.stderr
        );
    }
}

/// A port with nothing listening: bind, note the port, close.
fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[test]
fn refused_connections_are_counted_and_the_run_ends_on_time() {
    let _group = support::shared(Group::Timing);
    let target = format!("http://{}", refused_addr());
    let (run, summary) = load_summary(&target, &["--rate", "200", "--duration", "2s"]);
    assert_eq!(summary["requests"].as_u64(), Some(400));
    assert_eq!(summary["errors"].as_u64(), Some(400));
    assert_eq!(summary["error_kinds"]["connect"].as_u64(), Some(400));
    assert_ended_within(&run, Duration::from_secs(6));

    // Closed loop backs off instead of spinning against a dead target.
    let (run, summary) = load_summary(&target, &["--concurrency", "4", "--duration", "2s"]);
    let attempts = summary["requests"].as_u64().expect("requests");
    // Each worker's pauses double from 10 ms to 1 s: about 8 attempts in 2 s, not thousands.
    assert!((4..=60).contains(&attempts), "{attempts} attempts in 2 s");
    assert_eq!(summary["error_kinds"]["connect"].as_u64(), Some(attempts));
    assert_ended_within(&run, Duration::from_secs(6));
}

/// A server that accepts connections and then does `behaviour` with each, on its own threads.
struct RawServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl RawServer {
    fn start(behaviour: fn(std::net::TcpStream)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nonblocking(false);
                        std::thread::spawn(move || behaviour(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            stop,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads the request and holds the connection open without answering.
fn hang(mut stream: std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buffer = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
    }
}

/// Reads the request head and closes the connection without a response.
fn slam(mut stream: std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buffer = [0u8; 1024];
    let _ = stream.read(&mut buffer);
}

#[test]
fn open_loop_backs_off_from_a_target_that_drops_every_connection() {
    let _group = support::shared(Group::Timing);
    let server = RawServer::start(slam);
    let url = server.url();
    let (_, summary) = load_summary(&url, &["--rate", "200", "--duration", "2s"]);
    // The schedule is kept and every request is counted as failed...
    assert_eq!(summary["requests"].as_u64(), Some(400));
    assert_eq!(summary["errors"].as_u64(), Some(400));
    // ...but new connections back off (10 ms doubling to 1 s): a handful of attempts, not 400.
    let accepted = server.accepted.load(Ordering::Relaxed);
    assert!(
        (1..=40).contains(&accepted),
        "{accepted} connections opened"
    );
}

#[test]
fn hanging_target_times_out_and_the_run_ends_on_time() {
    let _group = support::shared(Group::Timing);
    let server = RawServer::start(hang);
    let url = server.url();
    let (run, summary) = load_summary(
        &url,
        &["--rate", "50", "--duration", "1s", "--timeout", "300ms"],
    );
    assert_eq!(summary["requests"].as_u64(), Some(50));
    assert_eq!(summary["error_kinds"]["timeout"].as_u64(), Some(50));
    let max = summary["latency_ms"]["max"].as_f64().expect("max");
    assert!(
        (300.0..1000.0).contains(&max),
        "timed-out requests end at the timeout, max {max}"
    );
    // 1 s of sending + 0.3 s timeout + start-up; never the 10 s the server would hold.
    assert_ended_within(&run, Duration::from_secs(5));

    // Closed loop: each worker times out, backs off, reconnects, and stops on time.
    let (run, summary) = load_summary(
        &url,
        &[
            "--concurrency",
            "2",
            "--duration",
            "1s",
            "--timeout",
            "300ms",
        ],
    );
    let requests = summary["requests"].as_u64().expect("requests");
    assert!((2..=10).contains(&requests), "{requests} requests");
    assert_eq!(summary["error_kinds"]["timeout"].as_u64(), Some(requests));
    assert_ended_within(&run, Duration::from_secs(5));
}

#[test]
fn in_flight_limit_queues_then_drops() {
    let _group = support::shared(Group::Timing);
    let server = RawServer::start(hang);
    let url = server.url();
    let (run, summary) = load_summary(
        &url,
        &[
            "--rate",
            "100",
            "--duration",
            "1s",
            "--timeout",
            "1500ms",
            "--max-in-flight",
            "5",
        ],
    );
    // Five requests occupy every slot past the end of the window; the other 95 never leave.
    assert_eq!(summary["sent"].as_u64(), Some(5), "{}", run.stdout);
    assert_eq!(summary["dropped"].as_u64(), Some(95), "{}", run.stdout);
    assert!(
        summary["max_backlog"].as_u64().expect("backlog") >= 50,
        "{}",
        run.stdout
    );
    assert_eq!(summary["error_kinds"]["timeout"].as_u64(), Some(5));
}

#[test]
fn resets_are_counted_as_resets() {
    let _group = support::shared(Group::Timing);
    let server = RawServer::start(slam);
    let url = server.url();
    let (run, summary) = load_summary(&url, &["--rate", "50", "--duration", "1s"]);
    assert_eq!(summary["requests"].as_u64(), Some(50));
    assert_eq!(
        summary["error_kinds"]["reset"].as_u64(),
        Some(50),
        "{}",
        run.stdout
    );
}

#[test]
fn closed_loop_counts_match_the_server_and_seed_repeats_the_sequence() {
    let (_group, server, url) = demo_target();
    let run = |seed: &str| {
        let args = ["--concurrency", "4", "--requests", "3000", "--seed", seed];
        load_summary(&url, &args).1
    };
    let first = run("42");
    assert_eq!(first["requests"].as_u64(), Some(3000));
    assert_eq!(first["mode"], "closed");
    assert!(first["target_rate"].is_null());
    let again = run("42");
    let other = run("43");
    let counts = |summary: &serde_json::Value| -> Vec<u64> {
        summary["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| e["count"].as_u64().expect("count"))
            .collect()
    };
    assert_eq!(counts(&first), counts(&again), "same seed, same sequence");
    assert_ne!(
        counts(&first),
        counts(&other),
        "another seed, another sequence"
    );
    let server_total: u64 = server
        .request_counts()
        .iter()
        .filter(|(route, _)| route.starts_with("/e"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(server_total, 9000, "server count over three runs");
}

#[test]
fn h2c_works_in_both_modes() {
    let (_group, _server, url) = demo_target();
    for mode in [["--rate", "200"], ["--concurrency", "2"]] {
        let run = run_load(
            &[
                "--target",
                &url,
                mode[0],
                mode[1],
                "--duration",
                "1s",
                "--h2c",
                "--json",
                "-",
            ],
            LIMIT,
        );
        assert!(run.status.success(), "{mode:?}: {}", run.stderr);
        let summary = run.json();
        assert_eq!(
            summary["errors"].as_u64(),
            Some(0),
            "{mode:?}: {}",
            run.stdout
        );
        assert!(
            summary["requests"].as_u64().expect("requests") >= 200,
            "{mode:?}"
        );
    }
}

#[test]
fn rate_profile_step_and_methods_in_the_mix() {
    let (_group, _server, url) = demo_target();
    let (run, summary) = load_summary(
        &url,
        &[
            "--rate-profile",
            "step:50@0s,150@1s",
            "--duration",
            "2s",
            "--mix",
            "/users/7=1,POST /health=1",
        ],
    );
    assert_eq!(summary["requests"].as_u64(), Some(200));
    assert_eq!(summary["target_rate"].as_f64(), Some(100.0));
    assert_eq!(summary["rate_profile"], "step:50@0s,150@1s");
    let endpoints = summary["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints[1]["method"], "POST");
    // The demo API routes /health for GET only: a POST is answered 405, which proves the method
    // went out as written.
    assert!(
        endpoints[1]["status"]["405"].as_u64().is_some(),
        "{}",
        run.stdout
    );
    assert!(
        endpoints[0]["status"]["200"].as_u64().is_some(),
        "{}",
        run.stdout
    );
}

#[test]
fn ramp_and_sine_profiles_send_what_their_integral_says() {
    let (_group, _server, url) = demo_target();
    let requests = |profile: &str, duration: &str| {
        let (_, summary) = load_summary(&url, &["--rate-profile", profile, "--duration", duration]);
        summary["requests"].as_u64().expect("requests")
    };
    // The first second of a ramp from 50 to 150 req/s over 2 s: ∫ (50 + 50t) dt = 75, where a
    // constant average rate would give 100.
    let ramp = requests("ramp:50..150:2s", "1s");
    assert!(ramp.abs_diff(75) <= 1, "ramp sent {ramp}");
    // A sine between 50 and 150 req/s with a 2 s period starts at the middle and rises: over the
    // first 0.5 s, 100·0.5 + (50/π)(1 − cos(π/2)) ≈ 65.9.
    let sine = requests("sine:50..150:2s", "500ms");
    assert!(sine.abs_diff(66) <= 1, "sine sent {sine}");
}

#[test]
fn fail_on_error_rate_sets_the_exit_code() {
    let (_group, _server, url) = demo_target();
    // The default mix sends 1 in 11 requests to /error (500): about 9%.
    let run_failing_above = |threshold: &str| {
        let args = ["--rate", "500", "--duration", "1s"];
        let args = [
            &["--target", &url][..],
            &args,
            &["--fail-on-error-rate", threshold],
        ];
        run_load(&args.concat(), LIMIT)
    };
    let run = run_failing_above("5%");
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("above --fail-on-error-rate"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("all "),
        "summary still printed: {}",
        run.stdout
    );
    let run = run_failing_above("0.2");
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
}

#[test]
fn thresholds_are_reported_and_set_the_exit_code() {
    let (_group, _server, url) = demo_target();
    let run = |thresholds: &[&str]| {
        let mut args = vec!["--target", &url, "--rate", "200", "--duration", "1s"];
        for threshold in thresholds {
            args.extend(["--threshold", threshold]);
        }
        args.extend(["--json", "-"]);
        run_load(&args, LIMIT)
    };
    // The default mix sends 1 in 11 requests to /error (500): about 9%.
    let passing = [
        "p99<5s",
        "/ep_one:p90<5s",
        "dropped==0",
        "rate>=95%",
        "error_rate<20%",
        "/ep_one:error_rate==0",
    ];
    let ok = run(&passing);
    assert_eq!(ok.status.code(), Some(0), "{}", ok.stderr);
    let summary = ok.json();
    let results = summary["thresholds"].as_array().expect("thresholds");
    assert_eq!(results.len(), passing.len());
    for (result, expr) in results.iter().zip(passing) {
        assert_eq!(result["expr"], expr);
        assert_eq!(result["passed"], true, "{result}");
    }
    // Latency is the figure from the intended send time, as in the summary.
    assert_eq!(results[0]["value"], summary["latency_ms"]["p99"]);
    assert_eq!(
        results[1]["value"],
        summary["endpoints"][0]["latency_ms"]["p90"]
    );
    assert_eq!(results[2]["value"].as_f64(), Some(0.0));
    let error_rate = summary["error_rate"].as_f64().expect("error_rate");
    assert!((0.03..0.2).contains(&error_rate), "{error_rate}");
    assert_eq!(results[4]["value"].as_f64(), Some(error_rate));
    assert!(
        ok.stderr.contains("thresholds: 6 passed, 0 failed"),
        "{}",
        ok.stderr
    );

    let failing = run(&["error_rate<1%", "max<1us", "dropped==0"]);
    assert_eq!(failing.status.code(), Some(1), "{}", failing.stderr);
    let summary = failing.json();
    let passed: Vec<bool> = summary["thresholds"]
        .as_array()
        .expect("thresholds")
        .iter()
        .map(|t| t["passed"].as_bool().expect("passed"))
        .collect();
    assert_eq!(passed, [false, false, true]);
    // The table (on stderr with --json -) lists each threshold with its measured value.
    for line in [
        "thresholds: 1 passed, 2 failed",
        "FAIL  error_rate<1%  (measured ",
        "FAIL  max<1us  (measured ",
        "pass  dropped==0  (measured 0)",
        "redwatch load: threshold max<1us failed: measured ",
    ] {
        assert!(
            failing.stderr.contains(line),
            "{line:?}:\n{}",
            failing.stderr
        );
    }
}

/// Answers each request after 50 ms, one at a time per connection.
fn slow_answer(mut stream: std::net::TcpStream) {
    use std::io::Write;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buffer = [0u8; 4096];
    let mut pending = Vec::new();
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buffer[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            std::thread::sleep(Duration::from_millis(50));
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(answer).is_err() {
                return;
            }
        }
    }
}

#[test]
fn latency_thresholds_judge_the_latency_from_the_intended_send_time() {
    let _group = support::shared(Group::Timing);
    let server = RawServer::start(slow_answer);
    let url = server.url();
    // One request at a time, 50 ms each, asked for at 100/s: requests queue behind each other.
    // Each takes 50 ms from its actual send, but up to ~1 s from its intended one.
    let run = run_load(
        &[
            "--target",
            &url,
            "--rate",
            "100",
            "--duration",
            "1s",
            "--max-in-flight",
            "1",
            "--mix",
            "/slow=1",
            "--threshold",
            "p99<300ms",
            "--json",
            "-",
        ],
        LIMIT,
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let summary = run.json();
    let from_send = summary["latency_from_send_ms"]["p99"]
        .as_f64()
        .expect("p99");
    assert!(from_send < 300.0, "from send {from_send}");
    let result = &summary["thresholds"][0];
    assert_eq!(result["passed"], false);
    let value = result["value"].as_f64().expect("value");
    assert!(value > 300.0, "{result}");
    assert_eq!(result["value"], summary["latency_ms"]["p99"]);
}

/// SIGINT (Ctrl-C) and SIGTERM (`docker stop`, Kubernetes, `timeout`) both end the run with the
/// partial summary and the --json file, and counts that match what the server saw.
fn interrupted_run_writes_the_partial_summary(signal_name: &str) {
    let server = demo_server();
    let url = server.url();
    let dir = std::env::temp_dir().join(format!(
        "redwatch-load-int-{signal_name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json_path = dir.join("summary.json");
    let json_arg = json_path.to_string_lossy().into_owned();
    let load = spawn_load(&[
        "--target",
        &url,
        "--rate",
        "100",
        "--duration",
        "60s",
        "--mix",
        "/health=1",
        "--json",
        &json_arg,
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    load.signal(signal_name);
    let run = load.finish(Duration::from_secs(10));
    assert_eq!(run.status.code(), Some(130), "{}", run.stderr);
    assert!(run.stdout.contains("interrupted"), "{}", run.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("summary written"))
            .expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(summary["interrupted"], true);
    let requests = summary["requests"].as_u64().expect("requests");
    assert!(
        (50..=300).contains(&requests),
        "{requests} requests in ~1.5 s at 100/s"
    );
    assert_eq!(summary["dropped"].as_u64(), Some(0));
    // /health answers at once, so nothing is in flight at the signal: the server counted exactly
    // the requests the summary reports.
    let served = server.request_counts().get("/health").copied().unwrap_or(0);
    assert_eq!(
        served, requests,
        "server counts {served}, summary {requests}"
    );
}

#[test]
fn ctrl_c_prints_the_partial_summary() {
    let _group = support::shared(Group::Timing);
    interrupted_run_writes_the_partial_summary("INT");
}

#[test]
fn sigterm_prints_the_partial_summary() {
    let _group = support::shared(Group::Timing);
    interrupted_run_writes_the_partial_summary("TERM");
}

#[test]
fn a_signal_right_at_the_start_is_handled() {
    let _group = support::shared(Group::Timing);
    // The handlers are installed before the run announces itself: a signal sent the moment the
    // first line appears still ends the run with a summary, not the default action (death).
    let server = demo_server();
    let url = server.url();
    for signal_name in ["INT", "TERM"] {
        let mut load = spawn_load(&["--target", &url, "--rate", "100", "--duration", "60s"]);
        let stderr = load.child.stderr.take().expect("stderr");
        let mut first = String::new();
        BufReader::new(stderr)
            .read_line(&mut first)
            .expect("read the first line");
        load.signal(signal_name);
        let run = load.finish(Duration::from_secs(10));
        assert_eq!(
            run.status.code(),
            Some(130),
            "SIG{signal_name} after {first:?}: {:?}",
            run.status
        );
        assert!(run.stdout.contains("interrupted"), "{}", run.stdout);
    }
}

#[test]
fn metrics_are_served_during_and_after_the_run() {
    let (_group, _server, url) = demo_target();
    let dir = std::env::temp_dir().join(format!("redwatch-load-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json_path = dir.join("summary.json");
    let json_arg = json_path.to_string_lossy().into_owned();
    let mut load = spawn_load(&[
        "--target",
        &url,
        "--rate",
        "300",
        "--duration",
        "1s",
        "--metrics-listen",
        "127.0.0.1:0",
        "--linger",
        "5s",
        "--json",
        &json_arg,
    ]);
    let stderr = load.child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let metrics_addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("metrics line before stderr closes")
            .expect("read stderr");
        if let Some(rest) = line.strip_prefix("redwatch load metrics on http://") {
            break rest
                .trim_end_matches("/metrics")
                .parse()
                .expect("metrics address");
        }
    };
    // Wait for the summary (written before lingering), then scrape while the process lingers.
    let started = Instant::now();
    while !json_path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no summary written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("summary")).expect("JSON");
    let response = http::get(metrics_addr, "/metrics", &[]);
    let body = response.body;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(response.status, 200);
    let exposition = Exposition::parse(&body);
    let requests = exposition.sum_by("redwatch_load_requests_total", "endpoint");
    let total: u64 = requests.values().sum();
    assert_eq!(
        total,
        summary["requests"].as_u64().expect("requests"),
        "{body}"
    );
    assert_eq!(total, 300);
    let durations = exposition.sum_by("redwatch_load_request_duration_seconds_count", "endpoint");
    assert_eq!(durations.values().sum::<u64>(), 300);
    for needle in [
        "redwatch_load_request_duration_seconds_bucket{le=\"0.005\",endpoint=\"/ep_one\"}",
        "redwatch_load_request_duration_seconds_bucket{le=\"7.5\",endpoint=\"/ep_one\"}",
        "redwatch_load_requests_total{endpoint=\"/error\",status=\"500\"}",
        "redwatch_load_errors_total{endpoint=\"/ep_one\",kind=\"timeout\"} 0",
        "# TYPE redwatch_load_target_rate gauge",
        "redwatch_load_in_flight 0",
        "# TYPE redwatch_load_schedule_lag_seconds gauge",
        "redwatch_load_dropped_total 0",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
    let run = load.finish(Duration::from_secs(15));
    assert!(run.status.success());
    // It lingered: 1 s run + 5 s linger, measured from before the scrape.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "exited early: {:?}",
        started.elapsed()
    );
}

#[test]
fn no_progress_output_without_a_terminal() {
    let (_group, _server, url) = demo_target();
    let run = run_load(
        &["--target", &url, "--rate", "100", "--duration", "1s"],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    // Only the start line goes to stderr when it is not a terminal.
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("target 100.0 req/s, achieved 100.0 req/s"),
        "{}",
        run.stdout
    );
    for header in [
        "endpoint", "count", "rate/s", "status", "errors", "p50", "p90", "p99", "p99.9", "max",
    ] {
        assert!(
            run.stdout.contains(header),
            "table lacks {header}: {}",
            run.stdout
        );
    }
}

#[test]
fn progress_is_drawn_on_a_terminal() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::Stdio;

    let (_group, _server, url) = demo_target();
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the given ints; the null pointers ask for
    // no name, default terminal settings and default window size.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // Tests run as threads of one process: a child that another test spawns meanwhile must not
    // inherit either end, or reading the master would not end when this child exits.
    for fd in [master, slave] {
        // SAFETY: fcntl on descriptors this test just created and owns.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        assert_eq!(rc, 0, "cannot set FD_CLOEXEC");
    }
    // SAFETY: both descriptors were just created by openpty and are owned by nobody else.
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    };
    let mut load = {
        // The Command (and with it the parent's copy of the terminal's slave end) is dropped
        // right after spawning, so reading the master ends when the child exits.
        Proc::start(
            "redwatch load",
            redwatch()
                .args([
                    "load",
                    "--target",
                    &url,
                    "--rate",
                    "100",
                    "--duration",
                    "2s",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::from(slave)),
        )
    };
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        // EIO once the child has exited and the slave side is closed.
        while let Ok(n) = master.read(&mut buffer) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let started = Instant::now();
    while load.child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < LIMIT, "load did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let terminal = reader.join().expect("reader");
    assert!(
        terminal.contains("in flight") && terminal.contains("(target 100)"),
        "no progress line on the terminal:\n{terminal}"
    );
}

#[test]
fn open_loop_stops_after_the_requested_count() {
    let (_group, _server, url) = demo_target();
    let (run, summary) = load_summary(&url, &["--rate", "1000", "--requests", "500"]);
    assert_eq!(summary["requests"].as_u64(), Some(500));
    assert_eq!(summary["sent"].as_u64(), Some(500));
    // 500 requests at 1000/s span half a second; the run does not wait for a --duration.
    let duration = summary["duration_s"].as_f64().expect("duration_s");
    assert!((0.49..0.6).contains(&duration), "duration {duration}");
    assert_ended_within(&run, Duration::from_secs(5));
}
