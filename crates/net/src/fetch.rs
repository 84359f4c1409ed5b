//! Fetching a large file (a firmware package) into a file on disk: what an earlier
//! attempt left is kept and the rest asked for with an HTTP Range request, the size is
//! bounded, and the time limit is per piece received rather than for the whole, so a
//! slow but moving download goes on and a stalled one stops.

use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::header::{CONTENT_RANGE, RANGE};
use tokio::io::AsyncWriteExt;

use crate::{HttpClient, Method, NetError, failed};

/// What a fetch left in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// The file's length now.
    pub length: u64,
    /// Where this attempt started: bytes kept from an earlier one (0: from scratch).
    pub resumed_from: u64,
}

impl HttpClient {
    /// GETs `url` into `path`, resuming after the bytes `path` already holds. At most
    /// `max_len` bytes in all; `idle` is the longest wait for the answer or for any
    /// piece of its body. A server that ignores the Range gets the file rewritten
    /// from its start.
    pub async fn fetch_to(
        &self,
        url: &str,
        path: &Path,
        max_len: u64,
        idle: Duration,
    ) -> Result<Fetched, NetError> {
        let file_error =
            |e: std::io::Error| NetError::File(path.display().to_string(), e.to_string());
        let have = match tokio::fs::metadata(path).await {
            Ok(meta) => meta.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(file_error(error)),
        };
        let range = format!("bytes={have}-");
        let headers: &[(&str, &str)] = if have > 0 {
            &[(RANGE.as_str(), &range)]
        } else {
            &[]
        };
        let request = self.build_request(Method::GET, url, headers, Vec::new())?;
        let response = tokio::time::timeout(idle, self.inner.request(request))
            .await
            .map_err(|_| NetError::Timeout(url.to_owned(), idle))?
            .map_err(|e| failed(url, &e))?;
        let start = match response.status().as_u16() {
            200 => 0,
            206 if content_range_start(response.headers()) == Some(have) => have,
            206 => {
                return Err(NetError::Request(
                    url.to_owned(),
                    format!("a partial answer that does not start at byte {have}"),
                ));
            }
            // Everything was there already.
            416 if have > 0 => {
                return Ok(Fetched {
                    length: have,
                    resumed_from: have,
                });
            }
            status => return Err(NetError::Status(url.to_owned(), status)),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(start > 0)
            .truncate(start == 0)
            .open(path)
            .await
            .map_err(file_error)?;
        let mut length = start;
        let mut body = response.into_body();
        loop {
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| NetError::Timeout(url.to_owned(), idle))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| failed(url, &e))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            length += data.len() as u64;
            if length > max_len {
                return Err(NetError::TooLarge(url.to_owned(), max_len as usize));
            }
            file.write_all(&data).await.map_err(file_error)?;
        }
        file.sync_data().await.map_err(file_error)?;
        Ok(Fetched {
            length,
            resumed_from: start,
        })
    }
}

/// The first byte of a `Content-Range: bytes first-last/length` header.
fn content_range_start(headers: &hyper::HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}
