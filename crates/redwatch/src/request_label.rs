//! A label of your own on the request series (a tenant, a customer plan, an API client), with
//! its value count capped, and the way a request opts out of being recorded.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use http::{Extensions, HeaderName, Request};

use crate::encode::escape_label_value;

type FastMap<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

/// A label whose value each request brings: from a request header, or from a request
/// extension that your middleware (authentication, say) inserts before the metrics layer runs.
///
/// Distinct values are capped ([`RequestLabel::max_values`], default 100): later values are
/// recorded as `overflow`, so a label fed by clients cannot grow the series without bound. A
/// value longer than 100 bytes, or not valid UTF-8, counts as `overflow` too. A request without
/// a value gets the empty value, which Prometheus reads as no label.
///
/// The label is on the duration and body size histograms; the `flask` preset's
/// `flask_http_request_total` stays by method and status, as prometheus_flask_exporter's is.
///
/// ```
/// use redwatch::{Metrics, RequestLabel};
///
/// // From a header:
/// let metrics = Metrics::builder()
///     .request_label(RequestLabel::from_header("tenant", "x-tenant-id").max_values(50))
///     .build()
///     .unwrap();
///
/// // From what the authentication middleware put in the request's extensions:
/// #[derive(Clone)]
/// struct Plan(&'static str);
/// impl AsRef<str> for Plan {
///     fn as_ref(&self) -> &str {
///         self.0
///     }
/// }
/// let metrics = Metrics::builder()
///     .request_label(RequestLabel::from_extension::<Plan>("plan"))
///     .build()
///     .unwrap();
/// # let _ = metrics;
/// ```
#[derive(Clone)]
pub struct RequestLabel {
    pub(crate) name: String,
    pub(crate) source: LabelSource,
    pub(crate) max_values: usize,
}

/// Where a [`RequestLabel`]'s value comes from.
#[derive(Clone)]
pub(crate) enum LabelSource {
    Header(Result<HeaderName, String>),
    Extension {
        read: fn(&Extensions) -> Option<&str>,
        type_name: &'static str,
    },
}

/// The most bytes a value may have; longer ones are recorded as `overflow`.
pub(crate) const MAX_VALUE_LEN: usize = 100;

impl RequestLabel {
    /// The label `name`, valued by the request header `header` (case-insensitive).
    pub fn from_header(name: impl Into<String>, header: &str) -> Self {
        let header = HeaderName::try_from(header)
            .map_err(|_| format!("request label header {header:?} is not a valid header name"));
        Self {
            name: name.into(),
            source: LabelSource::Header(header),
            max_values: 100,
        }
    }

    /// The label `name`, valued by the request extension of type `T`.
    pub fn from_extension<T>(name: impl Into<String>) -> Self
    where
        T: AsRef<str> + Clone + Send + Sync + 'static,
    {
        fn read<T: AsRef<str> + Clone + Send + Sync + 'static>(
            extensions: &Extensions,
        ) -> Option<&str> {
            extensions.get::<T>().map(AsRef::as_ref)
        }
        Self {
            name: name.into(),
            source: LabelSource::Extension {
                read: read::<T>,
                type_name: std::any::type_name::<T>(),
            },
            max_values: 100,
        }
    }

    /// The most distinct values kept (default 100); later ones are recorded as `overflow`.
    pub fn max_values(mut self, max_values: usize) -> Self {
        self.max_values = max_values;
        self
    }
}

impl fmt::Debug for RequestLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            LabelSource::Header(Ok(header)) => format!("header {header}"),
            LabelSource::Header(Err(error)) => error.clone(),
            LabelSource::Extension { type_name, .. } => format!("extension {type_name}"),
        };
        f.debug_struct("RequestLabel")
            .field("name", &self.name)
            .field("source", &source)
            .field("max_values", &self.max_values)
            .finish()
    }
}

/// Put this in a response's extensions, from a handler or a middleware inside the layer, to leave
/// the request out of the metrics, as ASP.NET Core's `DisableHttpMetrics` does: it is neither
/// counted nor timed, and the in-flight gauge does not keep it. The layer reads it from the
/// response only: in a request's extensions it has no effect. Needs the feature `opt-out`: looking
/// for it costs every response up to 30 instructions, so only layers that want it pay.
///
/// ```
/// use axum::{Extension, Router, routing::get};
///
/// let metrics = redwatch::Metrics::new();
/// let app: Router = Router::new()
///     // A probe's requests would drown the API's own in the metrics.
///     .route("/ready", get(|| async { (Extension(redwatch::DisableMetrics), "ready") }))
///     .layer(metrics.layer());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg(feature = "opt-out")]
pub struct DisableMetrics;

/// The value index of a series without a request label (none configured).
pub(crate) const NO_VALUE: u16 = 0;
/// The value index of `overflow`.
const OVERFLOW_VALUE: u16 = 1;

/// The values a request label has taken, by index: series keep the index, the encoder the text.
pub(crate) struct LabelValues {
    pub(crate) name: String,
    source: LabelSource,
    /// Value → index, for the request path: a lookup, no allocation once a value exists.
    indices: FastMap<Box<str>, u16>,
    /// Index → the `,name="value"` pair as rendered in a label set.
    rendered: boxcar::Vec<Box<str>>,
    count: AtomicUsize,
    max_values: usize,
    add: Mutex<()>,
}

impl LabelValues {
    pub(crate) fn new(label: RequestLabel) -> Self {
        let values = Self {
            name: label.name,
            source: label.source,
            indices: FastMap::default(),
            rendered: boxcar::Vec::new(),
            count: AtomicUsize::new(0),
            // u16 indices, two of them taken.
            max_values: label.max_values.min(usize::from(u16::MAX) - 2),
            add: Mutex::new(()),
        };
        // Indices 0 (no label) and 1 (overflow) exist from the start.
        values.rendered.push(Box::from(""));
        values.rendered.push(values.render("overflow"));
        values
    }

    fn render(&self, value: &str) -> Box<str> {
        format!(",{}=\"{}\"", self.name, escape_label_value(value)).into()
    }

    /// The `,name="value"` pair of `index` (empty for [`NO_VALUE`]).
    pub(crate) fn rendered(&self, index: u16) -> &str {
        self.rendered
            .get(usize::from(index))
            .map_or("", |pair| pair)
    }

    /// The value of `index`, unescaped, for snapshots.
    pub(crate) fn value(&self, index: u16) -> Option<String> {
        if index == NO_VALUE {
            return None;
        }
        let rendered = self.rendered(index);
        let prefix = format!(",{}=\"", self.name);
        let escaped = rendered.strip_prefix(&prefix)?.strip_suffix('"')?;
        Some(unescape(escaped))
    }

    /// The value index of `request`.
    #[inline]
    pub(crate) fn index_of<B>(&self, request: &Request<B>) -> u16 {
        let value = match &self.source {
            LabelSource::Header(Ok(header)) => match request.headers().get(header) {
                None => Some(""),
                // Any UTF-8, not only the visible ASCII that `HeaderValue::to_str` accepts.
                Some(value) => std::str::from_utf8(value.as_bytes()).ok(),
            },
            LabelSource::Header(Err(_)) => Some(""),
            LabelSource::Extension { read, .. } => Some(read(request.extensions()).unwrap_or("")),
        };
        match value {
            Some(value) if value.len() <= MAX_VALUE_LEN => self.index(value),
            _ => OVERFLOW_VALUE,
        }
    }

    fn index(&self, value: &str) -> u16 {
        let indices = self.indices.pin();
        if let Some(index) = indices.get(value) {
            return *index;
        }
        self.add(value)
    }

    /// The first request with a new value: serialised, so that the cap is exact and every
    /// request with a value gets the same index.
    #[cold]
    fn add(&self, value: &str) -> u16 {
        let _adding = self.add.lock().unwrap_or_else(PoisonError::into_inner);
        let indices = self.indices.pin();
        if let Some(index) = indices.get(value) {
            return *index;
        }
        if self.count.load(Ordering::Relaxed) >= self.max_values {
            return OVERFLOW_VALUE;
        }
        let Ok(index) = u16::try_from(self.rendered.push(self.render(value))) else {
            return OVERFLOW_VALUE;
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        indices.insert(value.into(), index);
        index
    }
}

fn unescape(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tenant: Option<&str>) -> Request<()> {
        let mut request = Request::builder();
        if let Some(tenant) = tenant {
            request = request.header("x-tenant", tenant);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn values_past_the_cap_and_long_values_are_overflow() {
        let values =
            LabelValues::new(RequestLabel::from_header("tenant", "x-tenant").max_values(3));
        let a = values.index_of(&request(Some("a")));
        assert_eq!(
            values.index_of(&request(Some("a"))),
            a,
            "a value keeps its index"
        );
        let none = values.index_of(&request(None));
        let b = values.index_of(&request(Some("b")));
        assert_eq!(
            values.index_of(&request(Some("c"))),
            OVERFLOW_VALUE,
            "cap 3: a, '', b"
        );
        assert_eq!(values.index_of(&request(Some("b"))), b);
        assert_eq!(
            values.index_of(&request(Some(&"x".repeat(MAX_VALUE_LEN + 1)))),
            OVERFLOW_VALUE
        );
        assert_eq!(values.value(a).as_deref(), Some("a"));
        assert_eq!(values.value(none).as_deref(), Some(""));
        assert_eq!(values.value(OVERFLOW_VALUE).as_deref(), Some("overflow"));
        assert_eq!(values.rendered(b), ",tenant=\"b\"");
        assert_eq!(values.rendered(NO_VALUE), "");
    }

    #[test]
    fn any_utf8_value_is_kept_and_other_bytes_are_overflow() {
        let values = LabelValues::new(RequestLabel::from_header("tenant", "x-tenant"));
        let header = |bytes: &[u8]| {
            let mut request = Request::new(());
            request.headers_mut().insert(
                "x-tenant",
                http::HeaderValue::from_bytes(bytes).expect("a valid header value"),
            );
            request
        };
        let munich = values.index_of(&header("münchen".as_bytes()));
        assert_eq!(values.value(munich).as_deref(), Some("münchen"));
        assert_eq!(values.rendered(munich), ",tenant=\"münchen\"");
        assert_eq!(values.index_of(&header(b"m\xfcnchen")), OVERFLOW_VALUE);
    }

    #[test]
    fn values_are_escaped_once_and_read_back() {
        let values = LabelValues::new(RequestLabel::from_header("tenant", "x-tenant"));
        let index = values.index_of(&request(Some(r#"a"b\c"#)));
        assert_eq!(values.rendered(index), r#",tenant="a\"b\\c""#);
        assert_eq!(values.value(index).as_deref(), Some(r#"a"b\c"#));
    }

    #[test]
    fn racing_first_requests_share_one_index_and_respect_the_cap() {
        let values = std::sync::Arc::new(LabelValues::new(
            RequestLabel::from_header("tenant", "x-tenant").max_values(10),
        ));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let values = std::sync::Arc::clone(&values);
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| values.index_of(&request(Some(&format!("t{}", i % 20)))))
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        let seen: Vec<Vec<u16>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for run in &seen[1..] {
            assert_eq!(run, &seen[0], "every thread saw the same index per value");
        }
        let distinct: std::collections::BTreeSet<u16> = seen[0].iter().copied().collect();
        assert!(distinct.len() <= 11, "10 values and overflow: {distinct:?}");
        assert!(distinct.contains(&OVERFLOW_VALUE));
    }
}
