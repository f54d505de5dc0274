//! A request's path and query: secret route parameters and query values.

use super::bounds::{bound_into, cut_point};
use super::names::SecretNames;
use super::{REDACTED, TRUNCATED};

/// Appends the query string to `out`, with the value of every secret parameter replaced by
/// [`REDACTED`], bounded to `max` bytes. Parameter names and the other values are kept as
/// received. Written into the caller's buffer: the layer reuses one per request.
///
/// Pairs are separated by `&` and also by `;`, which some servers and proxies still read as
/// one (HTML 4's recommendation): `a=1;password=x` keeps no password, whichever way the
/// application reads it.
pub(crate) fn redact_query_into(out: &mut String, query: &str, names: &SecretNames, max: usize) {
    let start = out.len();
    out.reserve(query.len().min(max + 16));
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if names.is_secret(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            // A bare `name` has no value to hide.
            _ => out.push_str(pair),
        }
        if end == rest.len() || out.len() - start > max {
            break;
        }
        // The separator as received.
        out.push_str(&rest[end..=end]);
        rest = &rest[end + 1..];
    }
    if out.len() - start > max {
        let end = start + cut_point(&out[start..], max);
        out.truncate(end);
        out.push_str(TRUNCATED);
    }
}

/// Whether [`redact_query_into`] would write `query` as it is: it fits `max` and no
/// parameter has a secret name.
pub(crate) fn query_is_clean(query: &str, names: &SecretNames, max: usize) -> bool {
    query.len() <= max
        && query.split(['&', ';']).all(|pair| {
            pair.split_once('=')
                .is_none_or(|(name, _)| !names.is_secret(name))
        })
}

/// Appends the request's `path` to `out`, bounded to `max` bytes, with each segment that
/// the matched `route` gives a secret name (`/password-reset/{token}`) replaced by
/// [`REDACTED`]; a secret catch-all (`{*secret}`) takes the rest of the path with it.
///
/// The route says which segment is which. Where the path does not line up with it (a
/// middleware rewrote the URI after the router matched it), the route itself is written,
/// with its secret parameters redacted and the others left as `{name}`: some context is
/// lost, no secret is written. Lining the two up some other way (a stripped prefix) could
/// be ambiguous with a catch-all, and ambiguity could put a secret under a name that is
/// not one.
#[inline]
pub(crate) fn path_into(
    out: &mut String,
    path: &str,
    route: Option<&str>,
    names: &SecretNames,
    max: usize,
) {
    // Most routes have no parameter at all (a byte loop over a short route is cheaper than
    // a `str` searcher's setup), and most parameters are not secrets: the path is then
    // copied as it is.
    match route {
        Some(route) if route.bytes().any(|b| b == b'{') => {
            redacted_path_into(out, path, route, names, max);
        }
        _ => bound_into(out, path, max),
    }
}

/// Whether `path` is recorded as it is: it fits `max`, and the route names no secret
/// parameter or is the path itself (what a partial capture records: no client text).
pub(crate) fn path_is_clean(
    path: &str,
    route: Option<&str>,
    names: &SecretNames,
    max: usize,
) -> bool {
    path.len() <= max
        && route.is_none_or(|route| {
            !route.bytes().any(|b| b == b'{')
                || route == path
                || !has_secret_parameter(route, names)
        })
}

/// Whether a route has a parameter with a secret name.
fn has_secret_parameter(route: &str, names: &SecretNames) -> bool {
    parameters(route).any(|name| names.is_secret(name.strip_prefix('*').unwrap_or(name)))
}

/// [`path_into`] for a route with parameters.
fn redacted_path_into(out: &mut String, path: &str, route: &str, names: &SecretNames, max: usize) {
    // Most routes with parameters have no secret one (`/users/{id}`): one pass over the
    // route's bytes says so, and the path is copied as it is.
    if !has_secret_parameter(route, names) {
        bound_into(out, path, max);
        return;
    }
    let start = out.len();
    let path_segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let route_segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    if lines_up(&route_segments, &path_segments) {
        for (i, segment) in path_segments.iter().enumerate() {
            out.push('/');
            // Past a catch-all, path segments have no route segment of their own: they
            // are its, and were redacted with it or are kept.
            let pattern = route_segments.get(i).copied().unwrap_or("");
            match secret_parameter(pattern, names) {
                Some(Parameter::CatchAll) => {
                    out.push_str(REDACTED);
                    break;
                }
                Some(Parameter::Segment) => out.push_str(REDACTED),
                None => out.push_str(segment),
            }
            // Past the bound nothing more is kept, so nothing more is needed.
            if out.len() - start > max {
                break;
            }
        }
    } else {
        for segment in &route_segments {
            out.push('/');
            match secret_parameter(segment, names) {
                Some(_) => out.push_str(REDACTED),
                None => out.push_str(segment),
            }
        }
    }
    if out.len() - start > max {
        let end = start + cut_point(&out[start..], max);
        out.truncate(end);
        out.push_str(TRUNCATED);
    }
}

/// How a secret route parameter takes its part of the path.
#[derive(Debug, PartialEq, Eq)]
enum Parameter {
    /// `{name}`, or a segment holding one (`{name}.json`): that one segment.
    Segment,
    /// `{*name}`: every segment from here on.
    CatchAll,
}

/// The kind of `segment` of a route when it holds a parameter with a secret name.
fn secret_parameter(segment: &str, names: &SecretNames) -> Option<Parameter> {
    // A router takes one parameter per segment (axum's does); every one is checked all the
    // same, so that a router allowing two cannot hide a secret behind a first harmless one.
    parameters(segment).find_map(|name| match name.strip_prefix('*') {
        Some(name) if names.is_secret(name) => Some(Parameter::CatchAll),
        None if names.is_secret(name) => Some(Parameter::Segment),
        _ => None,
    })
}

/// The names of the parameters in one route segment (`{name}`, `{*name}`), with `{{` and
/// `}}` read as the literal braces they stand for, as axum's router reads them.
///
/// Given a whole route, it yields the parameters of every segment. It walks bytes: routes
/// are short, and a `str` searcher's setup costs more than the walk.
fn parameters(segment: &str) -> impl Iterator<Item = &str> {
    let bytes = segment.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            match bytes[at] {
                // An escaped brace: literal text.
                brace @ (b'{' | b'}') if bytes.get(at + 1) == Some(&brace) => at += 2,
                b'{' => {
                    let start = at + 1;
                    // An unclosed brace ends with its segment.
                    let end = bytes[start..]
                        .iter()
                        .position(|&b| b == b'}' || b == b'/')
                        .map_or(bytes.len(), |len| start + len);
                    at = end + 1;
                    return Some(&segment[start..end]);
                }
                // A stray closing brace, which no router accepts, or literal text.
                _ => at += 1,
            }
        }
        None
    })
}

/// Whether `segment` is what the literal route `pattern` (which holds no parameter)
/// matches: the same text, once `{{` and `}}` are read as single braces.
fn literal_matches(pattern: &str, segment: &str) -> bool {
    if !pattern.contains(['{', '}']) {
        return pattern == segment;
    }
    pattern.replace("{{", "{").replace("}}", "}") == segment
}

/// Whether `path` is what `route` matches, segment by segment: every literal the same,
/// one segment for each parameter, and at least one for a catch-all.
fn lines_up(route: &[&str], path: &[&str]) -> bool {
    for (i, pattern) in route.iter().enumerate() {
        let (mut parameter, mut catch_all) = (false, false);
        for name in parameters(pattern) {
            parameter = true;
            catch_all |= name.starts_with('*');
        }
        if catch_all {
            return path.len() > i;
        }
        let Some(segment) = path.get(i) else {
            return false;
        };
        if !parameter && !literal_matches(pattern, segment) {
            return false;
        }
    }
    path.len() == route.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::bound;

    fn redact_query(query: &str, names: &SecretNames, max: usize) -> String {
        let mut out = String::new();
        redact_query_into(&mut out, query, names, max);
        out
    }

    #[test]
    fn the_query_is_appended_and_bounded_on_its_own() {
        let names = SecretNames::default();
        let mut out = "kept:".to_owned();
        redact_query_into(&mut out, "a=1&token=x", &names, 2048);
        assert_eq!(out, "kept:a=1&token=[REDACTED]");
        let mut out = "kept:".to_owned();
        redact_query_into(&mut out, &format!("a={}", "é".repeat(3000)), &names, 2048);
        assert!(out.starts_with("kept:a=éé"));
        assert!(out.ends_with(TRUNCATED));
        assert!(out.len() - "kept:".len() <= 2048);

        let mut out = "kept:".to_owned();
        bound_into(&mut out, &"é".repeat(100), 51);
        assert_eq!(&out["kept:".len()..], bound(&"é".repeat(100), 51));
    }

    #[test]
    fn query_values_are_redacted_names_kept() {
        let names = SecretNames::default();
        assert_eq!(
            redact_query("page=2&token=abc&Password=x%20y&flag&q=a=b", &names, 2048),
            "page=2&token=[REDACTED]&Password=[REDACTED]&flag&q=a=b"
        );
        assert_eq!(redact_query("", &names, 2048), "");
        assert_eq!(
            redact_query("a=1;password=x&b=2;;token=y;", &names, 2048),
            "a=1;password=[REDACTED]&b=2;;token=[REDACTED];"
        );
        assert_eq!(redact_query("&&a", &names, 2048), "&&a");
    }

    #[test]
    fn long_query_is_bounded_with_marker() {
        let names = SecretNames::default();
        let query = format!("a={}", "x".repeat(5000));
        let out = redact_query(&query, &names, 2048);
        assert_eq!(out.len(), 2048);
        assert!(out.ends_with(TRUNCATED));
    }

    fn recorded_path(path: &str, route: Option<&str>, max: usize) -> String {
        let mut out = String::from("kept:");
        path_into(&mut out, path, route, &SecretNames::default(), max);
        // What was there before is left alone.
        out.strip_prefix("kept:").unwrap().to_owned()
    }

    #[test]
    fn path_segments_that_secret_route_parameters_name_are_redacted() {
        let cases = [
            // (path, route, recorded)
            ("/users/7", Some("/users/{id}"), "/users/7"),
            ("/reset/abc", None, "/reset/abc"),
            ("/reset/abc", Some("/reset/{token}"), "/reset/[REDACTED]"),
            (
                "/users/7/reset/abc/",
                Some("/users/{id}/reset/{resetToken}/"),
                "/users/7/reset/[REDACTED]/",
            ),
            (
                "/hooks/abc.json",
                Some("/hooks/{secret}.json"),
                "/hooks/[REDACTED]",
            ),
            (
                "/files/a/b/c",
                Some("/files/{*secret_path}"),
                "/files/[REDACTED]",
            ),
            ("/files/a/b", Some("/files/{*rest}"), "/files/a/b"),
            // A secret parameter, then a catch-all that is not: the rest is kept.
            (
                "/x/abc/d/e/f",
                Some("/x/{token}/{*rest}"),
                "/x/[REDACTED]/d/e/f",
            ),
            // Nothing lines up (a path rewritten after the match): the route, its secret
            // parameters redacted.
            (
                "/invites/abc",
                Some("/api/invites/{invite_token}"),
                "/api/invites/[REDACTED]",
            ),
            (
                "/dl/x/y",
                Some("/api/dl/{*signature}"),
                "/api/dl/[REDACTED]",
            ),
            (
                "/a/b/c",
                Some("/reset/{token}/{id}"),
                "/reset/[REDACTED]/{id}",
            ),
            // `{{` and `}}` are literal braces, as axum's router reads them: a literal
            // `{token}` is no parameter, and a parameter after escaped braces is one.
            ("/docs/{token}", Some("/docs/{{token}}"), "/docs/{token}"),
            ("/k/{a}xyz", Some("/k/{{a}}{token}"), "/k/[REDACTED]"),
            ("/k/}xyz", Some("/k/}}{key}"), "/k/[REDACTED]"),
            (
                "/k/{x}/{*rest}/a",
                Some("/k/{{x}}/{{*rest}}/{secret}"),
                "/k/{x}/{*rest}/[REDACTED]",
            ),
            // A literal that does not match: nothing lines up.
            (
                "/docs/token/abc",
                Some("/docs/{{token}}/{token}"),
                "/docs/{{token}}/[REDACTED]",
            ),
        ];
        for (path, route, recorded) in cases {
            assert_eq!(
                recorded_path(path, route, 2048),
                recorded,
                "{path} {route:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever the route and the path (the layer may see any pair, a rewritten URI
        /// included), recording the path neither panics nor exceeds its bound.
        #[test]
        fn any_path_and_route_are_recorded_within_bounds(
            route in r"(/([a-z]{1,3}|\{[a-z]{1,3}\}|\{token\}|\{\*[a-z]{1,5}\}|\{\{)){0,6}/?",
            path in r"(/[a-zA-Z0-9{}*]{0,4}){0,8}/?",
            max in 0usize..64,
        ) {
            let recorded = recorded_path(&path, Some(&route), max);
            proptest::prop_assert!(recorded.len() <= max.max(TRUNCATED.len()));
        }


        /// A path that a route matched keeps none of the text of its secret parameters,
        /// catch-alls included, and all of the rest.
        #[test]
        fn a_matched_path_keeps_no_secret_parameter(
            segments in proptest::collection::vec((0u8..5, "[a-z]{1,3}"), 0..6),
            catch_all in proptest::option::of(
                (proptest::bool::ANY, proptest::collection::vec("[a-z]{1,3}", 1..4)),
            ),
        ) {
            let (mut route, mut path, mut kept) = (String::new(), String::new(), String::new());
            for (i, (kind, text)) in segments.iter().enumerate() {
                let (pattern, value, shown) = match kind {
                    0 => (text.clone(), text.clone(), text.clone()),
                    1 => (format!("{{id{i}}}"), text.clone(), text.clone()),
                    // Escaped braces: a literal `{token}` is kept, and a parameter after
                    // them is one.
                    2 => (format!("{{{{token{text}}}}}"), format!("{{token{text}}}"), format!("{{token{text}}}")),
                    3 => (format!("{text}{{{{{{token{i}}}"), format!("{text}{{SECRET"), REDACTED.to_owned()),
                    _ => (format!("{{token{i}}}"), format!("SECRET{text}"), REDACTED.to_owned()),
                };
                route += &format!("/{pattern}");
                path += &format!("/{value}");
                kept += &format!("/{shown}");
            }
            if let Some((secret, rest)) = &catch_all {
                if *secret {
                    route += "/{*signature}";
                    path += &rest.iter().map(|s| format!("/SECRET{s}")).collect::<String>();
                    kept += &format!("/{REDACTED}");
                } else {
                    route += "/{*rest}";
                    let rest: String = rest.iter().map(|s| format!("/{s}")).collect();
                    path += &rest;
                    kept += &rest;
                }
            }
            let recorded = recorded_path(&path, Some(&route), 2048);
            proptest::prop_assert!(!recorded.contains("SECRET"), "{} from {} {}", recorded, path, route);
            if route.contains("token") || route.contains("signature") {
                proptest::prop_assert_eq!(recorded, kept);
            }
        }
    }

    #[test]
    fn route_parameters_are_read_as_axum_reads_them() {
        let names = |route| parameters(route).collect::<Vec<_>>();
        assert_eq!(names("/a/{{x}}/{id}/{*rest}"), ["id", "*rest"]);
        assert_eq!(names("/k/{{{token}}}}"), ["token"]);
        assert_eq!(names("/k/}}{key}.json"), ["key"]);
        assert_eq!(names("/a/{tok/b/{id}"), ["tok", "id"]);
        assert!(names("/plain/{{literal}}").is_empty());
    }

    #[test]
    fn a_redacted_path_is_bounded_like_any_other() {
        let long = format!("/reset/abc/{}", "x".repeat(100));
        let recorded = recorded_path(&long, Some("/reset/{token}/{rest}"), 40);
        assert_eq!(recorded, format!("/reset/[REDACTED]/xxxxxxxx{TRUNCATED}"));
        assert!(recorded.len() <= 40);
    }
}
