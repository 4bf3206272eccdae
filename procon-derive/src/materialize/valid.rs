//! Checks a `#[derive(Materialize)]` input and builds its [`Model`]. Every check runs, so one
//! compilation reports every independent mistake. Whether a column exists on the table and
//! whether a field's type fits it is checked by Diesel's types in the expanded code, with the
//! field's span.

use quote::ToTokens;
use syn::{DeriveInput, Ident, LitStr, Path};

use super::ast::{Column, Model, Source};
use super::attr::{self, Field};
use crate::internals::attr::Setting;
use crate::internals::meta::non_empty;
use crate::internals::symbol::{ENTITY, FROM, PROCON, TOPIC};
use crate::internals::Ctxt;

/// The master key used when `master_key = ...` is not written.
const DEFAULT_MASTER_KEY: &str = "id";

pub(super) fn check<'a>(
    cx: &Ctxt,
    input: &'a DeriveInput,
    raw: attr::Input<'a>,
) -> Option<Model<'a>> {
    let attr::Input { container, fields } = raw;
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "`Materialize` cannot be derived for a generic struct: a materialized model is \
             one concrete table row",
        );
    }
    let topic = required(cx, ident, container.topic, TOPIC, "accounts");
    let entity = required(cx, ident, container.entity, ENTITY, "account");
    let table = table(cx, ident, container.table, container.diesel_table);
    let hooks = !matches!(container.hooks, Setting::Missing);
    let Some(fields) = fields else {
        cx.error_spanned_by(
            ident,
            "`Materialize` can only be derived for structs with named fields",
        );
        return None;
    };
    let master_key = master_key(cx, ident, container.master_key, &fields);
    let columns: Option<Vec<Column<'a>>> = fields
        .iter()
        .map(|field| column(cx, field, master_key.as_deref().unwrap_or(&[])))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    Some(Model {
        ident,
        topic: topic?,
        entity: entity?,
        table: table?,
        master_key: master_key?,
        fields: columns?,
        hooks,
    })
}

fn required(
    cx: &Ctxt,
    ident: &Ident,
    setting: Setting<LitStr>,
    name: crate::internals::symbol::Symbol,
    example: &str,
) -> Option<String> {
    match setting {
        Setting::Valid(lit) => non_empty(cx, &lit, PROCON, name, example),
        Setting::Invalid => None,
        Setting::Missing => {
            cx.error_spanned_by(
                ident,
                format!(
                    "missing `procon({name})` attribute: which remote {what} does `{ident}` \
                     materialize?; help: the correct format looks like \
                     `#[procon({name} = \"{example}\")]`",
                    what = if name == TOPIC { "topic" } else { "entity" },
                ),
            );
            None
        }
    }
}

fn table(cx: &Ctxt, ident: &Ident, table: Setting<Path>, diesel: Option<Path>) -> Option<Path> {
    match (table, diesel) {
        (Setting::Valid(path), _) => Some(path),
        (Setting::Invalid, _) => None,
        (Setting::Missing, Some(path)) => Some(path),
        (Setting::Missing, None) => {
            cx.error_spanned_by(
                ident,
                "missing table: name the Diesel table with `#[diesel(table_name = customers)]` \
                 or `#[procon(table = customers)]`",
            );
            None
        }
    }
}

fn master_key<'a>(
    cx: &Ctxt,
    ident: &Ident,
    setting: Setting<Vec<Ident>>,
    fields: &[Field<'a>],
) -> Option<Vec<&'a Ident>> {
    let find = |name: &Ident| fields.iter().find(|f| f.ident == name).map(|f| f.ident);
    match setting {
        Setting::Valid(names) => {
            let mut found = Vec::new();
            for name in &names {
                match find(name) {
                    Some(field) if found.contains(&field) => cx.error_spanned_by(
                        name,
                        format!("`{name}` is named twice in `procon(master_key)`"),
                    ),
                    Some(field) => found.push(field),
                    None => cx.error_spanned_by(
                        name,
                        format!("unknown field `{name}` in `procon(master_key)`"),
                    ),
                }
            }
            (found.len() == names.len()).then_some(found)
        }
        Setting::Invalid => None,
        Setting::Missing => {
            let found = fields
                .iter()
                .find(|f| f.ident == DEFAULT_MASTER_KEY)
                .map(|f| f.ident);
            if found.is_none() {
                cx.error_spanned_by(
                    ident,
                    format!(
                        "missing `procon(master_key)`: `{ident}` has no field `id` to identify \
                         records by; help: the correct format looks like \
                         `#[procon(master_key = account_id)]`"
                    ),
                );
            }
            found.map(|f| vec![f])
        }
    }
}

/// How one field is filled and written; reports conflicting keys.
fn column<'a>(cx: &Ctxt, field: &Field<'a>, master_key: &[&Ident]) -> Option<Column<'a>> {
    let set = |s: &Setting<Path>| matches!(s, Setting::Valid(_));
    let invalid = [
        matches!(field.from, Setting::Invalid),
        matches!(field.from_topic, Setting::Invalid),
        matches!(field.from_event_time, Setting::Invalid),
        matches!(field.skip, Setting::Invalid),
        matches!(field.skip_on_create, Setting::Invalid),
        matches!(field.skip_on_update, Setting::Invalid),
    ];
    if invalid.contains(&true) {
        return None;
    }
    let mut sources: Vec<(&str, &dyn ToTokens)> = Vec::new();
    if let Setting::Valid(lit) = &field.from {
        sources.push(("from", lit));
    }
    for (name, setting) in [
        ("from_topic", &field.from_topic),
        ("from_event_time", &field.from_event_time),
        ("skip", &field.skip),
    ] {
        if let Setting::Valid(path) = setting {
            sources.push((name, path));
        }
    }
    if let [(first, _), (second, at), ..] = sources.as_slice() {
        cx.error_spanned_by(
            at,
            format!(
                "`procon({first})` and `procon({second})` cannot be used on the same field: a \
                 field has one source; help: remove one of them"
            ),
        );
        return None;
    }
    let in_key = master_key.contains(&field.ident);
    let skipping = [&field.skip, &field.skip_on_create, &field.skip_on_update];
    if in_key {
        if let Some(Setting::Valid(path)) = skipping.iter().find(|s| set(s)) {
            cx.error_spanned_by(
                path,
                format!(
                    "`{}` is part of the master key, which every insert, update and delete \
                     needs; help: remove `procon({})`",
                    field.ident,
                    path.to_token_stream()
                ),
            );
            return None;
        }
    }
    if let (Setting::Valid(_), Setting::Valid(path)) =
        (&field.skip_on_create, &field.skip_on_update)
    {
        cx.error_spanned_by(
            path,
            "a field skipped on create and on update is never written; help: use \
             `#[procon(skip)]`",
        );
        return None;
    }
    let source = match sources.first() {
        Some(("from", _)) => {
            let Setting::Valid(lit) = &field.from else {
                return None;
            };
            let path = non_empty(cx, lit, PROCON, FROM, "profile.email")?;
            if path.split('.').any(str::is_empty) {
                cx.error_spanned_by(
                    lit,
                    "`procon(from)` is a dot-separated attribute path with no empty segment; \
                     help: the correct format looks like `#[procon(from = \"profile.email\")]`",
                );
                return None;
            }
            Source::Attribute(path)
        }
        Some(("from_topic", _)) => Source::Topic,
        Some(("from_event_time", _)) => Source::EventTime,
        Some(_) => Source::Skipped,
        None => Source::Attribute(syn::ext::IdentExt::unraw(field.ident).to_string()),
    };
    let skipped = matches!(source, Source::Skipped);
    Some(Column {
        ident: field.ident,
        ty: &field.field.ty,
        on_insert: !skipped && !set(&field.skip_on_create),
        on_update: !skipped && !in_key && !set(&field.skip_on_update),
        source,
    })
}
