//! TLS for https targets: rustls with the ring provider, the Mozilla roots (webpki-roots) plus
//! `--cacert`, or no verification at all with `--insecure`; ALPN offers h2, then http/1.1.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The client configuration of an https target.
pub fn client_config(cacert: Option<&Path>, insecure: bool) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS: no protocol version")?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(file) = cacert {
            add_pem_file(&mut roots, file)
                .with_context(|| format!("--cacert {}", file.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // HTTP/2 when the server offers it: it multiplexes, so a few connections carry the load.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn add_pem_file(roots: &mut RootCertStore, file: &Path) -> anyhow::Result<()> {
    let certificates = CertificateDer::pem_file_iter(file)
        .map_err(|err| anyhow::anyhow!("cannot read it: {err}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow::anyhow!("not a PEM file: {err}"))?;
    if certificates.is_empty() {
        bail!("no certificate (-----BEGIN CERTIFICATE-----) in it");
    }
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|err| anyhow::anyhow!("invalid certificate: {err}"))?;
    }
    Ok(())
}

/// `--insecure`: any certificate is accepted, but the handshake's signatures are still checked
/// (so the connection is encrypted to the holder of the key the server presented).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cacert_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let err = format!("{:#}", client_config(Some(&empty), false).unwrap_err());
        assert!(
            err.contains("empty.pem") && err.contains("no certificate"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = format!("{:#}", client_config(Some(&missing), false).unwrap_err());
        assert!(err.contains("missing.pem"), "{err}");
        let config = client_config(None, true).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
    }
}
