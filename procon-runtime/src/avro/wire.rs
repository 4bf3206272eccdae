//! The Confluent wire format: `0x00`, the schema id (4 bytes, big-endian), the Avro datum.
//! Every Confluent, Karapace or Apicurio client reads and writes this framing.

/// The first byte of a framed message. A JSON document never starts with it.
const MAGIC: u8 = 0;

/// `datum` framed with schema `id`.
pub fn frame(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(5 + datum.len());
    framed.push(MAGIC);
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(datum);
    framed
}

/// The schema id and datum of a framed message; `None` when `bytes` is not framed.
pub fn unframe(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [MAGIC, a, b, c, d, datum @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_datum_reads_back_with_its_id() {
        let framed = frame(0x0102_0304, b"datum");
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(unframe(&framed), Some((0x0102_0304, &b"datum"[..])));
    }

    #[test]
    fn json_and_short_messages_are_not_framed() {
        assert_eq!(unframe(b"{\"event\":1}"), None);
        assert_eq!(unframe(&[0, 0, 0]), None);
        assert_eq!(unframe(b""), None);
    }
}
