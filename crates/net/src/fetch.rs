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
        let Some((start, mut body)) = self.start_fetch(url, have, idle).await? else {
            // Everything was there already.
            return Ok(Fetched {
                length: have,
                resumed_from: have,
            });
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
        while let Some(piece) = next_piece(url, &mut body, idle).await? {
            length += piece.len() as u64;
            if length > max_len {
                return Err(NetError::TooLarge(url.to_owned(), max_len as usize));
            }
            file.write_all(&piece).await.map_err(file_error)?;
        }
        file.sync_data().await.map_err(file_error)?;
        Ok(Fetched {
            length,
            resumed_from: start,
        })
    }

    /// GETs `url` and hands each piece of its body to `sink` as it arrives, keeping
    /// nothing (for a device that checks a package as it streams it to where it goes);
    /// its length. At most `max_len` bytes; `idle` as for [`HttpClient::fetch_to`].
    pub async fn fetch_streamed(
        &self,
        url: &str,
        max_len: u64,
        idle: Duration,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<u64, NetError> {
        let Some((_, mut body)) = self.start_fetch(url, 0, idle).await? else {
            return Ok(0);
        };
        let mut length = 0;
        while let Some(piece) = next_piece(url, &mut body, idle).await? {
            length += piece.len() as u64;
            if length > max_len {
                return Err(NetError::TooLarge(url.to_owned(), max_len as usize));
            }
            sink(&piece);
        }
        Ok(length)
    }

    /// Sends the GET of a fetch that has the first `have` bytes already: the offset the
    /// answer's body starts at and the body; none when there was nothing left to send.
    async fn start_fetch(
        &self,
        url: &str,
        have: u64,
        idle: Duration,
    ) -> Result<Option<(u64, hyper::body::Incoming)>, NetError> {
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
            416 if have > 0 => return Ok(None),
            status => return Err(NetError::Status(url.to_owned(), status)),
        };
        Ok(Some((start, response.into_body())))
    }
}

/// The next piece of a fetched body's data; none at its end.
async fn next_piece(
    url: &str,
    body: &mut hyper::body::Incoming,
    idle: Duration,
) -> Result<Option<bytes::Bytes>, NetError> {
    loop {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| NetError::Timeout(url.to_owned(), idle))?;
        let Some(frame) = frame else {
            return Ok(None);
        };
        if let Ok(data) = frame.map_err(|e| failed(url, &e))?.into_data() {
            return Ok(Some(data));
        }
    }
}

/// The first byte of a `Content-Range: bytes first-last/length` header.
fn content_range_start(headers: &hyper::HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}
