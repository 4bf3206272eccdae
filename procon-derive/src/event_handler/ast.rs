//! The validated model of an `#[event_handler(...)]` function: what `valid.rs` produces once
//! every check passed, and all `expand.rs` needs.

use syn::{Ident, Type, Visibility};

/// A function that passed every check.
pub(super) struct Handler<'a> {
    /// The function's name, called by the generated `EventHandler::handle`.
    pub(super) ident: &'a Ident,
    /// The function's visibility, repeated on the hidden handler struct.
    pub(super) vis: &'a Visibility,
    /// `EventHandler::TOPIC`.
    pub(super) topic: String,
    /// `EventHandler::EVENT`.
    pub(super) event: String,
    /// The handler's signature, whose types locate errors about it.
    pub(super) signature: Signature<'a>,
}

/// The types of a handler's signature, as written: `fn(ctx: <ctx>, event: <event>) -> <output>`.
///
/// The generated code carries their spans, so a type the runtime does not accept (an argument
/// that is not an `Event<T>`, a payload that is not `Deserialize`, another error type) is
/// reported at the user's type rather than at the attribute.
pub(super) struct Signature<'a> {
    /// The type of the first argument, the handler context.
    pub(super) ctx: &'a Type,
    /// The type of the second argument, the event, whose payload type is read off it.
    pub(super) event: &'a Type,
    /// The return type.
    pub(super) output: &'a Type,
}
