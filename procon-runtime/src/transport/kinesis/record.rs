//! The Kinesis record format: Kinesis records carry a partition key and data, no headers, so
//! procon's headers travel inside the data (docs/ENVELOPE.md, "Kinesis records").
//!
//! ```text
//! {"procon":1,"headers":[["procon-event-id","0193…"],["procon-event","account.created"]]}\n
//! <payload bytes, verbatim>
//! ```
//!
//! The first line is a JSON object (one line: JSON escapes every newline inside strings) with
//! the format version and the headers in order, values as UTF-8 text; everything after the
//! first `\n` is the payload exactly as the Kafka transport would carry it. Any language
//! reads it with a split at the first newline and a JSON parser.

use serde::{Deserialize, Serialize};

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why a record cannot be written or read in this format.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A header value is not UTF-8 text.
    #[error("header `{0}` is not UTF-8 text; Kinesis records carry headers as text")]
    BinaryHeader(String),
    /// The data has no header line.
    #[error("not a procon record: no header line")]
    NoHeaderLine,
    /// The header line is not the expected JSON.
    #[error("not a procon record: {0}")]
    HeaderLine(#[source] serde_json::Error),
    /// A newer version of the format.
    #[error("procon record format {0} is not known to this version (it reads {FORMAT_VERSION})")]
    Version(u32),
}

#[derive(Serialize, Deserialize)]
struct HeaderLine<'a> {
    procon: u32,
    #[serde(borrow)]
    headers: Vec<(std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
}

/// The record data for `headers` and `payload`.
pub fn encode(headers: &[(&str, &[u8])], payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    let headers = headers
        .iter()
        .map(|(name, value)| match std::str::from_utf8(value) {
            Ok(value) => Ok(((*name).into(), value.into())),
            Err(_) => Err(FormatError::BinaryHeader((*name).to_owned())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let line = HeaderLine {
        procon: FORMAT_VERSION,
        headers,
    };
    let mut data = serde_json::to_vec(&line).map_err(FormatError::HeaderLine)?;
    data.push(b'\n');
    data.extend_from_slice(payload);
    Ok(data)
}

/// Record data read back: procon's headers and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The headers, in order, values as bytes (as [`crate::transport::Message`] holds them).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The payload, borrowed from the data.
    pub payload: &'a [u8],
}

/// The headers and payload of record data written by [`encode`].
pub fn decode(data: &[u8]) -> Result<Decoded<'_>, FormatError> {
    let newline = data
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(FormatError::NoHeaderLine)?;
    let line: HeaderLine<'_> =
        serde_json::from_slice(&data[..newline]).map_err(FormatError::HeaderLine)?;
    if line.procon != FORMAT_VERSION {
        return Err(FormatError::Version(line.procon));
    }
    let headers = line
        .headers
        .into_iter()
        .map(|(name, value)| (name.into_owned(), value.into_owned().into_bytes()))
        .collect();
    Ok(Decoded {
        headers,
        payload: &data[newline + 1..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_payload_round_trip_with_newlines_and_quotes_inside() {
        let headers: [(&str, &[u8]); 2] = [
            ("procon-event-id", b"0193-abc"),
            ("note", b"line one\nline \"two\""),
        ];
        let payload = b"{\"a\":1}\n\x00\xffbinary";
        let data = encode(&headers, payload).unwrap();
        assert_eq!(data.iter().filter(|&&b| b == b'\n').count(), 2);
        let read = decode(&data).unwrap();
        assert_eq!(read.payload, payload);
        assert_eq!(
            read.headers[0],
            ("procon-event-id".to_owned(), b"0193-abc".to_vec())
        );
        assert_eq!(read.headers[1].1, b"line one\nline \"two\"".to_vec());
    }

    #[test]
    fn the_header_line_is_plain_json_in_order() {
        let data = encode(&[("b", b"2"), ("a", b"1")], b"x").unwrap();
        assert_eq!(
            std::str::from_utf8(&data).unwrap(),
            "{\"procon\":1,\"headers\":[[\"b\",\"2\"],[\"a\",\"1\"]]}\nx"
        );
    }

    #[test]
    fn binary_header_values_and_foreign_data_are_refused_with_a_reason() {
        assert!(matches!(
            encode(&[("bin", b"\xff")], b""),
            Err(FormatError::BinaryHeader(name)) if name == "bin"
        ));
        assert!(matches!(decode(b"plain"), Err(FormatError::NoHeaderLine)));
        assert!(matches!(
            decode(b"{\"x\":1}\n"),
            Err(FormatError::HeaderLine(_))
        ));
        assert!(matches!(
            decode(b"{\"procon\":2,\"headers\":[]}\n"),
            Err(FormatError::Version(2))
        ));
    }
}
