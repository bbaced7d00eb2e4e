//! What happens to a TCP connection before HTTP: connection caps (total
//! and per IP), TCP_NODELAY, and TLS (rustls, ALPN h2 and http/1.1).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Setting up TLS failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate chain could not be read.
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The private key could not be read.
    #[error("cannot read the TLS key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair.
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor for the PEM certificate chain and key, offering h2 and
/// http/1.1 by ALPN (gRPC and WebSocket on one port).
pub fn tls_acceptor(cert_path: &str, key_path: &str) -> Result<TlsAcceptor, TlsSetupError> {
    let certificates = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::Certificate {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsSetupError::Key {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificates, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Counts open connections, in all and per IP address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached.
    Total,
    /// `--max-connections-per-ip` reached for this address.
    PerIp,
}

impl Refusal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

impl ConnectionLimits {
    /// Limits of `max_total` and `max_per_ip` open connections.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            open: Mutex::new(Counts::default()),
        })
    }

    /// Admits a connection from `peer`, or says why not. The permit frees
    /// the slot when dropped.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<ConnectionPermit, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let ip = peer.ip();
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            ip,
        })
    }
}

/// One admitted connection's slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// How long a closed connection keeps reading (and dropping) what its
/// client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
/// How much it reads at most before it lets go.
pub const LINGER_BYTES: usize = 256 * 1024;

/// A plain or TLS connection, holding its slot for as long as it lives
/// (including after an HTTP upgrade hands it to a WebSocket).
///
/// Dropping it is a *lingering close*: its last bytes are flushed, its
/// write side shut (FIN), and what the client still sends is read and
/// dropped for up to [`LINGER_TIME`] and [`LINGER_BYTES`] before the socket
/// closes. Closing a socket with unread input makes the kernel answer with
/// a reset, and a reset can overtake the last frames on their way through a
/// proxy (a WebSocket close 1009 sent while the rest of an oversized
/// message was unread arrived behind HAProxy as a bare TCP close).
pub struct Conn {
    stream: Stream,
    /// Taken (freed) when the connection is dropped.
    permit: Option<ConnectionPermit>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Handed to the lingering close.
    Closed,
}

impl Conn {
    /// A plain connection.
    pub fn plain(stream: TcpStream, permit: ConnectionPermit) -> Self {
        Conn {
            stream: Stream::Plain(stream),
            permit: Some(permit),
        }
    }

    /// A TLS connection.
    pub fn tls(
        stream: tokio_rustls::server::TlsStream<TcpStream>,
        permit: ConnectionPermit,
    ) -> Self {
        Conn {
            stream: Stream::Tls(Box::new(stream)),
            permit: Some(permit),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let stream = std::mem::replace(&mut self.stream, Stream::Closed);
        // The slot is free at once: the connection is over for the
        // gateway, and a lingering socket lasts [`LINGER_TIME`] at most.
        drop(self.permit.take());
        if matches!(stream, Stream::Closed) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

/// The lingering close of a dropped connection.
async fn linger(stream: Stream) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = match stream {
        Stream::Plain(tcp) => tcp,
        Stream::Tls(mut tls) => {
            // close_notify, then the TCP write side.
            let _ = tokio::time::timeout(LINGER_TIME, tls.shutdown()).await;
            tls.into_inner().0
        }
        Stream::Closed => return,
    };
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let _ = tcp.shutdown().await;
        discard_input(&mut tcp).await;
    })
    .await;
}

/// Reads and drops input until the client closes, an error, or
/// [`LINGER_BYTES`].
async fn discard_input(tcp: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut scratch = [0u8; 8192];
    let mut read = 0;
    while read < LINGER_BYTES {
        match tcp.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Closed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_ip_and_frees_on_drop() {
        let limits = ConnectionLimits::new(3, 2);
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let first = limits.admit(a).expect("first");
        let _second = limits.admit(a).expect("second");
        assert_eq!(limits.admit(a).err(), Some(Refusal::PerIp));
        let _third = limits.admit(b).expect("other ip");
        assert_eq!(limits.admit(b).err(), Some(Refusal::Total));
        drop(first);
        assert!(limits.admit(a).is_ok());
    }
}
