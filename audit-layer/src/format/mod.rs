//! SIEM formats: each event as OCSF, ECS or CEF, built from the scrubbed event, so that a
//! security team's tools read the trail without a mapping of their own.
//!
//! | [`Format`] | What it writes | For |
//! |---|---|---|
//! | [`Audit`](Format::Audit) | `audit/1` JSON (the trail's own line, chain included, for a stored line) | anything that verifies or re-imports the trail |
//! | [`Ocsf`](Format::Ocsf) | OCSF 1.8 JSON: API Activity, Authentication, Account Change, User Access Management, Detection Finding, Application Lifecycle | Splunk, Amazon Security Lake, any OCSF pipeline |
//! | [`Ecs`](Format::Ecs) | Elastic Common Schema 8.17 JSON | Elasticsearch, Elastic Security, OpenSearch |
//! | [`Cef`](Format::Cef) | ArcSight CEF:0, one line | ArcSight, QRadar, Wazuh over syslog |
//!
//! Each event is written on one line. Which class or category an event gets, and every
//! field of each mapping, is in the project's `docs/siem.md`. What a format has no field
//! for (details, before and after, changes) is kept in its place for such things
//! (`unmapped` in OCSF, `audit_layer.*` in ECS, `cs4` in CEF): nothing of the event is
//! dropped, and nothing is added that the trail does not hold, so the redaction of the
//! trail holds for every format.
//!
//! The syslog and webhook followers ship the trail in these formats, and `audit export
//! DIR --format ocsf` writes a stored trail in them.
//!
//! ```
//! use audit_layer::format::Format;
//! use audit_layer::{Actor, AuditEvent, Category, Outcome};
//!
//! let event = AuditEvent::new(Category::Auth, "auth.login", Outcome::Denied, Actor::anonymous())
//!     .with_detail("username", "alice");
//! let mut out = Vec::new();
//! Format::Ocsf.encode(&event, &mut out)?;
//! let ocsf: serde_json::Value = serde_json::from_slice(&out)?;
//! assert_eq!(ocsf["class_uid"], 3002); // Authentication
//! assert_eq!(ocsf["user"]["name"], "alice");
//!
//! out.clear();
//! Format::Cef.encode(&event, &mut out)?;
//! assert!(out.starts_with(b"CEF:0|audit-layer|audit-layer|"));
//! assert_eq!("ecs".parse::<Format>()?, Format::Ecs);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::event::AuditEvent;

/// `"name":` of a member of a [`Fields`](crate::event::json::Fields) object, spelled out
/// at compile time.
macro_rules! key {
    ($fields:expr, $name:literal) => {
        $fields.member(concat!("\"", $name, "\":").as_bytes())
    };
}

mod cef;
mod ecs;
mod kind;
mod ocsf;

/// The schema version each JSON format follows: OCSF's and ECS's.
pub const OCSF_VERSION: &str = ocsf::VERSION;
/// The ECS version of [`Format::Ecs`] documents.
pub const ECS_VERSION: &str = ecs::VERSION;

/// An event encoding. Parsed from its [name](Self::name) (`"ocsf"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `audit/1` JSON, the trail's own encoding.
    Audit,
    /// OCSF 1.8 JSON.
    #[default]
    Ocsf,
    /// Elastic Common Schema 8.17 JSON.
    Ecs,
    /// ArcSight Common Event Format.
    Cef,
}

/// Where a stored line sits: the formats that have fields for it record its trail and seq.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position<'a> {
    pub(crate) trail: &'a str,
    pub(crate) seq: u64,
}

impl Format {
    /// Every format, in the order of [`Format::name`]'s documentation.
    pub const ALL: [Format; 4] = [Self::Audit, Self::Ocsf, Self::Ecs, Self::Cef];

    /// The format's name: `audit`, `ocsf`, `ecs` or `cef`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Ocsf => "ocsf",
            Self::Ecs => "ecs",
            Self::Cef => "cef",
        }
    }

    /// Whether each encoded event is a JSON object (all but CEF).
    pub fn is_json(self) -> bool {
        self != Self::Cef
    }

    /// Appends `event`, encoded, to `out` (one line, without its newline).
    pub fn encode(self, event: &AuditEvent, out: &mut Vec<u8>) -> Result<(), FormatError> {
        self.write(out, event, None).map_err(FormatError::Encode)
    }

    /// Appends a stored line (a trail file's line, without its newline), encoded, to
    /// `out` (one line, without its newline). `trail` and `seq` are the trail's id (empty
    /// for a trail without one) and the line's seq ([`TrailLine`](crate::file::TrailLine)
    /// has both): [`Audit`](Self::Audit) copies the line as stored, chain fields included;
    /// the others record the trail and seq where they have fields for them.
    ///
    /// ```
    /// use audit_layer::format::Format;
    ///
    /// let line = r#"{"seq":4,"prev_hash":"..","hash":"..","trail":"shop-1","schema":"audit/1","id":"01938a5c-62f4-7f3e-8a8e-6d1c1c1f0a01","time":"2026-12-04T10:00:00.000000Z","category":"system","action":"audit.start","outcome":"success","actor":{"id":"audit","kind":"service"}}"#;
    /// let mut out = Vec::new();
    /// Format::Ecs.encode_line("shop-1", 4, line, &mut out)?;
    /// let ecs: serde_json::Value = serde_json::from_slice(&out)?;
    /// assert_eq!(ecs["event"]["sequence"], 4);
    /// assert_eq!(ecs["event"]["action"], "audit.start");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode_line(
        self,
        trail: &str,
        seq: u64,
        line: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        if self == Self::Audit {
            out.extend_from_slice(line.as_bytes());
            return Ok(());
        }
        let event: AuditEvent =
            serde_json::from_str(line).map_err(|source| FormatError::Line { seq, source })?;
        self.encode_at(&event, trail, seq, out)
    }

    /// Appends `event` at `position` (a stored line's trail and seq).
    pub(crate) fn encode_at(
        self,
        event: &AuditEvent,
        trail: &str,
        seq: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        self.write(out, event, Some(Position { trail, seq }))
            .map_err(FormatError::Encode)
    }

    fn write(
        self,
        out: &mut Vec<u8>,
        event: &AuditEvent,
        position: Option<Position<'_>>,
    ) -> serde_json::Result<()> {
        match self {
            Self::Audit => crate::event::write_event(out, event),
            Self::Ocsf => ocsf::write(out, event, position),
            Self::Ecs => ecs::write(out, event, position),
            Self::Cef => cef::write(out, event, position),
        }
    }
}

/// `details`, `before`, `after` and `changes` as `audit/1` writes them: the application's
/// own structure, which no SIEM schema has fields for (each format puts them in its place
/// for such things).
fn write_free_form(
    fields: &mut crate::event::json::Fields<'_>,
    event: &AuditEvent,
) -> serde_json::Result<()> {
    if let Some(details) = &event.details {
        serde_json::to_writer(&mut *key!(fields, "details"), details)?;
    }
    if let Some(before) = &event.before {
        serde_json::to_writer(&mut *key!(fields, "before"), before)?;
    }
    if let Some(after) = &event.after {
        serde_json::to_writer(&mut *key!(fields, "after"), after)?;
    }
    if let Some(changes) = &event.changes {
        serde_json::to_writer(&mut *key!(fields, "changes"), changes)?;
    }
    Ok(())
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| FormatError::Unknown(text.chars().take(32).collect()))
    }
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A format name that is not one of `audit`, `ocsf`, `ecs`, `cef`.
    #[error("unknown event format `{0}`: expected audit, ocsf, ecs or cef")]
    Unknown(String),
    /// A stored line that does not hold an `audit/1` event.
    #[error("line {seq} does not hold an audit/1 event: {source}")]
    Line {
        /// The line's seq.
        seq: u64,
        /// What is wrong with it.
        source: serde_json::Error,
    },
    /// A value that JSON cannot hold (a map with non-string keys in a detail).
    #[error("event cannot be encoded: {0}")]
    Encode(serde_json::Error),
}
