//! Roles: a privileged one given, and a revoked one still used.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::burst::{Bursts, Fired};
use super::{
    Detector, PRIVILEGE_GRANT, REVOKED_ROLE, SHOWN, alert_about, burst_alert, event_ids, micros,
    span,
};
use crate::event::{AuditEvent, Change, Outcome};
use crate::redact::bound;

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
    fields: RoleFields,
}

impl PrivilegeGrant {
    /// Watches grants of the `privileged` roles (`["admin"]`, say).
    pub fn new<I, S>(privileged: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            privileged: lower(privileged),
            fields: RoleFields::default(),
        }
    }

    /// The names of the fields that hold roles, instead of `role` and `roles`.
    pub fn fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.fields = RoleFields(lower(names));
        self
    }
}

impl Detector for PrivilegeGrant {
    fn name(&self) -> &str {
        "privilege_grant"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        for change in self.fields.changes(event) {
            for role in &self.privileged {
                if !holds(change.new.as_ref(), role) || holds(change.old.as_ref(), role) {
                    continue;
                }
                let mut alert = alert_about(event, PRIVILEGE_GRANT, Outcome::Success)
                    .with_reason(format!(
                        "`{}` gave the role {role:?} (field `{}`)",
                        event.action, change.field
                    ))
                    .with_detail("rule", "privilege_grant")
                    .with_detail("key", format!("role:{role}"))
                    .with_detail("count", 1)
                    .with_detail("window_seconds", 0.0)
                    .with_detail("events", event_ids(&[event.id]))
                    .with_detail("role", role.as_str())
                    .with_detail("field", change.field.as_str())
                    .with_detail("old", change.old.clone().unwrap_or(Value::Null))
                    .with_detail("new", change.new.clone().unwrap_or(Value::Null))
                    .with_detail("action", event.action.as_ref());
                alert.target.clone_from(&event.target);
                if let Some(request_id) = event.request_id() {
                    alert = alert.with_detail("request_id", request_id);
                }
                alerts.push(alert);
            }
        }
    }
}

/// A request by an actor whose recorded roles still include a role that a sensitive change
/// took from them: a session, token or cache issued before the revocation, still honoured.
/// Raises one [`REVOKED_ROLE`] alert per burst of such requests, keyed `actor:<id>`.
///
/// The application reports a revocation as [`PrivilegeGrant`] sees a grant: a successful
/// sensitive change of a role field (`role` or `roles`) whose target is `user:<id>`
/// (`#[sensitive(resource = User, ..)]` records exactly that), the old value holding a role
/// the new one does not. A later event whose actor has that id and still lists that role
/// among [`Actor::roles`](crate::Actor::roles) raises the alert; granting the role back
/// forgets the revocation, and so does [`remember`](Self::remember)'s time (a day by
/// default). Applications that do not record actors' roles get no alerts from it.
///
/// ```
/// use audit_layer::detect::RevokedRole;
///
/// let detector = RevokedRole::new().target_kind("user");
/// ```
#[derive(Clone, Debug)]
pub struct RevokedRole {
    fields: RoleFields,
    target_prefix: String,
    remember: Duration,
    max_tracked: usize,
    /// Per actor id: the roles taken, when, and by which event.
    revoked: HashMap<String, Vec<Revocation>>,
    alerted: Bursts<u64>,
    hasher: RandomState,
}

#[derive(Clone, Debug)]
struct Revocation {
    role: String,
    at: u64,
    event: Uuid,
}

/// How long an actor's stale requests form one burst.
const REVOKED_QUIET: Duration = Duration::from_secs(600);

impl RevokedRole {
    /// Watches revocations of any role, on targets `user:<id>`, for a day.
    pub fn new() -> Self {
        Self {
            fields: RoleFields::default(),
            target_prefix: "user:".to_owned(),
            remember: Duration::from_secs(24 * 3600),
            max_tracked: super::burst::DEFAULT_MAX_TRACKED,
            revoked: HashMap::new(),
            alerted: Bursts::new("revoked_role", 1),
            hasher: RandomState::new(),
        }
    }

    /// The names of the fields that hold roles, instead of `role` and `roles`.
    pub fn fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.fields = RoleFields(lower(names));
        self
    }

    /// The kind of target whose id is an actor's id (`user`, for targets `user:<id>`).
    pub fn target_kind(mut self, kind: &str) -> Self {
        self.target_prefix = format!("{kind}:");
        self
    }

    /// How long a revocation is watched for.
    pub fn remember(mut self, time: Duration) -> Self {
        self.remember = time;
        self
    }

    /// The most actors with revocations tracked at once (100,000 by default).
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.max_tracked = keys.max(1);
        self.alerted.max_tracked = keys.max(1);
        self
    }

    fn note_changes(&mut self, event: &AuditEvent) {
        let Some(id) = event
            .target
            .as_deref()
            .and_then(|t| t.strip_prefix(self.target_prefix.as_str()))
        else {
            return;
        };
        let at = event.time.unix_micros();
        let updates: Vec<_> = self
            .fields
            .changes(event)
            .map(|change| (roles(change.old.as_ref()), roles(change.new.as_ref())))
            .collect();
        for (old, new) in updates {
            if let Some(list) = self.revoked.get_mut(id) {
                list.retain(|r| !new.contains(&r.role));
            }
            for role in old.into_iter().filter(|role| !new.contains(role)) {
                if !self.revoked.contains_key(id) && self.revoked.len() >= self.max_tracked {
                    self.make_room(at);
                }
                let list = self.revoked.entry(id.to_owned()).or_default();
                list.retain(|r| r.role != role);
                list.push(Revocation {
                    role,
                    at,
                    event: event.id,
                });
            }
        }
        self.revoked.retain(|_, list| !list.is_empty());
    }

    fn make_room(&mut self, at: u64) {
        let since = at.saturating_sub(micros(self.remember));
        for list in self.revoked.values_mut() {
            list.retain(|r| r.at > since);
        }
        self.revoked.retain(|_, list| !list.is_empty());
        if self.revoked.len() > self.max_tracked / 4 * 3 {
            tracing::warn!(
                target: "audit",
                tracked = self.revoked.len(),
                "the revoked-role detector tracks too many actors at once; it forgets them"
            );
            self.revoked.clear();
        }
    }

    /// The revocation `event`'s actor still carries a role of, if any.
    fn stale(&self, event: &AuditEvent) -> Option<&Revocation> {
        if event.actor.is_anonymous() || event.actor.roles.is_empty() {
            return None;
        }
        let at = event.time.unix_micros();
        let remember = micros(self.remember);
        self.revoked.get(&event.actor.id)?.iter().find(|r| {
            at > r.at
                && at - r.at <= remember
                && event
                    .actor
                    .roles
                    .iter()
                    .any(|held| held.eq_ignore_ascii_case(&r.role))
        })
    }
}

impl Default for RevokedRole {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector for RevokedRole {
    fn name(&self) -> &str {
        "revoked_role"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        if let Some(revocation) = self.stale(event) {
            let (role, revoked_by) = (revocation.role.clone(), revocation.event);
            let key = self.hasher.hash_one(&event.actor.id);
            let span = span(REVOKED_QUIET, None);
            let at = event.time.unix_micros();
            if self.alerted.hit(key, None, at, span, event.id).is_some() {
                let actor = bound(&event.actor.id, SHOWN);
                let fired = Fired {
                    count: 1,
                    events: vec![revoked_by, event.id],
                };
                let reason =
                    format!("actor {actor:?} acted with the role {role:?} after it was revoked");
                alerts.push(
                    burst_alert(
                        event,
                        REVOKED_ROLE,
                        "revoked_role",
                        format!("actor:{actor}"),
                        fired,
                        self.remember,
                        reason,
                    )
                    .with_detail("role", role)
                    .with_detail("action", event.action.as_ref()),
                );
            }
        }
        self.note_changes(event);
    }
}

/// The field names that hold roles.
#[derive(Clone, Debug)]
struct RoleFields(Vec<String>);

impl Default for RoleFields {
    fn default() -> Self {
        Self(vec!["role".to_owned(), "roles".to_owned()])
    }
}

impl RoleFields {
    /// The role changes of a successful event whose values are recorded.
    fn changes<'e>(&self, event: &'e AuditEvent) -> impl Iterator<Item = &'e Change> {
        let changes = match (&event.outcome, &event.changes) {
            (Outcome::Success, Some(changes)) => changes.as_slice(),
            _ => &[],
        };
        changes
            .iter()
            .filter(|change| !change.redacted && self.is_role_field(&change.field))
    }

    fn is_role_field(&self, path: &str) -> bool {
        let last = path.rsplit('.').next().unwrap_or(path);
        self.0.iter().any(|f| f.eq_ignore_ascii_case(last))
    }
}

fn lower<I, S>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    names
        .into_iter()
        .map(|name| name.as_ref().to_lowercase())
        .collect()
}

/// Whether a role field's value is, or contains, `role`.
fn holds(value: Option<&Value>, role: &str) -> bool {
    match value {
        Some(Value::String(text)) => text.to_lowercase() == role,
        Some(Value::Array(items)) => items.iter().any(|item| holds(Some(item), role)),
        _ => false,
    }
}

/// The roles a role field's value holds, lower-cased.
fn roles(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => vec![text.to_lowercase()],
        Some(Value::Array(items)) => items.iter().flat_map(|item| roles(Some(item))).collect(),
        _ => Vec::new(),
    }
}
