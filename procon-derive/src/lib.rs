//! # procon-derive
//!
//! The procedural macros of procon: `#[derive(Outbox)]`, below, and `#[event_handler]`,
//! documented on [`macro@event_handler`]. Use them through the `procon` facade, which
//! re-exports the derive next to the trait of the same name:
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
//! Container attributes: `topic = "..."` (required; the model also declares it to the relay,
//! see `relay.undeclared_topics`), `entity = "..."` (default: the struct name in snake_case)
//! and `key = field` (default: the field `id`). Field attributes: `skip`
//! (left out of the payload) and `rename = "..."` (the field's name in the payload).
//!
//! The examples are not doctests (the facade is not a dependency of this crate); the UI tests
//! of the workspace (`tests/ui.rs`) compile them and pin every error message.
//!
//! The generated code names runtime items only through `::procon::__private`, so the user
//! crate needs `procon` as a dependency and nothing else. On a mistake each macro reports
//! every error it finds, each at its own span, and emits what keeps the rest of the crate free
//! of follow-on errors: the derive a stub impl, the attribute the function unchanged.

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

mod event_handler;
mod internals;
mod materialize;
mod outbox;

/// Implements `procon::Outbox` from `#[procon(...)]` attributes; see the crate docs.
#[proc_macro_derive(Outbox, attributes(procon))]
pub fn derive_outbox(input: TokenStream) -> TokenStream {
    outbox::expand(parse_macro_input!(input as DeriveInput)).into()
}

/// Implements `procon::Materialize` on a local Diesel model that keeps a copy of a remote
/// entity, and registers its `<entity>.created` / `.updated` / `.deleted` handlers.
///
/// Struct keys: `topic = "..."` and `entity = "..."` (required: the remote entity's events),
/// `master_key = field` or `master_key = (a, b)` (default `id`: the columns of a unique index),
/// `table = path` (default: Diesel's `#[diesel(table_name = ...)]`), `hooks` (the model
/// implements `procon::MaterializeHooks` itself). Field keys: `from = "path.in.event"` (default:
/// the field name), `from_topic`, `from_event_time`, `skip` (never written; `Default` value),
/// `skip_on_create`, `skip_on_update`. Each field is the column of the same name.
#[proc_macro_derive(Materialize, attributes(procon, diesel))]
pub fn derive_materialize(input: TokenStream) -> TokenStream {
    materialize::expand(parse_macro_input!(input as DeriveInput)).into()
}

/// Makes a function the handler of one event, registered for the consumer that
/// `procon::start` runs:
///
/// ```ignore
/// use procon::{event_handler, Event, HandlerContext, HandlerError};
///
/// #[derive(serde::Deserialize)]
/// struct Account {
///     id: i64,
///     email: String,
/// }
///
/// #[event_handler(topic = "accounts", event = "account.created")]
/// fn on_account_created(
///     ctx: &mut HandlerContext<'_>,
///     event: Event<Account>,
/// ) -> Result<(), HandlerError> {
///     let _conn = ctx.conn(); // write the effect here, in the consumption's transaction
///     let _email = event.after.as_ref().map(|account| &account.email);
///     Ok(())
/// }
/// ```
///
/// Arguments: `topic = "..."` (the topic the event is read from) and `event = "..."` (the
/// event name), both required. The function must be a plain, non-generic, synchronous free
/// function `fn(ctx: &mut HandlerContext<'_>, event: Event<Payload>) -> Result<(),
/// HandlerError>`; the payload type is read off its second argument and must implement
/// `serde::Deserialize`.
///
/// The function stays as written, callable as before. Next to it the attribute writes a
/// hidden unit struct implementing `procon::EventHandler` by calling the function, and
/// registers it (what `procon::register_handler!` does for a hand-written impl), all in an
/// anonymous `const`. On a mistake it reports every error it finds, each at its own span, and
/// emits the function unchanged without registering it.
#[proc_macro_attribute]
pub fn event_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    event_handler::expand(args.into(), input.into()).into()
}
