//! Checks a `#[derive(Outbox)]` input read by `attr.rs` and builds its [`Model`], applying
//! the defaults. Every check runs, so one compilation reports every independent mistake.

use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Ident, LitStr};

use super::ast::{Avro, Member, Model, PayloadField};
use super::attr;
use crate::internals::attr::Setting;
use crate::internals::case::snake_case;
use crate::internals::meta::non_empty;
use crate::internals::symbol::{ENTITY, PROCON, RENAME, TOPIC};
use crate::internals::Ctxt;

/// The key used when `key = ...` is not written.
const DEFAULT_KEY: &str = "id";

/// Checks `raw` (read from `input`) and returns the model, or `None` once the reason there is
/// none was reported to `cx` (here, or while reading the attributes). A `Some` does not mean
/// the input is clean: a mistake found while reading may leave the model complete, so the
/// caller decides on `cx`.
pub(super) fn check<'a>(
    cx: &Ctxt,
    input: &'a DeriveInput,
    raw: attr::Input<'a>,
) -> Option<Model<'a>> {
    let attr::Input { container, fields } = raw;
    let topic = topic(cx, &input.ident, container.topic);
    let entity = entity(cx, &input.ident, container.entity);
    let Some(fields) = fields else {
        not_a_struct_with_named_fields(cx, input);
        return None;
    };
    let key = key(cx, &input.ident, container.key, &fields);
    let payload = payload(cx, &fields);
    let rt_threshold = match container.rt_threshold {
        Setting::Valid((lit, millis)) => {
            if container.realtime.is_empty() && !container.realtime_invalid {
                cx.error_spanned_by(
                    &lit,
                    "`procon(rt_threshold)` has no effect without a realtime builder; \
                     help: add `#[procon(realtime = builder_fn)]` or remove it",
                );
                return None;
            }
            Some(Some(millis))
        }
        Setting::Invalid => None,
        Setting::Missing => Some(None),
    };
    let avro = avro(
        cx,
        input,
        container.format,
        (container.avro_namespace, container.avro_name),
        payload.as_deref(),
    );
    Some(Model {
        ident: &input.ident,
        generics: &input.generics,
        entity: entity?,
        topic: topic?,
        key: key?,
        payload: payload?,
        realtime: container.realtime,
        rt_threshold: rt_threshold?,
        avro: avro?,
    })
}

/// `format = "json" | "avro"` and `avro_namespace`: an Avro model's namespace and payload
/// names must be Avro names, and it cannot be generic (its schema is one per type).
fn avro(
    cx: &Ctxt,
    input: &DeriveInput,
    format: Setting<LitStr>,
    (namespace, name): (Setting<LitStr>, Setting<LitStr>),
    payload: Option<&[PayloadField<'_>]>,
) -> Option<Option<Avro>> {
    let avro = match &format {
        Setting::Valid(lit) => match lit.value().as_str() {
            "avro" => true,
            "json" => false,
            other => {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "unknown format `{other}` in `procon(format)`; expected `json` or `avro`"
                    ),
                );
                return None;
            }
        },
        Setting::Invalid => return None,
        Setting::Missing => false,
    };
    // Both checked before either is used, so both mistakes are reported.
    let namespace = avro_naming(cx, namespace, avro, "avro_namespace", |v| {
        v.split('.').all(is_avro_name)
    });
    let name = avro_naming(cx, name, avro, "avro_name", is_avro_name);
    let (namespace, name) = (namespace?, name?);
    let name = name.unwrap_or_else(|| input.ident.unraw().to_string());
    if !avro {
        return Some(None);
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "`format = \"avro\"` cannot be used on a generic struct: its Avro schema is one \
             per type; help: derive it on a concrete struct",
        );
        return None;
    }
    let mut ok = true;
    for field in payload.unwrap_or_default() {
        if !is_avro_name(&field.name) {
            cx.error_spanned_by(
                field.member.ident,
                format!(
                    "payload field `{}` is not an Avro name (letters, digits and `_`, starting \
                     with a letter or `_`); help: give it one with `#[procon(rename = \"...\")]`",
                    field.name
                ),
            );
            ok = false;
        }
    }
    ok.then_some(Some(Avro { namespace, name }))
}

/// An Avro naming key (`avro_namespace`, `avro_name`): only with `format = "avro"`, and a
/// value `valid` accepts. `Some(None)`: not written; `None`: reported.
fn avro_naming(
    cx: &Ctxt,
    setting: Setting<LitStr>,
    avro: bool,
    key: &str,
    valid: fn(&str) -> bool,
) -> Option<Option<String>> {
    match setting {
        Setting::Valid(lit) if !avro => {
            cx.error_spanned_by(
                &lit,
                format!(
                    "`procon({key})` has no effect without `format = \"avro\"`; \
                     help: add `#[procon(format = \"avro\")]` or remove it"
                ),
            );
            None
        }
        Setting::Valid(lit) => {
            let value = lit.value();
            if valid(&value) {
                return Some(Some(value));
            }
            let rule = if key == "avro_namespace" {
                "an Avro namespace: dot-separated names of letters, digits and `_`, each \
                 starting with a letter or `_`"
            } else {
                "an Avro name: letters, digits and `_`, starting with a letter or `_`"
            };
            cx.error_spanned_by(&lit, format!("`{value}` is not {rule}"));
            None
        }
        Setting::Invalid => None,
        Setting::Missing => Some(None),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, Avro's rule for names.
fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reports an input that is not a struct with named fields, at `enum Name`, `struct Name`...
fn not_a_struct_with_named_fields(cx: &Ctxt, input: &DeriveInput) {
    let ident = &input.ident;
    let keyword: &dyn ToTokens = match &input.data {
        Data::Struct(data) => &data.struct_token,
        Data::Enum(data) => &data.enum_token,
        Data::Union(data) => &data.union_token,
    };
    cx.error_spanned_by(
        quote!(#keyword #ident),
        "`Outbox` can only be derived for structs with named fields",
    );
}

/// The topic: required and not empty.
fn topic(cx: &Ctxt, ident: &Ident, topic: Setting<LitStr>) -> Option<String> {
    match topic {
        Setting::Valid(lit) => non_empty(cx, &lit, PROCON, TOPIC, "accounts"),
        Setting::Invalid => None,
        Setting::Missing => {
            cx.error_spanned_by(
                ident,
                "missing `procon(topic)` attribute; \
                 help: the correct format looks like `#[procon(topic = \"accounts\")]`",
            );
            None
        }
    }
}

/// The entity: not empty if written, else the struct name in snake_case.
fn entity(cx: &Ctxt, ident: &Ident, entity: Setting<LitStr>) -> Option<String> {
    match entity {
        Setting::Valid(lit) => non_empty(cx, &lit, PROCON, ENTITY, "account"),
        Setting::Invalid => None,
        Setting::Missing => Some(snake_case(&ident.unraw().to_string())),
    }
}

/// The key field: the one named by `key = ...`, else the field `id`. A skipped field may be
/// the key: the key is part of the message, not of the payload.
fn key<'a>(
    cx: &Ctxt,
    ident: &Ident,
    key: Setting<Ident>,
    fields: &[attr::Field<'a>],
) -> Option<Member<'a>> {
    let found = |name: &Ident| fields.iter().find(|field| field.ident == name).map(member);
    match key {
        Setting::Valid(name) => {
            let member = found(&name);
            if member.is_none() {
                cx.error_spanned_by(
                    &name,
                    format!(
                        "unknown field `{name}` in `procon(key)`; {}",
                        expected_fields(ident, fields)
                    ),
                );
            }
            member
        }
        Setting::Invalid => None,
        Setting::Missing => {
            let member = fields
                .iter()
                .find(|field| field.ident == DEFAULT_KEY)
                .map(member);
            if member.is_none() {
                let example = fields
                    .first()
                    .map_or_else(|| "field_name".to_owned(), |field| field.ident.to_string());
                cx.error_spanned_by(
                    ident,
                    format!(
                        "missing `procon(key)` attribute: `{ident}` has no field `{DEFAULT_KEY}` \
                         to use as the message key; \
                         help: the correct format looks like `#[procon(key = {example})]`"
                    ),
                );
            }
            member
        }
    }
}

/// "expected one of `a`, `b`": the names a key may take.
fn expected_fields(ident: &Ident, fields: &[attr::Field<'_>]) -> String {
    if fields.is_empty() {
        return format!("`{ident}` has no fields");
    }
    let names: Vec<String> = fields
        .iter()
        .map(|field| format!("`{}`", field.ident))
        .collect();
    format!("expected one of {}", names.join(", "))
}

/// The payload fields: every field not skipped, under its payload name. Reports `skip`
/// combined with `rename`, a blank `rename`, and two fields with the same payload name
/// (which would write a JSON object with a duplicate key).
fn payload<'a>(cx: &Ctxt, fields: &[attr::Field<'a>]) -> Option<Vec<PayloadField<'a>>> {
    let mut payload = Vec::with_capacity(fields.len());
    let mut ok = true;
    for field in fields {
        let rename = match (&field.skip, &field.rename) {
            (Setting::Valid(skip), Setting::Valid(_)) => {
                cx.error_spanned_by(
                    skip,
                    "`procon(skip)` and `procon(rename)` cannot be used on the same field: \
                     a skipped field has no payload name; help: remove one of them",
                );
                ok = false;
                continue;
            }
            (Setting::Valid(_), _) => continue,
            (_, Setting::Invalid) | (Setting::Invalid, _) => {
                ok = false;
                continue;
            }
            (_, Setting::Valid(lit)) => Some(lit),
            (_, Setting::Missing) => None,
        };
        let name = match rename {
            Some(lit) => match non_empty(cx, lit, PROCON, RENAME, "name") {
                Some(name) => name,
                None => {
                    ok = false;
                    continue;
                }
            },
            None => field.ident.unraw().to_string(),
        };
        if payload
            .iter()
            .any(|seen: &PayloadField<'_>| seen.name == name)
        {
            let at: &dyn ToTokens = match rename {
                Some(lit) => lit,
                None => field.ident,
            };
            cx.error_spanned_by(
                at,
                format!(
                    "duplicate payload field `{name}`: an earlier field is already written \
                     under this name; help: give one of them another name with \
                     `#[procon(rename = \"...\")]`"
                ),
            );
            ok = false;
            continue;
        }
        payload.push(PayloadField {
            name,
            member: member(field),
        });
    }
    ok.then_some(payload)
}

/// How the generated code accesses `field`.
fn member<'a>(field: &attr::Field<'a>) -> Member<'a> {
    Member {
        ident: field.ident,
        ty: &field.field.ty,
    }
}
