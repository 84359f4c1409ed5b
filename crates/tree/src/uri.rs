//! DM URIs: `./A/B`, `A/B` (relative to the root) or `.`, with an optional
//! `?prop=Name` or `?list=...` query. Segments are checked against the limits the
//! device advertises in ./DevDetail/URI.

use crate::TreeError;

/// Longest URI accepted (./DevDetail/URI/MaxTotLen).
pub const MAX_URI_LEN: usize = 1024;
/// Deepest node (./DevDetail/URI/MaxDepth).
pub const MAX_DEPTH: usize = 32;
/// Longest segment (./DevDetail/URI/MaxSegLen).
pub const MAX_SEGMENT_LEN: usize = 64;

/// What follows `?` in a command's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query<'a> {
    /// `?prop=Name`: one property of the node.
    Prop(&'a str),
    /// `?list=...`: tree structure queries (not supported).
    List(&'a str),
}

/// A parsed URI: its segments below the root, and its query if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub segments: Vec<&'a str>,
    pub query: Option<Query<'a>>,
}

impl<'a> Uri<'a> {
    pub fn parse(text: &'a str) -> Result<Uri<'a>, TreeError> {
        if text.len() > MAX_URI_LEN {
            return Err(TreeError::UriTooLong(text.len()));
        }
        let (path, query) = match text.split_once('?') {
            None => (text, None),
            Some((path, query)) => {
                let query = match query.split_once('=') {
                    Some(("prop", name)) if !name.is_empty() => Query::Prop(name),
                    Some(("list", what)) => Query::List(what),
                    _ => return Err(TreeError::BadUri(text.to_owned())),
                };
                (path, Some(query))
            }
        };
        let path = path.strip_suffix('/').unwrap_or(path);
        let relative = match path {
            "." | "" => "",
            _ => path.strip_prefix("./").unwrap_or(path),
        };
        let segments: Vec<&str> = if relative.is_empty() {
            Vec::new()
        } else {
            relative.split('/').collect()
        };
        if segments.len() > MAX_DEPTH {
            return Err(TreeError::UriTooLong(text.len()));
        }
        for segment in &segments {
            if segment.len() > MAX_SEGMENT_LEN {
                return Err(TreeError::UriTooLong(text.len()));
            }
            if segment.is_empty() || *segment == "." || *segment == ".." {
                return Err(TreeError::BadUri(text.to_owned()));
            }
        }
        Ok(Uri { segments, query })
    }
}

/// The URI of a node from its segments: `./A/B`, or `.` for the root.
pub fn join(segments: &[&str]) -> String {
    if segments.is_empty() {
        ".".to_owned()
    } else {
        format!("./{}", segments.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_relative_and_root_forms() {
        assert_eq!(Uri::parse("./A/B").unwrap().segments, vec!["A", "B"]);
        assert_eq!(Uri::parse("A/B/").unwrap().segments, vec!["A", "B"]);
        assert!(Uri::parse(".").unwrap().segments.is_empty());
        assert!(Uri::parse("./").unwrap().segments.is_empty());
        assert_eq!(join(&["A", "B"]), "./A/B");
        assert_eq!(join(&[]), ".");
    }

    #[test]
    fn queries() {
        let uri = Uri::parse("./A?prop=ACL").unwrap();
        assert_eq!(uri.query, Some(Query::Prop("ACL")));
        assert_eq!(
            Uri::parse("./A?list=Struct").unwrap().query,
            Some(Query::List("Struct"))
        );
        assert!(Uri::parse("./A?prop=").is_err());
        assert!(Uri::parse("./A?what").is_err());
    }

    #[test]
    fn bad_segments_and_limits() {
        for bad in ["./A//B", "./A/../B", "./A/./B"] {
            assert!(
                matches!(Uri::parse(bad), Err(TreeError::BadUri(_))),
                "{bad}"
            );
        }
        let long = format!("./{}", "a".repeat(MAX_URI_LEN));
        assert!(matches!(Uri::parse(&long), Err(TreeError::UriTooLong(_))));
        let deep = format!("./{}", vec!["a"; MAX_DEPTH + 1].join("/"));
        assert!(matches!(Uri::parse(&deep), Err(TreeError::UriTooLong(_))));
        let wide = format!("./{}", "s".repeat(MAX_SEGMENT_LEN + 1));
        assert!(matches!(Uri::parse(&wide), Err(TreeError::UriTooLong(_))));
    }
}
