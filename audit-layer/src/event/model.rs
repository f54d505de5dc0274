//! The event and its parts, as the crate builds and serializes them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;
use uuid::timestamp::context::{ContextV7, ThreadLocalContext};

use crate::event::actor::Actor;

/// The value of every event's `schema` field.
pub const SCHEMA: &str = "audit/1";

/// One audit record, serialized as one JSON object on one line.
///
/// Events of requests are built by [`AuditLayer`](crate::layer::AuditLayer); other events (system
/// events, events of background jobs) can be built with [`AuditEvent::new`] and recorded with
/// [`AuditTrail::record`](crate::AuditTrail::record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Always [`SCHEMA`] (`"audit/1"`).
    pub schema: Cow<'static, str>,
    /// A UUID v7: unique, and ordered by creation time (to the millisecond; strictly among
    /// the events of one thread).
    pub id: Uuid,
    /// When the request arrived (or the action happened), UTC, microseconds.
    pub time: Timestamp,
    /// What kind of event this is.
    pub category: Category,
    /// What was done: `http.request` unless the application names it (`user.role.change`).
    pub action: Cow<'static, str>,
    /// How it ended.
    pub outcome: Outcome,
    /// Who did it.
    pub actor: Actor,
    /// Where the request came from; absent for events that have no request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The request; absent for events that have no request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
    /// The response; absent for events that have no request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseInfo>,
    /// What the action was applied to, as `kind:id` (`user:7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why it ended as it did: an error's text, a denial reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Short key/value context: tenant, service name, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Structured application context (record counts, formats, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// The state of the target before a sensitive action (redacted); absent for a creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The state of the target after a sensitive action (redacted); absent for a deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// Every field the action changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Change>>,
}

/// A UUID v7 created at `time`, so that an event's id and time come from one clock reading
/// (and one conversion to time since the epoch).
///
/// The counter that orders ids within a millisecond is per thread: request threads never
/// contend for a lock, as they would for `Uuid::now_v7`'s process-wide one.
pub(crate) fn event_id(time: Timestamp) -> Uuid {
    thread_local! {
        static CONTEXT: ContextV7 = const { ContextV7::new() };
    }
    let micros = time.unix_micros();
    Uuid::new_v7(uuid::Timestamp::from_unix(
        ThreadLocalContext::new(&CONTEXT),
        micros / 1_000_000,
        // Below a million microseconds: at most 999,999,000 nanoseconds.
        (micros % 1_000_000) as u32 * 1_000,
    ))
}

impl AuditEvent {
    /// A new event with a fresh id and the current time, and no request.
    pub fn new(
        category: Category,
        action: impl Into<Cow<'static, str>>,
        outcome: Outcome,
        actor: Actor,
    ) -> Self {
        Self::at(Timestamp::now(), category, action, outcome, actor)
    }

    /// A new event with a fresh id, at the given time.
    pub fn at(
        time: Timestamp,
        category: Category,
        action: impl Into<Cow<'static, str>>,
        outcome: Outcome,
        actor: Actor,
    ) -> Self {
        Self::with_id(
            event_id(Timestamp::now()),
            time,
            category,
            action.into(),
            outcome,
            actor,
        )
    }

    /// An event with this id and nothing beyond the fields given.
    pub(crate) fn with_id(
        id: Uuid,
        time: Timestamp,
        category: Category,
        action: Cow<'static, str>,
        outcome: Outcome,
        actor: Actor,
    ) -> Self {
        Self {
            schema: Cow::Borrowed(SCHEMA),
            id,
            time,
            category,
            action,
            outcome,
            actor,
            source: None,
            request: None,
            response: None,
            target: None,
            reason: None,
            labels: BTreeMap::new(),
            details: None,
            before: None,
            after: None,
            changes: None,
        }
    }

    /// Sets [`target`](Self::target).
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Sets [`reason`](Self::reason).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Adds one label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds one entry to [`details`](Self::details).
    pub fn with_detail(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.details
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// The response status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().and_then(|r| r.status)
    }

    /// The request id, when there was a request.
    pub fn request_id(&self) -> Option<&str> {
        self.request.as_ref().map(|r| r.id.as_str())
    }
}

/// One changed field of a sensitive action: `{"field", "old", "new"}`, or
/// `{"field", "redacted": true}` for a redacted field, whose values are never recorded.
///
/// Nested fields are dotted paths (`address.city`). `old` is absent for a creation, `new` for
/// a deletion; a present `null` is a value that was (or became) `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Change {
    /// The field's name or dotted path.
    pub field: String,
    /// The value before.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub old: Option<serde_json::Value>,
    /// The value after.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub new: Option<serde_json::Value>,
    /// The field is redacted: it changed, and its values are not recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl Change {
    /// A change of a visible value.
    pub fn value(
        field: impl Into<String>,
        old: Option<serde_json::Value>,
        new: Option<serde_json::Value>,
    ) -> Self {
        Self {
            field: field.into(),
            old,
            new,
            redacted: false,
        }
    }

    /// A change of a redacted value.
    pub fn redacted(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            old: None,
            new: None,
            redacted: true,
        }
    }
}

/// A field that is present is `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// What kind of event an [`AuditEvent`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Category {
    /// An ordinary request.
    Request,
    /// A change made by a sensitive handler (roles, configuration, accounts, money).
    Sensitive,
    /// Authentication: login, logout, password changes.
    Auth,
    /// A detector's alert about suspicious activity.
    Alert,
    /// The audit system itself: start, stop, recovery, gaps.
    System,
}

impl Category {
    /// The name used in JSON (`"request"`, `"sensitive"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Sensitive => "sensitive",
            Self::Auth => "auth",
            Self::Alert => "alert",
            Self::System => "system",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outcome {
    /// It was done (1xx-3xx).
    Success,
    /// It was refused for being invalid or not found (4xx other than 401 and 403).
    Failure,
    /// It was refused for lack of authentication or permission (401, 403).
    Denied,
    /// The server failed (5xx, an error from the service, a panic).
    Error,
    /// The request was abandoned before a response (client gone, timeout).
    Cancelled,
}

impl Outcome {
    /// The outcome a response status implies: 1xx-3xx success, 401 and 403 denied, other 4xx
    /// failure, 5xx (and anything else) error.
    ///
    /// ```
    /// use audit_layer::Outcome;
    /// use http::StatusCode;
    ///
    /// assert_eq!(Outcome::from_status(StatusCode::OK), Outcome::Success);
    /// assert_eq!(Outcome::from_status(StatusCode::FORBIDDEN), Outcome::Denied);
    /// assert_eq!(Outcome::from_status(StatusCode::NOT_FOUND), Outcome::Failure);
    /// assert_eq!(Outcome::from_status(StatusCode::BAD_GATEWAY), Outcome::Error);
    /// ```
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            100..=399 => Self::Success,
            401 | 403 => Self::Denied,
            400..=499 => Self::Failure,
            _ => Self::Error,
        }
    }

    /// The name used in JSON (`"success"`, `"denied"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Source {
    /// The client's address: the connection peer, or the client a trusted proxy names.
    /// Absent only when the server gave no peer address (a service called in-process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The client's port, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The `User-Agent` header, bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The forwarding chain as received (trusted or not), bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<Vec<String>>,
}

/// The request an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestInfo {
    /// The request id (see [`RequestId`](crate::RequestId)).
    pub id: String,
    /// The HTTP method.
    pub method: Cow<'static, str>,
    /// The path as the client sent it (before a router stripped a prefix), bounded; the
    /// segments of route parameters named like secrets (`/reset/{token}`) are redacted.
    pub path: String,
    /// The matched route pattern (`/users/{id}`), when the router reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The query string, with secret parameters redacted, bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Header values the configuration allows, by lower-case name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// The response an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseInfo {
    /// The status code; absent when there was no response (service error, cancellation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// From the request's arrival to the response head (or the end), in microseconds.
    pub duration_us: u64,
}

/// A point in time with microsecond precision, serialized as RFC 3339 UTC
/// (`2026-11-22T17:54:18.123456Z`). Finer precision is truncated on construction, so a
/// timestamp survives a round trip through JSON unchanged.
///
/// RFC 3339 has four-digit years: a time before 1970 or after 9999 is clamped to
/// `1970-01-01T00:00:00.000000Z` or `9999-12-31T23:59:59.999999Z` on construction, so that
/// every timestamp can be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Microseconds since the Unix epoch: what every event's encoding needs, kept rather
    /// than worked out again from a `SystemTime` for each.
    unix_micros: u64,
}

/// 9999-12-31T23:59:59.999999Z, in microseconds since the Unix epoch.
const MAX_UNIX_MICROS: u64 = 253_402_300_799_999_999;

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Parses RFC 3339 (`2026-11-22T17:54:18Z`, `2026-11-22T17:54:18.5Z`).
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        humantime::parse_rfc3339(text)
            .map(Self::from)
            .map_err(|source| TimestampError {
                text: text.chars().take(64).collect(),
                source,
            })
    }

    /// The time as a [`SystemTime`].
    pub fn as_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.unix_micros)
    }

    /// Microseconds since the Unix epoch (0 for times before it).
    pub fn unix_micros(self) -> u64 {
        self.unix_micros
    }

    /// The time `micros` after the Unix epoch (clamped to the end of year 9999).
    pub fn from_unix_micros(micros: u64) -> Self {
        Self {
            unix_micros: micros.min(MAX_UNIX_MICROS),
        }
    }

    /// The RFC 3339 text (`2026-11-22T17:54:18.123456Z`): always 27 ASCII bytes.
    pub(crate) fn rfc3339(self) -> [u8; 27] {
        let micros = self.unix_micros();
        let secs = micros / 1_000_000;
        let (year, month, day) = civil_from_days(secs / 86_400);
        let second_of_day = secs % 86_400;
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut text[0..4], year);
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        put_digits(&mut text[11..13], second_of_day / 3600);
        put_digits(&mut text[14..16], second_of_day / 60 % 60);
        put_digits(&mut text[17..19], second_of_day % 60);
        put_digits(&mut text[20..26], micros % 1_000_000);
        text
    }
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01: Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes `value`'s last `digits.len()` decimal digits, zero-padded.
fn put_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let micros = time.duration_since(UNIX_EPOCH).map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        });
        Self::from_unix_micros(micros)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only ASCII digits and separators are written.
        f.write_str(std::str::from_utf8(&self.rfc3339()).unwrap_or_default())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A timestamp that is not RFC 3339.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not an RFC 3339 time (like 2026-11-22T17:54:18Z): {source}")]
pub struct TimestampError {
    text: String,
    source: humantime::TimestampError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique_across_threads_and_ordered_within_one() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let now = Timestamp::now();
                    (0..10_000).map(|_| event_id(now)).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for thread in threads {
            let ids = thread.join().unwrap();
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(ids.iter().all(|id| id.get_version_num() == 7));
            all.extend(ids);
        }
        assert_eq!(all.len(), 40_000);
    }

    #[test]
    fn timestamps_are_written_as_humantime_writes_them() {
        let mut micros: u64 = 0;
        // Every day of the first years, then strides across the whole range.
        while micros <= MAX_UNIX_MICROS {
            let time = Timestamp::from_unix_micros(micros);
            assert_eq!(
                time.to_string(),
                humantime::format_rfc3339_micros(time.as_system_time()).to_string()
            );
            micros += if micros < 4_000 * 86_400_000_000 {
                86_399_999_999
            } else {
                1_234_567_890_123_457
            };
        }
        for text in [
            "2000-02-29T12:00:00.000001Z",
            "2100-03-01T00:00:00.000000Z",
            "2400-02-29T23:59:59.999999Z",
        ] {
            assert_eq!(Timestamp::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn times_outside_four_digit_years_are_clamped_not_a_panic() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            Timestamp::from(before).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        let last = "9999-12-31T23:59:59.999999Z";
        assert_eq!(Timestamp::from_unix_micros(u64::MAX).to_string(), last);
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(Timestamp::from(far).to_string(), last);
        assert_eq!(Timestamp::parse(last).unwrap().to_string(), last);
    }

    #[test]
    fn timestamp_has_microseconds_and_round_trips() {
        let t = Timestamp::from_unix_micros(1_763_834_058_000_001);
        let text = t.to_string();
        assert_eq!(text, "2025-11-22T17:54:18.000001Z");
        assert_eq!(Timestamp::parse(&text).unwrap(), t);
    }

    #[test]
    fn bad_timestamp_is_a_clear_error() {
        let err = Timestamp::parse("yesterday").unwrap_err();
        assert!(
            err.to_string()
                .contains("`yesterday` is not an RFC 3339 time")
        );
    }

    #[test]
    fn outcome_by_status() {
        for (code, outcome) in [
            (101, Outcome::Success),
            (204, Outcome::Success),
            (302, Outcome::Success),
            (400, Outcome::Failure),
            (401, Outcome::Denied),
            (403, Outcome::Denied),
            (404, Outcome::Failure),
            (500, Outcome::Error),
            (503, Outcome::Error),
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(Outcome::from_status(status), outcome, "{code}");
        }
    }
}
