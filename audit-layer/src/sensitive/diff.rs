//! `changes`: what differs between two snapshots, field by field.

use serde_json::Value;

use super::auditable::{AuditSnapshot, SnapshotField, SnapshotValue};
use crate::event::Change;

/// The changed fields from `before` to `after`, in field order; nested auditable fields as
/// dotted paths. With only one side (creation, deletion), every field is listed.
pub(crate) fn diff(before: Option<&AuditSnapshot>, after: Option<&AuditSnapshot>) -> Vec<Change> {
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
            if both && old.map(fingerprint) == new.map(fingerprint) {
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

fn fingerprint(value: &SnapshotValue) -> Option<u64> {
    match value {
        SnapshotValue::Plain { fingerprint, .. } | SnapshotValue::Redacted { fingerprint } => {
            Some(*fingerprint)
        }
        SnapshotValue::Nested(_) => None,
    }
}

fn visible(value: &SnapshotValue) -> Option<Value> {
    match value {
        SnapshotValue::Plain { json, .. } => Some(json.clone()),
        SnapshotValue::Nested(nested) => Some(nested.to_json()),
        SnapshotValue::Redacted { .. } => None,
    }
}
