//! What the codec fuzz targets share: decoding any bytes must give an error or a
//! message, never a panic; a message decoded must encode again in both encodings and
//! decode to a message that encodes the same.

use gwmo_proto::Encoding;

pub fn round_trip(encoding: Encoding, data: &[u8]) {
    let Ok(message) = encoding.decode(data) else {
        return;
    };
    for again in [Encoding::Xml, Encoding::Wbxml] {
        // A message may hold what one encoding cannot carry (a NUL in WBXML text).
        if let Ok(bytes) = again.encode(&message) {
            let decoded = again
                .decode(&bytes)
                .expect("what gwmo encodes, gwmo decodes");
            assert_eq!(
                again.encode(&decoded).ok(),
                Some(bytes),
                "{again:?} is not stable"
            );
        }
    }
}
