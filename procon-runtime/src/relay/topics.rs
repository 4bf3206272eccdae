//! Which topics the relay publishes to without a word: the ones the program declared (see
//! [`crate::outbox::declared`]). Pure: [`TopicCheck::check`] decides, the rounds log and act.

use std::collections::{BTreeSet, HashSet};

use crate::config::{RelayConfig, UndeclaredTopics};
use crate::event::ERROR_ENTITY;

/// What to do with one event's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Declared (or not checked): publish.
    Publish,
    /// Undeclared, first time seen: publish and warn.
    PublishAndWarn,
    /// Undeclared under `refuse`: do not publish.
    Refuse,
}

/// The declared topics and what was already warned about.
#[derive(Debug)]
pub(crate) struct TopicCheck {
    /// `None` when nothing is declared: nothing to check against.
    declared: Option<BTreeSet<String>>,
    mode: UndeclaredTopics,
    warned: HashSet<String>,
}

impl TopicCheck {
    /// The check for `config`, with `declared` the program's declarations; the keys of
    /// `relay.topics` and the realtime topic count as declared too.
    pub(crate) fn new<'a>(
        config: &RelayConfig,
        declared: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut topics: BTreeSet<String> = declared.into_iter().map(str::to_owned).collect();
        topics.extend(config.topics.keys().cloned());
        let declared = (!topics.is_empty()).then(|| {
            topics.insert(config.realtime_topic.clone());
            topics
        });
        TopicCheck {
            declared,
            mode: config.undeclared_topics,
            warned: HashSet::new(),
        }
    }

    /// True when nothing is declared (every topic goes, whatever the mode).
    pub(crate) fn declares_nothing(&self) -> bool {
        self.declared.is_none()
    }

    /// The verdict for an event of `entity` on (logical) `topic`. Events procon writes for
    /// the consumer's failure policies (dead letters: no entity; error events) are not checked.
    pub(crate) fn check(&mut self, topic: &str, entity: &str) -> Verdict {
        let Some(declared) = &self.declared else {
            return Verdict::Publish;
        };
        if entity.is_empty() || entity == ERROR_ENTITY || declared.contains(topic) {
            return Verdict::Publish;
        }
        match self.mode {
            UndeclaredTopics::Refuse => Verdict::Refuse,
            UndeclaredTopics::Warn if self.warned.insert(topic.to_owned()) => {
                Verdict::PublishAndWarn
            }
            UndeclaredTopics::Warn => Verdict::Publish,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: UndeclaredTopics, mapped: &[&str]) -> RelayConfig {
        RelayConfig {
            undeclared_topics: mode,
            topics: mapped
                .iter()
                .map(|t| ((*t).to_owned(), format!("prod.{t}")))
                .collect(),
            ..RelayConfig::default()
        }
    }

    #[test]
    fn a_declared_or_mapped_topic_goes_an_undeclared_one_is_warned_about_once() {
        let mut check = TopicCheck::new(&config(UndeclaredTopics::Warn, &["orders"]), ["accounts"]);
        assert_eq!(check.check("accounts", "account"), Verdict::Publish);
        assert_eq!(check.check("orders", "order"), Verdict::Publish);
        assert_eq!(check.check("acounts", "account"), Verdict::PublishAndWarn);
        assert_eq!(check.check("acounts", "account"), Verdict::Publish);
        assert_eq!(check.check("procon-realtime", "account"), Verdict::Publish);
    }

    #[test]
    fn refuse_refuses_every_undeclared_event_but_not_failure_policy_events() {
        let mut check = TopicCheck::new(&config(UndeclaredTopics::Refuse, &[]), ["accounts"]);
        assert_eq!(check.check("acounts", "account"), Verdict::Refuse);
        assert_eq!(check.check("acounts", "account"), Verdict::Refuse);
        assert_eq!(check.check("accounts.dlq", ""), Verdict::Publish);
        assert_eq!(
            check.check("accounts.errors", ERROR_ENTITY),
            Verdict::Publish
        );
    }

    #[test]
    fn nothing_declared_means_nothing_checked() {
        let mut check = TopicCheck::new(&config(UndeclaredTopics::Refuse, &[]), []);
        assert!(check.declares_nothing());
        assert_eq!(check.check("anything", "account"), Verdict::Publish);
    }
}
