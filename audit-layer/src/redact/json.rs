//! Structured values: secret-named fields at any depth, and free text in every string.

use super::REDACTED;
use super::bounds::limits;
use super::names::SecretNames;
use super::text::{recorded_text, scan_free_text};

/// Every string of `value` as [`recorded_text`] records free text.
pub(super) fn redact_strings(value: &mut serde_json::Value, names: &SecretNames) {
    for_each_string(value, 0, &mut |text| {
        *text = recorded_text(std::mem::take(text), names, limits::DETAIL_STRING);
    });
}

/// Calls `f` on every string of `value`, down to the depth that [`bound_json`] keeps (what
/// is deeper is cut whole, so scanning it would be wasted).
pub(super) fn for_each_string(
    value: &mut serde_json::Value,
    depth: usize,
    f: &mut impl FnMut(&mut String),
) {
    use serde_json::Value;
    match value {
        Value::String(text) => f(text),
        _ if depth >= limits::DETAIL_DEPTH => {}
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| for_each_string(item, depth + 1, f)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|field| for_each_string(field, depth + 1, f)),
        _ => {}
    }
}

/// Redacts, in place, the value of every object field whose name is a secret name, at any
/// depth.
pub(crate) fn redact_json(value: &mut serde_json::Value, names: &SecretNames) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if names.is_secret(key) {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    redact_json(field, names);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json(v, names)),
        _ => {}
    }
}

/// Takes the shapes of a secret out of every string of `value`, in place
/// ([`scan_free_text`]): a configuration value can hold `api_key=...` or a URL's
/// credentials under a name that is no secret's.
pub(crate) fn scan_strings_in(value: &mut serde_json::Value, names: &SecretNames) {
    for_each_string(value, 0, &mut |text| {
        if let Some(redacted) = scan_free_text(text, names) {
            *text = redacted;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_redaction_is_recursive() {
        let mut value = serde_json::json!({
            "name": "bob",
            "password": "hunter2",
            "nested": {"apiKey": "k", "list": [{"token": "t", "ok": 1}]}
        });
        redact_json(&mut value, &SecretNames::default());
        assert_eq!(
            value,
            serde_json::json!({
                "name": "bob",
                "password": REDACTED,
                "nested": {"apiKey": REDACTED, "list": [{"token": REDACTED, "ok": 1}]}
            })
        );
    }
}
