//! ArcSight Common Event Format (CEF:0), as ArcSight, QRadar and Wazuh read it from syslog.
//! The mapping, key by key, is in docs/siem.md.
//!
//! Escaping follows the CEF specification: in the header `\` and `|` are escaped with a
//! backslash; in extension values `\` and `=`, and line breaks are written `\n` and `\r`.
//! Other control characters, which CEF does not define, become spaces, so that no value
//! can break a record or forge one.

use std::io::Write;
use std::net::IpAddr;

use crate::event::json::{has_control_or, number};
use crate::event::{AuditEvent, Outcome};
use crate::format::kind::{Kind, classify, detail_str, subject_user};
use crate::format::{Position, write_free_form};

/// Appends `event` as one CEF record (no newline).
pub(crate) fn write(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    let kind = classify(event);
    out.extend_from_slice(
        concat!(
            "CEF:0|audit-layer|audit-layer|",
            env!("CARGO_PKG_VERSION"),
            "|"
        )
        .as_bytes(),
    );
    header(out, &event.action);
    out.push(b'|');
    header(out, &event.action);
    out.push(b' ');
    out.extend_from_slice(event.outcome.as_str().as_bytes());
    let severity: &[u8] = match (&kind, event.outcome) {
        (Kind::Alert, _) => b"|8|",
        (_, Outcome::Denied) => b"|5|",
        (_, Outcome::Failure | Outcome::Error) => b"|3|",
        _ => b"|1|",
    };
    out.extend_from_slice(severity);

    let mut ext = Extension { out, first: true };
    ext.number("rt", event.time.unix_micros() / 1_000);
    let mut id = uuid::Uuid::encode_buffer();
    ext.text("externalId", event.id.hyphenated().encode_lower(&mut id));
    ext.text("cat", event.category.as_str());
    ext.text("act", &event.action);
    ext.text("outcome", event.outcome.as_str());
    let actor = &event.actor;
    ext.text("suid", &actor.id);
    if let Some(name) = actor
        .name
        .as_deref()
        .or_else(|| detail_str(event, "username").filter(|_| actor.is_anonymous()))
    {
        ext.text("suser", name);
    }
    if !actor.roles.is_empty() {
        ext.joined("spriv", &actor.roles);
    }
    if let Some(source) = &event.source {
        match source.ip {
            Some(IpAddr::V4(ip)) => {
                ext.key("src");
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        ext.out.push(b'.');
                    }
                    number(ext.out, u64::from(octet));
                }
            }
            Some(IpAddr::V6(ip)) => {
                // Hex digits and colons: nothing to escape.
                ext.key("c6a2");
                let _ = write!(ext.out, "{ip}");
                ext.text("c6a2Label", "Source IPv6 Address");
            }
            None => {}
        }
        if let Some(port) = source.port {
            ext.number("spt", u64::from(port));
        }
        if let Some(agent) = &source.user_agent {
            ext.text("requestClientApplication", agent);
        }
    }
    if let Some(request) = &event.request {
        ext.text("requestMethod", &request.method);
        ext.text("request", &request.path);
        if let Some(query) = &request.query {
            ext.more("?");
            ext.more(query);
        }
        ext.text("cs2", &request.id);
        ext.text("cs2Label", "Request ID");
        if let Some(route) = &request.route {
            ext.text("cs3", route);
            ext.text("cs3Label", "Route");
        }
    }
    if let Some(response) = &event.response {
        if let Some(status) = response.status {
            ext.number("cn1", u64::from(status));
            ext.text("cn1Label", "HTTP Status");
        }
        ext.number("cn2", response.duration_us);
        ext.text("cn2Label", "Duration us");
    }
    if matches!(kind, Kind::Account(_) | Kind::Privileges { .. }) {
        let (uid, _) = subject_user(event);
        if !uid.is_empty() {
            ext.text("duid", uid);
        }
    }
    if let Kind::Privileges { names, .. } = &kind {
        ext.joined("dpriv", names);
    }
    if let Some(target) = &event.target {
        ext.text("cs1", target);
        ext.text("cs1Label", "Target");
    }
    if let Some(reason) = &event.reason {
        ext.text("reason", reason);
    }
    if let Some(position) = position {
        ext.number("cn3", position.seq);
        ext.text("cn3Label", "Sequence");
        if !position.trail.is_empty() {
            ext.text("cs5", position.trail);
            ext.text("cs5Label", "Trail");
        }
    }
    if event.details.is_some()
        || event.before.is_some()
        || event.after.is_some()
        || event.changes.is_some()
        || !event.labels.is_empty()
    {
        ext.key("cs4");
        let start = ext.out.len();
        write_context(ext.out, event)?;
        // JSON escapes with `\`, and may hold `=`: escaped again for CEF, when there are any.
        if has_control_or(&ext.out[start..], [b'\\', b'=', 0x7f]) {
            let json = ext.out.split_off(start);
            escape_value(ext.out, &json);
        }
        ext.text("cs4Label", "Details");
    }
    Ok(())
}

/// The structured parts CEF has no key for, as one compact JSON object.
fn write_context(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let mut context = crate::event::json::Fields::new(out);
    if !event.labels.is_empty() {
        crate::event::json::string_map(key!(context, "labels"), &event.labels)?;
    }
    write_free_form(&mut context, event)?;
    context.end();
    Ok(())
}

/// A header field: `\` and `|` escaped; a line break or other control character, which a
/// header cannot hold, becomes a space.
fn header(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !has_control_or(bytes, [b'\\', b'|', 0x7f]) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let replacement: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'|' => b"\\|",
            0..=0x1f | 0x7f => b" ",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(replacement);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether a byte is written otherwise in an extension value.
fn needs_cef_escape(byte: u8) -> bool {
    matches!(byte, b'\\' | b'=' | 0..=0x1f | 0x7f)
}

/// An extension value: `\` and `=` escaped, line breaks as `\n` and `\r`, other control
/// characters as spaces; runs with nothing to escape copied whole.
fn escape_value(out: &mut Vec<u8>, value: &[u8]) {
    if !has_control_or(value, [b'\\', b'=', 0x7f]) {
        out.extend_from_slice(value);
        return;
    }
    let mut start = 0;
    for (i, &byte) in value.iter().enumerate() {
        if !needs_cef_escape(byte) {
            continue;
        }
        let replacement: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'=' => b"\\=",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => b" ",
        };
        out.extend_from_slice(&value[start..i]);
        out.extend_from_slice(replacement);
        start = i + 1;
    }
    out.extend_from_slice(&value[start..]);
}

/// The extension's `key=value` pairs, space separated.
struct Extension<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Extension<'_> {
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        number(self.out, value);
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        escape_value(self.out, value.as_bytes());
    }

    /// More of the last value.
    fn more(&mut self, value: &str) {
        escape_value(self.out, value.as_bytes());
    }

    /// A value of items joined by commas.
    fn joined(&mut self, key: &str, items: &[impl AsRef<str>]) {
        self.key(key);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            escape_value(self.out, item.as_ref().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_test_finds_what_the_byte_test_finds() {
        let samples: [&[u8]; 9] = [
            b"plain-value/with:colons",
            b"a=b",
            b"back\\slash in the middle of a long value",
            b"0123456789abcdef\n",
            b"tab\there",
            b"del\x7f",
            b"pipe|in a header",
            "ünïcödé ok".as_bytes(),
            b"",
        ];
        for sample in samples {
            for special in [b'=', b'|'] {
                let by_byte = sample
                    .iter()
                    .any(|&b| b < 0x20 || b == 0x7f || b == b'\\' || b == special);
                assert_eq!(
                    has_control_or(sample, [b'\\', special, 0x7f]),
                    by_byte,
                    "{sample:?}"
                );
            }
        }
    }
}
