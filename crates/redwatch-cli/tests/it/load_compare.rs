//! `redwatch load --compare-server`: the client's count and latency next to the server's, from
//! the target's own metrics in both naming presets.

use std::time::Duration;

use serde_json::Value;

use crate::support;
use crate::support::Group;
use crate::support::load::{RecordingServer, run_load};
use crate::support::process::Server;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs a comparison against `url`; the JSON summary.
fn compare(url: &str, mix: &str) -> (Value, String) {
    let run = run_load(
        &[
            "--target",
            url,
            "--rate",
            "100",
            "--duration",
            "2s",
            "--mix",
            mix,
            "--compare-server",
            "--json",
            "-",
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    (run.json(), run.stderr)
}

fn line<'a>(summary: &'a Value, endpoint: &str) -> &'a Value {
    summary["server_comparison"]["endpoints"]
        .as_array()
        .expect("comparison endpoints")
        .iter()
        .find(|e| e["endpoint"] == endpoint)
        .unwrap_or_else(|| panic!("no {endpoint} in {summary}"))
}

#[test]
fn the_servers_counts_and_quantiles_stand_next_to_the_clients() {
    let _group = support::shared(Group::Timing);
    // /ep_one sleeps uniformly in [0, 20 ms] at --latency-scale 0.1.
    let server = Server::start(&["--latency-scale", "0.1"]);
    let (summary, table) = compare(&server.url(), "/ep_one=2,/users/7=1,/error=1,/nowhere=1");
    let comparison = &summary["server_comparison"];
    assert_eq!(comparison["metric"], "http_server_request_duration_seconds");
    for (endpoint, route) in [
        ("/ep_one", "/ep_one"),
        ("/users/7", "/users/{id}"),
        ("/error", "/error"),
    ] {
        let line = line(&summary, endpoint);
        let client = line["client"]["count"].as_u64().expect("client count");
        assert!(client > 0, "{line}");
        assert_eq!(line["server"]["route"], route, "{line}");
        assert_eq!(line["server"]["count"].as_u64(), Some(client), "{line}");
    }
    assert!(line(&summary, "/nowhere")["server"].is_null());
    // OTel buckets 5, 10, 25, 50 ms: uniform [0, 20 ms] puts p50 near 10 ms and p99 in (10, 25]
    // (in (25, 50] should a request or two be slowed past 25 ms on a busy machine).
    let ep_one = &line(&summary, "/ep_one")["server"];
    let (p50, p99) = (
        ep_one["p50_ms"].as_f64().expect("p50"),
        ep_one["p99_ms"].as_f64().expect("p99"),
    );
    assert!((5.0..=15.0).contains(&p50), "{ep_one}");
    assert!(p99 > 10.0 && p99 <= 50.0, "{ep_one}");
    let client_p99 = line(&summary, "/ep_one")["client"]["p99_ms"]
        .as_f64()
        .expect("p99");
    assert!((15.0..60.0).contains(&client_p99), "{summary}");
    for needle in [
        "client and server (server: http_server_request_duration_seconds",
        "/users/{id}",
        "(no route)",
    ] {
        assert!(table.contains(needle), "{needle:?} in:\n{table}");
    }
}

#[test]
fn the_flask_preset_is_read_too() {
    let _group = support::shared(Group::Timing);
    let server = Server::start(&["--latency-scale", "0", "--naming", "flask"]);
    let (summary, _) = compare(&server.url(), "/ep_one=1,/users/7=1");
    assert_eq!(
        summary["server_comparison"]["metric"],
        "flask_http_request_duration_seconds"
    );
    for (endpoint, route) in [("/ep_one", "/ep_one"), ("/users/7", "/users/{id}")] {
        let line = line(&summary, endpoint);
        assert_eq!(line["server"]["route"], route, "{line}");
        assert_eq!(line["server"]["count"], line["client"]["count"], "{line}");
    }
}

#[test]
fn a_target_without_known_metrics_is_said_so_and_bad_flags_are_refused() {
    let _group = support::shared(Group::Timing);
    let server = RecordingServer::start();
    let (summary, table) = compare(&server.url(), "/a=1");
    assert!(
        summary["server_comparison"]["metric"].is_null(),
        "{summary}"
    );
    assert!(summary["server_comparison"]["endpoints"][0]["server"].is_null());
    assert!(
        table.contains("server: no request duration histogram"),
        "{table}"
    );

    let run = run_load(
        &[
            "--rate",
            "10",
            "--server-metrics",
            "http://127.0.0.1:1/metrics",
        ],
        LIMIT,
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--compare-server"), "{}", run.stderr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let run = run_load(
        &[
            "--target",
            &format!("http://{addr}"),
            "--rate",
            "10",
            "--compare-server",
        ],
        LIMIT,
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot read the target's metrics"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "nothing was sent: {}", run.stdout);
}
