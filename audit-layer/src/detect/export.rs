//! Exports too large, or too many: data leaving in bulk.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use serde_json::Value;

use super::burst::{Bursts, Fired};
use super::{Detector, MASS_EXPORT, RECORD_COUNT, SHOWN, Timing, burst_alert, timing_setters};
use crate::event::{AuditEvent, Outcome};
use crate::redact::bound;

/// An export of more than [`records`](Self::records) records (1,000 by default), or
/// [`exports`](Self::exports) exports by one actor within a window (10 within 10 minutes):
/// one [`MASS_EXPORT`] alert per burst, keyed `actor:<id>`.
///
/// An export is a successful event whose action is `export` or ends in `.export`
/// (`user.export`, `report.export`), or one of [`actions`](Self::actions); its size is its
/// [`RECORD_COUNT`] detail. An actor's large exports form one burst until the actor has
/// been quiet for the window.
///
/// ```
/// use std::time::Duration;
/// use audit_layer::detect::MassExport;
///
/// let detector = MassExport::new()
///     .records(1_000)
///     .exports(10)
///     .within(Duration::from_secs(600));
/// ```
#[derive(Clone, Debug)]
pub struct MassExport {
    actions: Option<Vec<String>>,
    records: Option<u64>,
    timing: Timing,
    large: Bursts<u64>,
    many: Bursts<u64>,
    hasher: RandomState,
}

impl MassExport {
    /// 1,000 records, or 10 exports within 10 minutes, until told otherwise.
    pub fn new() -> Self {
        Self {
            actions: None,
            records: Some(1_000),
            timing: Timing::new(Duration::from_secs(600)),
            large: Bursts::new("mass_export", 1),
            many: Bursts::new("mass_export", 10),
            hasher: RandomState::new(),
        }
    }

    /// The actions that are exports, instead of `export` and `*.export`.
    pub fn actions<I, S>(mut self, actions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.actions = Some(actions.into_iter().map(Into::into).collect());
        self
    }

    /// An export of more records than this raises an alert; 0 turns this rule off.
    pub fn records(mut self, records: u64) -> Self {
        self.records = (records > 0).then_some(records);
        self
    }

    /// Exports by one actor within the window that raise an alert; 0 turns this rule off.
    pub fn exports(mut self, exports: u32) -> Self {
        self.many.set_threshold(exports);
        self
    }

    timing_setters!("an actor", timing);

    /// The most actors tracked at once, per rule (100,000 by default).
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.large.max_tracked = keys.max(1);
        self.many.max_tracked = keys.max(1);
        self
    }

    fn is_export(&self, action: &str) -> bool {
        match &self.actions {
            Some(actions) => actions.iter().any(|a| a == action),
            None => action == "export" || action.ends_with(".export"),
        }
    }

    fn alert(&self, event: &AuditEvent, fired: Fired, what: String) -> AuditEvent {
        let actor = bound(&event.actor.id, SHOWN);
        let reason = format!("{what} by actor {actor:?}");
        burst_alert(
            event,
            MASS_EXPORT,
            "mass_export",
            format!("actor:{actor}"),
            fired,
            self.timing.window,
            reason,
        )
        .with_detail("action", event.action.as_ref())
    }
}

impl Default for MassExport {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector for MassExport {
    fn name(&self) -> &str {
        "mass_export"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        if event.outcome != Outcome::Success || !self.is_export(&event.action) {
            return;
        }
        let key = self.hasher.hash_one(&event.actor.id);
        let at = event.time.unix_micros();
        let span = self.timing.span();
        let records = event
            .details
            .as_ref()
            .and_then(|d| d.get(RECORD_COUNT))
            .and_then(Value::as_u64);
        if let (Some(records), Some(most)) = (records, self.records)
            && records > most
            && let Some(fired) = self.large.hit(key, None, at, span, event.id)
        {
            let what = format!("an export of {records} records (over {most})");
            alerts.push(
                self.alert(event, fired, what)
                    .with_detail("records", records),
            );
        }
        if let Some(fired) = self.many.hit(key, None, at, span, event.id) {
            let what = format!(
                "{} exports within {} s",
                fired.count,
                self.timing.window.as_secs_f64()
            );
            alerts.push(self.alert(event, fired, what));
        }
    }
}
