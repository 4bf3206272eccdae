//! Reads the `#[procon(...)]` attributes of a `#[derive(Outbox)]` input as written.
//!
//! This layer reports syntax mistakes: an unknown key, a value of the wrong kind, a key
//! written twice. Whether the values make sense together (a topic that is empty, a key that
//! names no field) is checked in `valid.rs`. After a mistake it skips to the next key, so one
//! attribute can report several independent errors.

use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Data, DataStruct, DeriveInput, Expr, Fields, Ident, Lit, LitStr, Meta, Path};

use crate::internals::attr::{Attr, Setting};
use crate::internals::symbol::{
    backticked, closest, Symbol, ENTITY, KEY, PROCON, RENAME, SKIP, TOPIC,
};
use crate::internals::Ctxt;

/// The keys of the struct-level attribute.
const CONTAINER_KEYS: &[Symbol] = &[TOPIC, ENTITY, KEY];
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
        let fields = match &input.data {
            Data::Struct(DataStruct {
                fields: Fields::Named(fields),
                ..
            }) => Some(
                fields
                    .named
                    .iter()
                    .filter_map(|field| Some(Field::from_ast(cx, field, field.ident.as_ref()?)))
                    .collect(),
            ),
            Data::Struct(_) | Data::Enum(_) | Data::Union(_) => None,
        };
        Input { container, fields }
    }
}

impl Container {
    /// Reads the struct-level keys.
    fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut topic = Attr::none(cx, TOPIC);
        let mut entity = Attr::none(cx, ENTITY);
        let mut key = Attr::none(cx, KEY);
        let mut misspelled = Vec::new();
        let read_all = for_each_key(cx, attrs, CONTAINER_HELP, |meta| {
            if meta.path == TOPIC {
                let value = string_value(cx, meta, TOPIC, "accounts")?;
                topic.set(&meta.path, value);
            } else if meta.path == ENTITY {
                let value = string_value(cx, meta, ENTITY, "account")?;
                entity.set(&meta.path, value);
            } else if meta.path == KEY {
                let value = field_name_value(cx, meta)?;
                key.set(&meta.path, value);
            } else if FIELD_KEYS.iter().any(|field_key| meta.path == *field_key) {
                let name = path_to_string(&meta.path);
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "`procon({name})` is a field attribute, not a struct attribute; \
                         help: put it on the field, like `#[procon({name})]`"
                    ),
                );
                skip_value(meta)?;
            } else {
                misspelled.extend(unknown_key(cx, meta, "", CONTAINER_KEYS)?);
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
        }
    }
}

impl<'a> Field<'a> {
    /// Reads the keys of one field.
    fn from_ast(cx: &Ctxt, field: &'a syn::Field, ident: &'a Ident) -> Self {
        let mut skip = Attr::none(cx, SKIP);
        let mut rename = Attr::none(cx, RENAME);
        let mut misspelled = Vec::new();
        let read_all = for_each_key(cx, &field.attrs, FIELD_HELP, |meta| {
            if meta.path == SKIP {
                let value = flag_value(cx, meta, SKIP)?;
                skip.set(&meta.path, value);
            } else if meta.path == RENAME {
                let value = string_value(cx, meta, RENAME, "name")?;
                rename.set(&meta.path, value);
            } else if CONTAINER_KEYS.iter().any(|key| meta.path == *key) {
                let name = path_to_string(&meta.path);
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "`procon({name})` is a struct attribute, not a field attribute; \
                         help: move it to the `#[procon(...)]` above the struct"
                    ),
                );
                skip_value(meta)?;
            } else {
                misspelled.extend(unknown_key(cx, meta, "field ", FIELD_KEYS)?);
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

/// Calls `read` for each key of each `#[procon(...)]` in `attrs`, ignoring every other
/// attribute (`#[serde]`, `#[diesel]`, ...). A key that `read` cannot recover from ends its
/// attribute, not the whole input: the next `#[procon(...)]` is still read.
///
/// Returns whether every `#[procon(...)]` was read to its end; if not, the keys after the
/// mistake are unknown, so none of them may be reported as missing.
fn for_each_key(
    cx: &Ctxt,
    attrs: &[Attribute],
    help: &str,
    mut read: impl FnMut(&ParseNestedMeta<'_>) -> syn::Result<()>,
) -> bool {
    let mut read_all = true;
    for attr in attrs {
        if attr.path() != PROCON {
            continue;
        }
        let Meta::List(list) = &attr.meta else {
            cx.error_spanned_by(attr, format!("expected `#[procon(...)]`; {help}"));
            read_all = false;
            continue;
        };
        if let Err(err) = list.parse_nested_meta(|meta| read(&meta)) {
            cx.syn_error(err);
            read_all = false;
        }
    }
    read_all
}

/// Reads `name = "..."`. `Ok(None)`: the value was of the wrong kind, reported to `cx`.
/// `example` is a plausible value, for the help.
fn string_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    name: Symbol,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let Some(expr) = assigned_expr(cx, meta, name, &format!("{name} = \"{example}\""))? else {
        return Ok(None);
    };
    match ungroup(&expr) {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(Some(lit.clone())),
        other => {
            // `topic = accounts`: show the same word quoted.
            let example = match other {
                Expr::Path(path) => path
                    .path
                    .get_ident()
                    .map_or_else(|| example.to_owned(), |ident| ident.unraw().to_string()),
                _ => example.to_owned(),
            };
            cx.error_spanned_by(
                &expr,
                format!(
                    "expected a string literal for `procon({name})`; \
                     help: the correct format looks like `#[procon({name} = \"{example}\")]`"
                ),
            );
            Ok(None)
        }
    }
}

/// Reads `key = field`. `Ok(None)`: the value was not a field name, reported to `cx`.
fn field_name_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Ident>> {
    let Some(expr) = assigned_expr(cx, meta, KEY, "key = id")? else {
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

/// Reads a key that takes no value, like `skip`. `Ok(None)`: a value was given, reported to
/// `cx` and skipped.
fn flag_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>, name: Symbol) -> syn::Result<Option<Path>> {
    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
        return Ok(Some(meta.path.clone()));
    }
    cx.error_spanned_by(
        &meta.path,
        format!(
            "`procon({name})` takes no value; \
             help: the correct format looks like `#[procon({name})]`"
        ),
    );
    skip_value(meta)?;
    Ok(None)
}

/// Reads the expression after `name =`. `Ok(None)`: there was no `=` (as in `topic` or
/// `topic("x")`) or no expression after it (`topic = ,`), reported to `cx` with the correct
/// form `usage`, and the rest skipped.
fn assigned_expr(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    name: Symbol,
    usage: &str,
) -> syn::Result<Option<Expr>> {
    let message = format!(
        "expected a value for `procon({name})`; \
         help: the correct format looks like `#[procon({usage})]`"
    );
    if !meta.input.peek(syn::Token![=]) {
        cx.error_spanned_by(&meta.path, message);
        skip_value(meta)?;
        return Ok(None);
    }
    match meta.value()?.parse() {
        Ok(expr) => Ok(Some(expr)),
        Err(err) => {
            // syn's span (the token where an expression was expected), with our message.
            cx.syn_error(syn::Error::new(err.span(), message));
            skip_value(meta)?;
            Ok(None)
        }
    }
}

/// Reports a key that is not one of `expected`, then skips its value. `kind` qualifies the
/// attribute in the message ("" or "field "). Returns the key it is likely a misspelling of.
fn unknown_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    kind: &str,
    expected: &[Symbol],
) -> syn::Result<Option<Symbol>> {
    let name = path_to_string(&meta.path);
    let guess = closest(&name, expected);
    let help = guess.map_or_else(String::new, |guess| {
        format!("; help: did you mean `{guess}`?")
    });
    cx.error_spanned_by(
        &meta.path,
        format!(
            "unknown `procon` {kind}attribute `{name}`; expected one of {}{help}",
            backticked(expected)
        ),
    );
    skip_value(meta)?;
    Ok(guess)
}

/// Skips whatever follows a key up to the next top-level `,` (`= expr`, `(...)`, or nothing),
/// so reading resumes at the next key.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    meta.input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(punct) if punct.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// Looks through the invisible groups that `macro_rules!` wraps around `$value:expr`, so a
/// literal passed through a declarative macro is still a literal.
fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

/// A path as the user wrote it, for messages: `topik`, `serde::rename`.
fn path_to_string(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}
