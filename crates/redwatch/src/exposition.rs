//! HTTP concerns of serving the exposition: format negotiation, gzip and bearer tokens.
//! [`crate::Metrics::respond`] and [`crate::Metrics::router`] put them together.

use http::HeaderMap;
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION};

use crate::encode::Format;

/// The format a scraper asked for: OpenMetrics when its `Accept` prefers it (as Prometheus
/// does), the 0.0.4 text format otherwise.
pub fn negotiate_format(headers: &HeaderMap) -> Format {
    let mut openmetrics_q = 0.0f32;
    let mut text_q = 0.0f32;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut params = range.split(';');
            let media_type = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|param| param.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media_type.as_str() {
                "application/openmetrics-text" => openmetrics_q = openmetrics_q.max(q),
                "text/plain" | "text/*" | "*/*" => text_q = text_q.max(q),
                _ => {}
            }
        }
    }
    if openmetrics_q > 0.0 && openmetrics_q >= text_q {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// Whether the scraper prefers the Prometheus protobuf format (length-delimited
/// `io.prometheus.client.MetricFamily` messages) to every text format it accepts, as Prometheus
/// does when its native histograms are on.
#[cfg(feature = "native-histograms")]
pub(crate) fn prefers_protobuf(headers: &HeaderMap) -> bool {
    let mut protobuf_q = 0.0f32;
    let mut text_q = 0.0f32;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut params = range.split(';');
            let media_type = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let (mut q, mut proto, mut delimited) = (1.0f32, false, false);
            for param in params {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse().unwrap_or(0.0),
                    "proto" => proto = value == "io.prometheus.client.MetricFamily",
                    "encoding" => delimited = value.eq_ignore_ascii_case("delimited"),
                    _ => {}
                }
            }
            match media_type.as_str() {
                "application/vnd.google.protobuf" if proto && delimited => {
                    protobuf_q = protobuf_q.max(q);
                }
                "application/openmetrics-text" | "text/plain" | "text/*" | "*/*" => {
                    text_q = text_q.max(q);
                }
                _ => {}
            }
        }
    }
    protobuf_q > 0.0 && protobuf_q >= text_q
}

/// Whether the scraper accepts gzip; always `false` without the `gzip` feature, which then
/// answers uncompressed, as HTTP allows.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    if !cfg!(feature = "gzip") {
        return false;
    }
    headers.get_all(ACCEPT_ENCODING).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value.split(',').any(|coding| {
                let mut params = coding.split(';');
                let name = params.next().unwrap_or("").trim();
                let refused = params.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                });
                name.eq_ignore_ascii_case("gzip") && !refused
            })
        })
    })
}

#[cfg(feature = "gzip")]
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

#[cfg(not(feature = "gzip"))]
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    body.to_vec()
}

pub(crate) fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(presented) = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare without an early exit, so the time taken does not reveal the matching prefix.
    let (a, b) = (presented.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::header::HeaderName, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn prometheus_accept_header_gets_openmetrics() {
        // The header Prometheus 3 sends by default.
        let prometheus = headers(&[(
            ACCEPT,
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        )]);
        assert_eq!(negotiate_format(&prometheus), Format::OpenMetrics);
        assert_eq!(negotiate_format(&HeaderMap::new()), Format::Prometheus);
        let curl = headers(&[(ACCEPT, "*/*")]);
        assert_eq!(negotiate_format(&curl), Format::Prometheus);
        let refused = headers(&[(ACCEPT, "application/openmetrics-text;q=0, text/plain")]);
        assert_eq!(negotiate_format(&refused), Format::Prometheus);
    }

    #[cfg(feature = "native-histograms")]
    #[test]
    fn protobuf_only_when_preferred() {
        // Prometheus 2.42 with --enable-feature=native-histograms.
        let prometheus_2 = headers(&[(
            ACCEPT,
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )]);
        assert!(prefers_protobuf(&prometheus_2));
        // Prometheus 3 with native histograms: PrometheusProto first in scrape_protocols.
        let prometheus_3 = headers(&[(
            ACCEPT,
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        )]);
        assert!(prefers_protobuf(&prometheus_3));
        for refused in [
            // Prometheus 3's default: text first.
            "application/openmetrics-text;version=1.0.0;q=0.5,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            "application/vnd.google.protobuf;encoding=delimited",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0",
            "*/*",
        ] {
            assert!(
                !prefers_protobuf(&headers(&[(ACCEPT, refused)])),
                "{refused}"
            );
        }
        assert!(!prefers_protobuf(&HeaderMap::new()));
    }

    #[cfg(feature = "gzip")]
    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip(&headers(&[(
            ACCEPT_ENCODING,
            "gzip, deflate"
        )])));
        assert!(!accepts_gzip(&headers(&[(
            ACCEPT_ENCODING,
            "gzip;q=0, br"
        )])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        assert!(bearer_matches(
            &headers(&[(AUTHORIZATION, "Bearer s3cret")]),
            "s3cret"
        ));
        assert!(!bearer_matches(
            &headers(&[(AUTHORIZATION, "Bearer s3cre")]),
            "s3cret"
        ));
        assert!(!bearer_matches(
            &headers(&[(AUTHORIZATION, "Basic s3cret")]),
            "s3cret"
        ));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }
}
