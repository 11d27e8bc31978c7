//! One million random requests through an axum router with the layer: random methods (standard
//! and not), random paths (known routes, random and percent-encoded segments, invalid UTF-8,
//! long ones), random headers. Prints the time per request, the series created and the distinct
//! label values, which must stay within the bound the routes, methods and statuses allow.
//!
//! Run: `cargo bench -p redwatch --bench hostile` (`REQUESTS=N` to change the count). Under
//! `cargo test` (no `--bench` argument) it sends 10,000 requests, as a quick check.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request};
use redwatch::{Format, Metrics};
use tower::ServiceExt;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const METHODS: [&str; 12] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT", "PURGE",
    "BREW", "X-RANDOM",
];

fn random_path(rng: &mut Rng) -> String {
    let mut path = String::new();
    for _ in 0..rng.below(6) {
        path.push('/');
        match rng.below(6) {
            0 => path.push_str("users"),
            1 => path.push_str("files"),
            2 => {
                for _ in 0..1 + rng.below(6) {
                    path.push_str(&format!("%{:02X}", rng.below(256)));
                }
            }
            3 if rng.below(100) == 0 => path.push_str(&"a".repeat(1 + rng.below(8_000) as usize)),
            _ => path.push_str(&rng.next().to_string()),
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let requests: u64 = std::env::var("REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 10_000 });
    let metrics = Metrics::new();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/users/{id}",
            get(|| async { "user" }).post(|| async { "made" }),
        )
        .route("/files/{*rest}", get(|| async { "file" }))
        .layer(metrics.layer());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut invalid = 0u64;
    let started = Instant::now();
    runtime.block_on(async {
        for _ in 0..requests {
            let method = METHODS[rng.below(METHODS.len() as u64) as usize];
            let path = random_path(&mut rng);
            let header_value = rng.next().to_string();
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).expect("token"))
                .uri(path)
                .header("x-random", header_value)
                .body(Body::empty());
            let Ok(request) = request else {
                invalid += 1;
                continue;
            };
            let response = app.clone().oneshot(request).await.expect("infallible");
            drop(response);
        }
    });
    let elapsed = started.elapsed();
    let exposition = String::from_utf8(metrics.render(Format::Prometheus)).expect("UTF-8");
    let series: Vec<&str> = exposition
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_count"))
        .collect();
    let values = |label: &str| -> BTreeSet<String> {
        series
            .iter()
            .filter_map(|line| {
                let start = line.find(&format!("{label}=\""))? + label.len() + 2;
                let end = line[start..].find('"')? + start;
                Some(line[start..end].to_owned())
            })
            .collect()
    };
    let sent = requests - invalid;
    println!("random requests sent: {sent} ({invalid} not valid request targets, not sent)");
    println!(
        "time: {:.2} s, {:.0} ns per request (router and layer, one thread)",
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / sent as f64
    );
    println!("duration series: {}", series.len());
    println!("methods: {:?}", values("http_request_method"));
    println!("routes: {:?}", values("http_route"));
    println!("statuses: {:?}", values("http_response_status_code"));
    let methods: BTreeSet<String> = METHODS[..9]
        .iter()
        .map(|m| (*m).to_owned())
        .chain(["_OTHER".to_owned()])
        .collect();
    let routes: BTreeSet<String> = ["/", "/users/{id}", "/files/{*rest}", "unmatched"]
        .map(str::to_owned)
        .into();
    assert!(values("http_request_method").is_subset(&methods));
    assert!(values("http_route").is_subset(&routes));
    assert!(series.len() <= methods.len() * routes.len() * 3);
}
