//! # procon-derive
//!
//! The procedural macros of procon. Use them through the `procon` facade, which re-exports
//! the derive next to the trait of the same name:
//!
//! ```ignore
//! use procon::Outbox;
//!
//! #[derive(Outbox)]
//! #[procon(topic = "accounts", entity = "account", key = id)]
//! struct Account {
//!     id: i64,
//!     #[procon(rename = "emailAddress")]
//!     email: String,
//!     #[procon(skip)]
//!     password_hash: String,
//! }
//! ```
//!
//! Container attributes: `topic = "..."` (required), `entity = "..."` (default: the struct
//! name in snake_case) and `key = field` (default: the field `id`). Field attributes: `skip`
//! (left out of the payload) and `rename = "..."` (the field's name in the payload).
//!
//! The example is not a doctest (the facade is not a dependency of this crate); the UI tests
//! of the workspace (`tests/ui.rs`) compile it and pin every error message.
//!
//! The generated code names runtime items only through `::procon::__private`, so the user
//! crate needs `procon` as a dependency and nothing else. On a mistake the derive reports
//! every error it finds, each at its own span, and still emits a stub impl so that uses of
//! the struct as an `Outbox` add no follow-on errors.

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

mod internals;
mod outbox;

/// Implements `procon::Outbox` from `#[procon(...)]` attributes; see the crate docs.
#[proc_macro_derive(Outbox, attributes(procon))]
pub fn derive_outbox(input: TokenStream) -> TokenStream {
    outbox::expand(parse_macro_input!(input as DeriveInput)).into()
}
