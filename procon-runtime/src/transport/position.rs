//! [`Position`]: where a message sits in its partition, wide enough for every transport.
//!
//! Kafka positions are offsets (`i64`); Kinesis sequence numbers are decimal numbers of up to
//! 56 digits today (the API allows more), far beyond `i64` and `u128`. A position is therefore
//! an unsigned 256-bit number (every number of up to 77 decimal digits), kept as four 64-bit limbs, most significant
//! first, so the derived ordering is the numeric one and the type stays `Copy`. The runtime only
//! compares positions, steps one past them, stores them (as `NUMERIC`, written as decimal text)
//! and hands them back to their source.

use std::fmt;
use std::str::FromStr;

/// Where a message sits in its partition: opaque to the runtime, which only compares
/// positions, stores them and hands them back to their source. Kafka positions are offsets;
/// Kinesis positions are sequence numbers. Written and parsed as decimal text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position([u64; 4]);

/// Text that is not a position: not a decimal number, or not below 2^256.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a position (a decimal number below 2^256)")]
pub struct PositionParseError {
    /// The refused text, cut to 100 characters.
    pub text: String,
}

impl Position {
    /// The position 0.
    pub const ZERO: Position = Position([0; 4]);
    /// The largest position.
    pub const MAX: Position = Position([u64::MAX; 4]);

    /// The position of Kafka offset `offset` (a negative offset, which Kafka uses for "none",
    /// counts as 0).
    pub const fn offset(offset: i64) -> Self {
        let offset = if offset < 0 { 0 } else { offset as u64 };
        Position([0, 0, 0, offset])
    }

    /// This position as a Kafka offset, `None` when it does not fit in one (a Kinesis sequence
    /// number).
    pub const fn as_offset(self) -> Option<i64> {
        let [a, b, c, d] = self.0;
        if a == 0 && b == 0 && c == 0 && d <= i64::MAX as u64 {
            Some(d as i64)
        } else {
            None
        }
    }

    /// The position right after this one: where to go on once this message is applied.
    /// (`MAX` stays `MAX`; no transport comes near it.)
    pub const fn after(self) -> Self {
        let mut limbs = self.0;
        let mut i = 4;
        while i > 0 {
            i -= 1;
            if limbs[i] == u64::MAX {
                limbs[i] = 0;
            } else {
                limbs[i] += 1;
                return Position(limbs);
            }
        }
        Position::MAX
    }

    /// The position right before this one, `None` for 0. A transport that can only start
    /// *after* a sequence number it has (Kinesis) starts after `before()` of a stored position.
    pub const fn before(self) -> Option<Self> {
        let mut limbs = self.0;
        let mut i = 4;
        while i > 0 {
            i -= 1;
            if limbs[i] == 0 {
                limbs[i] = u64::MAX;
            } else {
                limbs[i] -= 1;
                return Some(Position(limbs));
            }
        }
        None
    }

    /// `self * 10 + digit`, `None` on overflow.
    pub(crate) fn push_digit(self, digit: u8) -> Option<Self> {
        let mut limbs = self.0;
        let mut carry = u128::from(digit);
        for limb in limbs.iter_mut().rev() {
            let v = u128::from(*limb) * 10 + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        (carry == 0).then_some(Position(limbs))
    }

    /// `(self / divisor, self % divisor)`.
    pub(crate) fn div_rem(self, divisor: u64) -> (Self, u64) {
        let mut limbs = self.0;
        let mut rem = 0u128;
        for limb in limbs.iter_mut() {
            let v = (rem << 64) | u128::from(*limb);
            *limb = (v / u128::from(divisor)) as u64;
            rem = v % u128::from(divisor);
        }
        (Position(limbs), rem as u64)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nineteen digits at a time (10^19 < 2^64), least significant chunk first.
        const CHUNK: u64 = 10_000_000_000_000_000_000;
        let mut chunks = Vec::with_capacity(5);
        let mut rest = *self;
        loop {
            let (quotient, chunk) = rest.div_rem(CHUNK);
            chunks.push(chunk);
            if quotient == Position::ZERO {
                break;
            }
            rest = quotient;
        }
        let mut text = String::with_capacity(chunks.len() * 19);
        for (i, chunk) in chunks.iter().rev().enumerate() {
            if i == 0 {
                text.push_str(&chunk.to_string());
            } else {
                text.push_str(&format!("{chunk:019}"));
            }
        }
        f.pad(&text)
    }
}

impl FromStr for Position {
    type Err = PositionParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || PositionParseError {
            text: text.chars().take(100).collect(),
        };
        if text.is_empty() {
            return Err(refuse());
        }
        text.bytes().try_fold(Position::ZERO, |acc, b| {
            if b.is_ascii_digit() {
                acc.push_digit(b - b'0').ok_or_else(refuse)
            } else {
                Err(refuse())
            }
        })
    }
}

/// Written as decimal text: a JSON number would lose digits in most readers.
impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Position {
        text.parse().unwrap()
    }

    #[test]
    fn kafka_offsets_round_trip_and_order_numerically() {
        for offset in [0, 1, 9, 10, 12_345, i64::MAX] {
            let position = Position::offset(offset);
            assert_eq!(position.as_offset(), Some(offset));
            assert_eq!(position.to_string(), offset.to_string());
            assert_eq!(p(&offset.to_string()), position);
        }
        assert!(Position::offset(9) < Position::offset(10));
        assert_eq!(Position::offset(-1), Position::ZERO);
        assert_eq!(Position::offset(41).after(), Position::offset(42));
    }

    #[test]
    fn kinesis_sequence_numbers_round_trip_and_order_numerically() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert_eq!(a.len(), 56);
        assert_eq!(p(a).to_string(), a);
        assert_eq!(p(b).to_string(), b);
        assert!(p(a) < p(b));
        assert_eq!(p(a).as_offset(), None);
        assert_eq!(
            p(a).after().to_string(),
            "49590338271490256608559692538361571095921575989136588899"
        );
        assert_eq!(p(a).after().before(), Some(p(a)));
        // A carry across a chunk of nineteen digits and across a limb.
        assert_eq!(
            p("9999999999999999999").after().to_string(),
            "10000000000000000000"
        );
        assert_eq!(
            p("18446744073709551615").after().to_string(),
            "18446744073709551616"
        );
        assert_eq!(
            p("18446744073709551616").before(),
            Some(p("18446744073709551615"))
        );
        assert_eq!(
            p("100000000000000000000000000000000000001").to_string(),
            "100000000000000000000000000000000000001"
        );
    }

    #[test]
    fn what_is_not_a_position_is_refused() {
        assert!("".parse::<Position>().is_err());
        assert!("-1".parse::<Position>().is_err());
        assert!("12a".parse::<Position>().is_err());
        let max = Position::MAX.to_string();
        assert_eq!(max.len(), 78);
        assert_eq!(p(&max), Position::MAX);
        assert!(format!("{max}0").parse::<Position>().is_err());
        assert_eq!(Position::ZERO.before(), None);
        assert_eq!(Position::MAX.after(), Position::MAX);
    }
}
