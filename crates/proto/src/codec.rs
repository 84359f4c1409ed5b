//! One entry point over the two encodings of a DM message: pick the codec from the
//! HTTP content type, decode and encode through it.

use crate::codes::content_type;
use crate::{Message, wbxml, xml};

/// The two wire encodings of a SyncML DM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Xml,
    Wbxml,
}

/// Why a message could not be decoded or encoded, in either encoding.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed {encoding} message: {reason}")]
    Decode {
        encoding: &'static str,
        reason: crate::grammar::DecodeError,
    },
    #[error("cannot write XML: {0}")]
    XmlEncode(#[from] xml::EncodeError),
    #[error("cannot write WBXML: {0}")]
    WbxmlEncode(#[from] wbxml::EncodeError),
}

/// The media types of a DM message: (name, encoding, whether it is a SyncML DS type,
/// which many DM clients post their DM messages as).
const MEDIA_TYPES: [(&str, Encoding, bool); 4] = [
    (content_type::DM_XML, Encoding::Xml, false),
    (content_type::DM_WBXML, Encoding::Wbxml, false),
    (content_type::DS_XML, Encoding::Xml, true),
    (content_type::DS_WBXML, Encoding::Wbxml, true),
];

/// The encoding a content type names, and whether it is a DS type; parameters
/// (`; charset=...`) are ignored.
fn media_type(value: &str) -> Option<(Encoding, bool)> {
    let mime = value.split(';').next().unwrap_or_default().trim();
    MEDIA_TYPES
        .into_iter()
        .find(|(name, ..)| mime.eq_ignore_ascii_case(name))
        .map(|(_, encoding, ds)| (encoding, ds))
}

impl Encoding {
    /// The HTTP content type of a DM message in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Xml => content_type::DM_XML,
            Encoding::Wbxml => content_type::DM_WBXML,
        }
    }

    /// The encoding a content type names, DM or DS media type alike; parameters
    /// (`; charset=...`) are ignored.
    pub fn from_content_type(value: &str) -> Option<Encoding> {
        media_type(value).map(|(encoding, _)| encoding)
    }

    /// The content type to answer a message posted as `request` with: a client that
    /// used the DS media types gets them back, as it expects.
    pub fn reply_content_type(self, request: Option<&str>) -> &'static str {
        let ds = request.and_then(media_type).is_some_and(|(_, ds)| ds);
        MEDIA_TYPES
            .into_iter()
            .find(|(_, encoding, is_ds)| *encoding == self && *is_ds == ds)
            .map_or(self.content_type(), |(name, ..)| name)
    }

    /// Guesses the encoding from the first bytes: WBXML starts with a version byte
    /// 0x01..=0x03, XML with `<` (after optional whitespace or a byte-order mark).
    pub fn sniff(bytes: &[u8]) -> Encoding {
        match bytes.first() {
            Some(1..=3) => Encoding::Wbxml,
            _ => Encoding::Xml,
        }
    }

    pub fn decode(self, bytes: &[u8]) -> Result<Message, CodecError> {
        match self {
            Encoding::Xml => xml::decode(bytes),
            Encoding::Wbxml => wbxml::decode(bytes),
        }
        .map_err(|reason| CodecError::Decode {
            encoding: self.label(),
            reason,
        })
    }

    pub fn encode(self, message: &Message) -> Result<Vec<u8>, CodecError> {
        Ok(match self {
            Encoding::Xml => xml::encode(message)?,
            Encoding::Wbxml => wbxml::encode(message)?,
        })
    }

    /// The encoding's name for people: XML or WBXML.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::Xml => "XML",
            Encoding::Wbxml => "WBXML",
        }
    }

    /// The encoding's name in configuration files and the store: xml or wbxml.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Xml => "xml",
            Encoding::Wbxml => "wbxml",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_their_encoding() {
        assert_eq!(
            Encoding::from_content_type("application/vnd.syncml.dm+xml; charset=UTF-8"),
            Some(Encoding::Xml)
        );
        assert_eq!(
            Encoding::from_content_type("Application/Vnd.Syncml.DM+WBXML"),
            Some(Encoding::Wbxml)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn ds_media_types_are_taken_and_answered_in_kind() {
        assert_eq!(
            Encoding::from_content_type("application/vnd.syncml+xml"),
            Some(Encoding::Xml)
        );
        assert_eq!(
            Encoding::from_content_type("application/vnd.syncml+wbxml; charset=UTF-8"),
            Some(Encoding::Wbxml)
        );
        assert_eq!(
            Encoding::Wbxml.reply_content_type(Some("application/vnd.syncml+wbxml")),
            content_type::DS_WBXML
        );
        assert_eq!(
            Encoding::Xml.reply_content_type(Some("application/vnd.syncml.dm+xml")),
            content_type::DM_XML
        );
        assert_eq!(Encoding::Xml.reply_content_type(None), content_type::DM_XML);
    }

    #[test]
    fn sniffing_tells_wbxml_from_xml() {
        assert_eq!(Encoding::sniff(&[0x02, 0xa4, 0x01, 0x6a]), Encoding::Wbxml);
        assert_eq!(Encoding::sniff(b"<?xml"), Encoding::Xml);
        assert_eq!(Encoding::sniff(b""), Encoding::Xml);
    }
}
