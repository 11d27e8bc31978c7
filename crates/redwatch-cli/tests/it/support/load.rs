//! `redwatch load` runs and the server they are aimed at. Everything binds 127.0.0.1 only.

use std::time::Duration;

use super::process::{Finished, Proc, Server, run_to_exit, spawn};

/// `redwatch serve --latency-scale 0 --listen 127.0.0.1:0`, logging warnings only: a target that
/// answers at once.
pub fn demo_server() -> Server {
    Server::start_with_env(
        &["serve", "--latency-scale", "0", "--listen", "127.0.0.1:0"],
        &[("REDWATCH_LOG_LEVEL", "warn")],
    )
}

/// Starts `redwatch load ARGS` with piped output.
pub fn spawn_load(args: &[&str]) -> Proc {
    spawn(&[&["load"], args].concat(), &[])
}

/// Runs `redwatch load ARGS` to completion; panics (after killing it) if it exceeds `limit`.
pub fn run_load(args: &[&str], limit: Duration) -> Finished {
    run_to_exit(&[&["load"], args].concat(), &[], limit)
}

/// Weights of the default mix, by path.
pub const DEFAULT_WEIGHTS: [(&str, u64); 5] = [
    ("/ep_one", 4),
    ("/ep_two", 3),
    ("/ep_three", 2),
    ("/ep_four", 1),
    ("/error", 1),
];

/// One request as an in-process test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

/// An HTTP server in this process (axum, on its own runtime thread) on an ephemeral loopback
/// port that records every request and answers 200; `GET /big` streams [`BIG_BODY_BYTES`] of
/// body without ever holding it, `GET /metrics` is an exposition of one counter. Stopped when
/// dropped.
pub struct RecordingServer {
    pub addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    _running: super::process::ServerThread,
}

/// Size of `GET /big`'s body.
pub const BIG_BODY_BYTES: u64 = 256 << 20;

/// A body of `left` bytes, produced 64 KiB at a time.
struct Repeat {
    left: u64,
}

impl hyper::body::Body for Repeat {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        static CHUNK: [u8; 65536] = [b'x'; 65536];
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64);
        self.left -= n;
        let data = hyper::body::Bytes::from_static(&CHUNK[..n as usize]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

impl RecordingServer {
    pub fn start() -> Self {
        use axum::body::{Body, Bytes};
        use axum::http::{HeaderMap, Method, Uri};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        let running = super::process::ServerThread::spawn(move |stopped| async move {
            let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = std::sync::Arc::clone(&log);
                async move {
                    let big = uri.path() == "/big";
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
                        method: method.to_string(),
                        path: uri
                            .path_and_query()
                            .map_or_else(String::new, |p| p.to_string()),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    if big {
                        Body::new(Repeat {
                            left: BIG_BODY_BYTES,
                        })
                    } else if uri.path() == "/metrics" {
                        // An exposition without any request duration histogram.
                        Body::from("# TYPE other_total counter\nother_total 1\n")
                    } else {
                        Body::from("ok")
                    }
                }
            };
            let app = axum::Router::new().fallback(handler);
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            seen,
            _running: running,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
