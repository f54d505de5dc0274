//! The JSON encoding of an [`AuditEvent`]: byte for byte what `serde_json` writes for it,
//! with less work per event.
//!
//! Every sink serializes every event, on the writer thread, so this is on the hot path of the
//! whole trail. `serde_json` escapes each field name and each string through a byte-by-byte
//! loop and a call per fragment; here field names are constants, and a string that needs no
//! escaping (nearly all of them: ids, paths, routes, actions) is copied whole. Strings that
//! do need escaping, and the free-form parts (details, before, after, changes), go through
//! `serde_json` itself. A property test holds the output to `serde_json::to_vec`'s.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;

use uuid::Uuid;

use super::model::{AuditEvent, RequestInfo, ResponseInfo, Source, Timestamp};
use crate::event::actor::{Actor, ActorKind};

/// Appends `event` as one JSON object (no newline).
pub(crate) fn write_event(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    out.push(b'{');
    write_event_members(out, event)
}

/// Appends `event`'s JSON without its opening brace (`"schema":...}`): the file sink puts
/// the chain's fields in front of its members.
pub(crate) fn write_event_members(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    // Destructured without `..`: a field added to `AuditEvent` does not compile here until
    // it is encoded (and the property test then checks how).
    let AuditEvent {
        schema,
        id,
        time,
        category,
        action,
        outcome,
        actor,
        source,
        request,
        response,
        target,
        reason,
        labels,
        details,
        before,
        after,
        changes,
    } = event;
    out.extend_from_slice(b"\"schema\":");
    string(out, schema)?;
    out.extend_from_slice(b",\"id\":");
    uuid(out, id);
    out.extend_from_slice(b",\"time\":");
    timestamp(out, *time);
    out.extend_from_slice(b",\"category\":");
    plain(out, category.as_str());
    out.extend_from_slice(b",\"action\":");
    string(out, action)?;
    out.extend_from_slice(b",\"outcome\":");
    plain(out, outcome.as_str());
    out.extend_from_slice(b",\"actor\":");
    write_actor(out, actor)?;
    if let Some(source) = source {
        out.extend_from_slice(b",\"source\":");
        write_source(out, source)?;
    }
    if let Some(request) = request {
        out.extend_from_slice(b",\"request\":");
        write_request(out, request)?;
    }
    if let Some(response) = response {
        out.extend_from_slice(b",\"response\":");
        write_response(out, response);
    }
    if let Some(target) = target {
        out.extend_from_slice(b",\"target\":");
        string(out, target)?;
    }
    if let Some(reason) = reason {
        out.extend_from_slice(b",\"reason\":");
        string(out, reason)?;
    }
    if !labels.is_empty() {
        out.extend_from_slice(b",\"labels\":");
        string_map(out, labels)?;
    }
    if let Some(details) = details {
        out.extend_from_slice(b",\"details\":");
        serde_json::to_writer(&mut *out, details)?;
    }
    if let Some(before) = before {
        out.extend_from_slice(b",\"before\":");
        serde_json::to_writer(&mut *out, before)?;
    }
    if let Some(after) = after {
        out.extend_from_slice(b",\"after\":");
        serde_json::to_writer(&mut *out, after)?;
    }
    if let Some(changes) = changes {
        out.extend_from_slice(b",\"changes\":");
        serde_json::to_writer(&mut *out, changes)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_actor(out: &mut Vec<u8>, actor: &Actor) -> serde_json::Result<()> {
    let Actor {
        id,
        kind,
        name,
        roles,
    } = actor;
    out.extend_from_slice(b"{\"id\":");
    string(out, id)?;
    out.extend_from_slice(b",\"kind\":");
    plain(
        out,
        match kind {
            ActorKind::User => "user",
            ActorKind::Service => "service",
            ActorKind::Anonymous => "anonymous",
        },
    );
    if let Some(name) = name {
        out.extend_from_slice(b",\"name\":");
        string(out, name)?;
    }
    if !roles.is_empty() {
        out.extend_from_slice(b",\"roles\":");
        string_list(out, roles)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_source(out: &mut Vec<u8>, source: &Source) -> serde_json::Result<()> {
    let Source {
        ip,
        port,
        user_agent,
        forwarded,
    } = source;
    let mut fields = Fields::new(out);
    if let Some(ip) = ip {
        address(fields.key(b"ip"), *ip)?;
    }
    if let Some(port) = port {
        number(fields.key(b"port"), u64::from(*port));
    }
    if let Some(user_agent) = user_agent {
        string(fields.key(b"user_agent"), user_agent)?;
    }
    if let Some(forwarded) = forwarded {
        string_list(fields.key(b"forwarded"), forwarded)?;
    }
    fields.end();
    Ok(())
}

fn write_request(out: &mut Vec<u8>, request: &RequestInfo) -> serde_json::Result<()> {
    let RequestInfo {
        id,
        method,
        path,
        route,
        query,
        headers,
    } = request;
    out.extend_from_slice(b"{\"id\":");
    string(out, id)?;
    out.extend_from_slice(b",\"method\":");
    string(out, method)?;
    out.extend_from_slice(b",\"path\":");
    string(out, path)?;
    if let Some(route) = route {
        out.extend_from_slice(b",\"route\":");
        string(out, route)?;
    }
    if let Some(query) = query {
        out.extend_from_slice(b",\"query\":");
        string(out, query)?;
    }
    if !headers.is_empty() {
        out.extend_from_slice(b",\"headers\":");
        string_map(out, headers)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_response(out: &mut Vec<u8>, response: &ResponseInfo) {
    let ResponseInfo {
        status,
        duration_us,
    } = response;
    if let Some(status) = status {
        out.extend_from_slice(b"{\"status\":");
        number(out, u64::from(*status));
        out.extend_from_slice(b",\"duration_us\":");
    } else {
        out.extend_from_slice(b"{\"duration_us\":");
    }
    number(out, *duration_us);
    out.push(b'}');
}

/// The members of an object whose every field is optional: commas go between the present
/// ones.
pub(crate) struct Fields<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Goes on with an object whose opening and first members are written already.
    pub(crate) fn after(out: &'a mut Vec<u8>) -> Self {
        Self { out, empty: false }
    }

    /// Writes `"name":` (after a comma unless first), and returns the output for the value.
    pub(crate) fn key(&mut self, name: &[u8]) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// Writes a member's `"name":`, given quoted and with its colon (the `key!` macro of
    /// the SIEM formats makes it at compile time), and returns the output for the value.
    pub(crate) fn member(&mut self, quoted_name: &[u8]) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(quoted_name);
        self.out
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// A JSON string, copied whole when nothing in it needs escaping.
pub(crate) fn string(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if needs_escape(text.as_bytes()) {
        serde_json::to_writer(out, text)
    } else {
        plain(out, text);
        Ok(())
    }
}

/// One JSON string made of `parts`, without joining them first unless one needs escaping.
pub(crate) fn string_parts(out: &mut Vec<u8>, parts: &[&str]) -> serde_json::Result<()> {
    if parts.iter().any(|part| needs_escape(part.as_bytes())) {
        return serde_json::to_writer(out, &parts.concat());
    }
    out.push(b'"');
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.push(b'"');
    Ok(())
}

/// Whether `bytes` holds one that serde_json escapes: a control character, `"` or `\`.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    has_control_or(bytes, [b'"', b'\\'])
}

/// Whether `bytes` holds a control character (below 0x20) or one of `specials`.
///
/// Every string of every event goes through such a check (JSON's, CEF's): it tests eight
/// bytes at a time (the zero-byte tests of "Bit Twiddling Hacks", exact as an any-byte
/// test).
pub(crate) fn has_control_or<const N: usize>(bytes: &[u8], specials: [u8; N]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut array = [0; 8];
        array.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(array);
        // A byte below 0x20 borrows into its high bit; one of 0x80 or more is excluded by
        // `!word`.
        let mut found = word.wrapping_sub(SPACES) & !word & HIGHS;
        for special in specials {
            found |= has_zero_byte(word ^ u64::from_ne_bytes([special; 8]));
        }
        if found != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || specials.contains(&b))
}

/// An IP address as a JSON string (its text never needs escaping). IPv4, by far the most
/// common, is written digit by digit: `fmt` costs several times more.
pub(crate) fn address(out: &mut Vec<u8>, ip: IpAddr) -> serde_json::Result<()> {
    match ip {
        IpAddr::V4(v4) => {
            out.push(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, u64::from(octet));
            }
            out.push(b'"');
            Ok(())
        }
        IpAddr::V6(v6) => write!(out, "\"{v6}\"").map_err(serde_json::Error::io),
    }
}

/// A string known to need no escaping (enum names, formatted ids).
pub(crate) fn plain(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

pub(crate) fn string_list(out: &mut Vec<u8>, items: &[impl AsRef<str>]) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item.as_ref())?;
    }
    out.push(b']');
    Ok(())
}

pub(crate) fn string_map(
    out: &mut Vec<u8>,
    map: &BTreeMap<String, String>,
) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, key)?;
        out.push(b':');
        string(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

pub(crate) fn number(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

pub(crate) fn uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = Uuid::encode_buffer();
    plain(out, id.hyphenated().encode_lower(&mut buf));
}

pub(crate) fn timestamp(out: &mut Vec<u8>, time: Timestamp) {
    // RFC 3339 text never needs escaping.
    out.push(b'"');
    out.extend_from_slice(&time.rfc3339());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::net::IpAddr;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::event::{Category, Change, Outcome};

    fn encoded(event: &AuditEvent) -> String {
        let mut out = Vec::new();
        write_event(&mut out, event).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_request_event_is_encoded_as_serde_json_encodes_it() {
        let mut event = AuditEvent::new(
            Category::Request,
            "http.request",
            Outcome::Success,
            Actor::anonymous(),
        );
        event.source = Some(Source {
            ip: Some("2001:db8::1".parse().unwrap()),
            port: Some(443),
            user_agent: Some("curl/8 \"quoted\"\n".to_owned()),
            forwarded: Some(vec!["192.0.2.1".to_owned()]),
        });
        event.request = Some(RequestInfo {
            id: "req-1".to_owned(),
            method: Cow::Borrowed("GET"),
            path: "/caf\u{e9}/\\".to_owned(),
            route: Some("/{x}/".to_owned()),
            query: Some("a=1&token=[REDACTED]".to_owned()),
            headers: [("x-tenant".to_owned(), "t\u{1}".to_owned())].into(),
        });
        event.response = Some(ResponseInfo {
            status: Some(200),
            duration_us: 17,
        });
        assert_eq!(encoded(&event), serde_json::to_string(&event).unwrap());
    }

    #[test]
    fn a_sensitive_event_is_encoded_as_serde_json_encodes_it() {
        let mut actor = Actor::user("alice\u{7f}");
        actor.name = Some("Alice \u{2028}".to_owned());
        actor.roles = vec!["admin".to_owned(), "ops\t".to_owned()];
        let mut event = AuditEvent::new(Category::Sensitive, "user.role", Outcome::Denied, actor)
            .with_target("user:7")
            .with_reason("no\u{0}pe");
        event.labels = [("tenant".to_owned(), "acme".to_owned())].into();
        event.details = json!({"count": 3, "s": "\u{0}"}).as_object().cloned();
        event.before = Some(json!({"role": "user"}));
        event.after = Some(json!(null));
        event.changes = Some(vec![
            Change::value("role", Some(json!("user")), None),
            Change::redacted("password"),
        ]);
        event.response = Some(ResponseInfo {
            status: None,
            duration_us: u64::MAX,
        });
        event.source = Some(Source::default());
        assert_eq!(encoded(&event), serde_json::to_string(&event).unwrap());
    }

    fn text() -> impl Strategy<Value = String> {
        // Plain text most of the time, as in real events; any characters otherwise.
        prop_oneof![3 => "[a-z0-9/._ -]{0,24}", 1 => any::<String>()]
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(json!(null)),
            any::<i64>().prop_map(|n| json!(n)),
            text().prop_map(|s| json!(s)),
            prop::collection::btree_map(text(), text(), 0..3).prop_map(|m| json!(m)),
        ]
    }

    // Split in parts: one strategy over every field overflows a test thread's stack.
    prop_compose! {
        fn actor()(
            id in text(),
            kind in prop::sample::select(vec![
                ActorKind::User, ActorKind::Service, ActorKind::Anonymous,
            ]),
            name in prop::option::of(text()),
            roles in prop::collection::vec(text(), 0..3),
        ) -> Actor {
            let mut actor = Actor::user(id);
            actor.kind = kind;
            actor.name = name;
            actor.roles = roles;
            actor
        }
    }

    prop_compose! {
        fn source()(
            ip in prop::option::of(any::<IpAddr>()),
            port in prop::option::of(any::<u16>()),
            user_agent in prop::option::of(text()),
            forwarded in prop::option::of(prop::collection::vec(text(), 0..3)),
        ) -> Source {
            Source { ip, port, user_agent, forwarded }
        }
    }

    prop_compose! {
        fn request()(
            id in text(),
            method in text(),
            path in text(),
            route in prop::option::of(text()),
            query in prop::option::of(text()),
            headers in prop::collection::btree_map(text(), text(), 0..3),
        ) -> RequestInfo {
            RequestInfo { id, method: Cow::Owned(method), path, route, query, headers }
        }
    }

    prop_compose! {
        fn change()(
            field in text(),
            old in prop::option::of(value()),
            new in prop::option::of(value()),
            redacted in any::<bool>(),
        ) -> Change {
            if redacted { Change::redacted(field) } else { Change::value(field, old, new) }
        }
    }

    prop_compose! {
        fn event()(
            category in prop::sample::select(vec![
                Category::Request, Category::Sensitive, Category::Auth, Category::Alert,
                Category::System,
            ]),
            outcome in prop::sample::select(vec![
                Outcome::Success, Outcome::Failure, Outcome::Denied, Outcome::Error,
                Outcome::Cancelled,
            ]),
            action in text(),
            actor in actor(),
            source in prop::option::of(source()),
            request in prop::option::of(request()),
            response in prop::option::of((prop::option::of(any::<u16>()), any::<u64>())),
            notes in (prop::option::of(text()), prop::option::of(text()),
                prop::collection::btree_map(text(), text(), 0..3)),
            state in (prop::option::of(prop::collection::vec((text(), value()), 0..3)),
                prop::option::of(value()), prop::option::of(value()),
                prop::option::of(prop::collection::vec(change(), 0..3))),
        ) -> AuditEvent {
            let mut event = AuditEvent::new(category, action, outcome, actor);
            event.source = source;
            event.request = request;
            event.response = response.map(|(status, duration_us)| ResponseInfo {
                status,
                duration_us,
            });
            (event.target, event.reason, event.labels) = notes;
            let (details, before, after, changes) = state;
            event.details = details.map(|pairs| pairs.into_iter().collect());
            (event.before, event.after, event.changes) = (before, after, changes);
            event
        }
    }

    proptest! {
        #[test]
        fn every_event_is_encoded_as_serde_json_encodes_it(event in event()) {
            prop_assert_eq!(encoded(&event), serde_json::to_string(&event).unwrap());
        }

        /// Eight bytes at a time finds exactly the bytes a byte-by-byte test finds, wherever
        /// they sit in a word, next to bytes of 0x80 and more included.
        #[test]
        fn needs_escape_finds_exactly_the_bytes_to_escape(bytes in prop::collection::vec(
            prop_oneof![
                4 => b'a'..=b'z',
                1 => prop::sample::select(vec![0x00, 0x1f, 0x20, 0x21, b'"', 0x23, 0x5b,
                    b'\\', 0x5d, 0x7f, 0x80, 0x9f, 0xa2, 0xdc, 0xff]),
                1 => any::<u8>(),
            ],
            0..40,
        )) {
            let expected = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            prop_assert_eq!(needs_escape(&bytes), expected);
        }
    }
}
