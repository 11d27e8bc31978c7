//! Exemplars: a traced request's trace id on the latency bucket it landed in.
//!
//! `cargo run -p redwatch --features exemplars --example exemplars` sends two requests through
//! the app in process, one with a sampled W3C `traceparent`, and prints the OpenMetrics bucket
//! lines that carry an exemplar. Behind a real server the same happens for every request that carries one (for
//! example from an OpenTelemetry-instrumented client, or `redwatch load --traceparent`), and
//! Prometheus keeps them with `--enable-feature=exemplar-storage`.

use axum::{Router, body::Body, routing::get};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = redwatch::Metrics::builder().exemplars(true).build()?;
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "an order" }))
        .merge(metrics.router())
        .layer(metrics.layer());

    for traceparent in [
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        None,
    ] {
        let mut request = http::Request::get("/orders/7");
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = app.clone().oneshot(request.body(Body::empty())?).await?;
        // The request ends, and is recorded, when its body has been sent.
        response.into_body().collect().await?;
    }

    let text = String::from_utf8(metrics.render(redwatch::Format::OpenMetrics))?;
    for line in text.lines().filter(|line| line.contains(" # {")) {
        println!("{line}");
    }
    Ok(())
}
