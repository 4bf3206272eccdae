//! Error collection: a macro reports every independent mistake in one compilation instead of
//! making the user fix them one at a time.

use std::cell::RefCell;
use std::fmt::Display;

use quote::ToTokens;

/// Collects the errors found while reading and checking one macro input.
///
/// It is shared by reference (`&Ctxt`) because the attribute parsers report errors from inside
/// `parse_nested_meta` closures that also hold other borrows. [`Ctxt::check`] consumes it, so
/// the errors are turned into a result exactly once.
#[must_use = "call `Ctxt::check` to report the collected errors"]
#[derive(Default)]
pub(crate) struct Ctxt {
    /// Every error so far, in the order found (which is the order the compiler shows them).
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    /// An empty context, for one macro invocation.
    pub(crate) fn new() -> Self {
        Ctxt::default()
    }

    /// Records an error spanning the tokens of `obj`, so the compiler underlines exactly them.
    pub(crate) fn error_spanned_by<A: ToTokens, T: Display>(&self, obj: A, msg: T) {
        self.errors
            .borrow_mut()
            .push(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Records an error that already carries its span (e.g. one from a syn parser).
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.errors.borrow_mut().push(err);
    }

    /// Ends the collection: `Err` holds every recorded error combined into one, each keeping
    /// its own span.
    pub(crate) fn check(self) -> syn::Result<()> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for err in errors {
            combined.combine(err);
        }
        Err(combined)
    }
}

/// The end of a derive: the expansion of `model` when no error was recorded, else the
/// `fallback` (every error, plus a stub). A `None` model with no error is a bug of the macro,
/// reported as an error rather than a panic.
pub(crate) fn finish<M>(
    cx: Ctxt,
    model: Option<M>,
    expand: impl FnOnce(&M) -> proc_macro2::TokenStream,
    fallback: impl FnOnce(syn::Error) -> proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    match (cx.check(), model) {
        (Ok(()), Some(model)) => expand(&model),
        (Err(errors), _) => fallback(errors),
        (Ok(()), None) => fallback(syn::Error::new(
            proc_macro2::Span::call_site(),
            "internal error in `procon-derive`: the input was rejected without a reason; \
             please report this bug",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Ctxt;
    use proc_macro2::Span;

    #[test]
    fn an_empty_context_checks_ok() {
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    fn every_error_is_kept_in_order() {
        let cx = Ctxt::new();
        cx.error_spanned_by(quote::quote!(a), "first");
        cx.syn_error(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }
}
