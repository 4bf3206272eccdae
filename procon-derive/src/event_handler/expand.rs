//! Writes the `impl EventHandler` and the registration of a validated [`Handler`]. Infallible:
//! every mistake was reported before, so this is only `quote!`.
//!
//! The generated code names runtime items only through `::procon::__private` and `::core`,
//! and its own names start with `__procon_`/`__Procon`, so nothing in the user's scope can
//! capture them. It is what a user could write by hand: a unit struct, its `impl EventHandler`
//! calling the function, and `inventory::submit!` of its `Registration`.
//!
//! The macro cannot see types, so the signature's types are checked by the compiler, through
//! the generated code, and each wrong type is reported once, at the user's type:
//! - the event argument: `Payload` is `<#event_ty as HandlerEventArg>::Payload`, and every
//!   place the compiler normalizes it carries the span of the user's type, so a missing
//!   `HandlerEventArg` impl is reported there once (identical diagnostics are shown once),
//!   with its `on_unimplemented` message. The event reaches the function through an identity
//!   conversion that stays ambiguous, hence silent, when the payload type is unknown: a plain
//!   `f(ctx, event)` would add "expected `Account`, found `Event<_>`";
//! - the context argument and the return type: the arguments and the result of the call carry
//!   the spans of the user's types, so a mismatch is reported there.

use proc_macro2::{Delimiter, Group, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::{Ident, Type};

use super::ast::{Handler, Signature};

/// The function `item`, unchanged, followed by its handler struct, impl and registration in
/// an anonymous `const`, so they add no name to the user's module.
pub(super) fn expand(handler: &Handler<'_>, item: TokenStream) -> TokenStream {
    let Handler {
        ident,
        vis,
        topic,
        event,
        signature,
    } = handler;
    let name = ident.unraw().to_string();
    let handler_ty = format_ident!("__procon_handler_{}", name, span = ident.span());
    let handle = handle(ident, signature);
    quote! {
        #item

        const _: () = {
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            #vis struct #handler_ty;

            /// Converts the event `handle` receives into the function's event argument:
            /// the identity from `Event<T>` to `Event<T>`. With `Self` the payload type, the
            /// conversion never adds an error of its own: when the argument is not an
            /// `Event<T>`, the payload type is unknown and the call stays ambiguous, which the
            /// compiler does not report next to the unsatisfied `HandlerEventArg` bound.
            trait __ProconEventArg<__ProconArg>: ::core::marker::Sized {
                fn __procon_into(event: ::procon::__private::Event<Self>) -> __ProconArg;
            }

            impl<__ProconPayload> __ProconEventArg<::procon::__private::Event<__ProconPayload>>
                for __ProconPayload
            {
                fn __procon_into(
                    event: ::procon::__private::Event<__ProconPayload>,
                ) -> ::procon::__private::Event<__ProconPayload> {
                    event
                }
            }

            #[automatically_derived]
            impl ::procon::__private::EventHandler for #handler_ty {
                const TOPIC: &'static ::core::primitive::str = #topic;
                const EVENT: &'static ::core::primitive::str = #event;
                #handle
            }

            ::procon::__private::inventory::submit! {
                ::procon::__private::Registration::of::<#handler_ty>(#name)
            }
        };
    }
}

/// `type Payload` and `fn handle`, calling the function `ident` of signature `signature`.
///
/// Both items span the user's event argument type, down to `Self::Payload` inside them: the
/// compiler reports a missing `HandlerEventArg` impl wherever it normalizes `Payload` (the
/// associated type, `handle`'s item, signature and parameter, the conversion in the body),
/// each time at the span of what it normalizes, and shows identical reports once.
fn handle(ident: &Ident, signature: &Signature<'_>) -> TokenStream {
    let at_event = Range::of(signature.event);
    let payload = at_event.last_ident("Payload");
    // An associated type cannot elide lifetimes as an argument type can.
    let event_ty = static_lifetimes(signature.event.to_token_stream());
    let semi = at_event.tokens(quote!(;));
    let self_payload = at_event.tokens(quote!(Self::Payload));
    let close = at_event.tokens(quote!(>));
    let output = at_event.tokens(quote! {
        ::procon::__private::Result<(), ::procon::__private::HandlerError>
    });
    let handle = at_event.last_ident("handle");
    let ctx_arg = Ident::new("__procon_ctx", Range::of(signature.ctx).last);
    let event_arg = Ident::new("__procon_event", at_event.first);
    let mut body = Group::new(
        Delimiter::Brace,
        body(ident, signature, &ctx_arg, &event_arg),
    );
    body.set_span(at_event.last);
    quote_spanned! {at_event.first=>
        type #payload = <#event_ty as ::procon::__private::HandlerEventArg>::#payload #semi

        fn #handle(
            #ctx_arg: &mut ::procon::__private::HandlerContext<'_>,
            #event_arg: ::procon::__private::Event<#self_payload #close,
        ) -> #output #body
    }
}

/// The body of `handle`: calls the function `ident` with `ctx_arg` and `event_arg`.
///
/// Each binding and its use share a span (hence a hygiene), chosen so that a mismatch is
/// underlined at the user's type: `&mut *ctx` spans the context argument's type, `result.0`
/// the return type. The result is checked against `Result<(), HandlerError>` in a `let`, not
/// as `handle`'s return value: the expected type is then shown at the attribute ("expected due
/// to this"), not at `handle`'s return type, which spans the event argument's type.
fn body(
    ident: &Ident,
    signature: &Signature<'_>,
    ctx_arg: &Ident,
    event_arg: &Ident,
) -> TokenStream {
    let Signature { ctx, event, output } = signature;
    let ctx_value = quote_spanned!(Range::of(ctx).first=> &mut *#ctx_arg);
    let at_event = Range::of(event);
    let payload = at_event.tokens(quote!(Self::Payload));
    let into = at_event.last_ident("__procon_into");
    let mut into_args = Group::new(Delimiter::Parenthesis, event_arg.to_token_stream());
    into_args.set_span(at_event.last);
    let event_value = quote_spanned! {at_event.first=>
        <#payload as __ProconEventArg<#event>>::#into #into_args
    };
    let at_output = Range::of(output);
    let result_arg = Ident::new("__procon_result", at_output.first);
    let result_value = quote_spanned!(at_output.last=> #result_arg.0);
    quote! {
        let #result_arg = (#ident(#ctx_value, #event_value),);
        let __procon_checked: ::procon::__private::Result<(), ::procon::__private::HandlerError> =
            #result_value;
        __procon_checked
    }
}

/// Where the user wrote a type: the spans of its first and last tokens.
///
/// Stable Rust cannot join two spans into one, but the compiler spans a type, an expression
/// or an item from its first token to its last: generated code whose first token has `first`
/// and last token has `last` is underlined exactly where the user's type is.
#[derive(Clone, Copy)]
struct Range {
    /// The span of the first token.
    first: Span,
    /// The span of the last token (`first` for a type of one token).
    last: Span,
}

impl Range {
    /// The range of `ty`.
    fn of(ty: &Type) -> Self {
        let mut tokens = ty.to_token_stream().into_iter();
        let first = tokens
            .next()
            .map_or_else(Span::call_site, |token| token.span());
        let last = tokens.last().map_or(first, |token| token.span());
        Range { first, last }
    }

    /// The generated `tokens` spanning the range: `last` on the last token, `first` on the
    /// others (on each group as a whole, not on the tokens inside).
    fn tokens(self, tokens: TokenStream) -> TokenStream {
        let mut tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let count = tokens.len();
        for (index, token) in tokens.iter_mut().enumerate() {
            token.set_span(if index + 1 == count {
                self.last
            } else {
                self.first
            });
        }
        tokens.into_iter().collect()
    }

    /// The identifier `name` at the end of the range, to end an item or a path there.
    fn last_ident(self, name: &str) -> Ident {
        Ident::new(name, self.last)
    }
}

/// `tokens` (a type) with its elided lifetimes, `&T` and `'_`, made `'static`: what a type
/// written as an argument can leave out, but not the same type as an associated type. A
/// payload has to be `'static` anyway (`DeserializeOwned`).
fn static_lifetimes(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Group(group) => {
                let mut rewritten = Group::new(group.delimiter(), static_lifetimes(group.stream()));
                rewritten.set_span(group.span());
                out.push(rewritten.into());
            }
            TokenTree::Punct(punct) if punct.as_char() == '&' => {
                let named =
                    matches!(tokens.peek(), Some(TokenTree::Punct(next)) if next.as_char() == '\'');
                if named {
                    out.push(punct.into());
                } else {
                    // `&&T` is one `&` joint to the next: apart once the lifetime is between.
                    let mut reference = Punct::new('&', Spacing::Alone);
                    reference.set_span(punct.span());
                    out.push(reference.into());
                    out.extend(static_lifetime(punct.span()));
                }
            }
            TokenTree::Punct(punct)
                if punct.as_char() == '\''
                    && matches!(tokens.peek(), Some(TokenTree::Ident(name)) if name == "_") =>
            {
                tokens.next();
                out.extend(static_lifetime(punct.span()));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// The lifetime `'static`, at `span`.
fn static_lifetime(span: Span) -> [TokenTree; 2] {
    let mut apostrophe = Punct::new('\'', Spacing::Joint);
    apostrophe.set_span(span);
    [apostrophe.into(), Ident::new("static", span).into()]
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::static_lifetimes;

    #[test]
    fn elided_lifetimes_become_static_and_named_ones_stay() {
        for (ty, expected) in [
            (quote!(Event<Account>), quote!(Event<Account>)),
            (
                quote!(&Event<Cow<'_, str>>),
                quote!(&'static Event<Cow<'static, str>>),
            ),
            (quote!(&&mut [u8]), quote!(&'static &'static mut [u8])),
            (quote!(&'a T), quote!(&'a T)),
            (
                quote!(Event<(&str, Box<dyn Fn(&u8)>)>),
                quote!(Event<(&'static str, Box<dyn Fn(&'static u8)>)>),
            ),
        ] {
            assert_eq!(static_lifetimes(ty).to_string(), expected.to_string());
        }
    }
}
