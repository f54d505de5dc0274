//! Events the encoder benches share.

use audit_layer::event::Change;
use audit_layer::{Actor, AuditEvent, Category, Outcome};

/// A role change as the demo records it: its before, after and changes.
pub(crate) fn role_change() -> AuditEvent {
    let mut event = AuditEvent::new(
        Category::Sensitive,
        "user.role.change",
        Outcome::Success,
        Actor::user("1").with_name("alice").with_role("admin"),
    )
    .with_target("user:2");
    event.before = Some(serde_json::json!({"id": 2, "name": "bob", "role": "viewer"}));
    event.after = Some(serde_json::json!({"id": 2, "name": "bob", "role": "admin"}));
    event.changes = Some(vec![Change::value(
        "role",
        Some("viewer".into()),
        Some("admin".into()),
    )]);
    event
}
