//! A handler leaves its request out of the metrics.
//!
//! `cargo run -p redwatch --features opt-out --example opt_out` sends a request to `/orders` and
//! two to a readiness probe, `/ready`, whose handler returns `DisableMetrics` in its response's
//! extensions, and prints the request counts: the probe's requests are not among them.

use axum::{Extension, Router, body::Body, routing::get};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = redwatch::Metrics::new();
    let app = Router::new()
        .route("/orders", get(|| async { "orders" }))
        // A probe's requests would drown the API's own in the metrics.
        .route(
            "/ready",
            get(|| async { (Extension(redwatch::DisableMetrics), "ready") }),
        )
        .layer(metrics.layer());

    for uri in ["/orders", "/ready", "/ready"] {
        let response = app
            .clone()
            .oneshot(http::Request::get(uri).body(Body::empty())?)
            .await?;
        println!("GET {uri}: {}", response.status());
        // The request ends, and is recorded, when its body has been sent.
        response.into_body().collect().await?;
    }

    let text = String::from_utf8(metrics.render(redwatch::Format::Prometheus))?;
    for line in text
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_count"))
    {
        println!("{line}");
    }
    Ok(())
}
