//! Subject naming strategies and compatibility levels, as Confluent's serializers name them.

use std::fmt;
use std::str::FromStr;

/// How the subject a schema is registered under is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `<topic>-value` (Confluent's `TopicNameStrategy`, the default): one schema lineage per
    /// topic.
    #[default]
    TopicName,
    /// `<record full name>` (`RecordNameStrategy`): one lineage per event type, across topics.
    RecordName,
    /// `<topic>-<record full name>` (`TopicRecordNameStrategy`).
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject of a value schema whose record is `record` (full name), on `topic`.
    pub fn subject(self, topic: &str, record: &str) -> String {
        match self {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => record.to_owned(),
            SubjectStrategy::TopicRecordName => format!("{topic}-{record}"),
        }
    }
}

impl FromStr for SubjectStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "topic" | "topicname" | "topicnamestrategy" => Ok(SubjectStrategy::TopicName),
            "record" | "recordname" | "recordnamestrategy" => Ok(SubjectStrategy::RecordName),
            "topicrecord" | "topicrecordname" | "topicrecordnamestrategy" => {
                Ok(SubjectStrategy::TopicRecordName)
            }
            _ => Err("expected `topic_name`, `record_name` or `topic_record_name`".to_owned()),
        }
    }
}

/// A registry compatibility level: which earlier versions a new schema must stay compatible
/// with, and in which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compatibility {
    /// Consumers on the new schema read data of the previous one (the default).
    #[default]
    Backward,
    /// Like `Backward`, against every earlier version.
    BackwardTransitive,
    /// Consumers on the previous schema read data of the new one.
    Forward,
    /// Like `Forward`, against every earlier version.
    ForwardTransitive,
    /// Both directions, against the previous version.
    Full,
    /// Both directions, against every earlier version.
    FullTransitive,
    /// No check.
    None,
}

impl Compatibility {
    /// The level's name in the registry's API (`BACKWARD`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }

    /// Whether the check covers every earlier version (else only the latest).
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }

    /// Whether readers of the new schema must read the old data.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether readers of the old schema must read the new data.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let level = match text.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "BACKWARD" => Compatibility::Backward,
            "BACKWARD_TRANSITIVE" => Compatibility::BackwardTransitive,
            "FORWARD" => Compatibility::Forward,
            "FORWARD_TRANSITIVE" => Compatibility::ForwardTransitive,
            "FULL" => Compatibility::Full,
            "FULL_TRANSITIVE" => Compatibility::FullTransitive,
            "NONE" => Compatibility::None,
            _ => {
                return Err("expected BACKWARD, BACKWARD_TRANSITIVE, FORWARD, \
                            FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE"
                    .to_owned())
            }
        };
        Ok(level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_strategy_names_subjects_like_confluents_serializers() {
        let record = "com.acme.AccountEvent";
        assert_eq!(
            SubjectStrategy::TopicName.subject("accounts", record),
            "accounts-value"
        );
        assert_eq!(
            SubjectStrategy::RecordName.subject("accounts", record),
            record
        );
        assert_eq!(
            SubjectStrategy::TopicRecordName.subject("accounts", record),
            "accounts-com.acme.AccountEvent"
        );
        assert_eq!(
            "TopicRecordNameStrategy".parse(),
            Ok(SubjectStrategy::TopicRecordName)
        );
        assert!("by_topic".parse::<SubjectStrategy>().is_err());
    }

    #[test]
    fn levels_parse_and_say_what_they_check() {
        let full: Compatibility = "full_transitive".parse().unwrap();
        assert!(full.checks_backward() && full.checks_forward() && full.is_transitive());
        let backward: Compatibility = "BACKWARD".parse().unwrap();
        assert!(backward.checks_backward() && !backward.checks_forward());
        assert!(!Compatibility::None.checks_backward());
        assert!("SIDEWAYS".parse::<Compatibility>().is_err());
    }
}
