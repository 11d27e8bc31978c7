//! Helpers for integration tests that run the real `redwatch` binary: a child-process guard,
//! a small HTTP client, an exposition parser and a bounded runner for commands that must exit.

// Each test crate uses a subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_redwatch");

/// How long a fresh (possibly cold, debug-built) server may take to print its startup line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `redwatch serve`; its Drop kills the process, so no test leaves a server behind.
pub struct Server {
    child: Child,
    /// The API address from the startup line.
    pub addr: SocketAddr,
    /// The /metrics URL's address from the startup line.
    pub metrics_addr: SocketAddr,
    /// Everything the process wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `redwatch serve --listen 127.0.0.1:0 EXTRA...` and waits for its startup line.
    pub fn start(extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// Starts the binary with exactly `args` and waits for the `serve` startup line.
    pub fn start_with(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Starts the binary with exactly `args` and extra environment variables, and waits for
    /// the `serve` startup line.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = clean_command();
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the redwatch binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        // Guard first, so that a failure below still kills the child.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr: Arc::new(Mutex::new(String::new())),
        };
        collect_into(stderr_pipe, Arc::clone(&server.stderr));
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout after the startup line so the child never blocks on it.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match lines_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => line,
            Err(_) => panic!(
                "no startup line within {STARTUP_TIMEOUT:?}; stderr: {}",
                server.stderr()
            ),
        };
        let (addr, metrics_addr) =
            parse_startup_line(&line).unwrap_or_else(|| panic!("unexpected startup line {line:?}"));
        server.addr = addr;
        server.metrics_addr = metrics_addr;
        server
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `TERM`, `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// GET `path` on the API listener.
    pub async fn get(&self, path: &str) -> Response {
        get(self.addr, path, &[]).await
    }

    /// GET /metrics on the metrics address, as plain Prometheus text.
    pub async fn metrics(&self) -> Exposition {
        let response = get(self.metrics_addr, "/metrics", &[]).await;
        assert_eq!(response.status, StatusCode::OK, "GET /metrics");
        Exposition::parse(&response.body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The binary, without `RUST_LOG` or `REDWATCH_*` from the caller's environment, so that
/// each test sees the defaults it expects.
fn clean_command() -> Command {
    let mut command = Command::new(BIN);
    command.env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REDWATCH_") {
            command.env_remove(name);
        }
    }
    command
}

/// Appends everything `pipe` produces to `sink`, line by line, on a thread of its own (so the
/// child never blocks on a full pipe and a failing test can show what it printed).
pub fn collect_into(pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
            line.clear();
        }
    });
}

/// Reads `redwatch serve listening on http://ADDR (metrics: http://ADDR/metrics)`.
pub fn parse_startup_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("redwatch serve listening on http://")?;
    let (api, rest) = rest.split_once(" (metrics: http://")?;
    let metrics = rest.strip_suffix("/metrics)")?;
    Some((api.parse().ok()?, metrics.parse().ok()?))
}

/// A response, fully read.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

/// Longest a single test request may take (the slowest endpoint sleeps far less).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// GET `path` from `addr` with extra headers, over a fresh HTTP/1.1 connection; panics on any
/// transport error or after [`REQUEST_TIMEOUT`].
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    match try_get(addr, path, headers).await {
        Ok(response) => response,
        Err(error) => panic!("GET http://{addr}{path}: {error}"),
    }
}

/// Like [`get`], but returns transport errors (e.g. connection refused) instead of panicking.
pub async fn try_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(connection);
        let mut request = Request::get(path).header(hyper::header::HOST, addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        driver.abort();
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed Prometheus text exposition (samples only; comments are kept as raw lines).
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the samples of a Prometheus text exposition; panics on a malformed line.
    pub fn parse(text: &str) -> Exposition {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("malformed line {line:?}")))
            .collect();
        Exposition {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of the one sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Every sample named `name`.
    pub fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Sample> + use<'a> {
        let name = name.to_owned();
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Whether the exposition declares `# TYPE name kind`.
    pub fn has_type(&self, name: &str, kind: &str) -> bool {
        self.text
            .lines()
            .any(|line| line == format!("# TYPE {name} {kind}"))
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches(',');
            if let Some(after) = body.strip_prefix('}') {
                break after;
            }
            let (label, after) = body.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    other => value.push(other),
                }
            };
            labels.insert(label.to_owned(), value);
            body = &after[end + 1..];
        }
    } else {
        rest
    };
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The result of a command that must exit by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args` and extra environment, killing it if it has not exited within
/// `limit` (which fails the test).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Finished {
    let mut command = clean_command();
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = KillOnDrop(command.spawn().expect("cannot start the redwatch binary"));
    let stdout = child.0.stdout.take().expect("stdout is piped");
    let stderr = child.0.stderr.take().expect("stderr is piped");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(stdout));
    let stderr = read_all(Box::new(stderr));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("cannot wait for the child") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "`redwatch {}` did not exit within {limit:?}",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Whether tests run in CI, where a missing external tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// Finds an external tool on PATH. Without it: a failure in CI, a notice and `None` elsewhere.
pub fn require_tool(name: &str, debian_package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            !in_ci(),
            "{name} is required in CI (Debian package {debian_package}); ./scripts/test installs it"
        );
        eprintln!(
            "notice: {name} not found (Debian package {debian_package}); skipping this check"
        );
    }
    found
}
