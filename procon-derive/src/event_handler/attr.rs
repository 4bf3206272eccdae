//! Reads the arguments of `#[event_handler(...)]` as written.
//!
//! This layer reports syntax mistakes: an unknown key, a value of the wrong kind, a key
//! written twice (with the readers shared in `internals::meta`). Whether the values make sense
//! (a blank event name) and whether the function can be a handler is checked in `valid.rs`.
//! After a mistake it skips to the next key, so one attribute can report several independent
//! errors.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::LitStr;

use crate::internals::attr::{Attr, Setting};
use crate::internals::meta::{string_value, unknown_key};
use crate::internals::symbol::{Symbol, EVENT, EVENT_HANDLER, TOPIC};
use crate::internals::Ctxt;

/// The keys of `#[event_handler(...)]`.
const KEYS: &[Symbol] = &[TOPIC, EVENT];

/// The plausible topic shown in helps.
pub(super) const TOPIC_EXAMPLE: &str = "accounts";
/// The plausible event name shown in helps.
pub(super) const EVENT_EXAMPLE: &str = "account.created";

/// Everything written in `#[event_handler(...)]`.
pub(super) struct Args {
    /// `topic = "..."`.
    pub(super) topic: Setting<LitStr>,
    /// `event = "..."`.
    pub(super) event: Setting<LitStr>,
}

impl Args {
    /// Reads the arguments `args` of the attribute, reporting syntax mistakes to `cx`.
    pub(super) fn from_tokens(cx: &Ctxt, args: TokenStream) -> Self {
        let mut topic = Attr::none(cx, EVENT_HANDLER, TOPIC);
        let mut event = Attr::none(cx, EVENT_HANDLER, EVENT);
        let mut misspelled = Vec::new();
        let parser = syn::meta::parser(|meta| {
            if meta.path == TOPIC {
                let value = string_value(cx, &meta, EVENT_HANDLER, TOPIC, TOPIC_EXAMPLE)?;
                topic.set(&meta.path, value);
            } else if meta.path == EVENT {
                let value = string_value(cx, &meta, EVENT_HANDLER, EVENT, EVENT_EXAMPLE)?;
                event.set(&meta.path, value);
            } else {
                misspelled.extend(unknown_key(cx, &meta, EVENT_HANDLER, "", KEYS)?);
            }
            Ok(())
        });
        // A key that cannot be recovered from ends the attribute: the keys after it are
        // unknown, so none of them may be reported as missing.
        let read_all = match parser.parse2(args) {
            Ok(()) => true,
            Err(err) => {
                cx.syn_error(err);
                false
            }
        };
        Args {
            topic: topic
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&TOPIC)),
            event: event
                .get()
                .or_invalid_if(!read_all || misspelled.contains(&EVENT)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Args;
    use crate::internals::attr::Setting;
    use crate::internals::Ctxt;

    /// The topic and event read from `args`, and the messages reported.
    fn read(args: proc_macro2::TokenStream) -> (Setting<String>, Setting<String>, Vec<String>) {
        let cx = Ctxt::new();
        let Args { topic, event } = Args::from_tokens(&cx, args);
        let value = |setting: Setting<syn::LitStr>| match setting {
            Setting::Missing => Setting::Missing,
            Setting::Invalid => Setting::Invalid,
            Setting::Valid(lit) => Setting::Valid(lit.value()),
        };
        let errors = cx
            .check()
            .err()
            .into_iter()
            .flatten()
            .map(|err| err.to_string())
            .collect();
        (value(topic), value(event), errors)
    }

    #[test]
    fn reads_both_keys_in_any_order() {
        let (topic, event, errors) = read(quote::quote!(event = "a.b", topic = "t",));
        assert_eq!(topic, Setting::Valid("t".to_owned()));
        assert_eq!(event, Setting::Valid("a.b".to_owned()));
        assert!(errors.is_empty());
    }

    #[test]
    fn nothing_written_is_missing() {
        let (topic, event, errors) = read(quote::quote!());
        assert_eq!(topic, Setting::Missing);
        assert_eq!(event, Setting::Missing);
        assert!(errors.is_empty());
    }

    #[test]
    fn a_misspelled_key_is_not_also_missing() {
        let (topic, event, errors) = read(quote::quote!(topik = "t", event = "e"));
        assert_eq!(topic, Setting::Invalid);
        assert_eq!(event, Setting::Valid("e".to_owned()));
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn keys_after_unreadable_syntax_are_not_missing() {
        let (topic, event, errors) = read(quote::quote!(topic = "t" event = "e"));
        assert_eq!(topic, Setting::Valid("t".to_owned()));
        assert_eq!(event, Setting::Invalid);
        assert_eq!(errors.len(), 1);
    }
}
