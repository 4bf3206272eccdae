//! Checks an `#[event_handler(...)]` input: the arguments read by `attr.rs`, and the item,
//! which must be a plain function `fn(ctx, event) -> ...` the consumer can call. Builds the
//! [`Handler`]. Every check runs, so one compilation reports every independent mistake.
//!
//! The types in the signature are not checked here (a macro cannot resolve them): the
//! generated impl carries their spans, so the compiler reports a wrong type at the user's type.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::{FnArg, Ident, Item, LitStr, ReturnType};

use super::ast::{Handler, Signature};
use super::attr::{self, EVENT_EXAMPLE, TOPIC_EXAMPLE};
use crate::internals::attr::Setting;
use crate::internals::meta::non_empty;
use crate::internals::symbol::{Symbol, EVENT, EVENT_HANDLER, TOPIC};
use crate::internals::Ctxt;

/// Checks `args` and `item` and returns the handler, or `None` once the reason there is none
/// was reported to `cx` (here, or while reading the arguments). A `Some` does not mean the
/// input is clean: a mistake found while reading may leave the handler complete, so the caller
/// decides on `cx`.
pub(super) fn check<'a>(cx: &Ctxt, args: attr::Args, item: &'a Item) -> Option<Handler<'a>> {
    let (topic, event) = names(cx, args);
    let Item::Fn(func) = item else {
        not_a_function(cx, item);
        return None;
    };
    let signature = signature(cx, &func.sig);
    Some(Handler {
        ident: &func.sig.ident,
        vis: &func.vis,
        topic: topic?,
        event: event?,
        signature: signature?,
    })
}

/// The topic and the event name: both required and not blank. Both missing (as in a bare
/// `#[event_handler]`) is one mistake, reported once.
fn names(cx: &Ctxt, args: attr::Args) -> (Option<String>, Option<String>) {
    let attr::Args { topic, event } = args;
    if let (Setting::Missing, Setting::Missing) = (&topic, &event) {
        cx.syn_error(syn::Error::new(
            Span::call_site(),
            format!(
                "missing `{EVENT_HANDLER}({TOPIC})` and `{EVENT_HANDLER}({EVENT})` attributes; \
                 {}",
                attribute_help()
            ),
        ));
        return (None, None);
    }
    (
        required(cx, topic, TOPIC, TOPIC_EXAMPLE),
        required(cx, event, EVENT, EVENT_EXAMPLE),
    )
}

/// The value of the required key `name`; `example` makes the help.
fn required(cx: &Ctxt, setting: Setting<LitStr>, name: Symbol, example: &str) -> Option<String> {
    match setting {
        Setting::Valid(lit) => non_empty(cx, &lit, EVENT_HANDLER, name, example),
        Setting::Invalid => None,
        Setting::Missing => {
            // The attribute itself: there is no token of the missing key to point at.
            cx.syn_error(syn::Error::new(
                Span::call_site(),
                format!(
                    "missing `{EVENT_HANDLER}({name})` attribute; {}",
                    attribute_help()
                ),
            ));
            None
        }
    }
}

/// The help showing a complete attribute.
fn attribute_help() -> String {
    format!(
        "help: the correct format looks like \
         `#[{EVENT_HANDLER}({TOPIC} = \"{TOPIC_EXAMPLE}\", {EVENT} = \"{EVENT_EXAMPLE}\")]`"
    )
}

/// Reports an item that is not a function, at `struct Name`, `impl Type`... (at the attribute
/// for an item without a name).
fn not_a_function(cx: &Ctxt, item: &Item) {
    let head = |keyword: &dyn ToTokens, name: &dyn ToTokens| Some(quote!(#keyword #name));
    let at = match item {
        Item::Struct(item) => head(&item.struct_token, &item.ident),
        Item::Enum(item) => head(&item.enum_token, &item.ident),
        Item::Union(item) => head(&item.union_token, &item.ident),
        Item::Trait(item) => head(&item.trait_token, &item.ident),
        Item::Type(item) => head(&item.type_token, &item.ident),
        Item::Mod(item) => head(&item.mod_token, &item.ident),
        Item::Const(item) => head(&item.const_token, &item.ident),
        Item::Static(item) => head(&item.static_token, &item.ident),
        Item::Impl(item) => head(&item.impl_token, &item.self_ty),
        _ => None,
    };
    let message = format!("`#[{EVENT_HANDLER}]` can only be applied to functions");
    match at {
        Some(at) => cx.error_spanned_by(at, message),
        None => cx.syn_error(syn::Error::new(Span::call_site(), message)),
    }
}

/// Checks that the consumer can call the function as `f(ctx, event)` and returns the types of
/// its signature. Each qualifier, generic or argument that stands in the way is reported at
/// its own tokens, in the order they are written.
fn signature<'a>(cx: &Ctxt, sig: &'a syn::Signature) -> Option<Signature<'a>> {
    let help = signature_help(&sig.ident);
    let mut ok = qualifiers(cx, sig);
    let mut reject = |err: syn::Error| {
        cx.syn_error(err);
        ok = false;
    };
    if !sig.generics.params.is_empty() {
        reject(syn::Error::new_spanned(
            &sig.generics,
            format!(
                "event handlers cannot be generic: the consumer calls one concrete function; \
                 {help}"
            ),
        ));
    }
    let mut args = Vec::with_capacity(2);
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => reject(syn::Error::new_spanned(
                receiver,
                format!(
                    "event handlers are free functions and cannot take `self`; help: move the \
                     function out of the `impl` block, like `{}`",
                    signature_format(&sig.ident)
                ),
            )),
            FnArg::Typed(arg) => args.push(&*arg.ty),
        }
    }
    if let Some(variadic) = &sig.variadic {
        reject(syn::Error::new_spanned(
            variadic,
            format!("event handlers cannot be variadic; {help}"),
        ));
    } else if args.len() != 2 {
        // The parentheses: with no argument there is nothing else to point at.
        reject(syn::Error::new(
            sig.paren_token.span.join(),
            format!(
                "event handlers take exactly two arguments, found {}; {help}",
                args.len()
            ),
        ));
    }
    let output = match &sig.output {
        ReturnType::Type(_, output) => Some(&**output),
        ReturnType::Default => {
            // From `fn` to `)`: the underline ends where the return type is missing.
            let (fn_token, ident, inputs) = (&sig.fn_token, &sig.ident, &sig.inputs);
            let mut parens = TokenStream::new();
            sig.paren_token
                .surround(&mut parens, |tokens| inputs.to_tokens(tokens));
            reject(syn::Error::new_spanned(
                quote!(#fn_token #ident #parens),
                format!("event handlers must return `Result<(), HandlerError>`; {help}"),
            ));
            None
        }
    };
    if let Some(where_clause) = &sig.generics.where_clause {
        reject(syn::Error::new_spanned(
            where_clause,
            "event handlers cannot have a `where` clause: the consumer calls one concrete \
             function; help: remove it",
        ));
    }
    match (ok, args.as_slice(), output) {
        (true, &[ctx, event], Some(output)) => Some(Signature { ctx, event, output }),
        _ => None,
    }
}

/// Checks that the function has none of the qualifiers that change how it is called, and
/// returns whether it has none.
fn qualifiers(cx: &Ctxt, sig: &syn::Signature) -> bool {
    let mut ok = true;
    let mut reject = |at: &dyn ToTokens, message: String| {
        cx.error_spanned_by(at, message);
        ok = false;
    };
    if let Some(constness) = &sig.constness {
        reject(
            constness,
            "event handlers cannot be `const`; help: remove `const`".to_owned(),
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        reject(
            asyncness,
            "event handlers run inside the consumer's database transaction and cannot be \
             `async`; help: remove `async` and write through the blocking connection of \
             `ctx.conn()`"
                .to_owned(),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        reject(
            unsafety,
            "event handlers cannot be `unsafe`: the consumer calls them as safe functions; \
             help: remove `unsafe`"
                .to_owned(),
        );
    }
    if let Some(abi) = &sig.abi {
        let written = abi.to_token_stream().to_string();
        reject(
            abi,
            format!(
                "event handlers cannot be `{written}`: the consumer calls them as Rust \
                 functions; help: remove `{written}`"
            ),
        );
    }
    ok
}

/// The help showing the handler signature, for the function `name`.
fn signature_help(name: &Ident) -> String {
    format!(
        "help: the correct format looks like `{}`",
        signature_format(name)
    )
}

/// The handler signature, for the function `name`.
fn signature_format(name: &Ident) -> String {
    format!(
        "fn {name}(ctx: &mut HandlerContext<'_>, event: Event<Payload>) \
         -> Result<(), HandlerError>"
    )
}

#[cfg(test)]
mod tests {
    use quote::{quote, ToTokens};
    use syn::Item;

    use super::check;
    use crate::event_handler::attr::Args;
    use crate::internals::Ctxt;

    /// The messages reported for `#[event_handler(<args>)] <item>`, and whether a handler was
    /// built.
    fn messages(args: proc_macro2::TokenStream, item: Item) -> (Vec<String>, bool) {
        let cx = Ctxt::new();
        let args = Args::from_tokens(&cx, args);
        let built = check(&cx, args, &item).is_some();
        let messages = cx
            .check()
            .err()
            .into_iter()
            .flatten()
            .map(|err| err.to_string())
            .collect();
        (messages, built)
    }

    /// The first words of each message, enough to tell them apart.
    fn heads(messages: &[String]) -> Vec<&str> {
        messages
            .iter()
            .map(|message| message.split([';', ':']).next().unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_handler_keeps_its_names_and_types() {
        let item: Item = syn::parse_quote! {
            pub fn on_created(c: &mut HandlerContext<'_>, e: Event<A>) -> Result<(), HandlerError> {
                Ok(())
            }
        };
        let cx = Ctxt::new();
        let args = Args::from_tokens(&cx, quote!(topic = "t", event = "e"));
        let handler = check(&cx, args, &item).map(|handler| {
            (
                handler.ident.to_string(),
                handler.vis.to_token_stream().to_string(),
                handler.topic,
                handler.event,
                handler.signature.event.to_token_stream().to_string(),
                handler.signature.output.to_token_stream().to_string(),
            )
        });
        assert!(cx.check().is_ok());
        let expected = (
            "on_created".to_owned(),
            "pub".to_owned(),
            "t".to_owned(),
            "e".to_owned(),
            quote!(Event<A>).to_string(),
            quote!(Result<(), HandlerError>).to_string(),
        );
        assert_eq!(handler, Some(expected));
    }

    #[test]
    fn every_mistake_in_the_signature_is_reported() {
        let item: Item = syn::parse_quote! {
            const async unsafe extern "C" fn f<T>(&self, e: Event<T>) where T: Copy {}
        };
        let (messages, built) = messages(quote!(topic = "t", event = "e"), item);
        assert!(!built);
        assert_eq!(
            heads(&messages),
            [
                "event handlers cannot be `const`",
                "event handlers run inside the consumer's database transaction and cannot be \
                 `async`",
                "event handlers cannot be `unsafe`",
                "event handlers cannot be `extern \"C\"`",
                "event handlers cannot be generic",
                "event handlers are free functions and cannot take `self`",
                "event handlers take exactly two arguments, found 1",
                "event handlers must return `Result<(), HandlerError>`",
                "event handlers cannot have a `where` clause",
            ]
        );
    }

    #[test]
    fn missing_keys_are_reported_once_together() {
        let item: Item = syn::parse_quote! {
            fn f(c: &mut HandlerContext<'_>, e: Event<A>) -> Result<(), HandlerError> { Ok(()) }
        };
        let (none, _) = messages(quote!(), item.clone());
        assert_eq!(
            heads(&none),
            ["missing `event_handler(topic)` and `event_handler(event)` attributes"]
        );
        let (no_event, built) = messages(quote!(topic = "t"), item);
        assert_eq!(
            heads(&no_event),
            ["missing `event_handler(event)` attribute"]
        );
        assert!(!built);
    }

    #[test]
    fn only_functions_are_accepted() {
        let item: Item = syn::parse_quote!(
            struct Account;
        );
        let (messages, built) = messages(quote!(topic = "t", event = "e"), item);
        assert_eq!(
            messages,
            ["`#[event_handler]` can only be applied to functions"]
        );
        assert!(!built);
    }
}
