//! What the attribute emits when the input has mistakes: the errors, plus the item unchanged.
//!
//! Without the item, every use of the function would add a "cannot find function" error on
//! top of the real ones, and IDEs would lose it; with it the user sees only the mistakes to
//! fix. No impl and no registration are emitted: the crate does not compile anyway, and
//! nothing can name the hidden handler struct, so nothing misses them.

use proc_macro2::TokenStream;
use quote::quote;

/// The compile errors in `errors`, and the item `item` as written.
pub(super) fn expand(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    quote! {
        #errors
        #item
    }
}
