//! Settings of the schema registry (Avro events, `procon schemas`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{invalid, parse, ConfigError};
use crate::avro::{Compatibility, SubjectStrategy};

/// Where the schema registry is and how procon uses it. Needed only by models declared
/// `#[procon(format = "avro")]` and by consumers of Avro events.
#[derive(Clone, PartialEq, Eq)]
pub struct SchemaRegistryConfig {
    /// The registry's URL, e.g. `http://registry:8081`, possibly with `user:password@` for
    /// basic authentication (the password is never shown). None: no registry.
    pub url: Option<String>,
    /// How subjects are named. Default: topic name (`<topic>-value`).
    pub subject_strategy: SubjectStrategy,
    /// The bound of every registry call. Default 5 s.
    pub timeout: Duration,
    /// Whether the relay registers a schema it finds unregistered (else it only looks it up,
    /// and an unregistered schema holds its events until `procon schemas register`). Default
    /// true.
    pub auto_register: bool,
    /// The level `procon schemas check` checks and `procon schemas register` sets on new
    /// subjects. Default `BACKWARD`.
    pub compatibility: Compatibility,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        SchemaRegistryConfig {
            url: None,
            subject_strategy: SubjectStrategy::default(),
            timeout: Duration::from_secs(5),
            auto_register: true,
            compatibility: Compatibility::default(),
        }
    }
}

impl SchemaRegistryConfig {
    /// Reads the `PROCON_SCHEMA_REGISTRY_*` variables of `vars` (see
    /// [`super::Config::from_vars`]); for tools that need only the registry.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let registry = from_vars(&super::collect_vars(vars))?;
        validate(&registry)?;
        Ok(registry)
    }
}

impl std::fmt::Debug for SchemaRegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistryConfig")
            .field("url", &self.url.as_deref().map(super::redact))
            .field("subject_strategy", &self.subject_strategy)
            .field("timeout", &self.timeout)
            .field("auto_register", &self.auto_register)
            .field("compatibility", &self.compatibility)
            .finish()
    }
}

/// Reads the `PROCON_SCHEMA_REGISTRY_*` variables.
pub(super) fn from_vars(
    vars: &BTreeMap<String, String>,
) -> Result<SchemaRegistryConfig, ConfigError> {
    let mut registry = SchemaRegistryConfig::default();
    if let Some(url) = vars
        .get("PROCON_SCHEMA_REGISTRY_URL")
        .filter(|v| !v.trim().is_empty())
    {
        registry.url = Some(url.trim().to_owned());
    }
    if let Some(v) = vars.get("PROCON_SCHEMA_REGISTRY_SUBJECT_STRATEGY") {
        registry.subject_strategy = parse("PROCON_SCHEMA_REGISTRY_SUBJECT_STRATEGY", v)?;
    }
    if let Some(v) = vars.get("PROCON_SCHEMA_REGISTRY_TIMEOUT_MS") {
        registry.timeout = Duration::from_millis(parse("PROCON_SCHEMA_REGISTRY_TIMEOUT_MS", v)?);
    }
    if let Some(v) = vars.get("PROCON_SCHEMA_REGISTRY_AUTO_REGISTER") {
        registry.auto_register = parse("PROCON_SCHEMA_REGISTRY_AUTO_REGISTER", v)?;
    }
    if let Some(v) = vars.get("PROCON_SCHEMA_REGISTRY_COMPATIBILITY") {
        registry.compatibility = parse("PROCON_SCHEMA_REGISTRY_COMPATIBILITY", v)?;
    }
    Ok(registry)
}

/// Checks the registry settings.
pub(super) fn validate(registry: &SchemaRegistryConfig) -> Result<(), ConfigError> {
    if let Some(url) = &registry.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "schema_registry.url",
                &super::redact(url),
                "expected an http:// or https:// URL",
            ));
        }
    }
    if registry.timeout.is_zero() {
        return Err(invalid(
            "schema_registry.timeout",
            "0",
            "must be more than zero",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use crate::avro::{Compatibility, SubjectStrategy};

    #[test]
    fn registry_settings_are_read_checked_and_their_password_never_shown() {
        let base = [
            ("PROCON_DATABASE_URL", "postgres://u@h/db"),
            ("PROCON_BROKERS", "k:9092"),
        ];
        let config = Config::from_vars(base.into_iter().chain([
            (
                "PROCON_SCHEMA_REGISTRY_URL",
                "https://svc:hunter2-secret@sr:8081",
            ),
            (
                "PROCON_SCHEMA_REGISTRY_SUBJECT_STRATEGY",
                "topic_record_name",
            ),
            ("PROCON_SCHEMA_REGISTRY_COMPATIBILITY", "full"),
            ("PROCON_SCHEMA_REGISTRY_TIMEOUT_MS", "1500"),
        ]))
        .unwrap();
        let registry = &config.schema_registry;
        assert_eq!(registry.subject_strategy, SubjectStrategy::TopicRecordName);
        assert_eq!(registry.compatibility, Compatibility::Full);
        assert_eq!(registry.timeout.as_millis(), 1500);
        assert!(config.validate().is_ok());
        assert!(!format!("{config:?}").contains("hunter2"));
        let error = Config::from_vars(
            base.into_iter()
                .chain([("PROCON_SCHEMA_REGISTRY_URL", "sr:8081")]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("schema_registry.url"), "{error}");
        let error = Config::from_vars(
            base.into_iter()
                .chain([("PROCON_SCHEMA_REGISTRY_COMPATIBILITY", "sideways")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("PROCON_SCHEMA_REGISTRY_COMPATIBILITY"),
            "{error}"
        );
    }
}
