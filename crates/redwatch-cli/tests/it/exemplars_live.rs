//! Exemplars end to end: `redwatch serve` keeps the trace of traced requests on its latency
//! buckets, a real Prometheus started with `--enable-feature=exemplar-storage` scrapes them
//! with the generated configuration, and `/api/v1/query_exemplars` returns the trace ids that
//! were sent — both those this test sends and those of `redwatch load --traceparent`. Fails when
//! CI is set and Prometheus is missing; everything started is stopped on success or panic.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support;
use crate::support::Group;
use crate::support::generate::{COMPRESSED, generate_ok, prometheus_command};
use crate::support::http::{get, get_json, url_encode};
use crate::support::live_stack::{daemon, query, tail, wait_ready};
use crate::support::load::run_load;
use crate::support::process::{Proc, Server, free_port, loopback};
use crate::support::tools::require_tool;

const LIMIT: Duration = Duration::from_secs(60);
const BUCKETS: &str = "http_server_request_duration_seconds_bucket";

/// One exemplar as Prometheus returns it: the series' labels, its own labels and value.
#[derive(Debug)]
struct Stored {
    route: String,
    le: f64,
    trace_id: String,
    value: f64,
}

fn stored_exemplars(prometheus: SocketAddr, since: f64) -> Result<Vec<Stored>, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|err| err.to_string())?
        .as_secs_f64();
    let path = format!(
        "/api/v1/query_exemplars?query={}&start={since}&end={}",
        url_encode(BUCKETS),
        now + 1.0
    );
    let body = get_json(prometheus, &path)?;
    let mut found = Vec::new();
    for series in body["data"].as_array().into_iter().flatten() {
        let labels = &series["seriesLabels"];
        let le = match labels["le"].as_str() {
            Some("+Inf") => f64::INFINITY,
            Some(le) => le.parse().map_err(|_| format!("bad le in {labels}"))?,
            None => return Err(format!("no le in {labels}")),
        };
        for exemplar in series["exemplars"].as_array().into_iter().flatten() {
            found.push(Stored {
                route: labels["http_route"].as_str().unwrap_or_default().to_owned(),
                le,
                trace_id: exemplar["labels"]["trace_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                value: exemplar["value"]
                    .as_str()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| format!("bad exemplar value in {exemplar}"))?,
            });
        }
    }
    Ok(found)
}

#[test]
fn prometheus_stores_the_trace_ids_that_were_sent() {
    let _group = support::shared(Group::Patient);
    let Some(prometheus_bin) = require_tool("prometheus", "Debian package prometheus") else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let serve = Server::start(&["--latency-scale", "0"]);
    let out = temp.path().join("generated");
    let api = serve.addr.to_string();
    let mut args: Vec<&str> = COMPRESSED.to_vec();
    args.extend(["--naming", "otel", "--job", "exemplars-live"]);
    args.extend([
        "--api-targets",
        &api,
        "--load-targets",
        "",
        "--alertmanager",
        "",
    ]);
    generate_ok(&out, &args);
    let prometheus = loopback(free_port());
    let log = temp.path().join("prometheus.log");
    let _prometheus: Proc = daemon(
        "prometheus",
        prometheus_command(
            &prometheus_bin,
            &out.join("otel"),
            &temp.path().join("data"),
            prometheus,
        )
        .arg("--enable-feature=exemplar-storage"),
        &log,
    )
    .expect("start prometheus");
    wait_ready(prometheus, "/-/ready", Duration::from_secs(30))
        .unwrap_or_else(|err| panic!("{err}\n{}", tail(&log, 20)));
    // Exemplars are kept from the first scrape on: wait for it.
    let deadline = Instant::now() + LIMIT;
    while !query(prometheus, "up{job=\"exemplars-live\"} == 1").is_ok_and(|up| !up.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "never scraped\n{}",
            tail(&log, 20)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();

    // A bucket shows its last exemplar: the next traced request is sent only once a scrape has
    // stored this one (waiting a fixed time lost one when a loaded machine delayed a scrape).
    let mut sent = BTreeSet::new();
    for i in 1..=5u64 {
        let trace_id = format!("{:032x}", 0x5eed_0000 + i);
        let traceparent = format!("00-{trace_id}-{:016x}-01", i);
        let response = get(serve.addr, "/users/7", &[("traceparent", &traceparent)]);
        assert_eq!(response.status, 200);
        let deadline = Instant::now() + LIMIT;
        while !stored_exemplars(prometheus, since)
            .is_ok_and(|stored| stored.iter().any(|s| s.trace_id == trace_id))
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(200));
        }
        sent.insert(trace_id);
    }
    // Unsampled: must not show up.
    let unsampled = format!("{:032x}", 0xdead_0001u64);
    get(
        serve.addr,
        "/users/8",
        &[("traceparent", &format!("00-{unsampled}-{:016x}-00", 1))],
    );
    // The load generator's own traces, on its default mix (not /users/{id}).
    let load = run_load(
        &[
            "--target",
            &format!("http://{}", serve.addr),
            "--rate",
            "20",
            "--duration",
            "4s",
            "--traceparent",
        ],
        Duration::from_secs(30),
    );
    assert!(load.status.success(), "load failed: {}", load.stderr);

    let deadline = Instant::now() + LIMIT;
    let (stored, missing) = loop {
        let stored = stored_exemplars(prometheus, since)
            .unwrap_or_else(|err| panic!("{err}\n{}", tail(&log, 20)));
        let ids: BTreeSet<&str> = stored.iter().map(|s| s.trace_id.as_str()).collect();
        let missing: Vec<&String> = sent
            .iter()
            .filter(|id| !ids.contains(id.as_str()))
            .collect();
        let from_load = stored.iter().any(|s| s.route != "/users/{id}");
        if (missing.is_empty() && from_load) || Instant::now() > deadline {
            let missing: Vec<String> = missing.into_iter().cloned().collect();
            break (stored, missing);
        }
        thread::sleep(Duration::from_secs(1));
    };
    assert!(
        missing.is_empty(),
        "trace ids sent but not stored: {missing:?}\nstored: {stored:#?}\n{}",
        tail(&log, 20)
    );
    for exemplar in &stored {
        assert!(
            exemplar.value > 0.0 && exemplar.value <= exemplar.le,
            "an exemplar outside its bucket: {exemplar:?}"
        );
        assert_ne!(exemplar.trace_id, unsampled, "an unsampled trace was kept");
        assert_eq!(exemplar.trace_id.len(), 32, "{exemplar:?}");
        if exemplar.route == "/users/{id}" {
            assert!(sent.contains(&exemplar.trace_id), "{exemplar:?}");
        } else {
            // From `redwatch load --traceparent`: random ids, none of ours.
            assert!(!sent.contains(&exemplar.trace_id), "{exemplar:?}");
        }
    }
    assert!(
        stored.iter().any(|s| s.route != "/users/{id}"),
        "no exemplar from redwatch load --traceparent: {stored:#?}"
    );
}

/// The generated latency panels ask Grafana to show exemplars, and every exemplar-bearing
/// query reads the duration buckets.
#[test]
fn generated_latency_panels_show_exemplars() {
    let temp = tempfile::tempdir().expect("temp dir");
    generate_ok(temp.path(), &[]);
    for preset in ["otel", "flask"] {
        let path = temp
            .path()
            .join(preset)
            .join("grafana/dashboards/api-overview.json");
        let board: Value =
            serde_json::from_str(&support::generate::read(&path)).expect("dashboard JSON");
        let mut with_exemplars = 0;
        let mut panels: Vec<&Value> = Vec::new();
        for panel in board["panels"].as_array().into_iter().flatten() {
            panels.push(panel);
            panels.extend(panel["panels"].as_array().into_iter().flatten());
        }
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let quantile_of_buckets =
                    expr.contains("histogram_quantile") && expr.contains("_bucket");
                if target["exemplar"] == true {
                    with_exemplars += 1;
                    assert!(
                        quantile_of_buckets,
                        "{preset}: exemplars on a query that is not a latency quantile: {expr}"
                    );
                }
            }
        }
        assert!(with_exemplars > 0, "{preset}: no panel shows exemplars");
    }
}
