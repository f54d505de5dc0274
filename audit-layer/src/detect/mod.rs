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
//! | Detector | Counts | Alert |
//! |---|---|---|
//! | [`BruteForce`] | failed logins per username, and per source IP | [`BRUTEFORCE`] |
//! | [`CredentialStuffing`] | distinct usernames failing from one source IP | [`CREDENTIAL_STUFFING`] |
//! | [`PasswordSpraying`] | accounts failing once or twice each from one network, over hours | [`PASSWORD_SPRAYING`] |
//! | [`DenialBurst`] | `denied` outcomes per actor | [`DENIAL_BURST`] |
//! | [`MassExport`] | records in one export, and exports per actor | [`MASS_EXPORT`] |
//! | [`PrivilegeGrant`] | a change that gives a privileged role | [`PRIVILEGE_GRANT`] |
//! | [`RevokedRole`] | a request still carrying a role the actor lost | [`REVOKED_ROLE`] |
//!
//! The counting detectors share one rule: a count that reaches its threshold within the
//! window raises **one** alert for the burst; hits that follow are part of that burst until
//! the key has been quiet for [`quiet`](BruteForce::quiet) (the window, unless set), and only
//! then can it alert again. Each alert's details name the `rule`, the `key` counted (also its
//! target), the `count`, the `window_seconds` and the ids of the `events` that raised it.
//! Memory is bounded: each count tracks at most [`max_tracked`](BruteForce::max_tracked) keys
//! (100,000 by default), each with a bounded history; past that, keys with nothing in the
//! window go first, and if that frees less than a quarter of the table, the count starts
//! again with a warning in the log.
//!
//! ```
//! use std::time::Duration;
//! use audit_layer::AuditTrail;
//! use audit_layer::sink::MemorySink;
//! use audit_layer::detect::{BruteForce, CredentialStuffing, DenialBurst, MassExport, PrivilegeGrant};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let runtime = tokio::runtime::Runtime::new()?;
//! # let _guard = runtime.enter();
//! let trail = AuditTrail::builder()
//!     .sink(MemorySink::new())
//!     .detector(
//!         BruteForce::logins()
//!             .per_username(5)
//!             .per_source_ip(10)
//!             .within(Duration::from_secs(60)),
//!     )
//!     .detector(CredentialStuffing::logins().distinct_usernames(10))
//!     .detector(DenialBurst::new().denials(10))
//!     .detector(MassExport::new().records(1_000).exports(10))
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

mod bruteforce;
mod burst;
mod credentials;
mod denial;
mod export;
mod roles;

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::event::{AuditEvent, Category, Outcome};

pub use bruteforce::BruteForce;
pub use credentials::{CredentialStuffing, PasswordSpraying};
pub use denial::DenialBurst;
pub use export::MassExport;
pub use roles::{PrivilegeGrant, RevokedRole};

/// The action of a [`BruteForce`] alert.
pub const BRUTEFORCE: &str = "security.bruteforce";
/// The action of a [`CredentialStuffing`] alert.
pub const CREDENTIAL_STUFFING: &str = "security.credential_stuffing";
/// The action of a [`PasswordSpraying`] alert.
pub const PASSWORD_SPRAYING: &str = "security.password_spraying";
/// The action of a [`DenialBurst`] alert.
pub const DENIAL_BURST: &str = "security.denial_burst";
/// The action of a [`MassExport`] alert.
pub const MASS_EXPORT: &str = "security.mass_export";
/// The action of a [`PrivilegeGrant`] alert.
pub const PRIVILEGE_GRANT: &str = "security.privilege.grant";
/// The action of a [`RevokedRole`] alert.
pub const REVOKED_ROLE: &str = "security.revoked_role";

/// The detail of an export event that says how many records it exported
/// (`audit.detail(RECORD_COUNT, rows.len())`), which [`MassExport`] reads.
pub const RECORD_COUNT: &str = "record_count";

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

/// The longest username or actor id an alert shows, in bytes: a target stays within its
/// bound.
const SHOWN: usize = 200;

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

/// The alert of a burst: the rule, the key (also the target), the count, the window and the
/// events that raised it, in the details every built-in detector uses.
fn burst_alert(
    trigger: &AuditEvent,
    action: &'static str,
    rule: &'static str,
    key: String,
    fired: burst::Fired,
    window: Duration,
    reason: String,
) -> AuditEvent {
    alert_about(trigger, action, Outcome::Failure)
        .with_target(key.clone())
        .with_reason(reason)
        .with_detail("rule", rule)
        .with_detail("key", key)
        .with_detail("count", fired.count)
        .with_detail("window_seconds", window.as_secs_f64())
        .with_detail("events", event_ids(&fired.events))
}

fn event_ids(ids: &[Uuid]) -> Value {
    Value::Array(ids.iter().map(|id| Value::String(id.to_string())).collect())
}

/// The window of a count, and the quiet spell that ends a burst (the window, unless set).
#[derive(Clone, Copy, Debug)]
struct Timing {
    window: Duration,
    quiet: Option<Duration>,
}

impl Timing {
    fn new(window: Duration) -> Self {
        Self {
            window,
            quiet: None,
        }
    }

    /// In microseconds of the events' time.
    fn span(self) -> burst::Span {
        span(self.window, self.quiet)
    }
}

/// `within` and `quiet` for a detector whose [`Timing`] is at `self.<path>`.
macro_rules! timing_setters {
    ($what:literal, $($path:tt)+) => {
        /// The sliding window the counted events must fall within.
        pub fn within(mut self, window: std::time::Duration) -> Self {
            self.$($path)+.window = window;
            self
        }

        #[doc = concat!(
            "How long ", $what, " must see nothing counted before it can raise another ",
            "alert (the window, unless set)."
        )]
        pub fn quiet(mut self, quiet: std::time::Duration) -> Self {
            self.$($path)+.quiet = Some(quiet);
            self
        }
    };
}
use timing_setters;

/// The window and quiet spell of a count, in microseconds.
fn span(window: Duration, quiet: Option<Duration>) -> burst::Span {
    burst::Span {
        window: micros(window),
        quiet: micros(quiet.unwrap_or(window)),
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Whether `event` is a failure (outcome failure or denied) of `action`.
fn is_failure_of(event: &AuditEvent, action: &str) -> bool {
    event.action == action && matches!(event.outcome, Outcome::Failure | Outcome::Denied)
}

/// The username a login was for: the `username` detail, or else the known actor's id.
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
