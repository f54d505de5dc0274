//! Detectors: suspicious activity found in the trail's own events, recorded as `alert` events.
//!
//! A [`Detector`] sees every event the trail accepts, in the order it writes them, on the
//! trail's writer thread: never on the request path, and without locks. The alerts it raises
//! are events of category [`Alert`](Category::Alert), chained and written right after the
//! event that raised them, and synced at once, as the durability of alerts asks. The
//! built-in detectors date an alert with the time of the event that raised it, so that
//! `audit detect`, which replays a stored trail through them, finds the same alerts at the
//! same times.
//!
//! Two detectors come with the crate:
//!
//! - [`BruteForce`]: many failed logins for one username, or from one source IP, within a
//!   window, raise one [`BRUTEFORCE`] alert.
//! - [`PrivilegeGrant`]: a sensitive change that gives someone a privileged role raises a
//!   [`PRIVILEGE_GRANT`] alert.
//!
//! ```
//! use std::time::Duration;
//! use audit_layer::AuditTrail;
//! use audit_layer::sink::MemorySink;
//! use audit_layer::detect::{BruteForce, PrivilegeGrant};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let runtime = tokio::runtime::Runtime::new()?;
//! # let _guard = runtime.enter();
//! let trail = AuditTrail::builder()
//!     .sink(MemorySink::new())
//!     .detector(
//!         BruteForce::new("auth.login")
//!             .per_username(5)
//!             .per_source_ip(10)
//!             .within(Duration::from_secs(60)),
//!     )
//!     .detector(PrivilegeGrant::new(["admin"]))
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! Detectors look at what the trail records, so what they see is already redacted and
//! bounded. Their alerts are only as timely as the events: an event is seen when its request
//! completes. Their counts live in memory: a restart starts them again, and events a
//! failure policy dropped (recorded as an `audit.gap`) are not seen.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::event::{AuditEvent, Category, Outcome};
use crate::redact::bound;

/// The action of a [`BruteForce`] alert.
pub const BRUTEFORCE: &str = "security.bruteforce";
/// The action of a [`PrivilegeGrant`] alert.
pub const PRIVILEGE_GRANT: &str = "security.privilege.grant";

/// Looks at each event the trail accepts, and raises alerts about what it finds.
///
/// `observe` runs on the trail's writer thread, between writes: it must be quick and must
/// not block (no I/O, no waiting on locks other threads hold long). A detector that panics is
/// logged and skipped for that event; the trail goes on.
pub trait Detector: Send + 'static {
    /// A short name, for logs and the `audit_alerts_total` metric.
    fn name(&self) -> &str;

    /// Looks at one event; pushes the alerts it raises onto `alerts`. They are recorded
    /// with category [`Alert`](Category::Alert), whatever category they were given, and are
    /// not shown to detectors.
    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>);
}

/// The longest username an alert shows, in bytes: a target stays within its bound.
const SHOWN_USERNAME: usize = 200;

/// The keys a [`BruteForce`] detector tracks at most, per kind, by default.
const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Failed logins, counted per username and per source IP in a sliding window: reaching a
/// threshold raises one [`BRUTEFORCE`] alert and starts the count again.
///
/// A failed login is an event whose action is the one given to [`new`](Self::new) and whose
/// outcome is [`Failure`](Outcome::Failure) or [`Denied`](Outcome::Denied). Its username is
/// the `username` entry of the event's details (as `AuditContext::detail("username", ..)`
/// sets it), or else the actor's id when the actor is known; usernames are compared
/// case-insensitively, so that `Alice` and `alice` count together. Its source IP is the
/// recorded client IP, which forwarding headers change only when they come from trusted
/// proxies. Time is the events' own time, so a replayed or test trail is judged as it
/// happened.
///
/// Memory is bounded: at most [`max_tracked`](Self::max_tracked) usernames (kept as 64-bit
/// hashes, however long they are) and as many IPs are tracked at once, each with at most a
/// threshold's worth of recent failures. Past that, keys whose last failure left the window
/// are forgotten first; if that frees less than a quarter of the table, every count of that
/// kind starts again, and a warning is logged. An alert shows at most the first 200 bytes
/// of a username.
#[derive(Clone, Debug)]
pub struct BruteForce {
    action: Cow<'static, str>,
    window: Duration,
    /// Keyed by a hash of the lower-cased username: a username may be kilobytes long, and
    /// the table must stay small whatever an attacker sends.
    by_username: Window<u64>,
    username_hasher: RandomState,
    by_source_ip: Window<IpAddr>,
}

impl BruteForce {
    /// Counts the failed logins that [`AuditContext::login_failed`](crate::AuditContext::login_failed)
    /// records: [`BruteForce::new`] with [`auth::LOGIN`](crate::auth::LOGIN).
    pub fn logins() -> Self {
        Self::new(crate::auth::LOGIN)
    }

    /// Counts failures of `action` (`"auth.login"` in most applications): 5 per username and
    /// 10 per source IP within 60 seconds until told otherwise.
    pub fn new(action: impl Into<Cow<'static, str>>) -> Self {
        Self {
            action: action.into(),
            window: Duration::from_secs(60),
            by_username: Window::new(Some(5)),
            username_hasher: RandomState::new(),
            by_source_ip: Window::new(Some(10)),
        }
    }

    /// Failures for one username that raise an alert; 0 turns this count off.
    pub fn per_username(mut self, failures: u32) -> Self {
        self.by_username.threshold = (failures > 0).then_some(failures);
        self
    }

    /// Failures from one source IP that raise an alert; 0 turns this count off.
    pub fn per_source_ip(mut self, failures: u32) -> Self {
        self.by_source_ip.threshold = (failures > 0).then_some(failures);
        self
    }

    /// The sliding window the failures must fall within.
    pub fn within(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The most usernames, and the most source IPs, tracked at once (100,000 by default).
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.by_username.max_tracked = keys.max(1);
        self.by_source_ip.max_tracked = keys.max(1);
        self
    }

    fn is_failed_login(&self, event: &AuditEvent) -> bool {
        event.action == self.action && matches!(event.outcome, Outcome::Failure | Outcome::Denied)
    }

    fn alert(&self, trigger: &AuditEvent, key: Key<'_>, failures: Vec<Uuid>) -> AuditEvent {
        let (target, what) = match key {
            Key::Username(name) => (format!("username:{name}"), format!("username {name:?}")),
            Key::SourceIp(ip) => (format!("ip:{ip}"), format!("source IP {ip}")),
        };
        let mut alert = alert_about(trigger, BRUTEFORCE, Outcome::Failure)
            .with_target(target)
            .with_reason(format!(
                "{} failed `{}` for {what} within {} s",
                failures.len(),
                self.action,
                self.window.as_secs_f64()
            ))
            .with_detail("detector", "bruteforce")
            .with_detail("failures", failures.len())
            .with_detail("window_seconds", self.window.as_secs_f64())
            .with_detail(
                "events",
                failures
                    .iter()
                    .map(|id| Value::String(id.to_string()))
                    .collect::<Vec<_>>(),
            );
        match key {
            Key::Username(name) => alert = alert.with_detail(crate::auth::USERNAME, name),
            Key::SourceIp(ip) => alert = alert.with_detail("source_ip", ip.to_string()),
        }
        alert
    }
}

impl Detector for BruteForce {
    fn name(&self) -> &str {
        "bruteforce"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        if !self.is_failed_login(event) {
            return;
        }
        let at = event.time.unix_micros();
        let window = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        if let Some(name) = username(event) {
            let name = name.to_lowercase();
            let key = self.username_hasher.hash_one(&name);
            if let Some(failures) = self.by_username.hit(key, at, window, event.id) {
                let shown = bound(&name, SHOWN_USERNAME);
                alerts.push(self.alert(event, Key::Username(&shown), failures));
            }
        }
        if let Some(ip) = event.source.as_ref().and_then(|s| s.ip)
            && let Some(failures) = self.by_source_ip.hit(ip, at, window, event.id)
        {
            alerts.push(self.alert(event, Key::SourceIp(ip), failures));
        }
    }
}

/// What a [`BruteForce`] count is about.
#[derive(Clone, Copy)]
enum Key<'a> {
    Username(&'a str),
    SourceIp(IpAddr),
}

/// An alert about `trigger`: dated as it (so that a replay finds it at the same time), with
/// its actor and source.
fn alert_about(trigger: &AuditEvent, action: &'static str, outcome: Outcome) -> AuditEvent {
    let mut alert = AuditEvent::at(
        trigger.time,
        Category::Alert,
        action,
        outcome,
        trigger.actor.clone(),
    );
    alert.source = trigger.source.clone();
    alert
}

/// The username a failed login was for.
fn username(event: &AuditEvent) -> Option<&str> {
    let detail = event
        .details
        .as_ref()
        .and_then(|d| d.get(crate::auth::USERNAME))
        .and_then(Value::as_str);
    detail
        .or_else(|| (!event.actor.is_anonymous()).then_some(event.actor.id.as_str()))
        .filter(|name| !name.is_empty())
}

/// Recent failures per key: times (unix microseconds) and event ids, oldest first.
#[derive(Clone, Debug)]
struct Window<K> {
    threshold: Option<u32>,
    max_tracked: usize,
    keys: HashMap<K, VecDeque<(u64, Uuid)>>,
}

impl<K: Hash + Eq> Window<K> {
    fn new(threshold: Option<u32>) -> Self {
        Self {
            threshold,
            max_tracked: DEFAULT_MAX_TRACKED,
            keys: HashMap::new(),
        }
    }

    /// Counts a failure of `key` at `at`; at the threshold, returns the failures' event ids
    /// and forgets them, so that the next alert takes as many failures again.
    fn hit(&mut self, key: K, at: u64, window: u64, id: Uuid) -> Option<Vec<Uuid>> {
        let threshold = usize::try_from(self.threshold?).unwrap_or(usize::MAX);
        let since = at.saturating_sub(window);
        if !self.keys.contains_key(&key) && self.keys.len() >= self.max_tracked {
            // Not just the last pushed: failures arrive a little out of time order.
            self.keys
                .retain(|_, times| times.iter().any(|(t, _)| *t > since));
            // Unless a quarter of the table is free again, start over: otherwise keys that
            // expire one at a time would make every new key scan the whole table.
            if self.keys.len() > self.max_tracked / 4 * 3 {
                tracing::warn!(
                    target: "audit",
                    tracked = self.keys.len(),
                    "the brute-force detector tracks too many keys at once; its counts start again"
                );
                self.keys.clear();
            }
        }
        let times = self.keys.entry(key).or_default();
        // Events arrive as their requests complete, not quite in time order: every failure
        // inside the window counts, wherever it is in the queue.
        times.retain(|(t, _)| *t > since);
        times.push_back((at, id));
        if times.len() < threshold {
            return None;
        }
        Some(times.drain(..).map(|(_, id)| id).collect())
    }
}

/// A sensitive change that gives a privileged role: a changed field named like a role
/// (`role` or `roles` by default; the last segment of a nested field's path counts) whose new
/// value is, or contains, one of the privileged roles, which the old value did not. Raises
/// one [`PRIVILEGE_GRANT`] alert per role granted, with the event's actor (who granted it) and
/// target (who received it).
///
/// Only successful events count; a creation (no old value) with a privileged role counts
/// too. Roles are compared case-insensitively; redacted fields carry no values and are not
/// looked at.
#[derive(Clone, Debug)]
pub struct PrivilegeGrant {
    privileged: Vec<String>,
    fields: Vec<String>,
}

impl PrivilegeGrant {
    /// Watches grants of the `privileged` roles (`["admin"]`, say).
    pub fn new<I, S>(privileged: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            privileged: privileged
                .into_iter()
                .map(|role| role.as_ref().to_lowercase())
                .collect(),
            fields: vec!["role".to_owned(), "roles".to_owned()],
        }
    }

    /// The names of the fields that hold roles, instead of `role` and `roles`.
    pub fn fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.fields = names
            .into_iter()
            .map(|name| name.as_ref().to_lowercase())
            .collect();
        self
    }

    fn is_role_field(&self, path: &str) -> bool {
        let last = path.rsplit('.').next().unwrap_or(path);
        self.fields.iter().any(|f| f.eq_ignore_ascii_case(last))
    }
}

impl Detector for PrivilegeGrant {
    fn name(&self) -> &str {
        "privilege_grant"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        if event.outcome != Outcome::Success {
            return;
        }
        let Some(changes) = &event.changes else {
            return;
        };
        for change in changes {
            if change.redacted || !self.is_role_field(&change.field) {
                continue;
            }
            for role in &self.privileged {
                if !holds(change.new.as_ref(), role) || holds(change.old.as_ref(), role) {
                    continue;
                }
                let mut alert = alert_about(event, PRIVILEGE_GRANT, Outcome::Success)
                    .with_reason(format!(
                        "`{}` gave the role {role:?} (field `{}`)",
                        event.action, change.field
                    ))
                    .with_detail("detector", "privilege_grant")
                    .with_detail("role", role.as_str())
                    .with_detail("field", change.field.as_str())
                    .with_detail("old", change.old.clone().unwrap_or(Value::Null))
                    .with_detail("new", change.new.clone().unwrap_or(Value::Null))
                    .with_detail("action", event.action.as_ref())
                    .with_detail("event", event.id.to_string());
                alert.target.clone_from(&event.target);
                if let Some(request_id) = event.request_id() {
                    alert = alert.with_detail("request_id", request_id);
                }
                alerts.push(alert);
            }
        }
    }
}

/// Whether a role field's value is, or contains, `role`.
fn holds(value: Option<&Value>, role: &str) -> bool {
    match value {
        Some(Value::String(text)) => text.to_lowercase() == role,
        Some(Value::Array(items)) => items.iter().any(|item| holds(Some(item), role)),
        _ => false,
    }
}
