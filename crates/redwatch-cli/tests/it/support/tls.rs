//! An HTTPS server in this process for `redwatch load`'s TLS tests: a self-signed certificate
//! made by the test (rcgen) for `localhost` and 127.0.0.1, rustls, HTTP/1.1 and HTTP/2 by ALPN,
//! on an ephemeral loopback port. It records the protocol and connection of every request (but
//! `GET /metrics`, which counts them as redwatch's otel histogram) and is stopped when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct TlsSeen {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Which accepted connection carried it (0, 1, ...).
    pub connection: usize,
    pub path: String,
}

/// `GET /metrics`: every request so far (not counting these) in redwatch's otel histogram, as
/// `GET /secure` answered within 5 ms.
fn exposition(requests: usize) -> String {
    let series =
        r#"http_request_method="GET",http_route="/secure",http_response_status_code="200""#;
    format!(
        "# TYPE http_server_request_duration_seconds histogram\n\
         http_server_request_duration_seconds_bucket{{{series},le=\"0.005\"}} {requests}\n\
         http_server_request_duration_seconds_bucket{{{series},le=\"+Inf\"}} {requests}\n\
         http_server_request_duration_seconds_sum{{{series}}} 0.001\n\
         http_server_request_duration_seconds_count{{{series}}} {requests}\n"
    )
}

pub struct TlsServer {
    pub addr: SocketAddr,
    /// The certificate, PEM, in a temporary directory (for `--cacert`).
    pub cert_file: PathBuf,
    _dir: tempfile::TempDir,
    seen: Arc<Mutex<Vec<TlsSeen>>>,
    _running: super::process::ServerThread,
}

impl TlsServer {
    /// Offers `alpn` (e.g. `[b"h2", b"http/1.1"]`) to clients.
    pub fn start(alpn: &[&[u8]]) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("self-signed certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_file = dir.path().join("cert.pem");
        std::fs::write(&cert_file, certified.cert.pem()).expect("write cert");
        let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let running = super::process::ServerThread::spawn(move |mut stopped| async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let connections = AtomicUsize::new(0);
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = &mut stopped => return,
                };
                let connection = connections.fetch_add(1, Ordering::Relaxed);
                let (acceptor, log) = (acceptor.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    // A client that rejects the certificate ends here.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                        let body = if request.uri().path() == "/metrics" {
                            Bytes::from(exposition(log.len()))
                        } else {
                            log.push(TlsSeen {
                                version: format!("{:?}", request.version()),
                                connection,
                                path: request.uri().path().to_owned(),
                            });
                            Bytes::from_static(b"secure")
                        };
                        async move {
                            Ok::<_, std::convert::Infallible>(Response::new(
                                http_body_util::Full::new(body),
                            ))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            cert_file,
            _dir: dir,
            seen,
            _running: running,
        }
    }

    /// `https://localhost:PORT` (the name the certificate is for).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn seen(&self) -> Vec<TlsSeen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
