//! Failed logins per username and per source IP.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Duration;

use super::burst::Bursts;
use super::{
    BRUTEFORCE, Detector, SHOWN, Timing, burst_alert, is_failure_of, timing_setters, username,
};
use crate::event::AuditEvent;
use crate::redact::bound;

/// Failed logins, counted per username and per source IP in a sliding window: reaching a
/// threshold raises one [`BRUTEFORCE`] alert for the burst.
///
/// A failed login is an event whose action is the one given to [`new`](Self::new) and whose
/// outcome is [`Failure`](crate::Outcome::Failure) or [`Denied`](crate::Outcome::Denied).
/// Its username is the `username` detail (as
/// [`AuditContext::login_failed`](crate::AuditContext::login_failed) sets it), or else the
/// actor's id when the actor is known; usernames are compared case-insensitively, so that
/// `Alice` and `alice` count together. Its source IP is the recorded client IP, which
/// forwarding headers change only when they come from trusted proxies. Time is the events'
/// own time, so a replayed or test trail is judged as it happened.
///
/// Usernames are kept as 64-bit hashes, however long they are; an alert shows at most the
/// first 200 bytes of one. The burst and memory rules are the
/// [module's](crate::detect#detectors).
#[derive(Clone, Debug)]
pub struct BruteForce {
    action: Cow<'static, str>,
    timing: Timing,
    by_username: Bursts<u64>,
    username_hasher: RandomState,
    by_source_ip: Bursts<IpAddr>,
}

impl BruteForce {
    /// Counts the failed logins that [`AuditContext::login_failed`](crate::AuditContext::login_failed)
    /// records: [`BruteForce::new`] with [`auth::LOGIN`](crate::auth::LOGIN).
    pub fn logins() -> Self {
        Self::new(crate::auth::LOGIN)
    }

    /// Counts failures of `action`: 5 per username and 10 per source IP within 60 seconds
    /// until told otherwise.
    pub fn new(action: impl Into<Cow<'static, str>>) -> Self {
        Self {
            action: action.into(),
            timing: Timing::new(Duration::from_secs(60)),
            by_username: Bursts::new("bruteforce", 5),
            username_hasher: RandomState::new(),
            by_source_ip: Bursts::new("bruteforce", 10),
        }
    }

    /// Failures for one username that raise an alert; 0 turns this count off.
    pub fn per_username(mut self, failures: u32) -> Self {
        self.by_username.set_threshold(failures);
        self
    }

    /// Failures from one source IP that raise an alert; 0 turns this count off.
    pub fn per_source_ip(mut self, failures: u32) -> Self {
        self.by_source_ip.set_threshold(failures);
        self
    }

    timing_setters!("a username or IP", timing);

    /// The most usernames, and the most source IPs, tracked at once (100,000 by default).
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.by_username.max_tracked = keys.max(1);
        self.by_source_ip.max_tracked = keys.max(1);
        self
    }

    fn reason(&self, count: usize, what: &str) -> String {
        format!(
            "{count} failed `{}` for {what} within {} s",
            self.action,
            self.timing.window.as_secs_f64()
        )
    }
}

impl Detector for BruteForce {
    fn name(&self) -> &str {
        "bruteforce"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        if !is_failure_of(event, &self.action) {
            return;
        }
        let at = event.time.unix_micros();
        let span = self.timing.span();
        if let Some(name) = username(event) {
            let name = name.to_lowercase();
            let key = self.username_hasher.hash_one(&name);
            if let Some(fired) = self.by_username.hit(key, None, at, span, event.id) {
                let shown = bound(&name, SHOWN);
                let reason = self.reason(fired.count, &format!("username {shown:?}"));
                let key = format!("username:{shown}");
                alerts.push(
                    burst_alert(
                        event,
                        BRUTEFORCE,
                        "bruteforce",
                        key,
                        fired,
                        self.timing.window,
                        reason,
                    )
                    .with_detail(crate::auth::USERNAME, shown.as_str()),
                );
            }
        }
        if let Some(ip) = event.source.as_ref().and_then(|s| s.ip)
            && let Some(fired) = self.by_source_ip.hit(ip, None, at, span, event.id)
        {
            let reason = self.reason(fired.count, &format!("source IP {ip}"));
            alerts.push(
                burst_alert(
                    event,
                    BRUTEFORCE,
                    "bruteforce",
                    format!("ip:{ip}"),
                    fired,
                    self.timing.window,
                    reason,
                )
                .with_detail("source_ip", ip.to_string()),
            );
        }
    }
}
