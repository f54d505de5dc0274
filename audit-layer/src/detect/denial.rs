//! Many `denied` outcomes for one actor: someone probing what they may do.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use super::burst::Bursts;
use super::{DENIAL_BURST, Detector, SHOWN, Timing, burst_alert, timing_setters};
use crate::event::{AuditEvent, Outcome};
use crate::redact::bound;

/// Many [`Denied`](Outcome::Denied) outcomes for one known actor within a window (10 within
/// 60 seconds by default): one [`DENIAL_BURST`] alert per burst, keyed `actor:<id>`.
///
/// Any event counts, whatever its action: a denied request, a denied sensitive change, a
/// locked account's login. Anonymous requests are not counted here (failed logins have
/// their own detectors).
///
/// ```
/// use audit_layer::detect::DenialBurst;
///
/// let detector = DenialBurst::new().denials(10);
/// ```
#[derive(Clone, Debug)]
pub struct DenialBurst {
    timing: Timing,
    by_actor: Bursts<u64>,
    hasher: RandomState,
}

impl DenialBurst {
    /// 10 denials within 60 seconds until told otherwise.
    pub fn new() -> Self {
        Self {
            timing: Timing::new(Duration::from_secs(60)),
            by_actor: Bursts::new("denial_burst", 10),
            hasher: RandomState::new(),
        }
    }

    /// Denials for one actor that raise an alert; 0 turns it off.
    pub fn denials(mut self, denials: u32) -> Self {
        self.by_actor.set_threshold(denials);
        self
    }

    timing_setters!("an actor", timing);

    /// The most actors tracked at once (100,000 by default).
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.by_actor.max_tracked = keys.max(1);
        self
    }
}

impl Default for DenialBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector for DenialBurst {
    fn name(&self) -> &str {
        "denial_burst"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        if event.outcome != Outcome::Denied || event.actor.is_anonymous() {
            return;
        }
        let key = self.hasher.hash_one(&event.actor.id);
        let at = event.time.unix_micros();
        let span = self.timing.span();
        if let Some(fired) = self.by_actor.hit(key, None, at, span, event.id) {
            let actor = bound(&event.actor.id, SHOWN);
            let reason = format!(
                "{} denied requests for actor {actor:?} within {} s",
                fired.count,
                self.timing.window.as_secs_f64()
            );
            alerts.push(
                burst_alert(
                    event,
                    DENIAL_BURST,
                    "denial_burst",
                    format!("actor:{actor}"),
                    fired,
                    self.timing.window,
                    reason,
                )
                .with_detail("action", event.action.as_ref()),
            );
        }
    }
}
