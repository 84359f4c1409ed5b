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

/// A node name made from an identifier (a ServerID, a DevId): characters other than
/// letters, digits, `-` and `_` become `_`, cut to the segment limit.
pub fn segment_for(id: &str) -> String {
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_SEGMENT_LEN)
        .collect();
    if name.is_empty() {
        "_".to_owned()
    } else {
        name
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
    fn identifiers_become_valid_segments() {
        assert_eq!(segment_for("IMEI:35/0"), "IMEI_35_0");
        assert_eq!(segment_for("gw-1"), "gw-1");
        assert_eq!(segment_for(""), "_");
        assert!(Uri::parse(&format!("./{}", segment_for(&"é".repeat(100)))).is_ok());
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
