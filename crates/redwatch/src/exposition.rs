//! Serving the exposition over HTTP: format negotiation, gzip, bearer tokens, and axum glue.

use std::io::Write;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::Metrics;
use crate::encode::Format;

impl Metrics {
    /// Answers a scrape: checks the bearer token, picks the format from `Accept` and
    /// compresses with gzip when `Accept-Encoding` allows it.
    ///
    /// This is the whole `/metrics` endpoint for any HTTP stack; [`Metrics::router`] wraps it
    /// for axum. It blocks (rendering, gzip, `/proc` reads), for milliseconds with many
    /// series: from async code call it through `tokio::task::spawn_blocking` or the like, as
    /// [`Metrics::router`] does.
    pub fn respond(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        if let Some(token) = self.bearer_token()
            && !bearer_matches(request_headers, token)
        {
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"missing or wrong bearer token\n",
            )));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return response;
        }
        let format = negotiate_format(request_headers);
        let body = self.render(format);
        let mut response = Response::builder()
            .header(CONTENT_TYPE, format.content_type())
            .header(http::header::VARY, "Accept, Accept-Encoding");
        let body = if accepts_gzip(request_headers) {
            response = response.header(CONTENT_ENCODING, "gzip");
            gzip(&body)
        } else {
            body
        };
        response
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

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

fn accepts_gzip(headers: &HeaderMap) -> bool {
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

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
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

#[cfg(feature = "axum")]
impl Metrics {
    /// An axum router serving the exposition on [`Metrics::metrics_path`], to `merge` into an
    /// application or to serve on its own listener. Each scrape is rendered on Tokio's
    /// blocking pool, so it never stalls the workers that serve requests.
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let metrics = self.clone();
        axum::Router::new().route(
            self.metrics_path(),
            axum::routing::get(move |headers: HeaderMap| {
                let metrics = metrics.clone();
                async move {
                    // Rendering many series, gzip and the /proc reads take milliseconds of
                    // CPU and file I/O: run them where they cannot stall other requests.
                    tokio::task::spawn_blocking(move || metrics.respond(&headers))
                        .await
                        .unwrap_or_else(|_panicked| {
                            let mut response = Response::new(Full::new(Bytes::from_static(
                                b"rendering the exposition failed\n",
                            )));
                            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            response
                        })
                }
            }),
        )
    }

    /// Serves the exposition on its own listener, e.g. a port that only Prometheus can reach,
    /// until `shutdown` completes.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let metrics = redwatch::Metrics::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    /// tokio::spawn(metrics.clone().serve(listener, std::future::pending()));
    /// # Ok(()) }
    /// ```
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router::<()>())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
