//! ArcSight Common Event Format (CEF:0), as ArcSight, QRadar and Wazuh read it from syslog.
//! The mapping, key by key, is in docs/siem.md.
//!
//! Escaping follows the CEF specification: in the header `\` and `|` are escaped with a
//! backslash; in extension values `\` and `=`, and line breaks are written `\n` and `\r`.
//! Other control characters, which CEF does not define, become spaces, so that no value
//! can break a record or forge one.

use std::io::Write;
use std::net::IpAddr;

use crate::event::{AuditEvent, Outcome};
use crate::format::Position;
use crate::format::kind::{Kind, classify, detail_str, subject_user};

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
    ext.text("externalId", &event.id.hyphenated().to_string());
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
        ext.text("spriv", &actor.roles.join(","));
    }
    if let Some(source) = &event.source {
        match source.ip {
            Some(IpAddr::V4(ip)) => ext.text("src", &ip.to_string()),
            Some(IpAddr::V6(ip)) => {
                ext.text("c6a2", &ip.to_string());
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
        match &request.query {
            Some(query) => ext.text("request", &format!("{}?{query}", request.path)),
            None => ext.text("request", &request.path),
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
        ext.text("dpriv", &names.join(","));
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
        let mut json = Vec::new();
        write_context(&mut json, event)?;
        ext.text("cs4", &String::from_utf8_lossy(&json));
        ext.text("cs4Label", "Details");
    }
    Ok(())
}

/// The structured parts CEF has no key for, as one compact JSON object.
fn write_context(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let mut context = crate::event::json::Fields::new(out);
    if !event.labels.is_empty() {
        crate::event::json::string_map(context.key(b"labels"), &event.labels)?;
    }
    if let Some(details) = &event.details {
        serde_json::to_writer(&mut *context.key(b"details"), details)?;
    }
    if let Some(before) = &event.before {
        serde_json::to_writer(&mut *context.key(b"before"), before)?;
    }
    if let Some(after) = &event.after {
        serde_json::to_writer(&mut *context.key(b"after"), after)?;
    }
    if let Some(changes) = &event.changes {
        serde_json::to_writer(&mut *context.key(b"changes"), changes)?;
    }
    context.end();
    Ok(())
}

/// A header field: `\` and `|` escaped; a line break or other control character, which a
/// header cannot hold, becomes a space.
fn header(out: &mut Vec<u8>, text: &str) {
    for &byte in text.as_bytes() {
        match byte {
            b'\\' | b'|' => out.extend_from_slice(&[b'\\', byte]),
            0..=0x1f | 0x7f => out.push(b' '),
            _ => out.push(byte),
        }
    }
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
        // Writing to a Vec cannot fail.
        let _ = write!(self.out, "{value}");
    }

    /// A value: `\` and `=` escaped, line breaks as `\n` and `\r`, other control
    /// characters as spaces.
    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        for &byte in value.as_bytes() {
            match byte {
                b'\\' | b'=' => self.out.extend_from_slice(&[b'\\', byte]),
                b'\n' => self.out.extend_from_slice(b"\\n"),
                b'\r' => self.out.extend_from_slice(b"\\r"),
                0..=0x1f | 0x7f => self.out.push(b' '),
                _ => self.out.push(byte),
            }
        }
    }
}
