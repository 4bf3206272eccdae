//! Writes the `impl Materialize`, the empty `impl MaterializeHooks` (unless the model writes
//! its own) and the three handler registrations of a validated [`Model`].
//!
//! The SQL is built with Diesel's query builder on the model's table, each column expression
//! spanned at its field: a field without a column, or of a type the column cannot take, is a
//! compile error at that field. Trait methods are called fully qualified through
//! `::procon::__private`, so nothing needs to be imported in the user's module.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::ast::{Column, Model, Source};

pub(super) fn expand(model: &Model<'_>) -> TokenStream {
    let Model {
        ident,
        topic,
        entity,
        table,
        master_key,
        fields,
        hooks,
    } = model;
    let p = quote!(::procon::__private);
    let created = format!("{entity}.created");
    let updated = format!("{entity}.updated");
    let deleted = format!("{entity}.deleted");
    let build = fields.iter().map(build_field);
    let col = |column: &Column<'_>| {
        let name = column.ident;
        quote_spanned!(name.span()=> #table::#name)
    };
    let eq_self = |column: &Column<'_>| {
        let (name, column_path) = (column.ident, col(column));
        quote_spanned! {column.ty.span()=>
            #p::diesel::ExpressionMethods::eq(#column_path, &self.#name)
        }
    };
    let inserted: Vec<TokenStream> = fields.iter().filter(|c| c.on_insert).map(eq_self).collect();
    let key_columns: Vec<&Column<'_>> = fields
        .iter()
        .filter(|c| master_key.contains(&c.ident))
        .collect();
    let conflict_target = key_columns.iter().map(|c| col(c));
    let updates: Vec<TokenStream> = fields
        .iter()
        .filter(|c| c.on_update)
        .map(|column| {
            let column_path = col(column);
            quote! {
                #p::diesel::ExpressionMethods::eq(
                    #column_path,
                    #p::diesel::upsert::excluded(#column_path),
                )
            }
        })
        .collect();
    let on_conflict = if updates.is_empty() {
        quote!(.do_nothing())
    } else {
        quote!(.do_update().set((#(#updates,)*)))
    };
    let key_filters = key_columns.iter().map(|column| {
        let condition = eq_self(column);
        quote!(let __procon_query = #p::diesel::QueryDsl::filter(__procon_query, #condition);)
    });
    let hooks_impl = (!hooks).then(|| {
        quote! {
            #[automatically_derived]
            impl #p::MaterializeHooks for #ident {}
        }
    });
    let names = [created.clone(), updated.clone(), deleted.clone()]
        .map(|event| format!("{ident} (materializes {event})"));
    let [name_created, name_updated, name_deleted] = names;
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #p::Materialize for #ident {
                const TOPIC: &'static ::core::primitive::str = #topic;
                const CREATED: &'static ::core::primitive::str = #created;
                const UPDATED: &'static ::core::primitive::str = #updated;
                const DELETED: &'static ::core::primitive::str = #deleted;

                fn from_image(
                    __procon_image: &#p::Image<'_>,
                ) -> #p::Result<Self, #p::MaterializeError> {
                    #p::Result::Ok(Self { #(#build)* })
                }

                fn upsert(
                    &self,
                    __procon_conn: &mut #p::PgConnection,
                ) -> #p::QueryResult<::core::primitive::usize> {
                    let __procon_query = #p::diesel::insert_into(#table::table)
                        .values((#(#inserted,)*))
                        .on_conflict((#(#conflict_target,)*))
                        #on_conflict;
                    #p::diesel::RunQueryDsl::execute(__procon_query, __procon_conn)
                }

                fn delete(
                    &self,
                    __procon_conn: &mut #p::PgConnection,
                ) -> #p::QueryResult<::core::primitive::usize> {
                    let __procon_query = #table::table;
                    #(#key_filters)*
                    #p::diesel::RunQueryDsl::execute(
                        #p::diesel::delete(__procon_query),
                        __procon_conn,
                    )
                }
            }

            #hooks_impl

            #p::inventory::submit! {
                #p::Registration::of::<#p::OnCreated<#ident>>(#name_created)
            }
            #p::inventory::submit! {
                #p::Registration::of::<#p::OnUpdated<#ident>>(#name_updated)
            }
            #p::inventory::submit! {
                #p::Registration::of::<#p::OnDeleted<#ident>>(#name_deleted)
            }
        };
    }
}

/// `field: <value from the image>,` with the field type's span on the conversion.
fn build_field(column: &Column<'_>) -> TokenStream {
    let name = column.ident;
    let field = name.to_string();
    let value = match &column.source {
        Source::Attribute(path) => {
            quote_spanned!(column.ty.span()=> __procon_image.attribute(#path, #field)?)
        }
        Source::Topic => quote_spanned!(column.ty.span()=> __procon_image.topic()),
        Source::EventTime => quote_spanned!(column.ty.span()=> __procon_image.event_time()),
        Source::Skipped => {
            quote_spanned!(column.ty.span()=> ::core::default::Default::default())
        }
    };
    quote!(#name: #value,)
}
