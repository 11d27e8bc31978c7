//! The library's integration tests, in one binary so that the crate and its dev-dependencies are
//! linked once. Each module is one concern; `support` holds what they share.

mod alloc;
mod concurrency;
#[cfg(feature = "dashboard")]
mod dashboard;
#[cfg(feature = "exemplars")]
mod exemplars;
mod exposition;
mod grpc;
mod hostile;
mod layer;
mod otel_attributes;
mod request_labels;
mod support;
mod validity;
