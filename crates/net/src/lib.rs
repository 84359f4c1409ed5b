//! The HTTP plumbing every gwmo role shares: a small HTTP/1.1 client that posts DM
//! messages and package-0 notifications and reads the answer, with a size limit and
//! a time limit on every exchange; and the server loop every listener runs
//! ([`serve`]), with limits on slow and large requests. Both speak TLS unless told
//! not to ([`TlsSettings`]); [`certs`] makes a development CA and certificates.

pub mod certs;
mod clock;
mod fetch;
pub mod files;
mod peers;
mod serve;
mod tls;

pub use clock::unix_now;
pub use fetch::Fetched;

pub use serve::{ConnectionCounts, ConnectionTally, ServeLimits, serve, serve_counted};
pub use tls::{ClientTls, TlsError, TlsSettings, reload_certificates};
pub use tokio_rustls::TlsAcceptor;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
pub use hyper::Method;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The transport header that carries a SyncML HMAC (DM 1.2 Security).
pub const HMAC_HEADER: &str = "x-syncml-hmac";

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bad URL {0:?}: {1}")]
    Url(String, String),
    #[error("request to {0} failed: {1}")]
    Request(String, String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("answer from {0} larger than {1} bytes")]
    TooLarge(String, usize),
    #[error("refusing plain HTTP to {0}: use https, or set plain_http = true under [tls]")]
    PlainHttp(String),
    #[error("{0} answered {1}")]
    Status(String, u16),
    #[error("{0}: {1}")]
    File(String, String),
    #[error(
        "TLS with {0} failed: {1} (is the CA trusted here the one that issued its certificate? [tls] ca in a role's configuration, --pki for gwmo sim)"
    )]
    Tls(String, String),
}

/// What came back.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub hmac: Option<String>,
    pub body: Vec<u8>,
}

/// A pooled HTTP/1.1 client, over TLS.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<peers::PerPeerTls, Full<Bytes>>,
    tls: ClientTls,
    timeout: Duration,
    max_response: usize,
}

/// How long a client keeps an idle connection for its next request: hyper's default.
const KEPT_IDLE: Duration = Duration::from_secs(90);

impl HttpClient {
    /// A client that verifies servers as `tls` says, waits at most `timeout` for a
    /// whole exchange and reads at most `max_response` bytes of an answer.
    pub fn new(tls: &ClientTls, timeout: Duration, max_response: usize) -> Self {
        HttpClient::build(tls, timeout, max_response, usize::MAX, KEPT_IDLE)
    }

    /// A client that opens a new connection for every request (and closes it after):
    /// what a request costs a server when nothing is kept alive.
    pub fn new_connection_each(tls: &ClientTls, timeout: Duration, max_response: usize) -> Self {
        HttpClient::build(tls, timeout, max_response, 0, KEPT_IDLE)
    }

    /// A client like this one (its TLS, time and size limits; tickets of its own)
    /// that closes a connection once it was idle for `idle`: a session's messages
    /// share one, and the next session, long after, resumes on a new one.
    pub fn closing_idle_after(&self, idle: Duration) -> Self {
        HttpClient::build(&self.tls, self.timeout, self.max_response, usize::MAX, idle)
    }

    fn build(
        tls: &ClientTls,
        timeout: Duration,
        max_response: usize,
        idle_per_host: usize,
        idle: Duration,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        // `http://` URLs are refused before they reach the connector unless plain
        // HTTP is allowed.
        connector.enforce_http(false);
        let connector = peers::PerPeerTls::new(tls.config.clone(), connector);
        HttpClient {
            inner: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(idle_per_host)
                .pool_idle_timeout(idle)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector),
            tls: tls.clone(),
            timeout,
            max_response,
        }
    }

    /// POSTs `body` to `url`; `hmac` becomes the `x-syncml-hmac` header.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        hmac: Option<&str>,
        body: Vec<u8>,
    ) -> Result<HttpResponse, NetError> {
        let mut headers = vec![(CONTENT_TYPE.as_str(), content_type)];
        if let Some(value) = hmac {
            headers.push((HMAC_HEADER, value));
        }
        self.request(Method::POST, url, &headers, body).await
    }

    /// A request to send: refused here if its URL is bad, or plain HTTP while that is
    /// not allowed.
    fn build_request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>, NetError> {
        let bad_url = |e: String| NetError::Url(url.to_owned(), e);
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad_url(e.to_string()))?;
        if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTP) && !self.tls.plain_http {
            return Err(NetError::PlainHttp(url.to_owned()));
        }
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| bad_url(e.to_string()))?;
        for (name, value) in headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad_url(e.to_string()))?;
            let value = HeaderValue::from_str(value).map_err(|e| bad_url(e.to_string()))?;
            request.headers_mut().insert(name, value);
        }
        Ok(request)
    }

    /// Any request, with extra headers (for example `authorization` for the admin API).
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse, NetError> {
        let request = self.build_request(method, url, headers, body)?;
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| failed(url, &e))?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type = header(CONTENT_TYPE.as_str());
            let hmac = header(HMAC_HEADER);
            let body = Limited::new(response.into_body(), self.max_response)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        NetError::TooLarge(url.to_owned(), self.max_response)
                    } else {
                        NetError::Request(url.to_owned(), e.to_string())
                    }
                })?
                .to_bytes()
                .to_vec();
            Ok(HttpResponse {
                status,
                content_type,
                hmac,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout(url.to_owned(), self.timeout))?
    }
}

/// A failed exchange, told apart: TLS (a certificate not trusted, say) or otherwise.
fn failed(url: &str, error: &(dyn std::error::Error + 'static)) -> NetError {
    match rustls_cause(error) {
        Some(tls) => NetError::Tls(url.to_owned(), tls.to_string()),
        None => NetError::Request(url.to_owned(), error_chain(error)),
    }
}

/// The rustls error behind `error`, if any. It reaches hyper wrapped in io::Errors,
/// whose source() skips what they wrap.
fn rustls_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let wrapped = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| rustls_cause(inner));
    wrapped.or_else(|| error.source().and_then(rustls_cause))
}

/// An error and its causes on one line ("connection refused" hides two levels down).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;

    /// Serves `router` on loopback, over TLS when `tls` has a certificate; its base URL.
    async fn serve_with(tls: &TlsSettings, router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.acceptor("test").unwrap();
        tokio::spawn(serve(
            listener,
            acceptor,
            router,
            ServeLimits::default(),
            std::future::pending(),
        ));
        format!("{}://{addr}/", tls.scheme())
    }

    fn plain() -> TlsSettings {
        TlsSettings {
            plain_http: true,
            ..TlsSettings::default()
        }
    }

    fn client(tls: &TlsSettings, max_response: usize) -> HttpClient {
        HttpClient::new(&tls.client().unwrap(), Duration::from_secs(5), max_response)
    }

    /// TLS settings with a certificate for 127.0.0.1 from a fresh CA in `dir`.
    fn issued(dir: &std::path::Path) -> TlsSettings {
        certs::issue(dir, "server", &["127.0.0.1".into()])
            .unwrap()
            .tls_settings()
    }

    fn echo() -> Router {
        Router::new().route(
            "/",
            post(
                |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let mac = headers[HMAC_HEADER].to_str().unwrap().to_owned();
                    ([(HMAC_HEADER, mac)], body)
                },
            ),
        )
    }

    /// Serves `content` at `/file` through [`files::serve_file`]; the base URL and the
    /// count of bytes sent.
    async fn file_server(
        content: &'static [u8],
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("image");
        std::fs::write(&path, content).unwrap();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        let router = Router::new().route(
            "/file",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let (path, counter) = (path.clone(), counter.clone());
                async move {
                    files::serve_file(&path, &headers, "application/octet-stream", counter).await
                }
            }),
        );
        (serve_with(&plain(), router).await, sent)
    }

    #[tokio::test]
    async fn a_fetch_resumes_after_what_an_earlier_attempt_left() {
        const CONTENT: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let (url, sent) = file_server(CONTENT).await;
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("part");
        std::fs::write(&part, &CONTENT[..10]).unwrap();
        let fetched = client(&plain(), 1024)
            .fetch_to(&format!("{url}file"), &part, 1000, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            fetched,
            Fetched {
                length: 36,
                resumed_from: 10
            }
        );
        assert_eq!(std::fs::read(&part).unwrap(), CONTENT);
        assert_eq!(
            sent.load(std::sync::atomic::Ordering::Relaxed),
            26,
            "only the rest was sent"
        );
        // Complete already: the server answers 416 and the file stays.
        let again = client(&plain(), 1024)
            .fetch_to(&format!("{url}file"), &part, 1000, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            again,
            Fetched {
                length: 36,
                resumed_from: 36
            }
        );
        assert_eq!(std::fs::read(&part).unwrap(), CONTENT);
    }

    #[tokio::test]
    async fn a_streamed_fetch_hands_over_every_byte_and_keeps_none() {
        const CONTENT: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let (url, sent) = file_server(CONTENT).await;
        let mut received = Vec::new();
        let length = client(&plain(), 1024)
            .fetch_streamed(
                &format!("{url}file"),
                1000,
                Duration::from_secs(5),
                |piece| received.extend_from_slice(piece),
            )
            .await
            .unwrap();
        assert_eq!(length, 36);
        assert_eq!(received, CONTENT);
        assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 36);
        let too_large = client(&plain(), 1024)
            .fetch_streamed(&format!("{url}file"), 10, Duration::from_secs(5), |_| {})
            .await;
        assert!(
            matches!(too_large, Err(NetError::TooLarge(_, 10))),
            "{too_large:?}"
        );
    }

    #[tokio::test]
    async fn a_fetch_stops_past_its_size_limit_and_names_a_refusal() {
        let (url, _) = file_server(b"0123456789").await;
        let dir = tempfile::tempdir().unwrap();
        let too_large = client(&plain(), 1024)
            .fetch_to(
                &format!("{url}file"),
                &dir.path().join("a"),
                5,
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(too_large, Err(NetError::TooLarge(_, 5))),
            "{too_large:?}"
        );
        let missing = client(&plain(), 1024)
            .fetch_to(
                &format!("{url}nothing"),
                &dir.path().join("b"),
                5,
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(missing, Err(NetError::Status(_, 404))),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn posts_and_reads_headers_and_body() {
        let url = serve_with(&plain(), echo()).await;
        let answer = client(&plain(), 1024)
            .post(&url, "text/plain", Some("mac=abc"), b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"hello");
        assert_eq!(answer.hmac.as_deref(), Some("mac=abc"));
    }

    #[tokio::test]
    async fn an_exchange_over_tls_verifies_the_server_by_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let tls = issued(dir.path());
        let url = serve_with(&tls, echo()).await;
        assert!(url.starts_with("https://"), "{url}");
        let answer = client(&tls, 1024)
            .post(&url, "text/plain", Some("mac=abc"), b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!((answer.status, answer.body), (200, b"hello".to_vec()));
    }

    #[tokio::test]
    async fn a_server_certificate_from_another_ca_fails_clearly() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let url = serve_with(&issued(theirs.path()), echo()).await;
        let error = client(&issued(ours.path()), 1024)
            .post(&url, "text/plain", Some("mac=abc"), b"hello".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(error, NetError::Tls(..)), "{error}");
        assert!(error.to_string().contains("certificate"), "{error}");
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let tls = issued(dir.path());
        let url = serve_with(&tls, echo())
            .await
            .replace("127.0.0.1", "localhost");
        let error = client(&tls, 1024)
            .post(&url, "text/plain", Some("mac=abc"), vec![])
            .await
            .unwrap_err();
        assert!(matches!(error, NetError::Tls(..)), "{error}");
        assert!(error.to_string().contains("localhost"), "{error}");
    }

    #[tokio::test]
    async fn plain_http_is_refused_unless_allowed() {
        let url = serve_with(&plain(), echo()).await;
        let dir = tempfile::tempdir().unwrap();
        let error = client(&issued(dir.path()), 1024)
            .post(&url, "text/plain", Some("mac=abc"), vec![])
            .await
            .unwrap_err();
        assert!(matches!(error, NetError::PlainHttp(_)), "{error}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_handshake_is_dropped() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServeLimits {
            header_read: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let acceptor = issued(dir.path()).acceptor("test").unwrap();
        tokio::spawn(serve(
            listener,
            acceptor,
            echo(),
            limits,
            std::future::pending(),
        ));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buffer = [0; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("the server dropped the silent connection");
        assert_eq!(read.unwrap(), 0, "the server closed the connection");
    }

    #[tokio::test]
    async fn a_listener_counts_its_connections_and_how_their_handshakes_ended() {
        let dir = tempfile::tempdir().unwrap();
        let tls = issued(dir.path());
        let limits = ServeLimits {
            header_read: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let (addr, counts) = counted_listener(&tls, limits).await;
        // Two requests on a connection each: the second resumes with the first's
        // ticket. Then a client that never starts its handshake.
        let fresh = fresh_client(&tls);
        for _ in 0..2 {
            assert_eq!(post_nothing(&fresh, addr).await, 200);
        }
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let expected = ConnectionTally {
            accepted: 3,
            full_handshakes: 1,
            resumed_handshakes: 1,
            failed_handshakes: 1,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counts.tally() != expected && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(counts.tally(), expected);
    }

    /// Two services on one address, called in turn on new connections: each resumes
    /// with its own tickets (rustls files them under the address alone, and a shared
    /// store made each offer the other's, so nothing resumed).
    #[tokio::test]
    async fn tickets_of_two_services_on_one_address_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let tls = issued(dir.path());
        let services = [
            counted_listener(&tls, ServeLimits::default()).await,
            counted_listener(&tls, ServeLimits::default()).await,
        ];
        let fresh = fresh_client(&tls);
        for _ in 0..3 {
            for (addr, _) in &services {
                assert_eq!(post_nothing(&fresh, *addr).await, 200);
            }
        }
        for (addr, counts) in &services {
            let tally = counts.tally();
            assert_eq!(
                (tally.full_handshakes, tally.resumed_handshakes),
                (1, 2),
                "{addr}"
            );
        }
    }

    /// An echo listener over TLS that counts its connections.
    async fn counted_listener(
        tls: &TlsSettings,
        limits: ServeLimits,
    ) -> (std::net::SocketAddr, std::sync::Arc<ConnectionCounts>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = std::sync::Arc::new(ConnectionCounts::default());
        tokio::spawn(serve_counted(
            listener,
            tls.acceptor("test").unwrap(),
            echo(),
            limits,
            counts.clone(),
            std::future::pending(),
        ));
        (addr, counts)
    }

    /// A client that opens a connection for each request.
    fn fresh_client(tls: &TlsSettings) -> HttpClient {
        HttpClient::new_connection_each(&tls.client().unwrap(), Duration::from_secs(10), 1024)
    }

    /// Posts an empty message to the echo listener at `addr`; its status.
    async fn post_nothing(client: &HttpClient, addr: std::net::SocketAddr) -> u16 {
        client
            .post(
                &format!("https://{addr}/"),
                "text/plain",
                Some("mac=a"),
                vec![],
            )
            .await
            .unwrap()
            .status
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_and_the_others_served() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServeLimits {
            max_connections: 1,
            ..ServeLimits::default()
        };
        tokio::spawn(serve(
            listener,
            None,
            echo(),
            limits,
            std::future::pending(),
        ));
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first
            .write_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nx-syncml-hmac: m\r\nContent-Length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        let mut answer = [0; 12];
        first.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buffer = [0; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buffer))
            .await
            .expect("the connection over the limit was kept");
        assert_eq!(read.unwrap_or(0), 0, "closed");
        drop(first);
    }

    #[tokio::test]
    async fn an_oversize_answer_is_refused() {
        let url = serve_with(
            &plain(),
            Router::new().route("/", post(|| async { vec![b'x'; 4096] })),
        )
        .await;
        let error = client(&plain(), 1024)
            .post(&url, "text/plain", None, vec![])
            .await
            .unwrap_err();
        assert!(matches!(error, NetError::TooLarge(_, 1024)), "{error}");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let error = client(&plain(), 1024)
            .post(&url, "text/plain", None, vec![])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
    }
}
