//! Events the policy let go: counted while the trail cannot take them, recorded as one
//! `audit.gap` event when it can again.

use std::collections::BTreeMap;

use serde_json::json;

use crate::event::actor::Actor;
use crate::event::{AuditEvent, Category, Outcome, Timestamp};

/// What was dropped or refused since the last `audit.gap` event.
#[derive(Debug, Default)]
pub(crate) struct Gap {
    dropped: u64,
    refused: u64,
    /// Refused sensitive actions, by action.
    refused_actions: BTreeMap<String, u64>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

impl Gap {
    /// Counts an event that could not be queued: an ordinary one dropped by the policy, or
    /// the event of a refused sensitive request.
    pub(crate) fn count(&mut self, event: &AuditEvent, refused: bool) {
        if refused {
            self.refused += 1;
            *self
                .refused_actions
                .entry(event.action.to_string())
                .or_default() += 1;
        } else {
            self.dropped += 1;
        }
        self.first = Some(self.first.map_or(event.time, |t| t.min(event.time)));
        self.last = Some(self.last.map_or(event.time, |t| t.max(event.time)));
    }

    /// The `audit.gap` event of everything counted so far, and a fresh count.
    pub(crate) fn take_event(&mut self) -> Option<AuditEvent> {
        if self.dropped == 0 && self.refused == 0 {
            return None;
        }
        let gap = std::mem::take(self);
        let reason = format!(
            "the audit trail could not take events: {} ordinary event(s) dropped by policy, \
             {} sensitive request(s) refused",
            gap.dropped, gap.refused
        );
        Some(
            AuditEvent::new(
                Category::System,
                "audit.gap",
                Outcome::Failure,
                Actor::service("audit"),
            )
            .with_reason(reason)
            .with_detail("dropped", gap.dropped)
            .with_detail("refused", gap.refused)
            .with_detail("refused_actions", json!(gap.refused_actions))
            .with_detail("from", gap.first.map(|t| t.to_string()))
            .with_detail("to", gap.last.map(|t| t.to_string())),
        )
    }
}
