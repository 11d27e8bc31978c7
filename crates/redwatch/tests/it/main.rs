//! The library's integration tests, in one binary so that the crate and its dev-dependencies are
//! linked once. Each module is one concern; `support` holds what they share.

mod alloc;
// Modules whose apps take their routes from axum's `MatchedPath` need the `axum` feature.
#[cfg(feature = "axum")]
mod concurrency;
#[cfg(feature = "dashboard")]
mod dashboard;
#[cfg(all(feature = "exemplars", feature = "axum"))]
mod exemplars;
#[cfg(feature = "axum")]
mod exposition;
mod grpc;
mod hostile;
#[cfg(feature = "axum")]
mod layer;
mod otel_attributes;
#[cfg(feature = "axum")]
mod request_labels;
mod support;
mod validity;
