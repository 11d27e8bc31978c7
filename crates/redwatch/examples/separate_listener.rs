//! /metrics on its own port, protected by a bearer token, while the API port has no /metrics.
//!
//! `cargo run -p redwatch --example separate_listener`, then
//! `curl -H 'Authorization: Bearer change-me' localhost:9464/metrics`.

use axum::{Router, routing::get};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = redwatch::Metrics::builder()
        .bearer_token("change-me")
        .build()?;
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(metrics.layer());

    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    tokio::spawn(metrics.serve(metrics_listener, std::future::pending()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
