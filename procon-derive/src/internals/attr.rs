//! Bookkeeping for one attribute key: remembers what was written for it and reports the key
//! written twice, so every parser reports duplicates the same way.

use quote::ToTokens;

use super::symbol::Symbol;
use super::Ctxt;

/// What the user wrote for one key, once every attribute that may hold it has been read.
///
/// `Invalid` is kept apart from `Missing` so that a key whose value was already rejected does
/// not also produce a follow-on "missing key" error, nor silently fall back to a default.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Setting<T> {
    /// The key was not written.
    Missing,
    /// The key was written, but its value was rejected (and the error reported).
    Invalid,
    /// The key was written with this value.
    Valid(T),
}

impl<T> Setting<T> {
    /// Counts a missing key as written but invalid when it may have been written: misspelled,
    /// or in an attribute that could not be read to its end (both already reported). The
    /// mistake is then not reported a second time as a missing key, nor replaced by a default.
    pub(crate) fn or_invalid_if(self, maybe_written: bool) -> Self {
        match self {
            Setting::Missing if maybe_written => Setting::Invalid,
            other => other,
        }
    }
}

/// Collects the value of one key across all attributes of an item that may hold it (all its
/// `#[procon(...)]`, or the one `#[event_handler(...)]`).
pub(crate) struct Attr<'c, T> {
    /// Where a duplicate is reported.
    cx: &'c Ctxt,
    /// The attribute, for the duplicate message: `procon`, `event_handler`.
    attr: Symbol,
    /// The key, for the duplicate message.
    name: Symbol,
    /// The first value written (`Some(None)`: written, but invalid).
    value: Option<Option<T>>,
}

impl<'c, T> Attr<'c, T> {
    /// A key `name` of the attribute `attr`, not written yet.
    pub(crate) fn none(cx: &'c Ctxt, attr: Symbol, name: Symbol) -> Self {
        Attr {
            cx,
            attr,
            name,
            value: None,
        }
    }

    /// Records the value written at `obj` (`None`: the value was invalid and already
    /// reported). A second write is reported as a duplicate at `obj` and ignored, so the
    /// first one wins.
    pub(crate) fn set<A: ToTokens>(&mut self, obj: A, value: Option<T>) {
        if self.value.is_some() {
            self.cx.error_spanned_by(
                obj,
                format!("duplicate `{}({})` attribute", self.attr, self.name),
            );
        } else {
            self.value = Some(value);
        }
    }

    /// What was written for this key.
    pub(crate) fn get(self) -> Setting<T> {
        match self.value {
            None => Setting::Missing,
            Some(None) => Setting::Invalid,
            Some(Some(value)) => Setting::Valid(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Attr, Setting};
    use crate::internals::symbol::{EVENT, EVENT_HANDLER, PROCON, TOPIC};
    use crate::internals::Ctxt;

    #[test]
    fn a_key_written_once_keeps_its_value() {
        let cx = Ctxt::new();
        let mut topic = Attr::none(&cx, PROCON, TOPIC);
        topic.set(quote::quote!(topic), Some("accounts"));
        assert_eq!(topic.get(), Setting::Valid("accounts"));
        assert!(cx.check().is_ok());
    }

    #[test]
    fn an_invalid_value_is_not_missing() {
        let cx = Ctxt::new();
        let mut topic = Attr::<&str>::none(&cx, PROCON, TOPIC);
        topic.set(quote::quote!(topic), None);
        assert_eq!(topic.get(), Setting::Invalid);
    }

    #[test]
    fn a_key_that_may_have_been_written_is_not_missing() {
        assert_eq!(Setting::<()>::Missing.or_invalid_if(true), Setting::Invalid);
        assert_eq!(
            Setting::<()>::Missing.or_invalid_if(false),
            Setting::Missing
        );
        assert_eq!(Setting::Valid(1).or_invalid_if(true), Setting::Valid(1));
    }

    #[test]
    fn a_second_write_is_reported_and_the_first_one_wins() {
        let cx = Ctxt::new();
        let mut topic = Attr::none(&cx, PROCON, TOPIC);
        topic.set(quote::quote!(topic), Some("a"));
        topic.set(quote::quote!(topic), Some("b"));
        assert_eq!(topic.get(), Setting::Valid("a"));
        let err = cx.check().unwrap_err();
        assert_eq!(err.to_string(), "duplicate `procon(topic)` attribute");
    }

    #[test]
    fn the_duplicate_message_names_the_attribute() {
        let cx = Ctxt::new();
        let mut event = Attr::none(&cx, EVENT_HANDLER, EVENT);
        event.set(quote::quote!(event), Some("a"));
        event.set(quote::quote!(event), Some("b"));
        let err = cx.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "duplicate `event_handler(event)` attribute"
        );
    }
}
