//! Reading a file trail back.

use std::io;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::Value;

use super::layout;
use crate::event::Timestamp;

/// Which events to keep; every field that is set must match. Build it with
/// `..Filter::default()`, so fields added later keep your code compiling.
///
/// Events are matched as JSON values rather than [`AuditEvent`](crate::AuditEvent)s, so a
/// trail written by a later version, with fields this one does not know, still reads.
///
/// # Example
///
/// ```
/// use audit_layer::file::Filter;
/// use serde_json::json;
///
/// let filter = Filter {
///     action: Some("user.*".into()),
///     outcome: Some("denied".into()),
///     ..Filter::default()
/// };
/// let event = json!({"action": "user.role.change", "outcome": "denied", "actor": {"id": "2"}});
/// assert!(filter.matches(&event));
/// assert!(!Filter { actor: Some("1".into()), ..Filter::default() }.matches(&event));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `actor.id` or `actor.name`.
    pub actor: Option<String>,
    /// The action, exactly, or a prefix ending in `*` (`user.*`).
    pub action: Option<String>,
    /// The outcome.
    pub outcome: Option<String>,
    /// The target, exactly, or a prefix ending in `*` (`user:*`).
    pub target: Option<String>,
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// `source.ip`: an address, or a network in CIDR form.
    pub ip: Option<IpNet>,
    /// The category (`sensitive`).
    pub category: Option<String>,
    /// `request.id`.
    pub request_id: Option<String>,
    /// Free text: every word of it must be a word of the event's values (see
    /// [`search_words`]). Words are runs of ASCII letters and digits and of any non-ASCII
    /// characters; ASCII letters match whatever their case.
    pub text: Option<String>,
}

impl Filter {
    /// Whether an event (as JSON) passes every condition.
    pub fn matches(&self, event: &Value) -> bool {
        let text = |value: &Value| value.as_str().map(str::to_owned);
        if let Some(actor) = &self.actor {
            let actor_value = &event["actor"];
            if text(&actor_value["id"]).as_ref() != Some(actor)
                && text(&actor_value["name"]).as_ref() != Some(actor)
            {
                return false;
            }
        }
        if !pattern_matches(self.action.as_deref(), event["action"].as_str()) {
            return false;
        }
        if self
            .outcome
            .as_deref()
            .is_some_and(|o| event["outcome"].as_str() != Some(o))
        {
            return false;
        }
        if !pattern_matches(self.target.as_deref(), event["target"].as_str()) {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(time) = event["time"]
                .as_str()
                .and_then(|t| Timestamp::parse(t).ok())
            else {
                return false;
            };
            if self.since.is_some_and(|since| time < since)
                || self.until.is_some_and(|until| time >= until)
            {
                return false;
            }
        }
        if let Some(network) = &self.ip {
            let ip = event["source"]["ip"]
                .as_str()
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            if !ip.is_some_and(|ip| network.contains(&ip)) {
                return false;
            }
        }
        if self
            .category
            .as_deref()
            .is_some_and(|c| event["category"].as_str() != Some(c))
            || self
                .request_id
                .as_deref()
                .is_some_and(|id| event["request"]["id"].as_str() != Some(id))
        {
            return false;
        }
        if let Some(text) = &self.text {
            let wanted: Vec<String> = search_words(text).collect();
            if !wanted.is_empty() {
                let text = search_text(event);
                let present: std::collections::HashSet<String> = search_words(&text).collect();
                return wanted.iter().all(|word| present.contains(word));
            }
        }
        true
    }
}

/// Which page of matching events a query returns, from a store that can page: the
/// index ([`TrailIndex::query`](crate::index::TrailIndex::query)), a PostgreSQL follower's
/// table (`PostgresSink::search`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Oldest first; newest first when `false`.
    pub oldest_first: bool,
    /// Only events before this seq (the last one of the previous page, newest first).
    pub before: Option<u64>,
    /// Only events after this seq (the last one of the previous page, oldest first).
    pub after: Option<u64>,
    /// At most this many; every one when `None`.
    pub limit: Option<usize>,
}

impl Page {
    /// The newest `limit` events.
    pub fn newest(limit: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// Every event, oldest first.
    pub fn all_oldest_first() -> Self {
        Self {
            oldest_first: true,
            ..Self::default()
        }
    }

    /// Only the events before `seq`.
    pub fn before(mut self, seq: u64) -> Self {
        self.before = Some(seq);
        self
    }

    /// Only the events after `seq`.
    pub fn after(mut self, seq: u64) -> Self {
        self.after = Some(seq);
        self
    }
}

/// The members of a stored line that are not searched as text: the chain's, the schema's,
/// and the event's id and time, which are looked up by value rather than word by word.
const NOT_SEARCHED: [&str; 7] = ["seq", "prev_hash", "hash", "schema", "trail", "id", "time"];

/// The text free-text search looks in: the event's string and number values (not its
/// member names, the chain's hashes, its id and time, nor the request's id), separated by
/// spaces.
pub fn search_text(event: &Value) -> String {
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::String(text) => {
                out.push_str(text);
                out.push(' ');
            }
            Value::Number(number) => {
                out.push_str(&number.to_string());
                out.push(' ');
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(members) => members.values().for_each(|member| walk(member, out)),
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut out = String::new();
    if let Value::Object(members) = event {
        for (name, value) in members {
            match (name.as_str(), value) {
                (name, _) if NOT_SEARCHED.contains(&name) => {}
                ("request", Value::Object(request)) => request
                    .iter()
                    .filter(|(name, _)| name.as_str() != "id")
                    .for_each(|(_, value)| walk(value, &mut out)),
                _ => walk(value, &mut out),
            }
        }
    }
    out
}

/// The words of a text, as free-text search sees them: runs of ASCII letters and digits
/// and of non-ASCII characters, ASCII letters in lower case (SQLite FTS5's `ascii`
/// tokenizer, which the index uses, splits the same way).
pub fn search_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
}

fn pattern_matches(pattern: Option<&str>, value: Option<&str>) -> bool {
    match pattern {
        None => true,
        Some(pattern) => value.is_some_and(|value| match pattern.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => value == pattern,
        }),
    }
}

/// Parses a time for `--since` / `--until`: RFC 3339, or a UTC day (`2026-11-22`).
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if text.len() == 10 {
        return Timestamp::parse(&format!("{text}T00:00:00Z")).map_err(|e| e.to_string());
    }
    Timestamp::parse(text).map_err(|e| e.to_string())
}

/// Parses an address or a CIDR network for `--ip`.
pub fn parse_ip(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an IP address or CIDR network"))
}

/// The event files of a trail directory, in trail order.
pub fn trail_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(layout::list(dir)?.into_iter().map(|f| f.path).collect())
}

/// Where the lines of a trail file end: its size, less any zeros preallocated after them
/// (see [`JsonlFileSinkBuilder::preallocate`](crate::file::JsonlFileSinkBuilder::preallocate)).
pub fn lines_end(path: &Path) -> io::Result<u64> {
    layout::lines_end(path)
}

/// Calls `visit` with each line of the trail (without its newline) and its JSON, in trail
/// order, until it returns `Break`. Lines that are not JSON are passed with `Value::Null`,
/// so that a damaged trail still reads (verify it to find out what is wrong).
pub fn for_each_event(
    dir: &Path,
    mut visit: impl FnMut(&str, &Value) -> ControlFlow<()>,
) -> io::Result<()> {
    for file in layout::list(dir)? {
        let bytes = file.read()?;
        let content = layout::without_padding(&bytes);
        for line in content.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            let value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if visit(&text, &value).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One event as a row of text: time, seq, outcome, action, actor, source, request, target.
pub fn table_row(event: &Value) -> String {
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let actor = match event["actor"]["name"].as_str() {
        Some(name) => format!("{name}({})", text(&event["actor"]["id"])),
        None => text(&event["actor"]["id"]),
    };
    let request = &event["request"];
    let request = if request.is_null() {
        "-".to_owned()
    } else {
        format!(
            "{} {} {}",
            text(&request["method"]),
            text(&request["path"]),
            text(&event["response"]["status"])
        )
    };
    let row = format!(
        "{:<27} {:>6} {:<9} {:<22} {:<16} {:<15} {:<32} {}",
        text(&event["time"]),
        text(&event["seq"]),
        text(&event["outcome"]),
        text(&event["action"]),
        actor,
        text(&event["source"]["ip"]),
        request,
        text(&event["target"]),
    );
    display_text(&row).into_owned()
}

/// Whether `c` changes how the text around it is shown without being seen itself: bidi
/// controls (U+202E turns `exe.txt` into `txt.exe`), line and paragraph separators, and
/// zero-width characters.
fn hides_or_reorders(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// `text` safe to show in a terminal or a page: a control character (a terminal's escape
/// sequences start with one) becomes `?`, and a character that hides or reorders text is
/// written out as `<U+202E>`, so that what is shown is what the trail holds.
pub fn display_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || hides_or_reorders(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            out.push('?');
        } else if hides_or_reorders(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A trail line safe to show: the same JSON value, with every character that hides or
/// reorders text, and every control character, written as a `\u` escape (JSON already
/// escapes those below U+0020).
pub fn display_json_line(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() || hides_or_reorders(c)) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if c.is_control() || hides_or_reorders(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The header of [`table_row`]s.
pub fn table_header() -> String {
    format!(
        "{:<27} {:>6} {:<9} {:<22} {:<16} {:<15} {:<32} {}",
        "TIME", "SEQ", "OUTCOME", "ACTION", "ACTOR", "IP", "REQUEST", "TARGET"
    )
}
