//! Accepting connections: TLS by rustls (aws-lc-rs, TLS 1.2 and 1.3) when a
//! certificate is given, HTTP/1.1 by hyper, requests to the axum router.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::TlsAcceptor;

use super::ServeError;

/// A TLS acceptor for the certificate chain and key in two PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |file: &Path, message: String| ServeError::Tls {
        file: file.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, format!("cannot read a PEM certificate chain: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no certificate".to_owned()));
    }
    let secret = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, secret)
        .map_err(|e| bad(key, format!("does not go with the certificate: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until the listener fails; each is served on its own
/// task (a connection that fails its handshake is dropped alone).
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
) -> std::io::Result<()> {
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait and go on.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(socket),
                    )
                    .await;
                    if let Ok(Ok(stream)) = handshake {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(socket), service).await;
                }
            }
        });
    }
}
