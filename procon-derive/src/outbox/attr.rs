//! Reads the `#[procon(...)]` attributes of a `#[derive(Outbox)]` input as written.
//!
//! This layer reports syntax mistakes: an unknown key, a value of the wrong kind, a key
//! written twice (with the readers shared in `internals::meta`). Whether the values make sense
//! together (a topic that is empty, a key that names no field) is checked in `valid.rs`. After
//! a mistake it skips to the next key, so one attribute can report several independent
//! errors.

use syn::meta::ParseNestedMeta;
use syn::{Attribute, DeriveInput, Expr, Ident, Lit, LitStr, Path};

use crate::internals::attr::{Attr, Setting};
use crate::internals::meta::{
    assigned_expr, flag_value, for_each_key, misplaced_or_unknown, named_fields, string_value,
    ungroup, Level,
};
use crate::internals::symbol::{
    Symbol, AVRO_NAME, AVRO_NAMESPACE, ENTITY, FORMAT, KEY, PROCON, REALTIME, RENAME, RT_THRESHOLD,
    SKIP, TOPIC,
};
use crate::internals::Ctxt;

/// The keys of the struct-level attribute.
const CONTAINER_KEYS: &[Symbol] = &[
    TOPIC,
    ENTITY,
    KEY,
    REALTIME,
    RT_THRESHOLD,
    FORMAT,
    AVRO_NAME,
    AVRO_NAMESPACE,
];
/// The keys of the field-level attribute.
const FIELD_KEYS: &[Symbol] = &[SKIP, RENAME];

/// Shown after a malformed struct-level attribute.
const CONTAINER_HELP: &str =
    "help: the correct format looks like `#[procon(topic = \"accounts\")]`";
/// Shown after a malformed field-level attribute.
const FIELD_HELP: &str =
    "help: the correct format looks like `#[procon(rename = \"name\")]` or `#[procon(skip)]`";

/// Everything written in `#[procon(...)]` on a derive input.
pub(super) struct Input<'a> {
    /// The struct-level keys.
    pub(super) container: Container,
    /// The fields with their keys; `None` when the input is not a struct with named fields
    /// (that shape error is `valid.rs`'s to report).
    pub(super) fields: Option<Vec<Field<'a>>>,
}

/// The keys of `#[procon(...)]` on the struct.
pub(super) struct Container {
    /// `topic = "..."`.
    pub(super) topic: Setting<LitStr>,
    /// `entity = "..."`.
    pub(super) entity: Setting<LitStr>,
    /// `key = field`.
    pub(super) key: Setting<Ident>,
    /// Every `realtime = path::to::builder`, in order (the key may be repeated).
    pub(super) realtime: Vec<Path>,
    /// Whether a `realtime = ...` was rejected (so a lone `rt_threshold` is not blamed).
    pub(super) realtime_invalid: bool,
    /// `rt_threshold = 500` (milliseconds).
    pub(super) rt_threshold: Setting<(syn::LitInt, u32)>,
    /// `format = "avro"`.
    pub(super) format: Setting<LitStr>,
    /// `avro_namespace = "com.acme"`.
    pub(super) avro_namespace: Setting<LitStr>,
    /// `avro_name = "Account"`.
    pub(super) avro_name: Setting<LitStr>,
}

/// One named field and the keys of its `#[procon(...)]` attributes.
pub(super) struct Field<'a> {
    /// The field as declared.
    pub(super) field: &'a syn::Field,
    /// Its name (named fields always have one).
    pub(super) ident: &'a Ident,
    /// `skip`, holding the path `skip` so a conflict can point at it.
    pub(super) skip: Setting<Path>,
    /// `rename = "..."`.
    pub(super) rename: Setting<LitStr>,
}

impl<'a> Input<'a> {
    /// Reads every `#[procon(...)]` attribute of `input`, reporting syntax mistakes to `cx`.
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
    /// Reads the struct-level keys.
    fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut topic = Attr::none(cx, PROCON, TOPIC);
        let mut entity = Attr::none(cx, PROCON, ENTITY);
        let mut key = Attr::none(cx, PROCON, KEY);
        let mut realtime = Vec::new();
        let mut realtime_invalid = false;
        let mut rt_threshold = Attr::none(cx, PROCON, RT_THRESHOLD);
        let mut format = Attr::none(cx, PROCON, FORMAT);
        let mut avro_namespace = Attr::none(cx, PROCON, AVRO_NAMESPACE);
        let mut avro_name = Attr::none(cx, PROCON, AVRO_NAME);
        let mut misspelled = Vec::new();
        let read_all = for_each_key(cx, attrs, CONTAINER_HELP, |meta| {
            if meta.path == TOPIC {
                let value = string_value(cx, meta, PROCON, TOPIC, "accounts")?;
                topic.set(&meta.path, value);
            } else if meta.path == ENTITY {
                let value = string_value(cx, meta, PROCON, ENTITY, "account")?;
                entity.set(&meta.path, value);
            } else if meta.path == KEY {
                let value = field_name_value(cx, meta)?;
                key.set(&meta.path, value);
            } else if meta.path == REALTIME {
                match function_path_value(cx, meta)? {
                    Some(path) => realtime.push(path),
                    None => realtime_invalid = true,
                }
            } else if meta.path == RT_THRESHOLD {
                let value = millis_value(cx, meta)?;
                rt_threshold.set(&meta.path, value);
            } else if meta.path == FORMAT {
                let value = string_value(cx, meta, PROCON, FORMAT, "avro")?;
                format.set(&meta.path, value);
            } else if meta.path == AVRO_NAME {
                let value = string_value(cx, meta, PROCON, AVRO_NAME, "Account")?;
                avro_name.set(&meta.path, value);
            } else if meta.path == AVRO_NAMESPACE {
                let value = string_value(cx, meta, PROCON, AVRO_NAMESPACE, "com.example")?;
                avro_namespace.set(&meta.path, value);
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
        Container {
            topic: topic
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&TOPIC)),
            entity: entity
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&ENTITY)),
            key: key
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&KEY)),
            realtime_invalid: realtime_invalid || !read_all || misspelled.contains(&REALTIME),
            realtime,
            rt_threshold: rt_threshold
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&RT_THRESHOLD)),
            format: format
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&FORMAT)),
            avro_namespace: avro_namespace
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&AVRO_NAMESPACE)),
            avro_name: avro_name
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&AVRO_NAME)),
        }
    }
}

impl<'a> Field<'a> {
    /// Reads the keys of one field.
    fn from_ast(cx: &Ctxt, field: &'a syn::Field, ident: &'a Ident) -> Self {
        let mut skip = Attr::none(cx, PROCON, SKIP);
        let mut rename = Attr::none(cx, PROCON, RENAME);
        let mut misspelled = Vec::new();
        let read_all = for_each_key(cx, &field.attrs, FIELD_HELP, |meta| {
            if meta.path == SKIP {
                let value = flag_value(cx, meta, SKIP)?;
                skip.set(&meta.path, value);
            } else if meta.path == RENAME {
                let value = string_value(cx, meta, PROCON, RENAME, "name")?;
                rename.set(&meta.path, value);
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
        Field {
            field,
            ident,
            skip: skip
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&SKIP)),
            rename: rename
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&RENAME)),
        }
    }
}

/// Reads `key = field`. `Ok(None)`: the value was not a field name, reported to `cx`.
fn field_name_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Ident>> {
    let Some(expr) = assigned_expr(cx, meta, PROCON, KEY, "key = id")? else {
        return Ok(None);
    };
    let example = match ungroup(&expr) {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
            if let Some(ident) = path.path.get_ident() {
                return Ok(Some(ident.clone()));
            }
            "id".to_owned()
        }
        // `key = "user_id"`, as serde would write it: show it unquoted.
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => match lit.parse::<Ident>() {
            Ok(ident) => ident.to_string(),
            Err(_) => "id".to_owned(),
        },
        _ => "id".to_owned(),
    };
    cx.error_spanned_by(
        &expr,
        format!(
            "expected a field name for `procon(key)`; \
             help: the correct format looks like `#[procon(key = {example})]`"
        ),
    );
    Ok(None)
}

/// Reads `realtime = path::to::builder`. `Ok(None)`: not a path, reported to `cx`.
fn function_path_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Path>> {
    let usage = "realtime = account_channels";
    let Some(expr) = assigned_expr(cx, meta, PROCON, REALTIME, usage)? else {
        return Ok(None);
    };
    if let Expr::Path(path) = ungroup(&expr) {
        if path.qself.is_none() && path.attrs.is_empty() {
            return Ok(Some(path.path.clone()));
        }
    }
    cx.error_spanned_by(
        &expr,
        "expected the path of a function for `procon(realtime)`; help: the correct format \
         looks like `#[procon(realtime = account_channels)]`, with \
         `fn account_channels(change: &Change<'_, Account>) -> Option<Realtime>` \
         (or any `IntoIterator<Item = Realtime>`)",
    );
    Ok(None)
}

/// Reads `rt_threshold = 500`, a number of milliseconds. `Ok(None)`: not such a number,
/// reported to `cx`.
fn millis_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<(syn::LitInt, u32)>> {
    let usage = "rt_threshold = 1000";
    let Some(expr) = assigned_expr(cx, meta, PROCON, RT_THRESHOLD, usage)? else {
        return Ok(None);
    };
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Int(lit), ..
    }) = ungroup(&expr)
    {
        if let Ok(millis) = lit.base10_parse::<u32>() {
            return Ok(Some((lit.clone(), millis)));
        }
    }
    cx.error_spanned_by(
        &expr,
        "expected a whole number of milliseconds for `procon(rt_threshold)`; \
         help: the correct format looks like `#[procon(rt_threshold = 1000)]`",
    );
    Ok(None)
}
