//! The manual path of sensitive changes: [`AuditContext::record_change`], for what the
//! attribute cannot express.

use super::{Auditable, recorded_change, target_of};
use crate::layer::context::AuditContext;

impl AuditContext {
    /// Records the state of a resource before and after this request changed it: `before`,
    /// `after` and `changes` (redacted as the type's [`Auditable`] derive says), and the
    /// target (`user:7`) if none is set. `None` before is a creation, `None` after a deletion.
    pub fn record_change<T: Auditable>(&self, before: Option<&T>, after: Option<&T>) {
        let names = self.secret_names();
        let before = before.map(|b| b.audit_snapshot().redacted_for_trail(names));
        let after = after.map(|a| a.audit_snapshot().redacted_for_trail(names));
        let target = target_of::<T>(before.as_ref().or(after.as_ref()), None);
        let change = recorded_change(before, after);
        let mut notes = self.lock();
        notes.before = change.before;
        notes.after = change.after;
        notes.changes = Some(change.changes);
        if notes.target.is_none() {
            notes.target = target;
        }
    }
}
