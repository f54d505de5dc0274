//! Sensitive handlers: the before and after state of every change to roles, configuration,
//! accounts or money, recorded with no audit code in the handler.
//!
//! Three pieces:
//!
//! - `#[derive(Auditable)]` marks a state type as auditable and says, per field, what the
//!   trail may see: `#[audit(id)]` (the resource id, in targets like `user:7`),
//!   `#[audit(redact)]` (recorded as `"[REDACTED]"`; a change shows as
//!   `{"field", "redacted": true}`), `#[audit(skip)]` (never recorded), and
//!   `#[audit(rename = "...")]`; on the type, `#[audit(resource = "user")]`. Redaction happens
//!   when the snapshot is taken, so no secret reaches the queue. As a safety net, fields and
//!   nested keys *named* like secrets (see [`SecretNames`](crate::redact::SecretNames)) are redacted
//!   too, except the id, and so are a URL's credentials in any string
//!   (`postgres://app:[REDACTED]@db`, in a `database_url` field); a change to those alone
//!   shows as redacted.
//! - [`Snapshot`] says, once per resource type, how to read its current state.
//! - `#[sensitive(action = "...", resource = Type, key = param)]` on an axum handler records,
//!   in the request's event: category `sensitive`, the action, the target, `before` (read
//!   just before the body runs), `after` (read just after it returns, with the same loader)
//!   and `changes`.
//!
//! Nested `Auditable` fields are compared field by field (`address.city`), and so is an
//! `Option` of one; a `Vec`, `HashMap` or `BTreeMap` of an `Auditable` type is shown element
//! by element with each element's own redactions, and compared as a whole. Any other
//! `Serialize` field (`Vec`, maps, enums) is compared as a whole value. Deeper containers
//! (an `Option<Vec<N>>`, a tuple) of an `Auditable` type go through `Serialize`, where only
//! the name-based safety net applies: mark such a field `redact` or `skip` itself.
//!
//! # The attribute
//!
//! | key | meaning |
//! |---|---|
//! | `action = "user.role.change"` | required: the event's action |
//! | `resource = User` | required: the [`Auditable`] + [`Snapshot`] type the handler changes |
//! | `key = id` | the resource's key: a parameter binding (`Path(id)`) or an expression over one (`body.user`); required unless `create` |
//! | `create` | the handler creates the resource: no `before`; `after` is the resource it returns |
//! | `capture_body` | record the request's JSON body, secrets redacted, in `details.request_body` (at most 8 KiB) |
//! | `on_load_error = "refuse"` | answer 503 without running the handler when the before-state cannot be read (default `"proceed"`: run it, and put the error in `reason`) |
//!
//! The handler stays an ordinary axum handler: its extractors keep working, routing code does
//! not change, and `#[axum::debug_handler]` still applies. Its state is read through its
//! `State(..)` parameter. The attribute marks the request as sensitive *before* the other
//! extractors run, so a request that an authorization extractor rejects is still recorded as
//! this action, `denied`.
//!
//! | what happens | `before` | `after` | `outcome` |
//! |---|---|---|---|
//! | change | the old state | the new state | from the status |
//! | creation (`create`) | absent | the created resource | from the status |
//! | deletion | the whole (redacted) record | absent | from the status |
//! | the handler fails (error or non-2xx) | the old state | the state it left | from the status |
//! | the loader fails | what could be read | what could be read | from the status; the error in `reason` |
//!
//! # The manual path
//!
//! For what the attribute cannot express, [`AuditContext`](crate::AuditContext) (an
//! extractor) sets the action, target, details and labels,
//! [`mark_sensitive`](crate::AuditContext::mark_sensitive)s any event, and
//! [`record_change`](crate::AuditContext::record_change)s an explicit before/after pair.

pub(crate) mod auditable;
mod diff;
#[cfg(feature = "axum")]
pub(crate) mod handler;
mod manual;
mod snapshot;

pub use self::auditable::AuditSnapshot;
pub(crate) use self::auditable::Auditable;
#[doc(hidden)]
pub use self::auditable::{
    FieldRef, SnapshotValue, ViaAuditable, ViaAuditableCollection, ViaSerialize,
};
pub(crate) use self::diff::recorded_change;
pub use self::snapshot::Snapshot;
pub use crate::layer::shared::SensitiveRouteInfo;

/// `resource:id` of a snapshot, else of a key.
pub(crate) fn target_of<R: Auditable>(
    snapshot: Option<&AuditSnapshot>,
    key: Option<&str>,
) -> Option<String> {
    snapshot
        .and_then(AuditSnapshot::id)
        .or(key)
        .map(|id| format!("{}:{id}", R::RESOURCE))
}
