//! The viewer's filters, read from and written to the query string, so that a view is a
//! URL to share.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::file::{Filter, parse_ip, parse_time};

/// The filter fields, in the order the form shows them: (name, label).
pub(super) const FIELDS: [(&str, &str); 10] = [
    ("actor", "Actor (id or name)"),
    ("action", "Action (user.* for a prefix)"),
    ("outcome", "Outcome"),
    ("category", "Category"),
    ("target", "Target (user:* for a prefix)"),
    ("ip", "Source IP or network"),
    ("request_id", "Request id"),
    ("since", "From (RFC 3339 or a day)"),
    ("until", "Until"),
    ("text", "Words"),
];

/// A query string's pairs, decoded (`+` as a space).
pub(super) fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_decode_str(&text.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// The filter the pairs describe (empty values ignored), or what is wrong with one.
pub(super) fn filter(pairs: &[(String, String)]) -> Result<Filter, String> {
    let mut filter = Filter::default();
    for (name, value) in pairs {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let text = Some(value.to_owned());
        match name.as_str() {
            "actor" => filter.actor = text,
            "action" => filter.action = text,
            "outcome" => filter.outcome = text,
            "category" => filter.category = text,
            "target" => filter.target = text,
            "request_id" => filter.request_id = text,
            "text" => filter.text = text,
            "ip" => filter.ip = Some(parse_ip(value)?),
            "since" => filter.since = Some(parse_time(value).map_err(|e| format!("From: {e}"))?),
            "until" => filter.until = Some(parse_time(value).map_err(|e| format!("Until: {e}"))?),
            _ => {}
        }
    }
    Ok(filter)
}

/// The pairs of the filter fields as a query string, with `extra` pairs after them.
pub(super) fn query_string(pairs: &[(String, String)], extra: &[(&str, String)]) -> String {
    pairs
        .iter()
        .filter(|(name, value)| FIELDS.iter().any(|(field, _)| field == name) && !value.is_empty())
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .chain(extra.iter().map(|(name, value)| (*name, value.as_str())))
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `text` percent-encoded, for a path segment or a query value.
pub(super) fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// The value of `name` among the pairs, if given.
pub(super) fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_survives_the_round_trip_through_a_url() {
        let pairs = pairs(Some(
            "actor=Zo%C3%AB+B&action=user.*&ip=10.0.0.0%2F8&before=90&x=1",
        ));
        let filter = filter(&pairs).expect("valid");
        assert_eq!(filter.actor.as_deref(), Some("Zoë B"));
        assert_eq!(filter.action.as_deref(), Some("user.*"));
        assert!(filter.ip.is_some());
        let query = query_string(&pairs, &[("before", "12".to_owned())]);
        assert_eq!(
            query,
            "actor=Zo%C3%AB%20B&action=user%2E%2A&ip=10%2E0%2E0%2E0%2F8&before=12"
        );
        assert_eq!(super::pairs(Some(&query))[0].1, "Zoë B");
        let err = super::filter(&super::pairs(Some("ip=nope"))).expect_err("bad ip");
        assert!(err.contains("nope"), "{err}");
    }
}
