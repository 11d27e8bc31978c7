//! RED metrics — rate, errors, duration — for tower and axum services, served to Prometheus.
//!
//! # How do I use this?
//!
//! Build a [`Metrics`], add its [`layer`](Metrics::layer) to your router and merge its
//! [`router`](Metrics::router) for `GET /metrics`:
//!
//! ```
//! use axum::{Router, routing::get};
//!
//! let metrics = redwatch::Metrics::new();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/users/{id}", get(|| async { "a user" }))
//!     .merge(metrics.router())
//!     .layer(metrics.layer());
//! // axum::serve(listener, app).await
//! ```
//!
//! Every request is then recorded in `http_server_request_duration_seconds` with its method,
//! route template (`/users/{id}`, never `/users/42`) and status code, and
//! `http_server_active_requests` counts requests in flight. `/metrics` also shows process
//! metrics (CPU, memory, file descriptors, threads), Tokio runtime gauges and an info metric.
//! Choose [`Naming::Flask`] for names compatible with prometheus_flask_exporter dashboards.
//!
//! # How it works
//!
//! - The request path does no allocation and takes no lock once a series exists: two lookups
//!   in read-optimised lock-free maps and a few relaxed atomic additions.
//! - Cardinality is bounded: routes are templates, requests no route matched share the route
//!   `unmatched`, non-standard methods become `_OTHER`, and distinct routes are capped
//!   ([`MetricsBuilder::max_routes`]).
//! - Histogram counts are derived from one bucket snapshot at scrape time, so `_count` always
//!   equals the `+Inf` bucket and buckets are monotonic, even while requests are recorded.
//! - Storage and encoding are separate: [`Metrics::render`] writes Prometheus text 0.0.4 or
//!   OpenMetrics 1.0; [`Metrics::respond`] adds content negotiation, gzip and bearer tokens;
//!   [`Metrics::snapshot`] gives the same numbers typed, without text.
//!
//! # A live dashboard
//!
//! With the `dashboard` feature, `redwatch::dashboard::Dashboard` adds a live page (requests, errors,
//! latency quantiles, a heatmap, CPU, memory, availability, a route table with drill-down)
//! and its JSON data to the app, computed as Prometheus would from an in-process history:
//!
#![cfg_attr(feature = "dashboard", doc = "```")]
#![cfg_attr(not(feature = "dashboard"), doc = "```ignore")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//!
//! let metrics = redwatch::Metrics::new();
//! let dashboard = redwatch::dashboard::Dashboard::builder(&metrics).build()?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(metrics.router())
//!     .merge(dashboard.router()) // GET /dashboard
//!     .layer(metrics.layer());
//! # Ok(()) }
//! ```
//!
//! `cargo run -p redwatch --features dashboard --example dashboard` shows it with traffic.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations)]

mod collect;
#[cfg(feature = "dashboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
pub mod dashboard;
mod encode;
mod exposition;
mod layer;
mod metrics;
mod naming;
#[cfg(feature = "native-histograms")]
mod native;
#[cfg(feature = "opentelemetry")]
mod otel;
mod process;
#[cfg(feature = "native-histograms")]
mod protobuf;
mod registry;
mod request_label;
#[cfg(feature = "axum")]
mod scrape_thread;
mod snapshot;
mod trace;

pub use collect::{AppInfo, Collected, ProcessStats, RuntimeStats};
pub use encode::Format;
pub use exposition::negotiate_format;
pub use layer::{
    ClassifyFn, ClassifyRoute, GrpcStatus, HttpStatus, MatchedPathRoute, MetricsLayer,
    MetricsService, RequestHead, ResponseBody, ResponseFuture, StatusSource, UriPathRoute,
    classify_fn, grpc_status_as_http,
};
pub use metrics::{BuildError, Metrics, MetricsBuilder};
pub use naming::{
    ABANDONED_STATUS, DEFAULT_DURATION_BUCKETS, DEFAULT_SIZE_BUCKETS, MetricNames, Naming,
    OVERFLOW_ROUTE, UNMATCHED_ROUTE, UnknownNaming, process_names,
};
#[cfg(feature = "native-histograms")]
#[cfg_attr(docsrs, doc(cfg(feature = "native-histograms")))]
pub use protobuf::CONTENT_TYPE as PROTOBUF_CONTENT_TYPE;

#[cfg(feature = "opt-out")]
#[cfg_attr(docsrs, doc(cfg(feature = "opt-out")))]
pub use request_label::DisableMetrics;
pub use request_label::RequestLabel;
pub use trace::TraceContext;

pub use snapshot::{
    ActiveRequests, Bucket, ExceptionCount, HistogramSnapshot, SeriesSnapshot, Snapshot,
};

/// Re-exported so that users register metrics with the same version redwatch encodes.
pub use prometheus_client;
