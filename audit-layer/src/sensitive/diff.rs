//! `changes`: what differs between two snapshots, field by field.

use serde_json::Value;

use super::auditable::{AuditSnapshot, SnapshotField, SnapshotValue};
use crate::event::Change;
use crate::redact::bound_json;

/// What an event records of a change.
pub(crate) struct RecordedChange {
    pub(crate) before: Option<Value>,
    pub(crate) after: Option<Value>,
    pub(crate) changes: Vec<Change>,
}

/// Both states and the changes between them, as an event records them: compared whole,
/// then with their strings and keys bounded, as every value of an event is.
pub(crate) fn recorded_change(
    before: Option<AuditSnapshot>,
    after: Option<AuditSnapshot>,
) -> RecordedChange {
    let mut changes = diff(before.as_ref(), after.as_ref());
    for value in changes
        .iter_mut()
        .flat_map(|change| [&mut change.old, &mut change.new])
        .flatten()
    {
        bound_json(value, 0);
    }
    RecordedChange {
        before: before.map(recorded_state),
        after: after.map(recorded_state),
        changes,
    }
}

/// A snapshot as an event records it, bounded.
pub(crate) fn recorded_state(snapshot: AuditSnapshot) -> Value {
    let mut json = snapshot.into_json();
    bound_json(&mut json, 0);
    json
}

/// The changed fields from `before` to `after`, in field order; nested auditable fields as
/// dotted paths. With only one side (creation, deletion), every field is listed.
fn diff(before: Option<&AuditSnapshot>, after: Option<&AuditSnapshot>) -> Vec<Change> {
    let mut changes = Vec::new();
    diff_into(&mut changes, "", before, after);
    changes
}

fn diff_into(
    changes: &mut Vec<Change>,
    prefix: &str,
    before: Option<&AuditSnapshot>,
    after: Option<&AuditSnapshot>,
) {
    let empty = Vec::new();
    let old_fields = before.map_or(&empty, |s| &s.fields);
    let new_fields = after.map_or(&empty, |s| &s.fields);
    for old in old_fields {
        let new = new_fields.iter().find(|f| f.name == old.name);
        compare(
            changes,
            prefix,
            old,
            Some(&old.value),
            new.map(|f| &f.value),
        );
    }
    for new in new_fields {
        if !old_fields.iter().any(|f| f.name == new.name) {
            compare(changes, prefix, new, None, Some(&new.value));
        }
    }
}

fn compare(
    changes: &mut Vec<Change>,
    prefix: &str,
    field: &SnapshotField,
    old: Option<&SnapshotValue>,
    new: Option<&SnapshotValue>,
) {
    // Built only for a change or a nested field: most fields of a snapshot are unchanged.
    let path = |suffix: &str| [prefix, &field.name, suffix].concat();
    match (old, new) {
        (Some(SnapshotValue::Nested(a)), Some(SnapshotValue::Nested(b))) => {
            diff_into(changes, &path("."), Some(a), Some(b));
        }
        (Some(SnapshotValue::Nested(a)), None) => diff_into(changes, &path("."), Some(a), None),
        (None, Some(SnapshotValue::Nested(b))) => diff_into(changes, &path("."), None, Some(b)),
        (old, new) => {
            let both = old.is_some() && new.is_some();
            if let (Some(old), Some(new)) = (old, new)
                && unchanged(old, new)
            {
                return;
            }
            let old_json = old.and_then(visible);
            let new_json = new.and_then(visible);
            // A redacted field, or a secret inside a plain value that changed while what is
            // visible did not: say that it changed, never what to.
            if is_redacted(old) || is_redacted(new) || (both && old_json == new_json) {
                changes.push(Change::redacted(path("")));
            } else {
                changes.push(Change::value(path(""), old_json, new_json));
            }
        }
    }
}

fn is_redacted(value: Option<&SnapshotValue>) -> bool {
    matches!(value, Some(SnapshotValue::Redacted { .. }))
}

/// Whether the unredacted values are equal.
fn unchanged(old: &SnapshotValue, new: &SnapshotValue) -> bool {
    match (old, new) {
        // Scalars, as they are: compared without hashing either.
        (
            SnapshotValue::Plain {
                json: old,
                fingerprint: None,
            },
            SnapshotValue::Plain {
                json: new,
                fingerprint: None,
            },
        ) => old == new,
        _ => old.fingerprint() == new.fingerprint(),
    }
}

fn visible(value: &SnapshotValue) -> Option<Value> {
    match value {
        SnapshotValue::Plain { json, .. } => Some(json.clone()),
        SnapshotValue::Nested(nested) => Some(nested.to_json()),
        SnapshotValue::Redacted { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::diff;
    use crate::event::Change;
    use crate::sensitive::auditable::{AuditSnapshot, FieldRef, ViaSerialize};

    /// A snapshot as the derive builds one: `plain` fields by value, `hidden` ones marked
    /// redacted, then the default secret names applied.
    fn snapshot(
        plain: &[(&'static str, Value)],
        hidden: &[(&'static str, Value)],
    ) -> AuditSnapshot {
        let mut snapshot = AuditSnapshot::__new();
        for (name, value) in plain {
            snapshot.__field(name, FieldRef(value).__audit_value());
        }
        for (name, value) in hidden {
            snapshot.__redacted(name, value);
        }
        snapshot.__finish()
    }

    fn changes(before: &AuditSnapshot, after: &AuditSnapshot) -> Vec<Change> {
        diff(Some(before), Some(after))
    }

    /// Scalars are compared without fingerprints, containers and redacted fields with them:
    /// either way, an unchanged value gives no change, and a changed secret is named but
    /// never shown.
    #[test]
    fn each_kind_of_field_is_unchanged_or_changed_as_its_value_is() {
        let before = snapshot(
            &[
                ("role", json!("viewer")),
                ("count", json!(1)),
                ("password", json!("old-pass")),
                ("settings", json!({"theme": "dark", "token": "t-1"})),
            ],
            &[("hash", json!("h-1"))],
        );
        assert_eq!(changes(&before, &before.clone()), vec![]);

        let after = snapshot(
            &[
                ("role", json!("admin")),
                ("count", json!(1.0)),
                ("password", json!("new-pass")),
                ("settings", json!({"theme": "dark", "token": "t-2"})),
            ],
            &[("hash", json!("h-2"))],
        );
        assert_eq!(
            changes(&before, &after),
            vec![
                Change::value("role", Some(json!("viewer")), Some(json!("admin"))),
                Change::value("count", Some(json!(1)), Some(json!(1.0))),
                Change::redacted("password"),
                Change::redacted("settings"),
                Change::redacted("hash"),
            ]
        );
        // Unchanged secrets, changed neighbours: only the neighbours.
        let after = snapshot(
            &[
                ("role", json!("viewer")),
                ("count", json!(1)),
                ("password", json!("old-pass")),
                ("settings", json!({"theme": "light", "token": "t-1"})),
            ],
            &[("hash", json!("h-1"))],
        );
        let found = changes(&before, &after);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "settings");
        assert!(!found[0].redacted);
        assert_eq!(
            found[0].new,
            Some(json!({"theme": "light", "token": "[REDACTED]"}))
        );
    }

    /// A string whose URL credentials are redacted is compared as it was: unchanged gives
    /// no change, a password alone a redacted change, anything else a change that shows
    /// both values without the password.
    #[test]
    fn a_url_with_credentials_is_compared_as_it_was_and_shown_without_them() {
        let url = |value: &str| snapshot(&[("database_url", json!(value))], &[]);
        let before = url("postgres://app:one@db-1/app");
        assert_eq!(
            changes(&before, &url("postgres://app:one@db-1/app")),
            vec![]
        );
        assert_eq!(
            changes(&before, &url("postgres://app:two@db-1/app")),
            vec![Change::redacted("database_url")]
        );
        assert_eq!(
            changes(&before, &url("postgres://app:one@db-2/app")),
            vec![Change::value(
                "database_url",
                Some(json!("postgres://app:[REDACTED]@db-1/app")),
                Some(json!("postgres://app:[REDACTED]@db-2/app")),
            )]
        );
        // From no credentials to some: a change, shown without them.
        assert_eq!(
            changes(&url("postgres://db-1/app"), &before),
            vec![Change::value(
                "database_url",
                Some(json!("postgres://db-1/app")),
                Some(json!("postgres://app:[REDACTED]@db-1/app")),
            )]
        );
    }

    /// A field whose value changes kind (a scalar to an object) is a change.
    #[test]
    fn a_scalar_that_becomes_a_container_is_a_change() {
        let before = snapshot(&[("limit", json!(null))], &[]);
        let after = snapshot(&[("limit", json!({"max": 3}))], &[]);
        assert_eq!(
            changes(&before, &after),
            vec![Change::value(
                "limit",
                Some(json!(null)),
                Some(json!({"max": 3}))
            )]
        );
    }
}
