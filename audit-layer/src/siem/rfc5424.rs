//! Syslog messages as RFC 5424 lays them out, framed by octet counting (RFC 6587 3.4.1):
//! `LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.

use std::io::Write;

use crate::event::{AuditEvent, Category, Outcome};

/// The header fields that are the same for every message of a follower, checked once.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub(crate) facility: u8,
    pub(crate) hostname: String,
    pub(crate) app_name: String,
    pub(crate) procid: String,
    pub(crate) sd_id: String,
}

impl Header {
    /// Checks each field against RFC 5424's grammar: printable US-ASCII, bounded.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.facility > 23 {
            return Err(format!("facility {} is not 0 to 23", self.facility));
        }
        for (field, value, max) in [
            ("hostname", &self.hostname, 255),
            ("app name", &self.app_name, 48),
            ("process id", &self.procid, 128),
        ] {
            if value.is_empty() || value.len() > max || !value.bytes().all(printable) {
                return Err(format!(
                    "{field} `{value}` must be 1 to {max} printable US-ASCII characters"
                ));
            }
        }
        let sd_name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| printable(b) && !matches!(b, b'=' | b']' | b'"'))
        };
        match self.sd_id.split_once('@') {
            Some((name, number))
                if sd_name_ok(&self.sd_id)
                    && !name.is_empty()
                    && !number.is_empty()
                    && number.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {}
            _ => {
                return Err(format!(
                    "structured data id `{}` must be name@<private enterprise number>, at most 32 characters",
                    self.sd_id
                ));
            }
        }
        Ok(())
    }
}

fn printable(byte: u8) -> bool {
    (33..=126).contains(&byte)
}

/// The syslog severity of an event: alerts are warnings, denials notices, the rest
/// informational.
fn severity(event: &AuditEvent) -> u8 {
    match (event.category, event.outcome) {
        (Category::Alert, _) => 4,
        (_, Outcome::Denied) => 5,
        _ => 6,
    }
}

/// Appends one framed message: `message` is the event in the follower's format.
pub(crate) fn write_frame(
    out: &mut Vec<u8>,
    header: &Header,
    event: &AuditEvent,
    trail: &str,
    seq: u64,
    message: &[u8],
) {
    let mut head = Vec::with_capacity(256);
    let pri = u16::from(header.facility) * 8 + u16::from(severity(event));
    // Writing to a Vec cannot fail.
    let _ = write!(head, "<{pri}>1 ");
    head.extend_from_slice(&event.time.rfc3339());
    head.push(b' ');
    head.extend_from_slice(header.hostname.as_bytes());
    head.push(b' ');
    head.extend_from_slice(header.app_name.as_bytes());
    head.push(b' ');
    head.extend_from_slice(header.procid.as_bytes());
    head.push(b' ');
    // MSGID: the action, as far as it is printable ASCII, at most 32 characters.
    let msgid: Vec<u8> = event
        .action
        .bytes()
        .take(32)
        .map(|b| if printable(b) { b } else { b'_' })
        .collect();
    if msgid.is_empty() {
        head.push(b'-');
    } else {
        head.extend_from_slice(&msgid);
    }
    let _ = write!(head, " [{} id=\"{}\" trail=\"", header.sd_id, event.id);
    param_value(&mut head, trail);
    let _ = write!(head, "\" seq=\"{seq}\"] ");
    let _ = write!(out, "{} ", head.len() + message.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(message);
}

/// An SD PARAM-VALUE: `"`, `\` and `]` escaped with a backslash.
fn param_value(out: &mut Vec<u8>, value: &str) {
    for &byte in value.as_bytes() {
        if matches!(byte, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Actor;
    use crate::event::Timestamp;

    fn header() -> Header {
        Header {
            facility: 13,
            hostname: "web-1".into(),
            app_name: "shop".into(),
            procid: "42".into(),
            sd_id: "audit@32473".into(),
        }
    }

    #[test]
    fn a_frame_counts_its_octets_and_follows_the_grammar() {
        let event = AuditEvent::at(
            Timestamp::from_unix_micros(1_800_000_000_000_001),
            Category::Alert,
            "auth.brute force",
            Outcome::Success,
            Actor::service("detector"),
        );
        let mut out = Vec::new();
        write_frame(&mut out, &header(), &event, "t\"1]", 7, "héllo".as_bytes());
        let text = String::from_utf8(out).unwrap();
        let (len, message) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
        let expected = format!(
            "<108>1 2027-01-15T08:00:00.000001Z web-1 shop 42 auth.brute_force [audit@32473 id=\"{}\" trail=\"t\\\"1\\]\" seq=\"7\"] héllo",
            event.id
        );
        assert_eq!(message, expected);
    }

    #[test]
    fn header_fields_outside_the_grammar_are_refused() {
        let mut bad = header();
        bad.hostname = "web 1".into();
        assert!(bad.check().unwrap_err().contains("hostname `web 1`"));
        let mut bad = header();
        bad.sd_id = "audit".into();
        assert!(
            bad.check()
                .unwrap_err()
                .contains("name@<private enterprise number>")
        );
        let mut bad = header();
        bad.facility = 24;
        assert!(bad.check().is_err());
        assert!(header().check().is_ok());
    }
}
