//! The derived impl behaves exactly like the hand-written one from the `Outbox` docs.

#![deny(warnings)]

use std::borrow::Cow;

use procon::Outbox;
use serde::ser::{SerializeStruct, Serializer};

#[derive(Outbox)]
#[procon(topic = "accounts", entity = "account", key = account_id)]
struct Derived {
    account_id: i64,
    #[procon(rename = "emailAddress")]
    email: String,
    #[procon(skip)]
    password_hash: String,
    r#type: &'static str,
}

struct HandWritten {
    account_id: i64,
    email: String,
    password_hash: String,
    r#type: &'static str,
}

impl Outbox for HandWritten {
    const ENTITY: &'static str = "account";

    fn topic(&self) -> Cow<'_, str> {
        Cow::Borrowed("accounts")
    }

    fn key(&self) -> String {
        self.account_id.to_string()
    }

    fn serialize_payload<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("Derived", 3)?;
        state.serialize_field("account_id", &self.account_id)?;
        state.serialize_field("emailAddress", &self.email)?;
        state.serialize_field("type", &self.r#type)?;
        state.end()
    }
}

/// Serializes through `Outbox::serialize_payload` rather than `Serialize`.
struct Payload<'a, T>(&'a T);

impl<T: Outbox> serde::Serialize for Payload<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

/// Everything an `Outbox` says about a model.
fn describe<T: Outbox>(model: &T) -> (&'static str, String, String, serde_json::Value) {
    (
        T::ENTITY,
        model.topic().into_owned(),
        model.key(),
        serde_json::to_value(Payload(model)).unwrap(),
    )
}

fn main() {
    let derived = Derived {
        account_id: 42,
        email: "ada@example.com".to_owned(),
        password_hash: "secret".to_owned(),
        r#type: "premium",
    };
    let hand_written = HandWritten {
        account_id: 42,
        email: "ada@example.com".to_owned(),
        password_hash: "secret".to_owned(),
        r#type: "premium",
    };
    let expected = (
        "account",
        "accounts".to_owned(),
        "42".to_owned(),
        serde_json::json!({
            "account_id": 42,
            "emailAddress": "ada@example.com",
            "type": "premium",
        }),
    );
    assert_eq!(describe(&derived), expected);
    assert_eq!(describe(&hand_written), expected);
    assert!(matches!(derived.topic(), Cow::Borrowed("accounts")));
    // Field order and struct name as well: a format that records them (here the token-level
    // serializer below) sees the same calls.
    assert_eq!(record(&derived), record(&hand_written));
    assert_eq!(derived.password_hash, hand_written.password_hash);
}

/// The sequence of serializer calls, struct name and length included.
fn record<T: Outbox>(model: &T) -> Vec<String> {
    let mut calls = Vec::new();
    model.serialize_payload(Recorder(&mut calls)).unwrap();
    calls
}

/// A serializer that records the struct-level calls it receives.
struct Recorder<'a>(&'a mut Vec<String>);

impl<'a> Serializer for Recorder<'a> {
    type Ok = ();
    type Error = serde::de::value::Error;
    type SerializeSeq = serde::ser::Impossible<(), Self::Error>;
    type SerializeTuple = serde::ser::Impossible<(), Self::Error>;
    type SerializeTupleStruct = serde::ser::Impossible<(), Self::Error>;
    type SerializeTupleVariant = serde::ser::Impossible<(), Self::Error>;
    type SerializeMap = serde::ser::Impossible<(), Self::Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = serde::ser::Impossible<(), Self::Error>;

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self, Self::Error> {
        self.0.push(format!("struct {name} {len}"));
        Ok(self)
    }

    fn serialize_bool(self, _: bool) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_i8(self, _: i8) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_i16(self, _: i16) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_i32(self, _: i32) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_i64(self, _: i64) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_u8(self, _: u8) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_u16(self, _: u16) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_u32(self, _: u32) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_u64(self, _: u64) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_f32(self, _: f32) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_f64(self, _: f64) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_char(self, _: char) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_str(self, _: &str) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_none(self) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_some<T: ?Sized + serde::Serialize>(self, _: &T) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_unit(self) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_newtype_struct<T: ?Sized + serde::Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_newtype_variant<T: ?Sized + serde::Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Self::Error> {
        unsupported()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        unsupported()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
        unsupported()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        unsupported()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        unsupported()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        unsupported()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        unsupported()
    }
}

impl SerializeStruct for Recorder<'_> {
    type Ok = ();
    type Error = serde::de::value::Error;

    fn serialize_field<T: ?Sized + serde::Serialize>(
        &mut self,
        key: &'static str,
        _: &T,
    ) -> Result<(), Self::Error> {
        self.0.push(format!("field {key}"));
        Ok(())
    }

    fn end(self) -> Result<(), Self::Error> {
        self.0.push("end".to_owned());
        Ok(())
    }
}

/// Only structs are recorded.
fn unsupported<T>() -> Result<T, serde::de::value::Error> {
    Err(serde::ser::Error::custom("not a struct"))
}
