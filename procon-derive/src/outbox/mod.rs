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

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::internals::Ctxt;

/// Expands `#[derive(Outbox)]` on `input`: the impl, or the errors and a stub.
pub(crate) fn expand(input: DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let raw = attr::Input::from_ast(&cx, &input);
    let model = valid::check(&cx, &input, raw);
    crate::internals::ctxt::finish(cx, model, expand::expand, |errors| {
        fallback::expand(&input, errors)
    })
}
