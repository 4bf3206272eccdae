//! Whether a new schema may follow a subject's earlier ones at a compatibility level, by
//! Avro's schema resolution rules (what `procon schemas check` decides before a deploy).

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use super::Compatibility;

/// Why `new` may not follow `earlier` (oldest first) at `level`; empty when it may. A
/// non-transitive level compares with the latest version only.
pub fn incompatibilities(level: Compatibility, new: &Schema, earlier: &[Schema]) -> Vec<String> {
    let against: &[Schema] = if level.is_transitive() {
        earlier
    } else {
        earlier.last().map(std::slice::from_ref).unwrap_or_default()
    };
    let newest = earlier.len();
    let mut reasons = Vec::new();
    for (offset, old) in against.iter().enumerate() {
        let version = newest - against.len() + offset + 1;
        if level.checks_backward() {
            if let Err(e) = SchemaCompatibility::can_read(old, new) {
                reasons.push(format!(
                    "{level}: the new schema cannot read version {version}: {e}"
                ));
            }
        }
        if level.checks_forward() {
            if let Err(e) = SchemaCompatibility::can_read(new, old) {
                reasons.push(format!(
                    "{level}: version {version} cannot read the new schema: {e}"
                ));
            }
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"Account","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_field_added_with_a_default_is_backward_and_forward_compatible() {
        let v1 = record(r#"{"name":"id","type":"long"}"#);
        let v2 = record(
            r#"{"name":"id","type":"long"},{"name":"tier","type":["null","string"],"default":null}"#,
        );
        assert!(incompatibilities(Compatibility::Full, &v2, &[v1]).is_empty());
    }

    #[test]
    fn a_changed_type_or_a_field_added_without_default_is_refused() {
        let v1 = record(r#"{"name":"id","type":"long"}"#);
        let retyped = record(r#"{"name":"id","type":"string"}"#);
        assert_eq!(
            incompatibilities(Compatibility::Backward, &retyped, std::slice::from_ref(&v1)).len(),
            1
        );
        let required = record(r#"{"name":"id","type":"long"},{"name":"tier","type":"string"}"#);
        let reasons = incompatibilities(
            Compatibility::Backward,
            &required,
            std::slice::from_ref(&v1),
        );
        assert!(reasons[0].contains("version 1"), "{reasons:?}");
        // FORWARD only asks old readers to read new data: they ignore the added field.
        assert!(incompatibilities(Compatibility::Forward, &required, &[v1]).is_empty());
        assert!(incompatibilities(Compatibility::None, &retyped, &[]).is_empty());
    }

    #[test]
    fn transitive_levels_compare_with_every_version() {
        let v1 = record(r#"{"name":"id","type":"long"}"#);
        let v2 =
            record(r#"{"name":"id","type":"long"},{"name":"tier","type":"string","default":"a"}"#);
        // v3 drops the default: it cannot read v1's data (no `tier`) but can read v2's.
        let v3 = record(r#"{"name":"id","type":"long"},{"name":"tier","type":"string"}"#);
        let earlier = [v1, v2];
        assert!(incompatibilities(Compatibility::Backward, &v3, &earlier).is_empty());
        assert_eq!(
            incompatibilities(Compatibility::BackwardTransitive, &v3, &earlier).len(),
            1
        );
    }
}
