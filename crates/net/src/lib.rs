//! The HTTP plumbing every gwmo role shares: a small HTTP/1.1 client that posts DM
//! messages and package-0 notifications and reads the answer, with a size limit and
//! a time limit on every exchange; and the server loop every listener runs
//! ([`serve`]), with limits on slow and large requests.

mod serve;

pub use serve::{ServeLimits, serve};

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
}

/// What came back.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub hmac: Option<String>,
    pub body: Vec<u8>,
}

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    max_response: usize,
}

impl HttpClient {
    /// A client that waits at most `timeout` for a whole exchange and reads at most
    /// `max_response` bytes of an answer.
    pub fn new(timeout: Duration, max_response: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
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

    /// Any request, with extra headers (for example `authorization` for the admin API).
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse, NetError> {
        let bad_url = |e: String| NetError::Url(url.to_owned(), e);
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad_url(e.to_string()))?;
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
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| NetError::Request(url.to_owned(), error_chain(&e)))?;
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

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn posts_and_reads_headers_and_body() {
        let url = serve(Router::new().route(
            "/",
            post(
                |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let mac = headers[HMAC_HEADER].to_str().unwrap().to_owned();
                    ([(HMAC_HEADER, mac)], body)
                },
            ),
        ))
        .await;
        let client = HttpClient::new(Duration::from_secs(5), 1024);
        let answer = client
            .post(&url, "text/plain", Some("mac=abc"), b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"hello");
        assert_eq!(answer.hmac.as_deref(), Some("mac=abc"));
    }

    #[tokio::test]
    async fn an_oversize_answer_is_refused() {
        let url = serve(Router::new().route("/", post(|| async { vec![b'x'; 4096] }))).await;
        let client = HttpClient::new(Duration::from_secs(5), 1024);
        let error = client
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
        let client = HttpClient::new(Duration::from_secs(5), 1024);
        let error = client
            .post(&url, "text/plain", None, vec![])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
    }
}
