//! TLS: the certificate chain and private key from PEM files, and an
//! accept loop that runs each handshake in its own task (a slow or silent
//! client cannot hold up the others).
//!
//! The server configuration names its crypto provider (ring) instead of
//! relying on rustls' process-wide default: the official `eventstore`
//! client installs that default itself and panics if someone else did
//! first, and both may live in one process (tests, benchmarks).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::config::TlsFiles;
use crate::error::EndpointError;

/// Longest a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the gRPC server.
const READY_QUEUE: usize = 128;

/// Loads the identity in `files` into an acceptor that speaks HTTP/2 (ALPN
/// `h2`), the only protocol gRPC uses.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, EndpointError> {
    let certificate = read("certificate", &files.certificate)?;
    let key = read("private key", &files.private_key)?;
    let chain = CertificateDer::pem_slice_iter(&certificate)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            refused(format!(
                "{} is not a PEM certificate: {e}",
                files.certificate.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(refused(format!(
            "{} holds no PEM certificate",
            files.certificate.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        refused(format!(
            "{} is not a PEM private key: {e}",
            files.private_key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            refused(format!(
                "the certificate and key do not match or are unusable: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, EndpointError> {
    std::fs::read(path).map_err(|source| EndpointError::TlsFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn refused(reason: String) -> EndpointError {
    EndpointError::Tls { reason }
}

/// The connections accepted on `listener` once their handshake succeeds,
/// and the accept loop's task (abort it when the server stops).
pub(crate) fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> (
    impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>>,
    JoinHandle<()>,
) {
    let (ready, queue) = mpsc::channel(READY_QUEUE);
    let accept = tokio::spawn(accept_loop(listener, acceptor, ready));
    (ReceiverStream::new(queue).map(Ok), accept)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<TlsStream<TcpStream>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause, then go on.
                tracing::warn!(%error, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if ready.is_closed() {
            return;
        }
        // No Nagle: small gRPC frames must not wait for delayed ACKs.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(handshake(tcp, peer, acceptor.clone(), ready.clone()));
    }
}

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<TlsStream<TcpStream>>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let _ = ready.send(stream).await;
        }
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
