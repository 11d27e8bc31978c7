//! The one HTTP client of the CLI's tests: HTTP/1.1 over a fresh connection that the server
//! closes after the response (`Connection: close`), with chunked decoding, the headers, the body
//! as bytes and as text, GET and POST, and time limits on the connection and the whole exchange.
//! Blocking; the async tests use [`get_async`] and [`try_get_async`], which run it on tokio's
//! blocking pool.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, StatusCode};
use serde_json::Value;

/// Longest a connection may take to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a single test request may take (the slowest endpoint sleeps far less).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A response, fully read.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as sent (after chunked decoding).
    pub bytes: Vec<u8>,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
}

/// Sends `method path` with extra `headers` and `body` to `addr` and reads the whole response;
/// transport errors (e.g. connection refused) and a response not complete within
/// [`REQUEST_TIMEOUT`] are errors.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let what = format!("{method} http://{addr}{path}");
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("{what}: connect: {e}"))?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| format!("{what}: {e}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("{what}: send: {e}"))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{what}: no response within {REQUEST_TIMEOUT:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("{what}: {e}"))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{what}: read: {e}")),
        }
    }
    parse_response(&raw).map_err(|e| format!("{what}: {e}"))
}

/// GET `path` from `addr` with extra headers; panics on any transport error.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    try_get(addr, path, headers).unwrap_or_else(|error| panic!("{error}"))
}

/// Like [`get`], but returns transport errors (e.g. connection refused) instead of panicking.
pub fn try_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    request(addr, "GET", path, headers, &[])
}

/// POST to `path` without a body.
pub fn post(addr: SocketAddr, path: &str) -> Result<Response, String> {
    request(addr, "POST", path, &[], &[])
}

/// GET `path`, which must answer 200 with JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<Value, String> {
    let response = try_get(addr, path, &[])?;
    if response.status != StatusCode::OK {
        return Err(format!(
            "GET {path}: HTTP {}: {}",
            response.status, response.body
        ));
    }
    serde_json::from_slice(&response.bytes)
        .map_err(|err| format!("GET {path}: {err}: {}", response.body))
}

/// [`get`] for async tests: the exchange runs on tokio's blocking pool, so requests sent from
/// several tasks are in flight together.
pub async fn get_async(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    try_get_async(addr, path, headers)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// [`try_get`] for async tests (see [`get_async`]).
pub async fn try_get_async(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let path = path.to_owned();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        try_get(addr, &path, &headers)
    })
    .await
    .map_err(|e| format!("GET http://{addr}: the request task failed: {e}"))?
}

/// Percent-encodes everything but unreserved characters (for query strings).
pub fn url_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete response head in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("header value {value:?}: {e}"))?;
        headers.append(name, value);
    }
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .get(hyper::header::TRANSFER_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    let length = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    let bytes = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)
            .ok_or_else(|| format!("body cut off at {} of {length} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

/// Decodes a chunked body (chunk extensions and trailers are ignored).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("chunked body cut off in a size line")?;
        let line = String::from_utf8_lossy(&rest[..line_end]);
        let size = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|e| format!("chunk size {size:?}: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let data = rest
            .get(..size)
            .ok_or_else(|| format!("chunk of {size} bytes cut off at {}", rest.len()))?;
        body.extend_from_slice(data);
        rest = rest.get(size + 2..).ok_or("chunk without its line end")?;
    }
}
