//! `#[derive(Outbox)]`: implements `procon::Outbox` from `#[procon(...)]` attributes.
//!
//! The input goes through four steps: `attr` reads the attributes as written, `valid` checks
//! them and builds the `ast::Model` (defaults applied), `expand` writes the impl. On any
//! mistake, `fallback` emits every error found and a stub impl instead.

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro2::{Span, TokenStream};
use syn::DeriveInput;

use crate::internals::Ctxt;

/// Expands `#[derive(Outbox)]` on `input`: the impl, or the errors and a stub.
pub(crate) fn expand(input: DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let raw = attr::Input::from_ast(&cx, &input);
    let model = valid::check(&cx, &input, raw);
    match (cx.check(), model) {
        (Ok(()), Some(model)) => expand::expand(&model),
        (Err(errors), _) => fallback::expand(&input, errors),
        // Unreachable by `valid::check`'s contract; still an error, never a panic.
        (Ok(()), None) => fallback::expand(
            &input,
            syn::Error::new(
                Span::call_site(),
                "internal error in `procon-derive`: the input was rejected without a reason; \
                 please report this bug",
            ),
        ),
    }
}
