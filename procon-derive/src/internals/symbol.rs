//! The attribute key names, as constants, so a typo in a key is a compile error of this crate
//! rather than an attribute that silently never matches.

use std::fmt::{self, Display};

use syn::{Ident, Path};

/// The name of an attribute or of one of its keys.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Symbol(&'static str);

/// The attribute namespace: `#[procon(...)]`.
pub(crate) const PROCON: Symbol = Symbol("procon");
/// The attribute macro on handler functions: `#[event_handler(...)]`.
pub(crate) const EVENT_HANDLER: Symbol = Symbol("event_handler");
/// Container key, and `event_handler` key: the Kafka topic.
pub(crate) const TOPIC: Symbol = Symbol("topic");
/// Container key: the entity name of the events.
pub(crate) const ENTITY: Symbol = Symbol("entity");
/// Container key: the field whose value is the Kafka message key.
pub(crate) const KEY: Symbol = Symbol("key");
/// Field key: leave the field out of the payload.
pub(crate) const SKIP: Symbol = Symbol("skip");
/// Field key: the field's name in the payload.
pub(crate) const RENAME: Symbol = Symbol("rename");
/// Container key: a realtime builder function (repeatable).
pub(crate) const REALTIME: Symbol = Symbol("realtime");
/// Container key: the realtime throttle window in milliseconds.
pub(crate) const RT_THRESHOLD: Symbol = Symbol("rt_threshold");
/// Container key: the wire format of the events (`json` or `avro`).
pub(crate) const FORMAT: Symbol = Symbol("format");
/// Container key: the Avro name of the payload record (default: the struct's name).
pub(crate) const AVRO_NAME: Symbol = Symbol("avro_name");
/// Container key: the Avro namespace of the event's records.
pub(crate) const AVRO_NAMESPACE: Symbol = Symbol("avro_namespace");
/// `Materialize` container key: the local column(s) identifying a record.
pub(crate) const MASTER_KEY: Symbol = Symbol("master_key");
/// `Materialize` container key: the Diesel table module.
pub(crate) const TABLE: Symbol = Symbol("table");
/// `Materialize` container key: the model implements `MaterializeHooks` itself.
pub(crate) const HOOKS: Symbol = Symbol("hooks");
/// `Materialize` field key: the event attribute (path) the field is read from.
pub(crate) const FROM: Symbol = Symbol("from");
/// `Materialize` field key: the field holds the topic the event was read from.
pub(crate) const FROM_TOPIC: Symbol = Symbol("from_topic");
/// `Materialize` field key: the field holds the event time.
pub(crate) const FROM_EVENT_TIME: Symbol = Symbol("from_event_time");
/// `Materialize` field key: inserts leave the column to its default.
pub(crate) const SKIP_ON_CREATE: Symbol = Symbol("skip_on_create");
/// `Materialize` field key: updates leave the column as it is.
pub(crate) const SKIP_ON_UPDATE: Symbol = Symbol("skip_on_update");
/// Diesel's attribute namespace, read for `table_name`.
pub(crate) const DIESEL: Symbol = Symbol("diesel");
/// Diesel's `table_name` key.
pub(crate) const TABLE_NAME: Symbol = Symbol("table_name");
/// `event_handler` key: the name of the event handled.
pub(crate) const EVENT: Symbol = Symbol("event");

/// Lets the parsers write `ident == TOPIC`.
impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

/// Lets the parsers write `meta.path == TOPIC`: true only for the single-segment path `topic`.
impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

/// Lets the parsers write `attr.path() == PROCON`.
impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

/// Prints the bare name, for use inside error messages.
impl Display for Symbol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.0)
    }
}

/// Formats keys as an error message lists them: "`a`, `b`, `c`".
pub(crate) fn backticked(symbols: &[Symbol]) -> String {
    symbols
        .iter()
        .map(|symbol| format!("`{symbol}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key of `candidates` that `word` is most likely a misspelling of, for a "did you mean"
/// help: at most one edit away from a key of up to four letters, two from a longer one.
pub(crate) fn closest(word: &str, candidates: &[Symbol]) -> Option<Symbol> {
    candidates
        .iter()
        .map(|&candidate| (edit_distance(word, candidate.0), candidate))
        .filter(|&(distance, candidate)| distance <= if candidate.0.len() <= 4 { 1 } else { 2 })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// The Levenshtein distance between `a` and `b`: the fewest insertions, deletions and
/// substitutions of characters that turn one into the other.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // `row[j]`: the distance between the prefix of `a` read so far and `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &b_char) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(a_char != b_char);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{backticked, closest, edit_distance, ENTITY, EVENT, KEY, RENAME, SKIP, TOPIC};

    #[test]
    fn paths_match_only_their_own_single_segment_name() {
        let topic: syn::Path = syn::parse_quote!(topic);
        let qualified: syn::Path = syn::parse_quote!(procon::topic);
        assert!(topic == TOPIC);
        assert!(topic != KEY);
        assert!(qualified != TOPIC);
    }

    #[test]
    fn lists_are_backticked_and_comma_separated() {
        assert_eq!(backticked(&[TOPIC, KEY]), "`topic`, `key`");
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("topic", "topic"), 0);
        assert_eq!(edit_distance("topik", "topic"), 1);
        assert_eq!(edit_distance("topics", "topic"), 1);
        assert_eq!(edit_distance("tpoic", "topic"), 2);
        assert_eq!(edit_distance("", "key"), 3);
        assert_eq!(edit_distance("key", ""), 3);
    }

    #[test]
    fn suggests_only_close_keys() {
        let container = [TOPIC, ENTITY, KEY];
        assert_eq!(closest("topik", &container), Some(TOPIC));
        assert_eq!(closest("entiy", &container), Some(ENTITY));
        assert_eq!(closest("keys", &container), Some(KEY));
        assert_eq!(closest("partition", &container), None);
        assert_eq!(closest("id", &container), None);
        let field = [SKIP, RENAME];
        assert_eq!(closest("skp", &field), Some(SKIP));
        assert_eq!(closest("renam", &field), Some(RENAME));
        assert_eq!(closest("serialize", &field), None);
        let handler = [TOPIC, EVENT];
        assert_eq!(closest("evnt", &handler), Some(EVENT));
        assert_eq!(closest("events", &handler), Some(EVENT));
        assert_eq!(closest("topics", &handler), Some(TOPIC));
        assert_eq!(closest("name", &handler), None);
    }
}
