//! Accuracy of the open-loop schedule against the real demo API (`redwatch serve
//! --latency-scale 0`): achieved rate, endpoint shares, and exact agreement with the server's own
//! counts. The three rates run one after another in one test so that they do not compete for
//! the CPU.

use std::time::Duration;

use crate::support;
use crate::support::load::{DEFAULT_WEIGHTS, demo_server, run_load};

const RUN_SECONDS: f64 = 10.0;

#[test]
fn open_loop_hits_the_rate_the_mix_and_the_servers_count() {
    let _heavy = support::exclusive();
    for rate in [100u64, 1000, 5000] {
        let server = demo_server();
        let url = server.url();
        let rate_text = rate.to_string();
        let run = run_load(
            &[
                "--target",
                &url,
                "--rate",
                &rate_text,
                "--duration",
                "10s",
                "--json",
                "-",
                "--seed",
                "4",
            ],
            Duration::from_secs(40),
        );
        assert!(
            run.status.success(),
            "rate {rate}: load failed: {}",
            run.stderr
        );
        let summary = run.json();
        let expected = rate as f64 * RUN_SECONDS;

        // Achieved rate within 1% of the target, judged by the generator and by the server.
        let achieved = summary["achieved_rate"].as_f64().expect("achieved_rate");
        assert!(
            (achieved / rate as f64 - 1.0).abs() <= 0.01,
            "rate {rate}: achieved {achieved} req/s"
        );
        assert_eq!(summary["target_rate"].as_f64(), Some(rate as f64));
        let requests = summary["requests"].as_u64().expect("requests");
        assert!(
            (requests as f64 / expected - 1.0).abs() <= 0.01,
            "rate {rate}: {requests} requests, expected {expected}"
        );
        assert_eq!(
            summary["errors"].as_u64(),
            Some(0),
            "rate {rate}: {}",
            run.stdout
        );
        assert_eq!(summary["dropped"].as_u64(), Some(0), "rate {rate}");

        // The server saw exactly what the generator reports, endpoint by endpoint.
        let server_counts = server.request_counts();
        let endpoints = summary["endpoints"].as_array().expect("endpoints");
        let mut server_total = 0;
        for endpoint in endpoints {
            let path = endpoint["path"].as_str().expect("path");
            let count = endpoint["count"].as_u64().expect("count");
            let seen = server_counts.get(path).copied().unwrap_or(0);
            assert_eq!(
                seen, count,
                "rate {rate}: server counted {seen} on {path}, generator {count}"
            );
            server_total += seen;
        }
        assert_eq!(
            server_total, requests,
            "rate {rate}: server total vs generator"
        );
        assert!(
            (server_total as f64 / RUN_SECONDS / rate as f64 - 1.0).abs() <= 0.01,
            "rate {rate}: server saw {server_total} requests in {RUN_SECONDS} s"
        );

        // Each endpoint's share matches its weight within 4 standard errors.
        let total_weight: u64 = DEFAULT_WEIGHTS.iter().map(|(_, w)| w).sum();
        for (path, weight) in DEFAULT_WEIGHTS {
            let endpoint = endpoints
                .iter()
                .find(|e| e["path"] == path)
                .unwrap_or_else(|| panic!("{path} missing from the summary"));
            let share = endpoint["count"].as_u64().expect("count") as f64 / requests as f64;
            let p = weight as f64 / total_weight as f64;
            let standard_error = (p * (1.0 - p) / requests as f64).sqrt();
            assert!(
                (share - p).abs() <= 4.0 * standard_error,
                "rate {rate}: {path} share {share:.4}, expected {p:.4} ± {:.4}",
                4.0 * standard_error
            );
            let status = if path == "/error" { "500" } else { "200" };
            assert_eq!(
                endpoint["status"][status], endpoint["count"],
                "rate {rate}: {path} statuses"
            );
        }
    }
}
