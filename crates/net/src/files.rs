//! Serving a stored file with HTTP Range (RFC 9110 §14): the whole file, or the one
//! range asked for (a cut download resumes where it stopped), streamed in pieces so
//! that a large file never sits in memory; each byte handed to the connection is
//! counted for whoever serves the file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode, header::RANGE};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How much is read from the file per piece sent.
const PIECE: usize = 64 * 1024;

/// What part of a file a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// No Range, or one this server does not take (several ranges, another unit):
    /// answering the whole file is allowed.
    Whole,
    /// Bytes `first..=last`.
    Range(u64, u64),
    /// A range that starts past the end of the file.
    Unsatisfiable,
}

/// The part of a file of `length` bytes a request asks for.
pub fn requested_range(headers: &HeaderMap, length: u64) -> Requested {
    let Some(spec) = headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Requested::Whole;
    };
    if spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Requested::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        // "-N": the last N bytes.
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => {
            (length.saturating_sub(suffix), length.saturating_sub(1))
        }
        (Ok(first), Err(_)) if last.is_empty() => (first, length.saturating_sub(1)),
        (Ok(first), Ok(last)) if first <= last => (first, last.min(length.saturating_sub(1))),
        _ => return Requested::Whole,
    };
    if length == 0 || range.0 >= length {
        return Requested::Unsatisfiable;
    }
    Requested::Range(range.0, range.1)
}

/// Answers a GET of the file at `path` (`content_type` as its type), honouring a
/// Range in `headers`; adds every byte sent to `sent`.
pub async fn serve_file(
    path: &Path,
    headers: &HeaderMap,
    content_type: &str,
    sent: Arc<AtomicU64>,
) -> Response {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such file\n").into_response();
        }
        Err(error) => return unreadable(path, &error),
    };
    let length = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(error) => return unreadable(path, &error),
    };
    let (status, first, last) = match requested_range(headers, length) {
        Requested::Range(first, last) => (StatusCode::PARTIAL_CONTENT, first, last),
        Requested::Whole => (StatusCode::OK, 0, length.saturating_sub(1)),
        Requested::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(CONTENT_RANGE, format!("bytes */{length}"))],
            )
                .into_response();
        }
    };
    let count = if length == 0 { 0 } else { last - first + 1 };
    if first > 0
        && let Err(error) = file.seek(std::io::SeekFrom::Start(first)).await
    {
        return unreadable(path, &error);
    }
    let pieces = futures_util::stream::unfold((file, count), move |(mut file, left)| {
        let sent = sent.clone();
        async move {
            if left == 0 {
                return None;
            }
            let mut buffer = vec![0; PIECE.min(left as usize)];
            match file.read(&mut buffer).await {
                // The file shrank under the answer: end it short (the client sees a
                // body shorter than announced).
                Ok(0) => None,
                Ok(read) => {
                    buffer.truncate(read);
                    sent.fetch_add(read as u64, Ordering::Relaxed);
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(buffer)),
                        (file, left - read as u64),
                    ))
                }
                Err(error) => Some((Err(error), (file, 0))),
            }
        }
    });
    let mut response = Response::new(Body::from_stream(pieces));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = content_type.parse() {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(ACCEPT_RANGES, axum::http::HeaderValue::from_static("bytes"));
    headers.insert(CONTENT_LENGTH, count.into());
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = format!("bytes {first}-{last}/{length}").parse()
    {
        headers.insert(CONTENT_RANGE, value);
    }
    response
}

/// The answer when a stored file cannot be read (logged: the operator's problem, not
/// the client's).
fn unreadable(path: &Path, error: &std::io::Error) -> Response {
    tracing::warn!(path = %path.display(), %error, "a stored file cannot be read");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the file cannot be read\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, length: u64) -> Requested {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, value.parse().unwrap());
        requested_range(&headers, length)
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_gives_them() {
        assert_eq!(range("bytes=0-99", 1000), Requested::Range(0, 99));
        assert_eq!(range("bytes=500-", 1000), Requested::Range(500, 999));
        assert_eq!(range("bytes=-100", 1000), Requested::Range(900, 999));
        assert_eq!(range("bytes=900-5000", 1000), Requested::Range(900, 999));
        assert_eq!(range("bytes=1000-", 1000), Requested::Unsatisfiable);
        // Not taken: the whole file is answered.
        assert_eq!(range("bytes=0-1,5-9", 1000), Requested::Whole);
        assert_eq!(range("items=0-1", 1000), Requested::Whole);
        assert_eq!(range("bytes=9-1", 1000), Requested::Whole);
        assert_eq!(requested_range(&HeaderMap::new(), 1000), Requested::Whole);
    }
}
