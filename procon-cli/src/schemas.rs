//! `procon schemas list|register|check`: the Avro schemas this program's models imply, as code.
//!
//! The models are the `#[procon(format = "avro")]` models linked into the binary that runs the
//! command: the generic `procon` binary has none, so a service runs these commands from its
//! own binary (`fn main() { procon_cli::main() }` in `src/bin/procon.rs`, beside its models).
//! Subjects are named as the relay names them (`PROCON_SCHEMA_REGISTRY_SUBJECT_STRATEGY`, the
//! physical topic of `--topic` / `PROCON_RELAY_TOPICS`). `check` decides locally, by Avro's
//! resolution rules at the configured level (BACKWARD by default), against the versions the
//! registry holds, so CI can refuse a breaking change before deploy whatever level the
//! registry's subjects carry; `register` is refused by the registry itself (409) on a
//! breaking change.

use std::collections::BTreeMap;

use procon::avro::{incompatibilities, registered_models, AvroModel, RegistryClient};
use procon::SchemaRegistryConfig;
use serde::Serialize;

use crate::args::SchemasAction;
use crate::output::print_json;
use crate::BoxError;

/// One model's schema, as the commands show it.
#[derive(Serialize)]
struct Listed {
    entity: &'static str,
    topic: String,
    subject: String,
    record: String,
    fingerprint: String,
    /// The id the registry gives it (`list`, `register`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
    /// Why it may not be registered (`check`, `register`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
    schema: serde_json::Value,
}

/// Runs `procon schemas <action>`.
pub(crate) fn run(
    json: bool,
    registry_url: Option<String>,
    topics: Vec<String>,
    action: SchemasAction,
) -> Result<(), BoxError> {
    let mut config = SchemaRegistryConfig::from_vars(std::env::vars())?;
    if registry_url.is_some() {
        config.url = registry_url;
    }
    let physical = topic_map(&topics)?;
    let mut listed = Vec::new();
    for registration in registered_models() {
        let model: &AvroModel = (registration.model)()
            .ok_or("a model registered as Avro returned no Avro schema")??;
        let topic = physical
            .get(registration.topic)
            .cloned()
            .unwrap_or_else(|| registration.topic.to_owned());
        listed.push(Listed {
            entity: registration.entity,
            subject: config.subject_strategy.subject(&topic, &model.full_name),
            topic,
            record: model.full_name.clone(),
            fingerprint: model.fingerprint.clone(),
            id: None,
            problems: Vec::new(),
            schema: serde_json::from_str(&model.text)?,
        });
    }
    if listed.is_empty() {
        eprintln!(
            "procon: this program has no `#[procon(format = \"avro\")]` model; run `schemas` from \
             your service's own binary (`fn main() {{ procon_cli::main() }}` beside the models)"
        );
    }
    let client = || -> Result<RegistryClient, BoxError> {
        let url = config
            .url
            .as_deref()
            .ok_or("no schema registry given: set PROCON_SCHEMA_REGISTRY_URL or --registry")?;
        Ok(RegistryClient::new(url, config.timeout))
    };
    let failed = match action {
        SchemasAction::List => {
            if config.url.is_some() {
                let client = client()?;
                for entry in &mut listed {
                    entry.id = client.lookup(&entry.subject, &entry.schema.to_string())?;
                }
            }
            false
        }
        SchemasAction::Check => {
            let client = client()?;
            for entry in &mut listed {
                let new = procon::avro::apache_avro::Schema::parse_str(&entry.schema.to_string())?;
                let earlier = client
                    .versions(&entry.subject)?
                    .into_iter()
                    .map(|v| procon::avro::apache_avro::Schema::parse_str(&v.schema))
                    .collect::<Result<Vec<_>, _>>()?;
                entry.problems = incompatibilities(config.compatibility, &new, &earlier);
            }
            listed.iter().any(|e| !e.problems.is_empty())
        }
        SchemasAction::Register => {
            let client = client()?;
            for entry in &mut listed {
                let text = entry.schema.to_string();
                if client.latest(&entry.subject)?.is_none() {
                    client.set_compatibility(&entry.subject, config.compatibility)?;
                }
                match client.register(&entry.subject, &text) {
                    Ok(id) => entry.id = Some(id),
                    Err(error) if error.is_outage() => return Err(error.into()),
                    Err(error) => entry.problems.push(error.to_string()),
                }
            }
            listed.iter().any(|e| !e.problems.is_empty())
        }
    };
    if json {
        print_json(&listed)?;
    } else {
        for entry in &listed {
            let id = entry.id.map_or_else(|| "-".to_owned(), |id| id.to_string());
            let verdict = if entry.problems.is_empty() {
                "ok"
            } else {
                "INCOMPATIBLE"
            };
            println!(
                "{:<20} {:<30} {:<40} id {:<6} {verdict}",
                entry.entity, entry.subject, entry.record, id
            );
            for problem in &entry.problems {
                println!("    {problem}");
            }
        }
    }
    if failed {
        return Err(format!(
            "a schema breaks its subject's compatibility ({}); nothing of it was registered",
            config.compatibility
        )
        .into());
    }
    Ok(())
}

/// `TOPIC=PHYSICAL` pairs.
fn topic_map(pairs: &[String]) -> Result<BTreeMap<String, String>, BoxError> {
    pairs
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((topic, physical)) => Ok((topic.trim().to_owned(), physical.trim().to_owned())),
            None => Err(format!("`{pair}`: expected TOPIC=PHYSICAL").into()),
        })
        .collect()
}
