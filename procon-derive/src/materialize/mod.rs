//! `#[derive(Materialize)]`: implements `procon::Materialize` (and registers its handlers) from
//! `#[procon(...)]` attributes on a local Diesel model.
//!
//! Same steps as the other macros: `attr` reads the attributes as written, `valid` checks them
//! and builds the `ast::Model`, `expand` writes the impls; on any mistake `fallback` emits the
//! errors and a stub impl.

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::internals::Ctxt;

/// Expands `#[derive(Materialize)]` on `input`: the impls, or the errors and a stub.
pub(crate) fn expand(input: DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let raw = attr::Input::from_ast(&cx, &input);
    let model = valid::check(&cx, &input, raw);
    crate::internals::ctxt::finish(cx, model, expand::expand, |errors| {
        fallback::expand(&input, errors)
    })
}
