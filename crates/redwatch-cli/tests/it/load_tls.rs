//! `redwatch load` against https targets: a local rustls server with a certificate the test
//! makes; `--cacert`, `--insecure`, HTTP/2 by ALPN and `--connections`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support;
use crate::support::Group;
use crate::support::load::run_load;
use crate::support::process::Finished;
use crate::support::tls::TlsServer;

const LIMIT: Duration = Duration::from_secs(30);
const BOTH: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn load(server: &TlsServer, args: &[&str]) -> Finished {
    let url = server.url();
    run_load(
        &[&["--target", &url], args, &["--json", "-"]].concat(),
        LIMIT,
    )
}

fn cacert(server: &TlsServer) -> String {
    server.cert_file.to_str().expect("utf-8 path").to_owned()
}

/// Requests per server-side connection, most used first.
fn per_connection(server: &TlsServer) -> Vec<usize> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for seen in server.seen() {
        *counts.entry(seen.connection).or_default() += 1;
    }
    let mut counts: Vec<usize> = counts.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts
}

#[test]
fn https_with_cacert_speaks_http2_by_alpn_or_http1() {
    let _group = support::shared(Group::Timing);
    for (alpn, version) in [(&BOTH[..], "HTTP/2.0"), (&BOTH[1..], "HTTP/1.1")] {
        let server = TlsServer::start(alpn);
        let ca = cacert(&server);
        let run = load(
            &server,
            &[
                "--cacert",
                &ca,
                "--rate",
                "100",
                "--duration",
                "1s",
                "--mix",
                "/secure=1",
            ],
        );
        assert!(run.status.success(), "{}", run.stderr);
        let summary = run.json();
        assert_eq!(summary["requests"].as_u64(), Some(100), "{}", run.stdout);
        assert_eq!(summary["errors"].as_u64(), Some(0), "{}", run.stdout);
        assert_eq!(summary["bytes_received"].as_u64(), Some(600));
        let seen = server.seen();
        assert_eq!(seen.len(), 100);
        assert!(
            seen.iter()
                .all(|s| s.version == version && s.path == "/secure"),
            "{version}: {seen:?}"
        );
        // Closed loop too: each worker with its own TLS connection.
        let run = load(
            &server,
            &["--cacert", &ca, "--concurrency", "2", "--requests", "60"],
        );
        assert!(run.status.success(), "{}", run.stderr);
        assert_eq!(run.json()["errors"].as_u64(), Some(0), "{}", run.stdout);
    }
}

#[test]
fn an_unknown_certificate_fails_the_requests_unless_insecure() {
    let _group = support::shared(Group::Timing);
    let server = TlsServer::start(&BOTH);
    let run = load(&server, &["--rate", "50", "--duration", "1s"]);
    assert!(run.status.success(), "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["requests"].as_u64(), Some(50));
    assert_eq!(
        summary["error_kinds"]["connect"].as_u64(),
        Some(50),
        "{}",
        run.stdout
    );
    assert!(server.seen().is_empty());
    // The reason is said once, with the way out.
    let reports = run
        .stderr
        .matches("TLS handshake with localhost failed")
        .count();
    assert_eq!(reports, 1, "{}", run.stderr);
    assert!(run.stderr.contains("--cacert"), "{}", run.stderr);

    let run = load(&server, &["--insecure", "--rate", "50", "--duration", "1s"]);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.json()["errors"].as_u64(), Some(0), "{}", run.stdout);
    assert_eq!(server.seen().len(), 50);
}

#[test]
fn http2_spreads_open_loop_over_the_connections() {
    let _group = support::shared(Group::Timing);
    for connections in [4usize, 1] {
        let server = TlsServer::start(&BOTH);
        let ca = cacert(&server);
        let n = connections.to_string();
        let run = load(
            &server,
            &[
                "--cacert",
                &ca,
                "--rate",
                "400",
                "--duration",
                "1s",
                "--connections",
                &n,
            ],
        );
        assert!(run.status.success(), "{}", run.stderr);
        assert_eq!(run.json()["errors"].as_u64(), Some(0), "{}", run.stdout);
        let counts = per_connection(&server);
        let total: usize = counts.iter().sum();
        assert_eq!(total, 400);
        assert!(counts.len() >= connections, "{connections}: {counts:?}");
        // Requests take the connections in turn: each carries about 1/N of them (a request or
        // two of the first moments may open one more before HTTP/2 is known).
        for count in &counts[..connections] {
            let share = *count as f64 / total as f64;
            let expected = 1.0 / connections as f64;
            assert!((share - expected).abs() < 0.1, "{connections}: {counts:?}");
        }
    }
}

#[test]
fn compare_server_reads_https_metrics_with_the_targets_trust() {
    let _group = support::shared(Group::Timing);
    let server = TlsServer::start(&BOTH);
    let ca = cacert(&server);
    let run = load(
        &server,
        &[
            "--cacert",
            &ca,
            "--rate",
            "50",
            "--duration",
            "1s",
            "--mix",
            "/secure=1",
            "--compare-server",
        ],
    );
    assert!(run.status.success(), "{}", run.stderr);
    let summary = run.json();
    let line = &summary["server_comparison"]["endpoints"][0];
    assert_eq!(line["server"]["route"], "/secure", "{summary}");
    assert_eq!(line["server"]["count"].as_u64(), Some(50), "{summary}");
    assert_eq!(line["client"]["count"].as_u64(), Some(50));
}

#[test]
fn tls_flags_are_checked() {
    let _group = support::shared(Group::Timing);
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let junk = junk.to_str().expect("utf-8 path");
    for (args, needle) in [
        (
            &["--target", "http://127.0.0.1:1", "--insecure"][..],
            "https:// targets only",
        ),
        (
            &["--target", "https://localhost:1", "--cacert", junk],
            "junk.pem",
        ),
        (
            &[
                "--target",
                "https://localhost:1",
                "--cacert",
                "/nonexistent/ca.pem",
            ],
            "/nonexistent/ca.pem",
        ),
        (&["--target", "https://localhost:1", "--h2c"], "ALPN"),
        (
            &[
                "--target",
                "https://localhost:1",
                "--insecure",
                "--cacert",
                junk,
            ],
            "--cacert",
        ),
    ] {
        let run = run_load(&[args, &["--rate", "10"]].concat(), LIMIT);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}
