//! The `opentelemetry` feature: exemplars from the current `tracing` span's OpenTelemetry
//! context, for apps that trace with `tracing-opentelemetry` (e.g. under tower-http's
//! `TraceLayer`, outside this layer, so that its span is current when a request arrives).

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace::TraceContext;

/// The current span's trace context, when it is valid and sampled.
pub(crate) fn current_span_context() -> Option<TraceContext> {
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    if !span_context.is_valid() || !span_context.is_sampled() {
        return None;
    }
    TraceContext::new(
        span_context.trace_id().to_bytes(),
        span_context.span_id().to_bytes(),
    )
}
