//! HTTP transport: the target, request templates, a keep-alive pool for open loop and dedicated
//! connections for closed loop (HTTP/1.1 exchanged on directly by the task holding the
//! connection, see `http1`; hyper for HTTP/2 and [`get_text`]), and the classification of
//! failures.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use super::http1::OwnedHttp1;
use super::mix::MixEntry;
use super::scenario::Scenario;

/// Why a request failed without a usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No complete response within `--timeout`.
    Timeout,
    /// The connection could not be established (refused, unreachable, connect timeout).
    Connect,
    /// The connection was reset or closed mid-exchange.
    Reset,
    /// Anything else (protocol errors, local resource exhaustion).
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 4] = [Self::Timeout, Self::Connect, Self::Reset, Self::Other];

    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::Other => "other",
        }
    }

    /// Position in [`ErrorKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A response, read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Body bytes received (counted as they stream in; the body is never held whole).
    pub bytes: u64,
}

/// Result of one request: the response, or why there was none.
pub type Outcome = Result<Answer, ErrorKind>;

/// The parsed `--target`.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://`: TLS (and HTTP/2 when the server's ALPN chooses it).
    pub tls: bool,
    /// The host name, for TLS's server name.
    host: String,
    /// `host:port` for connecting and the Host header.
    authority: String,
    /// Path prefix to which mix paths are appended (no trailing slash).
    base_path: String,
    /// The URL as given, for messages.
    pub display: String,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(url: &str) -> anyhow::Result<Self> {
        Self::parse(url)
    }
}

impl Target {
    /// Parses and checks a target URL (`http://` or `https://`).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().ok().with_context(|| {
            format!("{url:?} is not a URL (expected e.g. http://127.0.0.1:5000)")
        })?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("{url:?}: expected an http:// or https:// URL"),
        };
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?}: no host"))?;
        if authority.as_str().contains('@') {
            bail!("{url:?}: credentials in the URL are not supported");
        }
        if authority.host().is_empty() {
            bail!("{url:?}: no host");
        }
        if uri.query().is_some() {
            bail!("{url:?}: put query strings in the --mix paths");
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            tls,
            // An IPv6 literal's brackets are not part of the name.
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            authority: format!("{}:{port}", authority.host()),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            display: url.to_owned(),
        })
    }

    /// The API listening on `addr`, at its root.
    pub fn http(addr: SocketAddr) -> Self {
        Self {
            tls: false,
            host: addr.ip().to_string(),
            authority: addr.to_string(),
            base_path: String::new(),
            display: format!("http://{addr}"),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `path` as the server sees it: after the target's base path.
    pub fn server_path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }

    /// The usual place of the target's metrics: `/metrics` at the root of its host.
    pub fn metrics_url(&self) -> anyhow::Result<Uri> {
        format!("{}://{}/metrics", self.scheme(), self.authority)
            .parse()
            .context("invalid metrics URL")
    }

    /// Resolves the target's addresses (once, before the run).
    pub async fn resolve(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(self.authority.as_str())
            .await
            .with_context(|| format!("cannot resolve --target host {:?}", self.authority))?
            .collect();
        if addrs.is_empty() {
            bail!("cannot resolve --target host {:?}", self.authority);
        }
        Ok(addrs)
    }

    /// Request template for mix entry `index`: with `headers` (--header) on every request, a
    /// fresh `traceparent` on each when `traceparent` is set, and the scenario's path, headers
    /// and body for the entry when there is one.
    pub fn template(
        &self,
        index: usize,
        entry: &MixEntry,
        headers: &HeaderMap,
        traceparent: bool,
        scenario: Option<&Arc<Scenario>>,
    ) -> anyhow::Result<RequestTemplate> {
        let host = HeaderValue::from_str(&self.authority).context("invalid --target host")?;
        let mut all_headers = HeaderMap::new();
        all_headers.insert(HOST, host);
        // --header overrides the defaults, and an endpoint's own headers override --header.
        all_headers.extend(headers.clone());
        let request = scenario.and_then(|s| s.endpoint(index));
        if let Some(request) = request {
            all_headers.extend(request.headers.clone());
        }
        let fixed = match scenario {
            Some(scenario) if !scenario.path_is_fixed(index) => None,
            _ => Some(self.request_uris(&entry.path)?),
        };
        let http1_request_line = fixed.as_ref().map(|(origin, _)| {
            let mut line = Vec::new();
            push_http1_request_line(&mut line, &entry.method, origin);
            Bytes::from(line)
        });
        let http1_fields = Bytes::from(http1_fields(&all_headers, traceparent));
        Ok(RequestTemplate {
            index,
            method: entry.method.clone(),
            fixed,
            http1_request_line,
            http1_fields,
            headers: all_headers,
            traceparent,
            scenario: scenario.cloned(),
            scheme: self.scheme(),
            authority: self.authority.clone(),
            base_path: self.base_path.clone(),
        })
    }

    /// The origin-form (HTTP/1.1) and absolute-form (HTTP/2) URIs of a path.
    fn request_uris(&self, path: &str) -> anyhow::Result<(Uri, Uri)> {
        uris(self.scheme(), &self.authority, &self.base_path, path)
    }
}

fn uris(scheme: &str, authority: &str, base_path: &str, path: &str) -> anyhow::Result<(Uri, Uri)> {
    let joined = format!("{base_path}{path}");
    let absolute: Uri = format!("{scheme}://{authority}{joined}")
        .parse()
        .with_context(|| format!("invalid request URL for path {path:?}"))?;
    let origin: Uri = joined
        .parse()
        .with_context(|| format!("invalid request path {joined:?}"))?;
    Ok((origin, absolute))
}

/// Appends an HTTP/1.1 request line with the origin-form target (`GET /users/7 HTTP/1.1`),
/// and its CRLF.
fn push_http1_request_line(out: &mut Vec<u8>, method: &Method, origin: &Uri) {
    let target = origin
        .path_and_query()
        .map_or("/", |target| target.as_str());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// The header fields every HTTP/1.1 request of a template carries, each with its CRLF: all of
/// `headers` (Host among them) but `Content-Length`, which is always written for the request's
/// own body, and `traceparent` when each request gets a new one.
fn http1_fields(headers: &HeaderMap, traceparent: bool) -> Vec<u8> {
    let mut fields = Vec::new();
    for (name, value) in headers {
        if name == CONTENT_LENGTH || (traceparent && name == "traceparent") {
            continue;
        }
        fields.extend_from_slice(name.as_str().as_bytes());
        fields.extend_from_slice(b": ");
        fields.extend_from_slice(value.as_bytes());
        fields.extend_from_slice(b"\r\n");
    }
    fields
}

/// Everything needed to build one endpoint's request cheaply (all fields are refcounted).
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// The mix entry's index.
    index: usize,
    method: Method,
    /// Origin and absolute URI, unless the scenario renders the path per request.
    fixed: Option<(Uri, Uri)>,
    /// The HTTP/1.1 request line of the fixed path, serialized once.
    http1_request_line: Option<Bytes>,
    /// The HTTP/1.1 header fields common to all requests, serialized once (see [`http1_fields`]).
    http1_fields: Bytes,
    /// Host, --header and the endpoint's headers.
    headers: HeaderMap,
    /// Give each request a new `traceparent` (--traceparent).
    traceparent: bool,
    scenario: Option<Arc<Scenario>>,
    scheme: &'static str,
    authority: String,
    base_path: String,
}

/// One request's URIs and body, rendered before it is due to leave.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Origin and absolute URI of a path rendered for this request; `None` for the template's
    /// fixed path. (Boxed: a request is moved a few times on its way, and most have none.)
    uris: Option<Box<(Uri, Uri)>>,
    body: Option<Bytes>,
    traceparent: Option<HeaderValue>,
}

impl RequestTemplate {
    /// Request `n`'s URIs and body (`seed` draws its random values). A template that renders
    /// into an invalid request fails it as `other`; the first such failure is reported once.
    pub fn prepare(&self, seed: u64, n: u64) -> Result<Prepared, ErrorKind> {
        let mut prepared = self.parts(seed, n)?;
        if self.traceparent {
            prepared.traceparent = Some(new_traceparent());
        }
        Ok(prepared)
    }

    fn parts(&self, seed: u64, n: u64) -> Result<Prepared, ErrorKind> {
        let Some(scenario) = &self.scenario else {
            return self.fixed_parts(None);
        };
        let rendered = scenario
            .render(self.index, seed, n)
            .map_err(|reason| render_failed(&reason))?;
        match rendered.path {
            None => self.fixed_parts(rendered.body),
            Some(path) => {
                let uris = uris(self.scheme, &self.authority, &self.base_path, &path)
                    .map_err(|err| render_failed(&format!("{err:#}")))?;
                Ok(Prepared {
                    uris: Some(Box::new(uris)),
                    body: rendered.body,
                    traceparent: None,
                })
            }
        }
    }

    fn fixed_parts(&self, body: Option<Bytes>) -> Result<Prepared, ErrorKind> {
        if self.fixed.is_none() {
            return Err(ErrorKind::Other);
        }
        Ok(Prepared {
            uris: None,
            body,
            traceparent: None,
        })
    }

    /// The origin-form and absolute-form URIs of a prepared request.
    fn uris<'a>(&'a self, prepared: &'a Prepared) -> Option<&'a (Uri, Uri)> {
        prepared.uris.as_deref().or(self.fixed.as_ref())
    }

    /// Whether the requests are HEAD requests, whose responses have no body.
    pub(super) fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// Appends a prepared request's HTTP/1.1 bytes to `out`: the same request as
    /// [`RequestTemplate::build`] makes for hyper, with the parts common to every request
    /// serialized once, in the template.
    pub(super) fn write_http1(
        &self,
        prepared: &Prepared,
        out: &mut Vec<u8>,
    ) -> Result<(), ErrorKind> {
        match (&prepared.uris, &self.http1_request_line) {
            (Some(uris), _) => push_http1_request_line(out, &self.method, &uris.0),
            (None, Some(line)) => out.extend_from_slice(line),
            (None, None) => return Err(ErrorKind::Other),
        }
        out.extend_from_slice(&self.http1_fields);
        if let Some(traceparent) = &prepared.traceparent {
            out.extend_from_slice(b"traceparent: ");
            out.extend_from_slice(traceparent.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let body = prepared.body.as_deref().unwrap_or_default();
        if !body.is_empty() || matches!(self.method, Method::POST | Method::PUT | Method::PATCH) {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Ok(())
    }

    /// The request for hyper: with the absolute URI (HTTP/2, which names the host in
    /// `:authority`), or the origin form and a Host header.
    fn build(&self, prepared: &Prepared, absolute: bool) -> Request<Full<Bytes>> {
        let mut headers = HeaderMap::new();
        let body = prepared.body.clone().unwrap_or_default();
        let length = body.len();
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = self.method.clone();
        if let Some((origin, absolute_form)) = self.uris(prepared) {
            *request.uri_mut() = if absolute {
                absolute_form.clone()
            } else {
                origin.clone()
            };
        }
        for (name, value) in &self.headers {
            // HTTP/2 names the host in `:authority` (from the absolute URI); a Host header
            // besides it is a duplicate that servers such as nginx answer with 400.
            if !(absolute && name == HOST) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(traceparent) = &prepared.traceparent {
            headers.insert("traceparent", traceparent.clone());
        }
        if length > 0 || matches!(self.method, Method::POST | Method::PUT | Method::PATCH) {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        *request.headers_mut() = headers;
        request
    }
}

/// A `traceparent` of a new trace, sampled: random trace and span ids, which are never all
/// zeros (the W3C specification forbids that), as version `00`.
fn new_traceparent() -> HeaderValue {
    let trace_id = rand::random::<u128>().max(1);
    let span_id = rand::random::<u64>().max(1);
    let text = format!("00-{trace_id:032x}-{span_id:016x}-01");
    // Hex digits and '-' only: always a valid header value.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Reports the first request a scenario template could not render (the rest only count).
fn render_failed(reason: &str) -> ErrorKind {
    static REPORTED: std::sync::Once = std::sync::Once::new();
    REPORTED.call_once(|| {
        eprintln!(
            "redwatch load: a request could not be built, counted as error `other`: {reason}"
        );
    });
    ErrorKind::Other
}

/// How connections are made: TCP to the target's addresses, then TLS for an https target, then
/// HTTP/1.1, h2c (prior knowledge), or HTTP/2 when the TLS handshake's ALPN chose it.
#[derive(Clone)]
pub struct Transport {
    addrs: Arc<[SocketAddr]>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    h2c: bool,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("addrs", &self.addrs)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .field("h2c", &self.h2c)
            .finish()
    }
}

impl Transport {
    /// The transport to `target` at `addrs`; `tls` is the client configuration of an https
    /// target (its ALPN list offers h2 and http/1.1).
    pub fn new(
        target: &Target,
        addrs: Vec<SocketAddr>,
        tls: Option<Arc<rustls::ClientConfig>>,
        h2c: bool,
    ) -> anyhow::Result<Self> {
        let tls = match (target.tls, tls) {
            (true, Some(config)) => {
                let name = ServerName::try_from(target.host.clone())
                    .with_context(|| format!("invalid TLS server name {:?}", target.host))?;
                Some((TlsConnector::from(config), name))
            }
            (true, None) => bail!("an https target needs a TLS configuration"),
            (false, _) => None,
        };
        Ok(Self {
            addrs: addrs.into(),
            tls,
            h2c,
        })
    }

    /// Whether every connection is HTTP/2 from the start (h2c); over TLS it depends on ALPN.
    fn prior_knowledge_h2(&self) -> bool {
        self.h2c && self.tls.is_none()
    }
}

/// Keep-alive connections for open loop. HTTP/1.1: a request takes the most recently used idle
/// connection or opens a new one, and returns it afterwards, so the pool grows to the
/// concurrency the rate actually needs (rate × latency) and never beyond `--max-in-flight`
/// connections. HTTP/2 (h2c, or chosen by ALPN on the first TLS connection): `--connections`
/// multiplexed connections, taken in turn by successive requests.
#[derive(Debug)]
pub struct ConnectionPool {
    transport: Transport,
    timeout: Duration,
    /// HTTP/1.1 idle connections, most recently used last (LIFO keeps a hot working set; the
    /// rest idle until the server closes them, and are discarded on checkout).
    idle: Mutex<Vec<Connection>>,
    /// HTTP/2 lanes, one connection each. An async lock, so that the requests of a lane wait
    /// for the connection being opened rather than each opening their own.
    lanes: Vec<tokio::sync::Mutex<Option<Connection>>>,
    next_lane: AtomicUsize,
    /// The target speaks HTTP/2: h2c, or learned from ALPN.
    multiplexed: AtomicBool,
    /// Connection attempts back off while the target refuses them (or drops every new
    /// connection): the schedule goes on, but requests due before the back-off ends fail as
    /// `connect` errors without a new attempt, so a dead target is not hammered at the rate.
    backoff: Mutex<ConnectBackoff>,
}

/// When the next connection attempt may be made, and how long to wait after another failure.
#[derive(Debug, Default)]
struct ConnectBackoff {
    until: Option<Instant>,
    next_pause: Option<Duration>,
    /// The failure that started the back-off; requests due during it fail the same way.
    cause: Option<ErrorKind>,
}

/// First pause after a failed connect; doubles per consecutive failure up to [`MAX_CONNECT_BACKOFF`].
const FIRST_CONNECT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(1);

impl ConnectBackoff {
    /// `Err(cause)` while backing off.
    fn allows_attempt(&self, now: Instant) -> Result<(), ErrorKind> {
        match (self.until, self.cause) {
            (Some(until), Some(cause)) if now < until => Err(cause),
            _ => Ok(()),
        }
    }

    fn failed(&mut self, now: Instant, cause: ErrorKind) {
        let pause = self.next_pause.unwrap_or(FIRST_CONNECT_BACKOFF);
        self.until = Some(now + pause);
        self.next_pause = Some((pause * 2).min(MAX_CONNECT_BACKOFF));
        self.cause = Some(cause);
    }

    fn succeeded(&mut self) {
        *self = Self::default();
    }
}

impl ConnectionPool {
    /// An empty pool; `timeout` bounds each request including any connect; HTTP/2 requests are
    /// spread over `connections` connections.
    pub fn new(transport: Transport, timeout: Duration, connections: usize) -> Self {
        let multiplexed = transport.prior_knowledge_h2();
        Self {
            transport,
            timeout,
            idle: Mutex::new(Vec::new()),
            lanes: (0..connections.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_lane: AtomicUsize::new(0),
            multiplexed: AtomicBool::new(multiplexed),
            backoff: Mutex::new(ConnectBackoff::default()),
        }
    }

    /// Opens a connection unless connects are backing off after failures.
    async fn connect(&self) -> Result<Connection, ErrorKind> {
        lock(&self.backoff).allows_attempt(Instant::now())?;
        // Owned: an HTTP/1.1 connection carries one exchange at a time, and between exchanges
        // it waits in the pool unread, so the task that checks it out can do its I/O itself.
        let opened = Connection::open(&self.transport, self.timeout).await;
        // Success is only known once a request on the new connection has been answered.
        if let Err(cause) = &opened {
            lock(&self.backoff).failed(Instant::now(), *cause);
        }
        opened
    }

    /// An idle HTTP/1.1 connection the server has not closed.
    async fn checkout_idle(&self) -> Option<Connection> {
        loop {
            let mut connection = lock(&self.idle).pop()?;
            // A kept connection the server has since closed is replaced before sending, so an
            // idle-timeout close is not counted against the target.
            if !connection.is_closed() && connection.ready().await {
                return Some(connection);
            }
        }
    }

    /// A handle on the next HTTP/2 lane's connection, opened if need be; `true` when fresh.
    async fn lane_connection(&self) -> Result<(Connection, bool), ErrorKind> {
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let mut slot = self.lanes[lane].lock().await;
        if let Some(connection) = slot.as_mut()
            && !connection.is_closed()
            && connection.ready().await
            && let Some(handle) = connection.share()
        {
            return Ok((handle, false));
        }
        let connection = self.connect().await?;
        match connection.share() {
            Some(handle) => {
                *slot = Some(connection);
                Ok((handle, true))
            }
            // The server answered this one in HTTP/1.1 after all: use it once.
            None => Ok((connection, true)),
        }
    }

    /// A fresh HTTP/2 connection opened before the protocol was known: from now on requests
    /// go to the lanes, the first of which gets this connection if it has none.
    fn learned_multiplexed(&self, connection: &Connection) {
        let Some(handle) = connection.share() else {
            return;
        };
        self.multiplexed.store(true, Ordering::Relaxed);
        if let Ok(mut slot) = self.lanes[0].try_lock()
            && slot.as_ref().is_none_or(Connection::is_closed)
        {
            *slot = Some(handle);
        }
    }

    /// Sends one request and reads the whole response body, within the timeout.
    pub async fn send(&self, template: &RequestTemplate, prepared: &Prepared) -> Outcome {
        let exchange = async {
            let (mut connection, fresh) = if self.multiplexed.load(Ordering::Relaxed) {
                self.lane_connection().await?
            } else {
                match self.checkout_idle().await {
                    Some(connection) => (connection, false),
                    None => {
                        let connection = self.connect().await?;
                        self.learned_multiplexed(&connection);
                        (connection, true)
                    }
                }
            };
            let outcome = connection.send(template, prepared).await;
            match outcome {
                Ok(_) => {
                    if fresh {
                        lock(&self.backoff).succeeded();
                    }
                    // HTTP/2 handles are dropped: their connection stays in its lane.
                    if connection.share().is_none() && !connection.is_closed() {
                        lock(&self.idle).push(connection);
                    }
                }
                // A target that accepts and then drops every new connection is as dead as one
                // that refuses them: back off from connecting to it too.
                Err(cause @ (ErrorKind::Reset | ErrorKind::Other)) if fresh => {
                    lock(&self.backoff).failed(Instant::now(), cause);
                }
                Err(_) => {}
            }
            outcome
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(ErrorKind::Timeout))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is a plain list of connections: still usable after a panic elsewhere.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The stream under a connection: plain TCP, or TLS over it (boxed: a TLS session's state is
/// about a kilobyte).
pub type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// One connection: HTTP/1.1, exchanged on directly by the task that holds it (see
/// [`OwnedHttp1`]), or a handle on a multiplexed HTTP/2 connection through hyper.
#[derive(Debug)]
pub enum Connection {
    /// Boxed: the larger variant by far, and made once per connection.
    Http1(Box<OwnedHttp1>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Connection {
    /// Connects to the first reachable address (and completes TLS), within `timeout`.
    ///
    /// An HTTP/1.1 connection is used directly by the holder's [`Connection::ready`] and
    /// [`Connection::send`], one exchange at a time: no channels between tasks, no allocation
    /// per response. Between exchanges nothing reads it; a close by the peer meanwhile is seen by
    /// the next `ready`. An HTTP/2 connection's I/O runs in a task of its own, so that its
    /// handles can be used from any task.
    pub async fn open(transport: &Transport, timeout: Duration) -> Result<Self, ErrorKind> {
        let open = async {
            let (stream, h2) = connect(transport).await?;
            if !h2 {
                return Ok(Self::Http1(Box::new(OwnedHttp1::new(stream))));
            }
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|err| classify_hyper(&err))?;
            tokio::spawn(connection);
            Ok(Self::Http2(sender))
        };
        // Boxed: the TLS handshake's state is kilobytes, and inline it would make every
        // future that may open a connection (a worker's exchange, for each request) that large,
        // to be copied on every request; one allocation per connection is cheaper.
        tokio::time::timeout(timeout, Box::pin(open))
            .await
            .unwrap_or(Err(ErrorKind::Connect))
    }

    /// Whether the peer (or an error) has closed the connection.
    pub fn is_closed(&self) -> bool {
        match self {
            Self::Http1(http1) => http1.is_closed(),
            Self::Http2(sender) => sender.is_closed(),
        }
    }

    /// Another handle on a multiplexed (HTTP/2) connection; `None` for HTTP/1.1.
    fn share(&self) -> Option<Connection> {
        match self {
            Self::Http1(_) => None,
            Self::Http2(sender) => Some(Self::Http2(sender.clone())),
        }
    }

    /// Whether the connection can take another request (false once the peer closed it).
    pub async fn ready(&mut self) -> bool {
        match self {
            Self::Http1(http1) => http1.ready(),
            Self::Http2(sender) => sender.ready().await.is_ok(),
        }
    }

    /// Sends one request and reads the whole response body (no timeout: the caller applies it).
    pub async fn send(&mut self, template: &RequestTemplate, prepared: &Prepared) -> Outcome {
        match self {
            Self::Http1(http1) => http1.send(template, prepared).await,
            Self::Http2(sender) => {
                let response = sender
                    .send_request(template.build(prepared, true))
                    .await
                    .map_err(|err| classify_hyper(&err))?;
                read_response(response).await
            }
        }
    }
}

/// A stream to the first reachable address of `transport`, TLS completed, and whether it speaks
/// HTTP/2 (h2c, or chosen by the server's ALPN).
async fn connect(transport: &Transport) -> Result<(Stream, bool), ErrorKind> {
    let mut last = ErrorKind::Connect;
    for addr in transport.addrs.iter() {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Nagle would add up to 40 ms to small requests on some stacks.
                let _ = stream.set_nodelay(true);
                let Some((connector, name)) = &transport.tls else {
                    return Ok((Either::Left(stream), transport.h2c));
                };
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|err| tls_failed(name, &err))?;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                return Ok((Either::Right(Box::new(tls)), h2));
            }
            Err(err) => last = classify_io(&err, ErrorKind::Connect),
        }
    }
    Err(last)
}

/// GETs `url` (http or https, with `tls` for https) on a connection of its own and returns the
/// body as text; errors for a status other than 2xx or a body over `limit` bytes.
pub async fn get_text(
    url: &Uri,
    tls: Option<Arc<rustls::ClientConfig>>,
    accept: &'static str,
    limit: usize,
) -> anyhow::Result<String> {
    let origin = url.authority().context("no host in the URL")?;
    let target = Target::parse(&format!(
        "{}://{origin}",
        url.scheme_str().unwrap_or("http")
    ))?;
    let transport = Transport::new(&target, target.resolve().await?, tls, false)?;
    let (stream, h2) = tokio::time::timeout(Duration::from_secs(10), connect(&transport))
        .await
        .unwrap_or(Err(ErrorKind::Connect))
        .map_err(|kind| anyhow::anyhow!("cannot connect ({kind})"))?;
    let io = TokioIo::new(stream);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let (origin_form, absolute) = target.request_uris(path)?;
    let mut request = Request::new(Full::new(Bytes::new()));
    request
        .headers_mut()
        .insert(hyper::header::ACCEPT, HeaderValue::from_static(accept));
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        *request.uri_mut() = absolute;
        sender.send_request(request).await?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        *request.uri_mut() = origin_form;
        request
            .headers_mut()
            .insert(HOST, HeaderValue::from_str(&target.authority)?);
        sender.send_request(request).await?
    };
    let status = response.status();
    if !status.is_success() {
        bail!("status {status}");
    }
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if text.len() + data.len() > limit {
                bail!("more than {limit} bytes");
            }
            text.extend_from_slice(data);
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// A failed TLS handshake counts as a `connect` error; the first one is also reported, since
/// its reason (an unknown certificate authority, a name mismatch) is what needs fixing.
fn tls_failed(name: &ServerName<'_>, err: &io::Error) -> ErrorKind {
    static REPORTED: std::sync::Once = std::sync::Once::new();
    REPORTED.call_once(|| {
        eprintln!(
            "redwatch load: TLS handshake with {} failed: {err} (see --cacert, --insecure)",
            name.to_str()
        );
    });
    ErrorKind::Connect
}

/// Reads a response to its end.
async fn read_response(response: Response<Incoming>) -> Outcome {
    let status = response.status().as_u16();
    let mut body = response.into_body();
    // Read the body to the end: the exchange is only complete (and the connection reusable)
    // once it has arrived, so latency includes it. Frames are counted and dropped as they come,
    // so a large response costs one read buffer, not its size.
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| classify_hyper(&err))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok(Answer { status, bytes })
}

fn classify_hyper(err: &hyper::Error) -> ErrorKind {
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return ErrorKind::Reset;
    }
    match classify_chain(err) {
        ErrorKind::Other if err.is_parse() || err.is_user() => ErrorKind::Other,
        kind => kind,
    }
}

/// Walks the source chain for the first I/O or hyper error that says what happened.
fn classify_chain(err: &(dyn StdError + 'static)) -> ErrorKind {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(err) = current {
        if let Some(io_err) = err.downcast_ref::<io::Error>() {
            return classify_io(io_err, ErrorKind::Other);
        }
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>() {
            if hyper_err.is_incomplete_message() || hyper_err.is_canceled() || hyper_err.is_closed()
            {
                return ErrorKind::Reset;
            }
            if hyper_err.is_timeout() {
                return ErrorKind::Timeout;
            }
        }
        current = err.source();
    }
    ErrorKind::Other
}

pub(super) fn classify_io(err: &io::Error, fallback: ErrorKind) -> ErrorKind {
    use io::ErrorKind as Io;
    match err.kind() {
        Io::ConnectionRefused
        | Io::AddrNotAvailable
        | Io::HostUnreachable
        | Io::NetworkUnreachable => ErrorKind::Connect,
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => {
            ErrorKind::Reset
        }
        Io::TimedOut => ErrorKind::Timeout,
        _ => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_backoff_doubles_up_to_a_second_and_resets() {
        let start = Instant::now();
        let mut backoff = ConnectBackoff::default();
        assert_eq!(backoff.allows_attempt(start), Ok(()));
        backoff.failed(start, ErrorKind::Reset);
        let soon = start + Duration::from_millis(9);
        assert_eq!(backoff.allows_attempt(soon), Err(ErrorKind::Reset));
        assert_eq!(
            backoff.allows_attempt(start + Duration::from_millis(10)),
            Ok(())
        );
        for _ in 0..10 {
            backoff.failed(start, ErrorKind::Connect);
        }
        let almost = start + Duration::from_millis(999);
        assert_eq!(backoff.allows_attempt(almost), Err(ErrorKind::Connect));
        assert_eq!(backoff.allows_attempt(start + MAX_CONNECT_BACKOFF), Ok(()));
        backoff.succeeded();
        assert_eq!(backoff.allows_attempt(start), Ok(()));
    }

    #[test]
    fn parses_targets() {
        let target = Target::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(target.authority, "127.0.0.1:5000");
        assert_eq!(target.base_path, "");
        let target = Target::parse("http://localhost/api/").unwrap();
        assert_eq!(target.authority, "localhost:80");
        assert_eq!(target.base_path, "/api");
        let target = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(target.authority, "[::1]:8080");
        let target = Target::parse("https://localhost/").unwrap();
        assert_eq!((target.tls, target.host.as_str()), (true, "localhost"));
        assert_eq!(target.authority, "localhost:443");
        assert_eq!(Target::parse("https://[::1]:8443").unwrap().host, "::1");
        for bad in [
            "",
            "127.0.0.1:5000",
            "ftp://127.0.0.1",
            "ftp://x",
            "http://",
            "http://a:b@h/",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn templates_join_base_path() {
        let target = Target::parse("http://127.0.0.1:5000/api").unwrap();
        let entry = MixEntry {
            method: Method::POST,
            path: "/users/1?x=1".into(),
            weight: 1,
            name: None,
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        let template = target.template(0, &entry, &headers, false, None).unwrap();
        let prepared = template.prepare(1, 0).unwrap();
        let (origin, absolute) = template.uris(&prepared).unwrap();
        assert_eq!(origin, "/api/users/1?x=1");
        assert_eq!(absolute, "http://127.0.0.1:5000/api/users/1?x=1");
        let request = template.build(&prepared, false);
        assert_eq!(request.uri(), "/api/users/1?x=1");
        assert_eq!(request.headers()[CONTENT_LENGTH], "0");
        assert_eq!(request.headers()[HOST], "127.0.0.1:5000");
        assert_eq!(request.headers()["x-api-key"], "k");
        let http2 = template.build(&prepared, true);
        assert_eq!(http2.uri(), "http://127.0.0.1:5000/api/users/1?x=1");
        // In HTTP/2 the authority travels as `:authority` only.
        assert!(!http2.headers().contains_key(HOST));
        assert_eq!(http2.headers()["x-api-key"], "k");
    }

    fn http1_text(template: &RequestTemplate, prepared: &Prepared) -> String {
        let mut bytes = Vec::new();
        template.write_http1(prepared, &mut bytes).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn http1_requests_carry_what_the_built_request_carries() {
        let target = Target::parse("http://127.0.0.1:5000/api").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        // Always computed from the request's own body.
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
        let entry = |method: Method| MixEntry {
            method,
            path: "/users/1?x=1".into(),
            weight: 1,
            name: None,
        };
        let get = target
            .template(0, &entry(Method::GET), &headers, false, None)
            .unwrap();
        assert_eq!(
            http1_text(&get, &get.prepare(1, 0).unwrap()),
            "GET /api/users/1?x=1 HTTP/1.1\r\nhost: 127.0.0.1:5000\r\nx-api-key: k\r\n\r\n"
        );
        let post = target
            .template(0, &entry(Method::POST), &headers, false, None)
            .unwrap();
        let mut prepared = post.prepare(1, 0).unwrap();
        assert_eq!(
            http1_text(&post, &prepared),
            "POST /api/users/1?x=1 HTTP/1.1\r\nhost: 127.0.0.1:5000\r\nx-api-key: k\r\n\
             content-length: 0\r\n\r\n"
        );
        prepared.body = Some(Bytes::from_static(b"{\"a\": 1234567890}"));
        prepared.uris = Some(Box::new(target.request_uris("/rendered/7").unwrap()));
        assert_eq!(
            http1_text(&post, &prepared),
            "POST /api/rendered/7 HTTP/1.1\r\nhost: 127.0.0.1:5000\r\nx-api-key: k\r\n\
             content-length: 17\r\n\r\n{\"a\": 1234567890}"
        );
        let traced = target
            .template(0, &entry(Method::HEAD), &headers, true, None)
            .unwrap();
        assert!(traced.is_head());
        let prepared = traced.prepare(1, 0).unwrap();
        let text = http1_text(&traced, &prepared);
        let traceparent = prepared.traceparent.as_ref().unwrap().to_str().unwrap();
        assert_eq!(
            text,
            format!(
                "HEAD /api/users/1?x=1 HTTP/1.1\r\nhost: 127.0.0.1:5000\r\nx-api-key: k\r\n\
                 traceparent: {traceparent}\r\n\r\n"
            )
        );
    }

    #[test]
    fn traceparent_gives_each_request_a_new_sampled_trace() {
        let target = Target::parse("http://127.0.0.1:5000").unwrap();
        let entry = MixEntry {
            method: Method::GET,
            path: "/users/1".into(),
            weight: 1,
            name: None,
        };
        let headers = HeaderMap::new();
        let traced = target.template(0, &entry, &headers, true, None).unwrap();
        let mut traces = std::collections::BTreeSet::new();
        for n in 0..100 {
            let request = traced.build(&traced.prepare(1, n).unwrap(), false);
            let value = request.headers()["traceparent"].as_bytes();
            // As a server reads it: valid, sampled, version 00.
            let context = redwatch::TraceContext::from_traceparent(value)
                .unwrap_or_else(|| panic!("invalid traceparent {value:?}"));
            assert!(value.starts_with(b"00-") && value.ends_with(b"-01"));
            traces.insert(context.trace_id());
        }
        assert_eq!(traces.len(), 100, "every request starts a trace of its own");
        let untraced = target.template(0, &entry, &headers, false, None).unwrap();
        let request = untraced.build(&untraced.prepare(1, 0).unwrap(), false);
        assert!(!request.headers().contains_key("traceparent"));
    }
}
