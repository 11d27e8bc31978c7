//! Shared helpers for the `redwatch load` integration tests: a demo server process, a load run
//! with a time limit, and tiny HTTP/Prometheus readers. Everything binds 127.0.0.1 only.

#![allow(dead_code)] // Each test file uses a different subset.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills and reaps the child when dropped, so no test leaves a process behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGKILL works on a stopped process too, but resume it first so nothing is left frozen
        // should the kill fail.
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redwatch serve --latency-scale 0 --listen 127.0.0.1:0`, read its address from the startup line.
pub struct DemoServer {
    pub child: ChildGuard,
    pub addr: SocketAddr,
}

impl DemoServer {
    pub fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_redwatch"))
            .args(["serve", "--latency-scale", "0", "--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env("REDWATCH_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redwatch serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let guard = ChildGuard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.strip_prefix("redwatch serve listening on http://") {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("redwatch serve printed its startup line within 30 s");
        let addr: SocketAddr = addr.parse().expect("startup line holds an address");
        Self { child: guard, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The server's own request counts per route (summed over methods and statuses), from the
    /// `_count` series of its duration histogram.
    pub fn request_counts(&self) -> HashMap<String, u64> {
        let (status, body) = http_get(self.addr, "/metrics");
        assert_eq!(status, 200, "server /metrics answered {status}");
        histogram_counts(
            &body,
            "http_server_request_duration_seconds_count",
            "http_route",
        )
    }
}

/// Sums `metric` samples by the value of `label`.
pub fn histogram_counts(exposition: &str, metric: &str, label: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some(labels_end) = rest.find('}') else {
            continue;
        };
        let labels = &rest[..labels_end];
        let value: f64 = rest[labels_end + 1..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unparsable sample: {line}"));
        if let Some(value_of_label) = label_value(labels, label) {
            *counts.entry(value_of_label).or_default() += value as u64;
        }
    }
    counts
}

/// Value of `name="..."` inside a label set.
pub fn label_value(labels: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = labels.find(&needle)? + needle.len();
    let end = labels[start..].find('"')?;
    Some(labels[start..start + end].to_owned())
}

/// Blocking GET with `Connection: close`; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Output of a finished `redwatch load`.
pub struct LoadRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl LoadRun {
    /// The JSON summary when run with `--json -`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Starts `redwatch load ARGS` with piped output.
pub fn spawn_load(args: &[&str]) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_redwatch"))
        .arg("load")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redwatch load");
    ChildGuard(child)
}

/// Runs `redwatch load ARGS` to completion; panics (after killing it) if it exceeds `limit`.
pub fn run_load(args: &[&str], limit: Duration) -> LoadRun {
    let guard = spawn_load(args);
    finish(guard, limit)
}

/// Waits for a spawned load run, collecting its output.
pub fn finish(mut guard: ChildGuard, limit: Duration) -> LoadRun {
    let started = Instant::now();
    // A test may have taken a stream to read it live; the rest is collected here.
    let stdout = guard.0.stdout.take();
    let stderr = guard.0.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_string(&mut text);
        }
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    });
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for load") {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "redwatch load did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    LoadRun {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}

/// Sends a signal (`STOP`, `CONT`, `INT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Weights of the default mix, by path.
pub const DEFAULT_WEIGHTS: [(&str, u64); 5] = [
    ("/ep_one", 4),
    ("/ep_two", 3),
    ("/ep_three", 2),
    ("/ep_four", 1),
    ("/error", 1),
];
