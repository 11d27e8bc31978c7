//! A running `redwatch demo` for the dashboard tests: the real binary on ephemeral loopback
//! ports, its startup block parsed, stopped (SIGTERM, then SIGKILL) when dropped, also when
//! the test panics.

#![allow(dead_code)] // Each test binary uses part of it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::support::{self, BIN, get};

/// How long a (possibly cold, debug-built) demo may take to print its startup block, including
/// Prometheus becoming ready.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(45);
/// The routes of the load generator's default mix.
pub const MIX_ROUTES: [&str; 5] = ["/ep_one", "/ep_two", "/ep_three", "/ep_four", "/error"];

/// A running `redwatch demo`.
pub struct Demo {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Where the API, `/metrics` and `/dashboard` are.
    pub api: SocketAddr,
    /// Prometheus's address, when the demo started one.
    pub prometheus: Option<SocketAddr>,
}

impl Demo {
    /// Starts `redwatch demo --listen 127.0.0.1:0 --prometheus-listen 127.0.0.1:0 EXTRA...`
    /// without any `REDWATCH_*` variable of the test's environment, and waits for the startup
    /// block.
    pub fn start(extra: &[&str]) -> Demo {
        let mut command = Command::new(BIN);
        command.env_remove("RUST_LOG");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REDWATCH_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--prometheus-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the redwatch binary");
        let stdout_pipe = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let mut demo = Demo {
            child,
            stdout: Arc::default(),
            stderr: Arc::default(),
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            prometheus: None,
        };
        let lines = Arc::clone(&demo.stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout_pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = lines.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        support::collect_into(stderr_pipe, Arc::clone(&demo.stderr));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !demo.stdout().contains("\n  load:") {
            assert!(
                Instant::now() < deadline,
                "no startup block within {STARTUP_TIMEOUT:?}; stdout: {}; stderr: {}",
                demo.stdout(),
                demo.stderr()
            );
            if let Ok(Some(status)) = demo.child.try_wait() {
                panic!("demo exited early ({status}); stderr: {}", demo.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stdout = demo.stdout();
        let field = |label: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("  {label}:")))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
                .to_owned()
        };
        demo.api = url_addr(&field("API"));
        let prometheus = field("Prometheus");
        if prometheus.starts_with("http://") {
            demo.prometheus = Some(url_addr(&prometheus));
        }
        demo
    }

    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `/dashboard/data?QUERY` as JSON.
    pub async fn data(&self, query: &str) -> serde_json::Value {
        let response = get(self.api, &format!("/dashboard/data?{query}"), &[]).await;
        assert_eq!(response.status, StatusCode::OK, "GET /dashboard/data");
        serde_json::from_str(&response.body).expect("/dashboard/data is JSON")
    }

    /// Waits (bounded by `limit`) until the page has a request rate for every route of the
    /// mix over a minute's range, and returns that data.
    pub async fn data_with_every_route(&self, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let data = self.data("range=60").await;
            let missing: Vec<&str> = MIX_ROUTES
                .into_iter()
                .filter(|route| last_value(&data["requests_per_s"], route).is_none())
                .collect();
            if missing.is_empty() {
                return data;
            }
            assert!(
                Instant::now() < deadline,
                "no rate for {missing:?} within {limit:?}; stderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) on our own, not yet reaped, child: the demo then stops its
                // Prometheus and removes its directory.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn url_addr(url: &str) -> SocketAddr {
    url.strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ' ']).next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {url:?}"))
}

/// The last value of the line named `name` in a list of `{name, values}` lines.
pub fn last_value(lines: &serde_json::Value, name: &str) -> Option<f64> {
    lines.as_array()?.iter().find(|line| line["name"] == name)?["values"]
        .as_array()?
        .last()?
        .as_f64()
}
