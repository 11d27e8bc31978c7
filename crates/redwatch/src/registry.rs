//! Series storage: lock-free on the request path, read by the encoder at scrape time.
//!
//! A request touches two concurrent maps (route, then method × status), both read-mostly and
//! lock-free for readers, and then a handful of relaxed atomic adds. Series are created once,
//! on the first request of their label set, which is the only time anything allocates or locks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

#[cfg(feature = "regex")]
use regex::RegexSet;

use crate::encode::escape_label_value;
use crate::naming::{
    MetricNames, Naming, OTHER_METHOD, OVERFLOW_ROUTE, PROTOCOL_VERSIONS, SCHEMES, UNMATCHED_ROUTE,
    method_index, version_index,
};
use crate::request_label::LabelValues;
use crate::trace::TraceContext;

type FastMap<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

/// A histogram whose observations are two relaxed atomic adds.
///
/// There is no separate count: the encoder derives `_count` from the same bucket snapshot it
/// writes, so `_count` always equals the `+Inf` bucket, even in a scrape taken under load.
pub(crate) struct AtomicHistogram {
    /// Non-cumulative counts; the last slot is the `+Inf` overflow bucket.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in the family's base unit (nanoseconds or bytes).
    sum: WideSum,
}

impl AtomicHistogram {
    fn new(bucket_count: usize) -> Self {
        Self {
            counts: (0..=bucket_count).map(|_| AtomicU64::new(0)).collect(),
            sum: WideSum::default(),
        }
    }

    /// Records `value` (base units) against the upper bounds `bounds` (same units, ascending)
    /// and returns the index of the bucket it landed in.
    #[inline]
    pub(crate) fn observe(&self, bounds: &[u64], value: u64) -> usize {
        // A linear scan: most requests land in the first few buckets, so it beats a binary
        // search over the usual dozen bounds.
        let index = bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(bounds.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum.add(value);
        index
    }

    /// Copies the cumulative bucket counts into `cumulative` and returns the sum.
    pub(crate) fn snapshot(&self, cumulative: &mut Vec<u64>) -> u128 {
        // Read the sum first: a concurrent observation then shows up in the buckets rather
        // than in the sum alone, so the average never exceeds the truth.
        let sum = self.sum.load();
        cumulative.clear();
        let mut running = 0u64;
        for count in self.counts.iter() {
            running += count.load(Ordering::Relaxed);
            cumulative.push(running);
        }
        sum
    }
}

/// The largest value [`WideSum::add`] adds at once: 2^62 ns is 146 years, 2^62 bytes 4 EiB.
/// Larger values (only a lying `Content-Length` can produce one) are counted as this.
const MAX_SUMMAND: u64 = 1 << 62;

/// A sum that does not wrap for 2^127 units: a `u64` of nanoseconds wraps after 584 years of
/// summed durations, weeks for a service with thousands of long-lived streams, and Prometheus
/// would read the wrap as a counter reset.
///
/// Adding is one relaxed `fetch_add`, as for a plain `u64`, plus a branch that is taken once
/// per 2^63 units: `low` wraps freely and `crossings` counts the times it crossed a multiple
/// of 2^63, i.e. flips of its top bit. A reader that sees `low`'s top bit disagree with the
/// parity of `crossings` has caught a writer between its two adds and counts that crossing.
/// This needs at most one crossing in flight, which holds as each add is at most 2^62.
#[derive(Default)]
struct WideSum {
    low: AtomicU64,
    crossings: AtomicU64,
}

impl WideSum {
    #[inline]
    fn add(&self, value: u64) {
        let value = value.min(MAX_SUMMAND);
        let old = self.low.fetch_add(value, Ordering::Relaxed);
        if (old ^ old.wrapping_add(value)) >> 63 != 0 {
            // Release: a reader that sees this crossing also sees the add that made it.
            self.crossings.fetch_add(1, Ordering::Release);
        }
    }

    fn load(&self) -> u128 {
        let mut crossings = self.crossings.load(Ordering::Acquire);
        let low = self.low.load(Ordering::Relaxed);
        if crossings & 1 != low >> 63 {
            crossings += 1;
        }
        u128::from(crossings) << 63 | u128::from(low & (u64::MAX >> 1))
    }
}

/// The last traced request of one bucket: what OpenMetrics shows as the bucket's exemplar.
#[derive(Clone, Copy)]
pub(crate) struct Exemplar {
    pub(crate) context: TraceContext,
    /// The observed duration, in nanoseconds.
    pub(crate) value_nanos: u64,
    /// When it was observed, in nanoseconds since the Unix epoch.
    pub(crate) unix_nanos: u64,
}

/// A bucket's exemplar. A lock, not atomics, because an exemplar is 40 bytes written
/// together; the request path only ever `try_lock`s it and skips the update when a scrape
/// or another request holds it, so it never waits.
pub(crate) type ExemplarSlot = Mutex<Option<Exemplar>>;

/// Stores `exemplar` as the latest of the bucket `index`, unless the slot is busy.
#[cfg(feature = "exemplars")]
#[inline]
pub(crate) fn offer_exemplar(slots: &[ExemplarSlot], index: usize, exemplar: Exemplar) {
    if let Some(Ok(mut slot)) = slots.get(index).map(Mutex::try_lock) {
        *slot = Some(exemplar);
    }
}

/// Every label of a series but its route, as indices: what tells a route's series apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeriesKey {
    /// Index into [`Config::methods`].
    pub(crate) method: u8,
    pub(crate) status: u16,
    /// The request label's value index ([`crate::request_label::NO_VALUE`] without one).
    pub(crate) label: u16,
    /// Index into [`SCHEMES`] (0 when the preset has no scheme label).
    pub(crate) scheme: u8,
    /// Index into [`PROTOCOL_VERSIONS`] (0 when the preset has no version label).
    pub(crate) version: u8,
}

impl SeriesKey {
    /// A series of `method` and `status` without the other labels, for tests.
    #[cfg(test)]
    pub(crate) fn of(method: u8, status: u16) -> Self {
        Self {
            method,
            status,
            label: crate::request_label::NO_VALUE,
            scheme: 0,
            version: 0,
        }
    }

    /// The key in one integer, so that a series is found with one comparison. The status is
    /// the low 16 bits: a request packs the rest on arrival and adds its status at the end.
    #[inline(always)]
    pub(crate) fn packed(self) -> u64 {
        u64::from(self.label) << 40
            | u64::from(self.scheme) << 32
            | u64::from(self.version) << 24
            | u64::from(self.method) << 16
            | u64::from(self.status)
    }

    /// The key that [`SeriesKey::packed`] gave `packed`.
    fn unpacked(packed: u64) -> Self {
        // Each `as` keeps exactly the bits `packed` put there.
        Self {
            label: (packed >> 40) as u16,
            scheme: (packed >> 32) as u8,
            version: (packed >> 24) as u8,
            method: (packed >> 16) as u8,
            status: packed as u16,
        }
    }
}

/// One label set of the RED histograms: (method, route, status, and the others of the preset).
pub(crate) struct Series {
    /// [`SeriesKey::packed`] of this series' key.
    packed: u64,
    pub(crate) method: u8,
    pub(crate) status: u16,
    pub(crate) label: u16,
    pub(crate) scheme: u8,
    pub(crate) version: u8,
    /// The route value as recorded (unescaped), for snapshots.
    pub(crate) route: Arc<str>,
    /// The rendered label pairs, e.g. `http_request_method="GET",http_route="/",...`.
    pub(crate) labels: Box<str>,
    pub(crate) duration: AtomicHistogram,
    /// One exemplar per duration bucket, when exemplars are on.
    pub(crate) duration_exemplars: Option<Box<[ExemplarSlot]>>,
    pub(crate) request_size: Option<AtomicHistogram>,
    pub(crate) response_size: Option<AtomicHistogram>,
    /// The duration as a native histogram too, when native histograms are on.
    #[cfg(feature = "native-histograms")]
    pub(crate) native_duration: Option<crate::native::NativeHistogram>,
}

impl Series {
    /// Records a request's duration and returns the classic bucket it landed in. The native
    /// histogram is counted first, so that an encoder reading the classic buckets before the
    /// native ones finds no more classic observations than native ones (see `protobuf`).
    #[inline]
    pub(crate) fn observe_duration(&self, bounds_nanos: &[u64], nanos: u64) -> usize {
        #[cfg(feature = "native-histograms")]
        if let Some(native) = &self.native_duration {
            native.observe(nanos);
        }
        self.duration.observe(bounds_nanos, nanos)
    }
}

impl Series {
    #[inline]
    fn is(&self, packed: u64) -> bool {
        self.packed == packed
    }
}

/// Configuration fixed at build time, shared by everything that records or encodes.
pub(crate) struct Config {
    pub(crate) naming: Naming,
    /// Prefix for every redwatch metric name, with its trailing `_` (empty when unset).
    pub(crate) namespace: String,
    /// Constant label pairs, rendered with a leading `,` (empty when none).
    pub(crate) const_labels: String,
    pub(crate) duration_bounds_seconds: Vec<f64>,
    pub(crate) duration_bounds_nanos: Vec<u64>,
    pub(crate) size_bounds_bytes: Option<Vec<u64>>,
    pub(crate) info: Vec<(String, String)>,
    pub(crate) service_name: String,
    /// Whether durations keep exemplars ([`crate::MetricsBuilder::exemplars`]).
    pub(crate) exemplars: bool,
    /// Whether the RED families are exposed and snapshotted ([`crate::MetricsBuilder::request_metrics`]).
    pub(crate) request_metrics: bool,
    /// The method label values, known methods first and `_OTHER` last
    /// ([`crate::MetricsBuilder::known_methods`]).
    pub(crate) methods: &'static [&'static str],
    /// Whether `methods` is the default list, which has a fast lookup.
    pub(crate) default_methods: bool,
    /// The scheme of requests whose URI has none (HTTP/1.1 origin form), as an index into
    /// [`SCHEMES`] ([`crate::MetricsBuilder::url_scheme`]).
    pub(crate) default_scheme: u8,
    /// Whether durations are also kept as native histograms (`MetricsBuilder::native_histograms`;
    /// always false without the `native-histograms` feature, which alone reads it).
    #[cfg_attr(not(feature = "native-histograms"), allow(dead_code))]
    pub(crate) native_histograms: bool,
}

impl Config {
    pub(crate) fn names(&self) -> &'static MetricNames {
        self.naming.names()
    }

    /// The index of `method` in [`Config::methods`].
    #[inline]
    pub(crate) fn method_index(&self, method: &http::Method) -> u8 {
        if self.default_methods {
            method_index(method)
        } else {
            self.custom_method_index(method)
        }
    }

    /// [`Config::method_index`] for a list of the user's: out of line, to keep the default one
    /// small enough to inline.
    #[inline(never)]
    fn custom_method_index(&self, method: &http::Method) -> u8 {
        let known = self.methods.len() - 1;
        self.methods[..known]
            .iter()
            .position(|name| *name == method.as_str())
            .unwrap_or(known) as u8
    }

    /// The label value of method index `method`.
    pub(crate) fn method_name(&self, method: u8) -> &'static str {
        self.methods
            .get(usize::from(method))
            .copied()
            .unwrap_or(OTHER_METHOD)
    }

    /// The scheme and version indices of `request`, or zeros when the preset labels neither.
    /// Always inlined, for the layer: a pointer into the request that reaches a call costs it
    /// a copy of the request (see `MetricsService::call`). For the same reason the scheme is
    /// compared as text: `Scheme`'s own comparison is out of line.
    #[inline(always)]
    pub(crate) fn protocol_of<B>(&self, request: &http::Request<B>) -> (u8, u8) {
        if self.names().scheme_label.is_none() {
            return (0, 0);
        }
        let scheme = match request.uri().scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => 1,
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => 0,
            _ => self.default_scheme,
        };
        (scheme, version_index(request.version()))
    }
}

/// Requests in flight for one method, on a cache line of its own so that methods do not
/// contend with each other or with the configuration read next to them.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct ActiveGauge(pub(crate) AtomicI64);

/// State shared by every route: configuration, gauges and the encoder's list of series.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The TSC where it is invariant (a few ns per reading, versus tens for `Instant::now`
    /// in a VM), the OS monotonic clock otherwise.
    pub(crate) clock: quanta::Clock,
    /// By scheme, then method: `active[scheme * methods.len() + method]`.
    active: Box<[ActiveGauge]>,
    /// Every series ever created, in creation order, for the encoder. Append-only and
    /// lock-free, so that creating a series never waits for an encode in progress.
    series: boxcar::Vec<Arc<Series>>,
    /// The values of the request label, when one is declared.
    pub(crate) label_values: Option<LabelValues>,
    /// Whether a request is read beyond its route, method and protocol: for its body size, a
    /// method list of the user's, its trace context or the request label.
    pub(crate) reads_request_further: bool,
    /// Panicking handlers by (method, status); touched only when a handler panics.
    exceptions: Mutex<BTreeMap<(u8, u16), u64>>,
}

impl Shared {
    /// The in-flight gauge of requests of `scheme` and `method`.
    #[cfg(test)]
    pub(crate) fn active(&self, scheme: u8, method: u8) -> &AtomicI64 {
        self.active_at(self.active_index(scheme, method))
    }

    /// Where the in-flight gauge of `scheme` and `method` is, for [`Shared::active_at`]: a
    /// request works it out once and finds its gauge with it at both ends.
    #[inline]
    pub(crate) fn active_index(&self, scheme: u8, method: u8) -> u16 {
        (usize::from(scheme) * self.config.methods.len() + usize::from(method)) as u16
    }

    /// The in-flight gauge at `index`, from [`Shared::active_index`].
    #[inline]
    pub(crate) fn active_at(&self, index: u16) -> &AtomicI64 {
        &self.active[usize::from(index)].0
    }

    /// Every in-flight gauge, as (scheme, method, value).
    pub(crate) fn active_gauges(&self) -> impl Iterator<Item = (u8, u8, i64)> + '_ {
        let methods = self.config.methods.len();
        self.active.iter().enumerate().map(move |(index, gauge)| {
            (
                (index / methods) as u8,
                (index % methods) as u8,
                gauge.0.load(Ordering::Relaxed),
            )
        })
    }

    /// The series created so far, in creation order; one created during the iteration may
    /// or may not be included.
    pub(crate) fn series(&self) -> impl Iterator<Item = &Series> {
        self.series.iter().map(|(_, series)| &**series)
    }

    pub(crate) fn exceptions(&self) -> MutexGuard<'_, BTreeMap<(u8, u16), u64>> {
        self.exceptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything recorded for one route value.
///
/// Aligned to 128 bytes so that the `Arc` reference count, written by every request, does not
/// share a cache line (or an adjacent-line prefetch pair) with the fields every request reads.
#[repr(align(128))]
pub(crate) struct RouteEntry {
    pub(crate) shared: Arc<Shared>,
    /// Requests to this route are passed through unrecorded.
    pub(crate) excluded: bool,
    /// The route value as recorded, shared by the route's series.
    route: Arc<str>,
    /// The route as a label value, escaped for the exposition formats.
    escaped_route: Box<str>,
    /// The first series of this route, found by a scan of a few atomic loads: a route sees
    /// few (method, status) pairs, and this keeps hashing and epoch guards off the hot path.
    slots: [OnceLock<Arc<Series>>; SLOTS],
    /// Series beyond the slots, by `method << 16 | status`.
    overflow: FastMap<u64, Arc<Series>>,
    /// Serialises series creation, so that a (method, status) pair gets exactly one series.
    create: Mutex<()>,
}

/// Series per route kept in [`RouteEntry::slots`].
const SLOTS: usize = 8;

impl RouteEntry {
    fn new(shared: Arc<Shared>, route: &str, excluded: bool) -> Self {
        Self {
            shared,
            excluded,
            route: route.into(),
            escaped_route: escape_label_value(route).into(),
            slots: Default::default(),
            overflow: FastMap::default(),
            create: Mutex::new(()),
        }
    }

    /// Runs `record` on the series for (method, status) without other labels, creating it on
    /// first use.
    #[cfg(test)]
    pub(crate) fn with_series(&self, method: u8, status: u16, record: impl FnOnce(&Series)) {
        self.with_series_of(SeriesKey::of(method, status), record)
    }

    /// Runs `record` on the series of `key`, creating it on first use.
    #[cfg(test)]
    pub(crate) fn with_series_of(&self, key: SeriesKey, record: impl FnOnce(&Series)) {
        self.with_series_packed(key.packed(), record)
    }

    /// Runs `record` on the series of the key that packs to `packed` ([`SeriesKey::packed`]),
    /// creating it on first use.
    #[inline]
    pub(crate) fn with_series_packed(&self, packed: u64, record: impl FnOnce(&Series)) {
        // One call of `record` on the fast path, so that it is inlined there.
        match self.slot_of(packed) {
            Some(series) => record(series),
            None => self.with_series_slow(packed, record),
        }
    }

    /// The series of a packed key among the slots, if it is there.
    #[inline]
    fn slot_of(&self, packed: u64) -> Option<&Series> {
        for slot in &self.slots {
            match slot.get() {
                Some(series) if series.is(packed) => return Some(series),
                Some(_) => {}
                None => break,
            }
        }
        None
    }

    #[cold]
    fn with_series_slow(&self, packed: u64, record: impl FnOnce(&Series)) {
        let key = SeriesKey::unpacked(packed);
        let overflow = self.overflow.pin();
        if let Some(series) = overflow.get(&packed) {
            return record(series);
        }
        let _creating = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have created it while we waited for the lock.
        for slot in &self.slots {
            match slot.get() {
                Some(series) if series.is(packed) => {
                    return record(series);
                }
                Some(_) => {}
                None => {
                    let created = Arc::new(self.new_series(key));
                    self.shared.series.push(Arc::clone(&created));
                    // Slots are only set under `create`, so this one is still empty.
                    let stored = slot.get_or_init(|| created);
                    return record(stored);
                }
            }
        }
        let series = match overflow.get(&packed) {
            Some(series) => series,
            None => {
                let created = Arc::new(self.new_series(key));
                self.shared.series.push(Arc::clone(&created));
                overflow.get_or_insert(packed, created)
            }
        };
        record(series)
    }

    fn new_series(&self, key: SeriesKey) -> Series {
        let SeriesKey {
            method,
            status,
            label,
            scheme,
            version,
        } = key;
        let config = &self.shared.config;
        let names = config.names();
        let mut labels = format!(
            "{}=\"{}\",{}=\"{}\",{}=\"{}\"",
            names.method_label,
            config.method_name(method),
            names.route_label,
            self.escaped_route,
            names.status_label,
            status,
        );
        // OpenTelemetry's `error.type`: for a server, the status code of a 5xx response. Other
        // series have it empty, which Prometheus reads as absent: every series of a family then
        // has the same label names, as strict parsers of the text formats require.
        if let Some(error_type) = names.error_type_label {
            if status >= 500 {
                labels.push_str(&format!(",{error_type}=\"{status}\""));
            } else {
                labels.push_str(&format!(",{error_type}=\"\""));
            }
        }
        if let Some(scheme_label) = names.scheme_label {
            labels.push_str(&format!(
                ",{scheme_label}=\"{}\"",
                SCHEMES[usize::from(scheme)]
            ));
        }
        if let Some(version_label) = names.protocol_version_label {
            labels.push_str(&format!(
                ",{version_label}=\"{}\"",
                PROTOCOL_VERSIONS[usize::from(version)]
            ));
        }
        if let Some(values) = &self.shared.label_values {
            labels.push_str(values.rendered(label));
        }
        labels.push_str(&config.const_labels);
        let size_histogram = || {
            config
                .size_bounds_bytes
                .as_ref()
                .map(|bounds| AtomicHistogram::new(bounds.len()))
        };
        Series {
            packed: key.packed(),
            method,
            status,
            label,
            scheme,
            version,
            route: Arc::clone(&self.route),
            labels: labels.into(),
            duration: AtomicHistogram::new(config.duration_bounds_nanos.len()),
            duration_exemplars: config.exemplars.then(|| {
                (0..=config.duration_bounds_nanos.len())
                    .map(|_| Mutex::new(None))
                    .collect()
            }),
            request_size: size_histogram(),
            response_size: size_histogram(),
            #[cfg(feature = "native-histograms")]
            native_duration: config
                .native_histograms
                .then(crate::native::NativeHistogram::new),
        }
    }
}

/// Which routes are not recorded.
#[derive(Default)]
pub(crate) struct Exclusions {
    pub(crate) exact: Vec<String>,
    #[cfg(feature = "regex")]
    pub(crate) patterns: Option<RegexSet>,
}

impl Exclusions {
    fn excludes(&self, route: &str, later: &[String]) -> bool {
        self.exact
            .iter()
            .chain(later)
            .any(|excluded| excluded == route)
            || self.matches_a_pattern(route)
    }

    #[cfg(feature = "regex")]
    fn matches_a_pattern(&self, route: &str) -> bool {
        self.patterns
            .as_ref()
            .is_some_and(|patterns| patterns.is_match(route))
    }

    #[cfg(not(feature = "regex"))]
    fn matches_a_pattern(&self, _route: &str) -> bool {
        false
    }
}

/// The storage behind one [`crate::Metrics`].
pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    routes: FastMap<Box<str>, Arc<RouteEntry>>,
    route_count: AtomicUsize,
    max_routes: usize,
    exclusions: Exclusions,
    /// Routes excluded after the build (the dashboard's own), for routes not seen yet.
    excluded_later: Mutex<Vec<String>>,
    unmatched: Arc<RouteEntry>,
    overflow: Arc<RouteEntry>,
}

impl Core {
    pub(crate) fn new(
        config: Config,
        exclusions: Exclusions,
        max_routes: usize,
        label_values: Option<LabelValues>,
    ) -> Self {
        let gauges = SCHEMES.len() * config.methods.len();
        let reads_request_further = config.size_bounds_bytes.is_some()
            || !config.default_methods
            || config.exemplars
            || label_values.is_some();
        let shared = Arc::new(Shared {
            config,
            label_values,
            reads_request_further,
            clock: quanta::Clock::new(),
            active: (0..gauges).map(|_| ActiveGauge::default()).collect(),
            series: boxcar::Vec::new(),
            exceptions: Mutex::new(BTreeMap::new()),
        });
        let unmatched = Arc::new(RouteEntry::new(
            Arc::clone(&shared),
            UNMATCHED_ROUTE,
            exclusions.excludes(UNMATCHED_ROUTE, &[]),
        ));
        let overflow = Arc::new(RouteEntry::new(Arc::clone(&shared), OVERFLOW_ROUTE, false));
        Self {
            shared,
            routes: FastMap::default(),
            route_count: AtomicUsize::new(0),
            max_routes,
            exclusions,
            excluded_later: Mutex::new(Vec::new()),
            unmatched,
            overflow,
        }
    }

    /// The entry shared by requests no route matched.
    #[inline]
    pub(crate) fn unmatched(&self) -> Arc<RouteEntry> {
        Arc::clone(&self.unmatched)
    }

    /// Stops recording `route` from its first request on (a route already recorded stays).
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn exclude_later(&self, route: &str) {
        self.excluded_later
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(route.to_owned());
    }

    /// The entry for a matched route template.
    ///
    /// Exclusions are decided once per route, when it is first seen, so regexes never run on
    /// the request path after that.
    pub(crate) fn route(&self, route: &str) -> Arc<RouteEntry> {
        let routes = self.routes.pin();
        if let Some(entry) = routes.get(route) {
            return Arc::clone(entry);
        }
        if self.route_count.load(Ordering::Relaxed) >= self.max_routes {
            return Arc::clone(&self.overflow);
        }
        let excluded = {
            let later = self
                .excluded_later
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.exclusions.excludes(route, &later)
        };
        let entry = Arc::new(RouteEntry::new(Arc::clone(&self.shared), route, excluded));
        let stored = routes.get_or_insert(route.into(), Arc::clone(&entry));
        if Arc::ptr_eq(stored, &entry) {
            self.route_count.fetch_add(1, Ordering::Relaxed);
        }
        Arc::clone(stored)
    }
}

/// Records a handler panic for the `flask` exceptions counter.
pub(crate) fn record_exception(shared: &Shared, method: u8, status: u16) {
    *shared.exceptions().entry((method, status)).or_insert(0) += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_key_unpacks_to_itself_and_packs_apart_from_every_other() {
        let extremes = |max: u64| [0, 1, max / 2, max];
        let mut packed_keys = std::collections::HashSet::new();
        for label in extremes(u64::from(u16::MAX)) {
            for scheme in extremes(u64::from(u8::MAX)) {
                for version in extremes(u64::from(u8::MAX)) {
                    for method in extremes(u64::from(u8::MAX)) {
                        for status in extremes(u64::from(u16::MAX)) {
                            let key = SeriesKey {
                                label: label as u16,
                                scheme: scheme as u8,
                                version: version as u8,
                                method: method as u8,
                                status: status as u16,
                            };
                            assert_eq!(SeriesKey::unpacked(key.packed()), key);
                            assert!(packed_keys.insert(key.packed()), "{key:?} collides");
                            // A request packs all but the status and adds the status at the end.
                            let arriving = SeriesKey { status: 0, ..key }.packed();
                            assert_eq!(arriving | u64::from(key.status), key.packed());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn histogram_puts_values_on_inclusive_upper_bounds() {
        let bounds = [10, 20];
        let histogram = AtomicHistogram::new(bounds.len());
        for value in [0, 10, 11, 20, 21, 1000] {
            histogram.observe(&bounds, value);
        }
        let mut cumulative = Vec::new();
        let sum = histogram.snapshot(&mut cumulative);
        assert_eq!(cumulative, vec![2, 4, 6]);
        assert_eq!(sum, 1062);
    }

    #[test]
    fn wide_sum_counts_past_u64_and_a_crossing_in_flight() {
        let sum = WideSum::default();
        let mut expected = 0u128;
        for value in [
            1,
            MAX_SUMMAND,
            MAX_SUMMAND - 1,
            7,
            MAX_SUMMAND,
            MAX_SUMMAND,
            3,
        ] {
            sum.add(value);
            expected += u128::from(value);
            assert_eq!(sum.load(), expected);
        }
        for _ in 0..20 {
            sum.add(u64::MAX);
            expected += u128::from(MAX_SUMMAND);
            assert_eq!(sum.load(), expected, "oversized values count as 2^62");
        }
        // A writer that has added to `low` but not yet counted its crossing.
        let caught = WideSum::default();
        caught.low.store((1 << 63) + 5, Ordering::Relaxed);
        assert_eq!(caught.load(), (1 << 63) + 5);
        caught.low.store(5, Ordering::Relaxed);
        caught.crossings.store(1, Ordering::Relaxed);
        assert_eq!(caught.load(), (1 << 64) + 5);
    }
}
