//! W3C trace context across the broker.
//!
//! Job: at emit time, capture the current `tracing` span's OpenTelemetry context as a
//! `traceparent` string (stored with the outbox row, sent as the `traceparent` Kafka header and
//! in the envelope); on the consumer side, make that context the parent of the handler's span.
//!
//! It works when the application installs `tracing-opentelemetry`'s layer (any exporter): spans
//! then carry OpenTelemetry contexts. Without it there is no trace to capture and nothing is
//! sent; an invalid or absent header leaves the handler's span a root span.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and envelope field) name, as W3C Trace Context spells it.
pub const TRACEPARENT: &str = "traceparent";

/// The current span's context as a `traceparent` value, if it belongs to a valid trace.
pub(crate) fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes the trace `traceparent` names the parent of `span`. Returns whether it did.
pub(crate) fn set_parent(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    let Some(traceparent) = traceparent else {
        return false;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if !parent.span().span_context().is_valid() {
        tracing::debug!(traceparent, "ignoring an invalid traceparent header");
        return false;
    }
    let _ = span.set_parent(parent);
    true
}
