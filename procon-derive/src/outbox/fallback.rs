//! What the derive emits when the input has mistakes: the errors, plus a stub impl.
//!
//! Without the stub, every use of the struct as an `Outbox` would add a "trait not
//! implemented" error on top of the real ones; with it the user sees only the mistakes to fix.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::DeriveInput;

use crate::internals::case::snake_case;

/// The compile errors in `errors`, and an `impl Outbox` for `input` with the same generics
/// whose bodies are never run (the crate does not compile).
///
/// `ENTITY` cannot be `unreachable!()` like the bodies: a constant used in the user's code is
/// evaluated even when the crate has errors, which would add an "evaluation panicked" error.
/// It gets the default entity instead, a value any check on it accepts.
pub(super) fn expand(input: &DeriveInput, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    let ident = &input.ident;
    let entity = snake_case(&ident.unraw().to_string());
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #errors
        const _: () = {
            #[automatically_derived]
            impl #impl_generics ::procon::__private::Outbox for #ident #ty_generics #where_clause {
                const ENTITY: &'static ::core::primitive::str = #entity;

                fn topic(&self) -> ::procon::__private::Cow<'_, ::core::primitive::str> {
                    ::core::unreachable!()
                }

                fn key(&self) -> ::procon::__private::String {
                    ::core::unreachable!()
                }

                fn serialize_payload<__procon_S: ::procon::__private::Serializer>(
                    &self,
                    _: __procon_S,
                ) -> ::procon::__private::Result<__procon_S::Ok, __procon_S::Error> {
                    ::core::unreachable!()
                }
            }
        };
    }
}
