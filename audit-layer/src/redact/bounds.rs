//! Bounds: every recorded string, key and nesting is cut to a size, with a marker.

use super::TRUNCATED;

/// Upper bounds, in bytes, of recorded strings.
pub(crate) mod limits {
    /// A request id: the longest a client's `x-request-id` may be to be kept.
    pub(crate) const REQUEST_ID: usize = 128;
    pub(crate) const PATH: usize = 2048;
    pub(crate) const ROUTE: usize = 2048;
    pub(crate) const QUERY: usize = 2048;
    pub(crate) const USER_AGENT: usize = 512;
    pub(crate) const HEADER_VALUE: usize = 512;
    pub(crate) const FORWARDED_ENTRY: usize = 64;
    pub(crate) const FORWARDED_ENTRIES: usize = 32;
    pub(crate) const ACTION: usize = 128;
    pub(crate) const TARGET: usize = 256;
    pub(crate) const REASON: usize = 1024;
    pub(crate) const ACTOR_FIELD: usize = 256;
    pub(crate) const ACTOR_ROLES: usize = 32;
    pub(crate) const LABEL_KEY: usize = 64;
    pub(crate) const LABEL_VALUE: usize = 256;
    pub(crate) const LABELS: usize = 64;
    pub(crate) const DETAIL_STRING: usize = 4096;
    /// An object key inside `details`, `before`, `after` or a change's values.
    pub(crate) const DETAIL_KEY: usize = 256;
    /// A recorded header's name, in an event built by application code.
    pub(crate) const HEADER_NAME: usize = 128;
    /// A change's field path (`address.city`), in an event built by application code.
    pub(crate) const CHANGE_FIELD: usize = 1024;
    pub(crate) const DETAIL_DEPTH: usize = 16;
}

/// when cut.
pub(crate) fn bound(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    cut(text, max)
}

/// Like [`bound`], appending to `out` instead of allocating.
pub(crate) fn bound_into(out: &mut String, text: &str, max: usize) {
    if text.len() <= max {
        out.push_str(text);
    } else {
        push_cut(out, text, max);
    }
}

/// Like [`bound`], reusing the allocation when nothing is cut.
pub(crate) fn bound_string(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    cut(&text, max)
}

pub(super) fn cut(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(max.min(text.len()) + TRUNCATED.len());
    push_cut(&mut out, text, max);
    out
}

/// Appends `text` cut to fit `max` bytes with [`TRUNCATED`] after it.
pub(super) fn push_cut(out: &mut String, text: &str, max: usize) {
    out.push_str(&text[..cut_point(text, max)]);
    out.push_str(TRUNCATED);
}

/// Where to cut `text` so that it and [`TRUNCATED`] fit in `max` bytes: a character
/// boundary.
pub(super) fn cut_point(text: &str, max: usize) -> usize {
    let mut end = max.saturating_sub(TRUNCATED.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Bounds every string of a JSON value in place, object keys included, and cuts nesting
/// deeper than the limit.
pub(crate) fn bound_json(value: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    match value {
        Value::String(s) if s.len() > limits::DETAIL_STRING => {
            *s = cut(s, limits::DETAIL_STRING);
        }
        Value::Array(_) | Value::Object(_) if depth >= limits::DETAIL_DEPTH => {
            *value = Value::String(TRUNCATED.to_owned());
        }
        Value::Array(items) => items.iter_mut().for_each(|v| bound_json(v, depth + 1)),
        Value::Object(map) => {
            // One pass over the entries; the keys are rebuilt only when one is too long.
            let mut long_key = false;
            for (key, value) in map.iter_mut() {
                long_key |= key.len() > limits::DETAIL_KEY;
                bound_json(value, depth + 1);
            }
            if long_key {
                bound_keys(map, limits::DETAIL_KEY);
            }
        }
        _ => {}
    }
}

/// Cuts the keys longer than `max`. A cut key that meets another gets a number after it
/// (`...[truncated]#2`), so that no value is lost to the cut.
pub(super) fn bound_keys<M, V>(map: &mut M, max: usize)
where
    M: Default + IntoIterator<Item = (String, V)> + Extend<(String, V)>,
    for<'a> &'a M: IntoIterator<Item = (&'a String, &'a V)>,
{
    // Nearly every map has only short keys: nothing to rebuild.
    if !(&*map).into_iter().any(|(key, _)| key.len() > max) {
        return;
    }
    let (long, short): (Vec<_>, Vec<_>) = std::mem::take(map)
        .into_iter()
        .partition(|(key, _)| key.len() > max);
    let mut taken: std::collections::BTreeSet<String> =
        short.iter().map(|(key, _)| key.clone()).collect();
    map.extend(short);
    for (key, value) in long {
        let cut_key = cut(&key, max);
        let mut unique = cut_key.clone();
        let mut n = 2;
        while taken.contains(&unique) {
            unique = format!("{cut_key}#{n}");
            n += 1;
        }
        taken.insert(unique.clone());
        map.extend([(unique, value)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_cuts_at_char_boundary() {
        let text = "é".repeat(100);
        let out = bound(&text, 51);
        assert!(out.len() <= 51);
        assert!(out.ends_with(TRUNCATED));
        assert_eq!(bound("short", 51), "short");
    }
}
