//! An axum app with its own live dashboard: RED metrics on /metrics and the page on
//! /dashboard, with a little built-in traffic so every panel moves.
//!
//! `cargo run -p redwatch --features dashboard --example dashboard`, then open
//! <http://127.0.0.1:3000/dashboard>. Click a route in the table for its panels. Pass a
//! Prometheus URL as the first argument (e.g. `http://127.0.0.1:9090`) to see its alerts.

use std::time::Duration;

use axum::http::StatusCode;
use axum::{Router, routing::get};
use redwatch::dashboard::Dashboard;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = redwatch::Metrics::new();
    let mut dashboard = Dashboard::builder(&metrics).path("/dashboard");
    if let Some(prometheus) = std::env::args().nth(1) {
        dashboard = dashboard.prometheus_url(prometheus);
    }
    let dashboard = dashboard.build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(rand_millis(400))).await;
                "slow"
            }),
        )
        .route(
            "/users/{id}",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(rand_millis(60))).await;
                "a user"
            }),
        )
        .route(
            "/error",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .merge(metrics.router())
        .merge(dashboard.router())
        .layer(metrics.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let address = listener.local_addr()?;
    println!("dashboard: http://{address}/dashboard");
    tokio::spawn(traffic(address));
    axum::serve(listener, app).await?;
    Ok(())
}

/// A few requests a second to each route, so the page has something to show.
async fn traffic(address: std::net::SocketAddr) {
    let paths = ["/", "/slow", "/users/7", "/users/8", "/error", "/missing"];
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    for n in 0usize.. {
        ticker.tick().await;
        let path = paths[n % paths.len()];
        tokio::spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
                return;
            };
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
            }
        });
    }
}

/// A pseudo-random number of milliseconds below `max`, from the clock.
fn rand_millis(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    nanos.wrapping_mul(2_654_435_761) % max.max(1)
}
