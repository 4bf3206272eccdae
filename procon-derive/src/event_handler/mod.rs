//! `#[event_handler(topic = "...", event = "...")]`: makes a function a `procon::EventHandler`
//! and registers it, so the consumer started by `procon::start` runs it.
//!
//! The input goes through four steps: `attr` reads the arguments as written, `valid` checks
//! them and the function and builds the `ast::Handler`, `expand` writes the function back
//! unchanged with its handler impl and registration. On any mistake, `fallback` emits every
//! error found and the item unchanged instead.

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro2::{Span, TokenStream};
use syn::Item;

use crate::internals::Ctxt;

/// Expands `#[event_handler(args)]` on `input`: the function with its handler, or the errors
/// and the item unchanged.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let raw = attr::Args::from_tokens(&cx, args);
    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(item) => item,
        Err(err) => {
            // Not an item syn can read: given back as is, next to the errors.
            let errors = match cx.check() {
                Ok(()) => err,
                Err(mut errors) => {
                    errors.combine(err);
                    errors
                }
            };
            return fallback::expand(input, errors);
        }
    };
    let handler = valid::check(&cx, raw, &item);
    match (cx.check(), handler) {
        (Ok(()), Some(handler)) => expand::expand(&handler, input),
        (Err(errors), _) => fallback::expand(input, errors),
        // Unreachable by `valid::check`'s contract; still an error, never a panic.
        (Ok(()), None) => fallback::expand(
            input,
            syn::Error::new(
                Span::call_site(),
                "internal error in `procon-derive`: the input was rejected without a reason; \
                 please report this bug",
            ),
        ),
    }
}
