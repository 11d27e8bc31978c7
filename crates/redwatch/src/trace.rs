//! Trace context for exemplars: the ids that link a latency bucket to a trace.
//!
//! With [`MetricsBuilder::exemplars`](crate::MetricsBuilder::exemplars) on, each request's
//! duration is stored with its trace context as the exemplar of the bucket it lands in, and
//! OpenMetrics scrapes show it:
//!
//! ```text
//! http_server_request_duration_seconds_bucket{...,le="0.1"} 8 # {trace_id="4bf9…4736",span_id="00f0…02b7"} 0.067 1700000000.123
//! ```
//!
//! The context comes from, in this order:
//! 1. a [`TraceContext`] in the request's extensions, put there by your own middleware;
//! 2. with the `opentelemetry` feature, the current `tracing` span's OpenTelemetry context;
//! 3. the W3C `traceparent` request header.
//!
//! Only sampled traces become exemplars: an unsampled trace was not recorded by the tracing
//! backend, so its link would lead nowhere.

use std::fmt;

#[cfg(feature = "exemplars")]
use http::{HeaderName, Request};

/// The ids of the trace and span a request belongs to, as in a W3C `traceparent` header.
///
/// Insert one into a request's extensions to choose the exemplar's trace yourself:
///
/// ```
/// use redwatch::TraceContext;
///
/// let context = TraceContext::new([0x4b; 16], [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
///     .expect("ids are not all zero");
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(context);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl TraceContext {
    /// A context from its ids, or `None` when either is all zeros (invalid in W3C Trace Context).
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8]) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id })
    }

    /// Reads a `traceparent` header value (`00-<trace id>-<span id>-<flags>`), or `None` when
    /// it is malformed or its trace is not sampled.
    ///
    /// Versions after `00` are read as version `00`, as the specification asks, as long as
    /// what follows the first 55 characters starts with `-`; version `ff` is invalid.
    ///
    /// ```
    /// use redwatch::TraceContext;
    ///
    /// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let context = TraceContext::from_traceparent(header.as_bytes()).unwrap();
    /// assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    /// // Flags 00: not sampled, no exemplar.
    /// let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    /// assert!(TraceContext::from_traceparent(unsampled.as_bytes()).is_none());
    /// ```
    pub fn from_traceparent(value: &[u8]) -> Option<Self> {
        const LEN: usize = 55;
        let head = value.get(..LEN)?;
        let version = hex_byte(head[0], head[1])?;
        let well_formed_length = match version {
            0xff => false,
            0x00 => value.len() == LEN,
            _ => value.len() == LEN || value[LEN] == b'-',
        };
        if !well_formed_length || head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(&head[3..35], &mut trace_id)?;
        let mut span_id = [0u8; 8];
        hex_into(&head[36..52], &mut span_id)?;
        let flags = hex_byte(head[53], head[54])?;
        const SAMPLED: u8 = 0x01;
        if flags & SAMPLED == 0 {
            return None;
        }
        Self::new(trace_id, span_id)
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The span id.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace id in lower-case hex, as tracing backends show it.
    pub fn trace_id_hex(&self) -> String {
        let mut out = [0u8; 32];
        String::from_utf8_lossy(write_hex(&self.trace_id, &mut out)).into_owned()
    }

    /// Writes `trace_id="…",span_id="…"`, the exemplar's label set, without allocating.
    pub(crate) fn write_labels(&self, out: &mut Vec<u8>) {
        let mut trace = [0u8; 32];
        let mut span = [0u8; 16];
        out.extend_from_slice(b"trace_id=\"");
        out.extend_from_slice(write_hex(&self.trace_id, &mut trace));
        out.extend_from_slice(b"\",span_id=\"");
        out.extend_from_slice(write_hex(&self.span_id, &mut span));
        out.push(b'"');
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut trace, mut span) = ([0u8; 32], [0u8; 16]);
        f.debug_struct("TraceContext")
            .field(
                "trace_id",
                &String::from_utf8_lossy(write_hex(&self.trace_id, &mut trace)),
            )
            .field(
                "span_id",
                &String::from_utf8_lossy(write_hex(&self.span_id, &mut span)),
            )
            .finish()
    }
}

/// The trace context of `request` for its exemplar, from the sources listed in the module
/// docs, in order.
#[cfg(feature = "exemplars")]
#[inline]
pub(crate) fn of_request<B>(request: &Request<B>) -> Option<TraceContext> {
    if let Some(context) = request.extensions().get::<TraceContext>() {
        return Some(*context);
    }
    #[cfg(feature = "opentelemetry")]
    if let Some(context) = crate::otel::current_span_context() {
        return Some(context);
    }
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    let header = request.headers().get(TRACEPARENT)?;
    TraceContext::from_traceparent(header.as_bytes())
}

/// The value of each lower-case hex digit, and [`NOT_HEX`] for every other byte. W3C Trace
/// Context forbids upper-case hex in `traceparent`.
const HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let (high, low) = (HEX_VALUES[usize::from(high)], HEX_VALUES[usize::from(low)]);
    // Valid values are below 16; NOT_HEX sets bit 4 and up.
    ((high | low) < 16).then_some(high << 4 | low)
}

/// Decodes `hex` into `out`, two digits a byte; `None` when any is not a lower-case hex digit.
/// One table lookup per digit and a single check at the end: this runs on traced requests.
fn hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        invalid |= high | low;
        *byte = high << 4 | (low & 0x0f);
    }
    (invalid < 16).then_some(())
}

fn write_hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a [u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    &out[..bytes.len() * 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(value: &str) -> Option<TraceContext> {
        TraceContext::from_traceparent(value.as_bytes())
    }

    #[test]
    fn a_sampled_traceparent_gives_its_ids() {
        let context = parse(VALID).unwrap();
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            context.span_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        let mut labels = Vec::new();
        context.write_labels(&mut labels);
        assert_eq!(
            labels,
            b"trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\""
        );
        // Other flag bits do not matter; the sampled bit does.
        assert!(parse(&VALID.replace("-01", "-03")).is_some());
        assert!(parse(&VALID.replace("-01", "-02")).is_none());
    }

    #[test]
    fn malformed_or_invalid_traceparents_give_nothing() {
        for bad in [
            "",
            "00",
            &VALID[..54],
            &format!("{VALID}-extra"), // version 00 has no more fields
            &VALID.replace("00-4b", "ff-4b"), // version ff is invalid
            &VALID.replace("4bf9", "4BF9"), // upper case
            &VALID.replace("4bf9", "4bg9"), // not hex
            &VALID.replacen('-', "_", 1), // separator
            &VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            &VALID.replace("00f067aa0ba902b7", &"0".repeat(16)),
        ] {
            assert!(parse(bad).is_none(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn later_versions_are_read_as_version_00() {
        assert!(parse(&VALID.replacen("00", "01", 1)).is_some());
        assert!(parse(&format!("{}-more", VALID.replacen("00", "01", 1))).is_some());
        assert!(parse(&format!("{}x", VALID.replacen("00", "01", 1))).is_none());
    }
}
