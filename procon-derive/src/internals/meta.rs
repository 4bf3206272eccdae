//! Reads the keys of an attribute (`#[procon(...)]`, `#[event_handler(...)]`) with syn's
//! nested-meta parser, so every macro reports the same mistake in the same words: a value of
//! the wrong kind, a missing or blank value, an unknown key. After a mistake the readers skip
//! to the next key, so one attribute can report several independent errors.
//!
//! `attr` names the attribute in messages: `procon(topic)`, `#[procon(topic = "accounts")]`.

use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, Lit, LitStr, Meta, Path};

use super::symbol::{backticked, closest, Symbol, PROCON};
use super::Ctxt;

/// Reads `name = "..."`. `Ok(None)`: the value was of the wrong kind, reported to `cx`.
/// `example` is a plausible value, for the help.
pub(crate) fn string_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    attr: Symbol,
    name: Symbol,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let usage = format!("{name} = \"{example}\"");
    let Some(expr) = assigned_expr(cx, meta, attr, name, &usage)? else {
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
                    "expected a string literal for `{attr}({name})`; \
                     help: the correct format looks like `#[{attr}({name} = \"{example}\")]`"
                ),
            );
            Ok(None)
        }
    }
}

/// Reads the expression after `name =`. `Ok(None)`: there was no `=` (as in `topic` or
/// `topic("x")`) or no expression after it (`topic = ,`), reported to `cx` with the correct
/// form `usage`, and the rest skipped.
pub(crate) fn assigned_expr(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    attr: Symbol,
    name: Symbol,
    usage: &str,
) -> syn::Result<Option<Expr>> {
    let message = format!(
        "expected a value for `{attr}({name})`; \
         help: the correct format looks like `#[{attr}({usage})]`"
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
pub(crate) fn unknown_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    attr: Symbol,
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
            "unknown `{attr}` {kind}attribute `{name}`; expected one of {}{help}",
            backticked(expected)
        ),
    );
    skip_value(meta)?;
    Ok(guess)
}

/// The value of `lit`, reporting it if blank; `attr`, `name` and `example` make the help.
pub(crate) fn non_empty(
    cx: &Ctxt,
    lit: &LitStr,
    attr: Symbol,
    name: Symbol,
    example: &str,
) -> Option<String> {
    let value = lit.value();
    if value.trim().is_empty() {
        cx.error_spanned_by(
            lit,
            format!(
                "`{attr}({name})` cannot be empty; \
                 help: the correct format looks like `#[{attr}({name} = \"{example}\")]`"
            ),
        );
        return None;
    }
    Some(value)
}

/// Skips whatever follows a key up to the next top-level `,` (`= expr`, `(...)`, or nothing),
/// so reading resumes at the next key.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
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
pub(crate) fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

/// A path as the user wrote it, for messages: `topik`, `serde::rename`.
pub(crate) fn path_to_string(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// Calls `read` for each key of each `#[procon(...)]` in `attrs`, ignoring every other
/// attribute (`#[serde]`, `#[diesel]`, ...). A key that `read` cannot recover from ends its
/// attribute, not the whole input: the next `#[procon(...)]` is still read.
///
/// Returns whether every `#[procon(...)]` was read to its end; if not, the keys after the
/// mistake are unknown, so none of them may be reported as missing.
pub(crate) fn for_each_key(
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

/// Reads a key that takes no value, like `skip`. `Ok(None)`: a value was given, reported to
/// `cx` and skipped.
pub(crate) fn flag_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    name: Symbol,
) -> syn::Result<Option<Path>> {
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

/// Which attribute a key was written in: on the struct, or on a field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// `#[procon(...)]` above the struct.
    Container,
    /// `#[procon(...)]` on a field.
    Field,
}

/// Reports a key that is not one of `expected` at this `level`: a key of the other level
/// (`elsewhere`) gets a "put it there" help, anything else the unknown-key error. Skips the
/// value; returns the key it is likely a misspelling of.
pub(crate) fn misplaced_or_unknown(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    level: Level,
    expected: &[Symbol],
    elsewhere: &[Symbol],
) -> syn::Result<Option<Symbol>> {
    if !elsewhere.iter().any(|key| meta.path == *key) {
        let kind = if level == Level::Field { "field " } else { "" };
        return unknown_key(cx, meta, PROCON, kind, expected);
    }
    let name = path_to_string(&meta.path);
    let message = match level {
        Level::Container => format!(
            "`procon({name})` is a field attribute, not a struct attribute; \
             help: put it on the field, like `#[procon({name})]`"
        ),
        Level::Field => format!(
            "`procon({name})` is a struct attribute, not a field attribute; \
             help: move it to the `#[procon(...)]` above the struct"
        ),
    };
    cx.error_spanned_by(&meta.path, message);
    skip_value(meta)?;
    Ok(None)
}

/// The named fields of a struct, with their names; `None` for any other shape.
pub(crate) fn named_fields(data: &syn::Data) -> Option<Vec<(&syn::Field, &syn::Ident)>> {
    match data {
        syn::Data::Struct(syn::DataStruct {
            fields: syn::Fields::Named(fields),
            ..
        }) => Some(
            fields
                .named
                .iter()
                .filter_map(|field| Some((field, field.ident.as_ref()?)))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use syn::meta::ParseNestedMeta;
    use syn::parse::Parser;

    use super::{non_empty, path_to_string, string_value, unknown_key};
    use crate::internals::symbol::{Symbol, EVENT, EVENT_HANDLER, TOPIC};
    use crate::internals::Ctxt;

    /// Runs `read` on every key of `args`, as the attribute `#[event_handler(<args>)]`, and
    /// returns the messages it reported.
    fn messages(
        args: proc_macro2::TokenStream,
        mut read: impl FnMut(&Ctxt, &ParseNestedMeta<'_>) -> syn::Result<()>,
    ) -> Vec<String> {
        let cx = Ctxt::new();
        let parser = syn::meta::parser(|meta| read(&cx, &meta));
        if let Err(err) = parser.parse2(args) {
            cx.syn_error(err);
        }
        cx.check()
            .err()
            .into_iter()
            .flatten()
            .map(|err| err.to_string())
            .collect()
    }

    #[test]
    fn reads_a_string_and_reports_other_values_with_the_word_quoted() {
        let mut values = Vec::new();
        let errors = messages(
            quote::quote!(topic = "accounts", topic = accounts, topic = 1, topic, topic = ,),
            |cx, meta| {
                values.push(string_value(cx, meta, EVENT_HANDLER, TOPIC, "x")?);
                Ok(())
            },
        );
        let values: Vec<Option<String>> = values
            .into_iter()
            .map(|lit| lit.map(|lit| lit.value()))
            .collect();
        assert_eq!(
            values,
            [Some("accounts".to_owned()), None, None, None, None]
        );
        assert_eq!(
            errors,
            [
                "expected a string literal for `event_handler(topic)`; help: the correct format \
                 looks like `#[event_handler(topic = \"accounts\")]`",
                "expected a string literal for `event_handler(topic)`; help: the correct format \
                 looks like `#[event_handler(topic = \"x\")]`",
                "expected a value for `event_handler(topic)`; help: the correct format looks \
                 like `#[event_handler(topic = \"x\")]`",
                "expected a value for `event_handler(topic)`; help: the correct format looks \
                 like `#[event_handler(topic = \"x\")]`",
            ]
        );
    }

    #[test]
    fn an_unknown_key_is_skipped_with_its_value_and_a_guess() {
        let keys: &[Symbol] = &[TOPIC, EVENT];
        let mut guesses = Vec::new();
        let errors = messages(
            quote::quote!(evnt = "x", serde::rename(a, b)),
            |cx, meta| {
                guesses.push(unknown_key(cx, meta, EVENT_HANDLER, "", keys)?);
                Ok(())
            },
        );
        assert_eq!(guesses, [Some(EVENT), None]);
        assert_eq!(
            errors,
            [
                "unknown `event_handler` attribute `evnt`; expected one of `topic`, `event`; \
                 help: did you mean `event`?",
                "unknown `event_handler` attribute `serde::rename`; expected one of `topic`, \
                 `event`",
            ]
        );
    }

    #[test]
    fn a_blank_string_is_reported() {
        let cx = Ctxt::new();
        let blank: syn::LitStr = syn::parse_quote!(" ");
        let set: syn::LitStr = syn::parse_quote!("account.created");
        assert_eq!(non_empty(&cx, &blank, EVENT_HANDLER, EVENT, "e"), None);
        assert_eq!(
            non_empty(&cx, &set, EVENT_HANDLER, EVENT, "e").as_deref(),
            Some("account.created")
        );
        let err = cx.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`event_handler(event)` cannot be empty; help: the correct format looks like \
             `#[event_handler(event = \"e\")]`"
        );
    }

    #[test]
    fn paths_print_without_spaces() {
        let path: syn::Path = syn::parse_quote!(serde::rename);
        assert_eq!(path_to_string(&path), "serde::rename");
    }
}
