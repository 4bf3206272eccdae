//! Reads the `#[procon(...)]` attributes of a `#[derive(Materialize)]` input as written, and
//! Diesel's `#[diesel(table_name = ...)]` (so the table need not be named twice). Syntax
//! mistakes are reported here; whether the values make sense together is `valid.rs`'s job.

use syn::meta::ParseNestedMeta;
use syn::{Attribute, DeriveInput, Expr, Ident, LitStr, Meta, Path};

use crate::internals::attr::{Attr, Setting};
use crate::internals::meta::{
    assigned_expr, flag_value, for_each_key, misplaced_or_unknown, named_fields, skip_value,
    string_value, ungroup, Level,
};
use crate::internals::symbol::{
    Symbol, DIESEL, ENTITY, FROM, FROM_EVENT_TIME, FROM_TOPIC, HOOKS, MASTER_KEY, PROCON, SKIP,
    SKIP_ON_CREATE, SKIP_ON_UPDATE, TABLE, TABLE_NAME, TOPIC,
};
use crate::internals::Ctxt;

const CONTAINER_KEYS: &[Symbol] = &[TOPIC, ENTITY, MASTER_KEY, TABLE, HOOKS];
const FIELD_KEYS: &[Symbol] = &[
    FROM,
    FROM_TOPIC,
    FROM_EVENT_TIME,
    SKIP,
    SKIP_ON_CREATE,
    SKIP_ON_UPDATE,
];
const CONTAINER_HELP: &str =
    "help: the correct format looks like `#[procon(topic = \"accounts\", entity = \"account\")]`";
const FIELD_HELP: &str =
    "help: the correct format looks like `#[procon(from = \"profile.email\")]` or `#[procon(skip_on_update)]`";

/// Everything written on a derive input.
pub(super) struct Input<'a> {
    pub(super) container: Container,
    /// `None` when the input is not a struct with named fields.
    pub(super) fields: Option<Vec<Field<'a>>>,
}

/// The struct-level keys.
pub(super) struct Container {
    pub(super) topic: Setting<LitStr>,
    pub(super) entity: Setting<LitStr>,
    /// `master_key = id` or `master_key = (tenant_id, account_id)`.
    pub(super) master_key: Setting<Vec<Ident>>,
    /// `table = customers`, else Diesel's `table_name`.
    pub(super) table: Setting<Path>,
    pub(super) diesel_table: Option<Path>,
    pub(super) hooks: Setting<Path>,
}

/// One named field and its keys.
pub(super) struct Field<'a> {
    pub(super) field: &'a syn::Field,
    pub(super) ident: &'a Ident,
    pub(super) from: Setting<LitStr>,
    pub(super) from_topic: Setting<Path>,
    pub(super) from_event_time: Setting<Path>,
    pub(super) skip: Setting<Path>,
    pub(super) skip_on_create: Setting<Path>,
    pub(super) skip_on_update: Setting<Path>,
}

impl<'a> Input<'a> {
    pub(super) fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let container = Container::from_ast(cx, &input.attrs);
        let fields = named_fields(&input.data).map(|fields| {
            fields
                .into_iter()
                .map(|(field, ident)| Field::from_ast(cx, field, ident))
                .collect()
        });
        Input { container, fields }
    }
}

impl Container {
    fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut topic = Attr::none(cx, PROCON, TOPIC);
        let mut entity = Attr::none(cx, PROCON, ENTITY);
        let mut master_key = Attr::none(cx, PROCON, MASTER_KEY);
        let mut table = Attr::none(cx, PROCON, TABLE);
        let mut hooks = Attr::none(cx, PROCON, HOOKS);
        let mut misspelled = Vec::new();
        let read_all = for_each_key(cx, attrs, CONTAINER_HELP, |meta| {
            if meta.path == TOPIC {
                topic.set(
                    &meta.path,
                    string_value(cx, meta, PROCON, TOPIC, "accounts")?,
                );
            } else if meta.path == ENTITY {
                entity.set(
                    &meta.path,
                    string_value(cx, meta, PROCON, ENTITY, "account")?,
                );
            } else if meta.path == MASTER_KEY {
                master_key.set(&meta.path, master_key_value(cx, meta)?);
            } else if meta.path == TABLE {
                table.set(&meta.path, table_value(cx, meta)?);
            } else if meta.path == HOOKS {
                hooks.set(&meta.path, flag_value(cx, meta, HOOKS)?);
            } else {
                misspelled.extend(misplaced_or_unknown(
                    cx,
                    meta,
                    Level::Container,
                    CONTAINER_KEYS,
                    FIELD_KEYS,
                )?);
            }
            Ok(())
        });
        let maybe = |key: Symbol| !read_all || misspelled.contains(&key);
        Container {
            topic: topic.get().or_invalid_if(maybe(TOPIC)),
            entity: entity.get().or_invalid_if(maybe(ENTITY)),
            master_key: master_key.get().or_invalid_if(maybe(MASTER_KEY)),
            table: table.get().or_invalid_if(maybe(TABLE)),
            diesel_table: diesel_table_name(attrs),
            hooks: hooks.get().or_invalid_if(maybe(HOOKS)),
        }
    }
}

impl<'a> Field<'a> {
    fn from_ast(cx: &Ctxt, field: &'a syn::Field, ident: &'a Ident) -> Self {
        let mut from = Attr::none(cx, PROCON, FROM);
        let mut flags = [
            Attr::none(cx, PROCON, FROM_TOPIC),
            Attr::none(cx, PROCON, FROM_EVENT_TIME),
            Attr::none(cx, PROCON, SKIP),
            Attr::none(cx, PROCON, SKIP_ON_CREATE),
            Attr::none(cx, PROCON, SKIP_ON_UPDATE),
        ];
        let flag_keys = [
            FROM_TOPIC,
            FROM_EVENT_TIME,
            SKIP,
            SKIP_ON_CREATE,
            SKIP_ON_UPDATE,
        ];
        let mut misspelled = Vec::new();
        let read_all = for_each_key(cx, &field.attrs, FIELD_HELP, |meta| {
            if meta.path == FROM {
                from.set(
                    &meta.path,
                    string_value(cx, meta, PROCON, FROM, "profile.email")?,
                );
            } else if let Some(i) = flag_keys.iter().position(|key| meta.path == *key) {
                let value = flag_value(cx, meta, flag_keys[i])?;
                flags[i].set(&meta.path, value);
            } else {
                misspelled.extend(misplaced_or_unknown(
                    cx,
                    meta,
                    Level::Field,
                    FIELD_KEYS,
                    CONTAINER_KEYS,
                )?);
            }
            Ok(())
        });
        let maybe = |key: Symbol| !read_all || misspelled.contains(&key);
        let [from_topic, from_event_time, skip, skip_on_create, skip_on_update] =
            flags.map(|attr| attr.get());
        Field {
            field,
            ident,
            from: from.get().or_invalid_if(maybe(FROM)),
            from_topic: from_topic.or_invalid_if(maybe(FROM_TOPIC)),
            from_event_time: from_event_time.or_invalid_if(maybe(FROM_EVENT_TIME)),
            skip: skip.or_invalid_if(maybe(SKIP)),
            skip_on_create: skip_on_create.or_invalid_if(maybe(SKIP_ON_CREATE)),
            skip_on_update: skip_on_update.or_invalid_if(maybe(SKIP_ON_UPDATE)),
        }
    }
}

/// `master_key = id` or `master_key = (a, b)`. `Ok(None)`: reported to `cx`.
fn master_key_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Vec<Ident>>> {
    let usage = "master_key = account_id";
    let Some(expr) = assigned_expr(cx, meta, PROCON, MASTER_KEY, usage)? else {
        return Ok(None);
    };
    let single = |expr: &Expr| match ungroup(expr) {
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident().cloned(),
        _ => None,
    };
    let idents = match ungroup(&expr) {
        Expr::Tuple(tuple) if !tuple.elems.is_empty() => {
            tuple.elems.iter().map(single).collect::<Option<Vec<_>>>()
        }
        Expr::Paren(paren) => single(&paren.expr).map(|i| vec![i]),
        other => single(other).map(|i| vec![i]),
    };
    if idents.is_none() {
        cx.error_spanned_by(
            &expr,
            "expected field names for `procon(master_key)`; help: the correct format looks \
             like `#[procon(master_key = account_id)]` or `#[procon(master_key = (tenant_id, account_id))]`",
        );
    }
    Ok(idents)
}

/// `table = customers` (a path). `Ok(None)`: reported to `cx`.
fn table_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Path>> {
    let Some(expr) = assigned_expr(cx, meta, PROCON, TABLE, "table = customers")? else {
        return Ok(None);
    };
    if let Expr::Path(path) = ungroup(&expr) {
        if path.qself.is_none() {
            return Ok(Some(path.path.clone()));
        }
    }
    cx.error_spanned_by(
        &expr,
        "expected the path of a Diesel table for `procon(table)`; help: the correct format \
         looks like `#[procon(table = customers)]`",
    );
    Ok(None)
}

/// Diesel's `#[diesel(table_name = ...)]`, if written and readable (Diesel reports its own
/// mistakes).
fn diesel_table_name(attrs: &[Attribute]) -> Option<Path> {
    let mut table = None;
    for attr in attrs {
        if attr.path() != DIESEL {
            continue;
        }
        let Meta::List(list) = &attr.meta else {
            continue;
        };
        let _ = list.parse_nested_meta(|meta| {
            if meta.path == TABLE_NAME {
                table = Some(meta.value()?.parse::<Path>()?);
            } else {
                skip_value(&meta)?;
            }
            Ok(())
        });
    }
    table
}
