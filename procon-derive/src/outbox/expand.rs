//! Writes the `impl Outbox` of a validated [`Model`]. Infallible: every mistake was reported
//! before, so this is only `quote!`.
//!
//! The generated code names runtime items only through `::procon::__private` and `::core`,
//! and its own names start with `__procon_`, so nothing in the user's scope can capture them.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::Ident;

use super::ast::{Avro, Member, Model, PayloadField};

/// The `impl Outbox` for `model`, in an anonymous `const` so it adds no name to the user's
/// module.
pub(super) fn expand(model: &Model<'_>) -> TokenStream {
    let Model {
        ident,
        generics,
        entity,
        topic,
        key,
        payload,
        realtime,
        rt_threshold,
        avro,
    } = model;
    let realtime = realtime_fn(realtime, *rt_threshold);
    let avro_fn = avro.as_ref().map(|avro| avro_fn(avro, payload));
    let avro_registration = avro.as_ref().map(|_| {
        quote! {
            // `procon schemas` lists, registers and checks the schema.
            ::procon::__private::inventory::submit! {
                ::procon::__private::avro::AvroRegistration {
                    entity: #entity,
                    topic: #topic,
                    model: <#ident as ::procon::__private::Outbox>::avro_model,
                }
            }
        }
    });
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    // The trait paths and the borrowed value carry the field type's span, so a missing
    // `Display` or `Serialize` impl is reported at the field's type rather than at
    // `#[derive(Outbox)]`. The value's binding and use share that span, hence its hygiene,
    // so they always resolve to each other, even for a struct written by a `macro_rules!`;
    // `self` keeps the call-site span of the method's receiver.
    let to_string = quote_spanned!(key.ty.span()=> ::procon::__private::ToString::to_string);
    let key_value = Ident::new("__procon_key", key.ty.span());
    let key = &key.ident;
    let type_name = ident.unraw().to_string();
    let len = payload.len();
    // `mut` only when a field is written: a struct whose every field is skipped would
    // otherwise trip `unused_mut` in the user's crate.
    let state_mut = (!payload.is_empty()).then(|| quote!(mut));
    let fields = payload.iter().map(|field| {
        let PayloadField {
            name,
            member: Member { ident, ty },
        } = field;
        let serialize_field =
            quote_spanned!(ty.span()=> ::procon::__private::SerializeStruct::serialize_field);
        let value = Ident::new("__procon_value", ty.span());
        quote! {
            let #value = &self.#ident;
            #serialize_field(&mut __procon_state, #name, #value)?;
        }
    });
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #impl_generics ::procon::__private::Outbox for #ident #ty_generics #where_clause {
                const ENTITY: &'static ::core::primitive::str = #entity;

                fn topic(&self) -> ::procon::__private::Cow<'_, ::core::primitive::str> {
                    ::procon::__private::Cow::Borrowed(#topic)
                }

                fn key(&self) -> ::procon::__private::String {
                    let #key_value = &self.#key;
                    #to_string(#key_value)
                }

                fn serialize_payload<__procon_S: ::procon::__private::Serializer>(
                    &self,
                    __procon_serializer: __procon_S,
                ) -> ::procon::__private::Result<__procon_S::Ok, __procon_S::Error> {
                    let #state_mut __procon_state = ::procon::__private::Serializer::serialize_struct(
                        __procon_serializer,
                        #type_name,
                        #len,
                    )?;
                    #(#fields)*
                    ::procon::__private::SerializeStruct::end(__procon_state)
                }

                #realtime

                #avro_fn
            }

            // The relay knows the topic as declared (see `relay.undeclared_topics`).
            ::procon::__private::inventory::submit! {
                ::procon::__private::DeclaredTopic::new(#topic)
            }

            #avro_registration
        };
    }
}

/// `Outbox::avro_model`: the payload record built from each payload field's type (its
/// `AvroSchemaComponent`), under the payload names, in one naming context.
fn avro_fn(avro: &Avro, payload: &[PayloadField<'_>]) -> TokenStream {
    let record = &avro.name;
    let namespace = match &avro.namespace {
        Some(namespace) => quote!(::core::option::Option::Some(#namespace)),
        None => quote!(::core::option::Option::None),
    };
    let fields = payload.iter().map(|field| {
        let PayloadField {
            name,
            member: Member { ty, .. },
        } = field;
        // The trait path carries the field type's span: a type with no Avro schema is
        // reported at the field.
        let component = quote_spanned!(ty.span()=> ::procon::__private::avro::AvroSchemaComponent);
        quote! {
            (#name, <#ty as #component>::get_schema_in_ctxt(__procon_names, __procon_namespace))
        }
    });
    quote! {
        fn avro_model() -> ::core::option::Option<
            ::procon::__private::Result<
                &'static ::procon::__private::avro::AvroModel,
                ::procon::__private::avro::AvroSchemaError,
            >,
        > {
            ::core::option::Option::Some(::procon::__private::avro::AvroModel::of::<Self>(|| {
                ::procon::__private::avro::payload_record(
                    #record,
                    #namespace,
                    |__procon_names, __procon_namespace| ::procon::__private::Vec::from([#(#fields),*]),
                )
            }))
        }
    }
}

/// `Outbox::realtime`, calling each builder in turn; nothing when there is none (the trait's
/// default returns no notification).
fn realtime_fn(builders: &[syn::Path], rt_threshold: Option<u32>) -> Option<TokenStream> {
    if builders.is_empty() {
        return None;
    }
    // Each call carries its builder's span: a builder with the wrong signature is reported
    // at the path written in the attribute.
    let calls = builders.iter().map(|builder| {
        quote_spanned! {builder.span()=>
            ::procon::__private::Extend::extend(&mut __procon_messages, #builder(__procon_change));
        }
    });
    let threshold = rt_threshold.map(|millis| {
        let millis = u64::from(millis);
        quote! {
            for __procon_message in &mut __procon_messages {
                __procon_message
                    .threshold
                    .get_or_insert(::procon::__private::Duration::from_millis(#millis));
            }
        }
    });
    Some(quote! {
        fn realtime(
            __procon_change: &::procon::__private::Change<'_, Self>,
        ) -> ::procon::__private::Vec<::procon::__private::Realtime> {
            let mut __procon_messages = ::procon::__private::Vec::new();
            #(#calls)*
            #threshold
            __procon_messages
        }
    })
}
