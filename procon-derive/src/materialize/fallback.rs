//! What the derive emits when the input has mistakes: the errors, plus stub impls, so uses of
//! the model as a `Materialize` add no "trait not implemented" errors on top of the real ones.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub(super) fn expand(input: &DeriveInput, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let p = quote!(::procon::__private);
    quote! {
        #errors
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #p::Materialize for #ident #ty_generics #where_clause {
                const TOPIC: &'static ::core::primitive::str = "";
                const CREATED: &'static ::core::primitive::str = "";
                const UPDATED: &'static ::core::primitive::str = "";
                const DELETED: &'static ::core::primitive::str = "";
                fn from_image(_: &#p::Image<'_>) -> #p::Result<Self, #p::MaterializeError> {
                    ::core::unreachable!()
                }
                fn upsert(&self, _: &mut #p::PgConnection) -> #p::QueryResult<::core::primitive::usize> {
                    ::core::unreachable!()
                }
                fn delete(&self, _: &mut #p::PgConnection) -> #p::QueryResult<::core::primitive::usize> {
                    ::core::unreachable!()
                }
            }
            #[automatically_derived]
            impl #impl_generics #p::MaterializeHooks for #ident #ty_generics #where_clause {}
        };
    }
}
