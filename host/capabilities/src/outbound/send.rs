//! Sending an allowed outbound request: resolve its host once, keep only the addresses the
//! function may reach, connect to one of exactly those (so a second DNS answer cannot redirect
//! it), TLS for https, then HTTP/1.1; each step under a timeout.

use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmfn_host_core::outbound::SendResult;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// DNS, TCP and TLS together, unless the guest asks for another limit.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From the request sent to the response head, unless the guest asks for another limit.
pub(crate) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest pause inside a response body, unless the guest asks for another limit.
pub(crate) const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a request goes.
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

impl Target {
    pub(crate) fn of(uri: &http::Uri) -> Result<Self, Error> {
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        Ok(Target {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
        })
    }

    /// The address itself when the host is an IP literal.
    pub(crate) fn literal(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Every address `target` resolves to.
pub(crate) async fn resolve(target: &Target, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    if let Some(ip) = target.literal() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    match tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    {
        Err(_) => Err(Error::DnsTimeout),
        Ok(Err(e)) => Err(Error::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        }),
        Ok(Ok(addrs)) => Ok(addrs.collect()),
    }
}

/// Send `request` to one of `addrs` (already checked), which all belong to `target`.
pub(crate) async fn send_to(
    mut request: http::Request<WasiBody>,
    target: &Target,
    addrs: &[SocketAddr],
    options: Option<RequestOptions>,
) -> SendResult {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(FIRST_BYTE_TIMEOUT);
    let between_bytes_timeout = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(BETWEEN_BYTES_TIMEOUT)
        .max(Duration::from_millis(1));
    let connect = async {
        let stream = connect_any(addrs).await?;
        let _ = stream.set_nodelay(true);
        let io: Box<dyn Io> = if target.tls {
            let name = match target.literal() {
                Some(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                None => rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|_| Error::HttpRequestUriInvalid)?,
            };
            Box::new(tls().connect(name, stream).await.map_err(Error::Tls)?)
        } else {
            Box::new(stream)
        };
        hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(Error::from)
    };
    let (mut sender, connection) = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let connection = tokio::spawn(connection);
    // The request line carries the path only; scheme and authority are for proxies.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let response = response.map(|body| {
        TimedBody {
            inner: body,
            pause: between_bytes_timeout,
            deadline: Box::pin(tokio::time::sleep(between_bytes_timeout)),
        }
        .boxed_unsync()
    });
    let finished = async move {
        match connection.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Ok(()),
        }
    };
    Ok((response, Box::new(finished)))
}

/// A connection to the first of `addrs` that answers.
async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = Error::DestinationNotFound;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused
            }
            Err(e) => last = Error::Connect(e),
        }
    }
    Err(last)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One TLS client configuration for the process: building it parses every root certificate.
fn tls() -> &'static tokio_rustls::TlsConnector {
    static CONNECTOR: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();
    CONNECTOR.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        // An explicit provider: another crate of the build may enable a second one.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    })
}

/// A response body that fails when the server pauses longer than `pause` between frames.
struct TimedBody {
    inner: hyper::body::Incoming,
    pause: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.pause;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
