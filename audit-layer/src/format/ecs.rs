//! Elastic Common Schema 8.17: each event as one ECS document. The mapping, field by
//! field, is in docs/siem.md; the tests check every field against ECS's published list.
//! What ECS has no field for is kept under `audit_layer.*`, outside ECS's names.

use crate::event::json::{Fields, address, number, plain, string, string_list, timestamp, uuid};
use crate::event::{AuditEvent, Outcome};
use crate::format::kind::{AccountActivity, Kind, Lifecycle, classify, detail_str, subject_user};
use crate::format::{Position, write_free_form};

/// The ECS version the documents follow.
pub(crate) const VERSION: &str = "8.17.0";

/// Appends `event` as one ECS JSON document (no newline).
pub(crate) fn write(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    let kind = classify(event);
    let mut o = Fields::new(out);
    timestamp(key!(o, "@timestamp"), event.time);
    key!(o, "ecs").extend_from_slice(b"{\"version\":\"8.17.0\"}");
    write_event(key!(o, "event"), event, &kind, position)?;
    write_user(key!(o, "user"), event, &kind)?;
    if let Some(source) = &event.source {
        if let Some(ip) = source.ip {
            let mut endpoint = Fields::new(key!(o, "source"));
            address(key!(endpoint, "ip"), ip)?;
            if let Some(port) = source.port {
                number(key!(endpoint, "port"), u64::from(port));
            }
            endpoint.end();
        }
        if let Some(agent) = &source.user_agent {
            let user_agent = key!(o, "user_agent");
            user_agent.extend_from_slice(b"{\"original\":");
            string(user_agent, agent)?;
            user_agent.push(b'}');
        }
    }
    if event.request.is_some() || event.response.is_some() {
        let mut http = Fields::new(key!(o, "http"));
        if let Some(request) = &event.request {
            let mut http_request = Fields::new(key!(http, "request"));
            string(key!(http_request, "id"), &request.id)?;
            string(key!(http_request, "method"), &request.method)?;
            http_request.end();
        }
        if let Some(code) = event.response.as_ref().and_then(|response| response.status) {
            let response = key!(http, "response");
            response.extend_from_slice(b"{\"status_code\":");
            number(response, u64::from(code));
            response.push(b'}');
        }
        http.end();
    }
    if let Some(request) = &event.request {
        let mut url = Fields::new(key!(o, "url"));
        string(key!(url, "path"), &request.path)?;
        if let Some(query) = &request.query {
            string(key!(url, "query"), query)?;
        }
        url.end();
    }
    if kind == Kind::Alert
        && let Some(name) = detail_str(event, "rule")
    {
        let rule = key!(o, "rule");
        rule.extend_from_slice(b"{\"name\":");
        string(rule, name)?;
        rule.push(b'}');
    }
    if !event.labels.is_empty() {
        crate::event::json::string_map(key!(o, "labels"), &event.labels)?;
    }
    write_extra(key!(o, "audit_layer"), event, position)?;
    o.end();
    Ok(())
}

fn write_event(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    kind: &Kind<'_>,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    let mut e = Fields::new(out);
    plain(
        key!(e, "kind"),
        if *kind == Kind::Alert {
            "alert"
        } else {
            "event"
        },
    );
    let (category, types) = category_and_types(kind, event);
    let list = key!(e, "category");
    list.push(b'[');
    plain(list, category);
    list.push(b']');
    let list = key!(e, "type");
    list.push(b'[');
    for (i, name) in types.iter().enumerate() {
        if i > 0 {
            list.push(b',');
        }
        plain(list, name);
    }
    list.push(b']');
    string(key!(e, "action"), &event.action)?;
    plain(
        key!(e, "outcome"),
        match event.outcome {
            Outcome::Success => "success",
            Outcome::Failure | Outcome::Denied | Outcome::Error => "failure",
            Outcome::Cancelled => "unknown",
        },
    );
    uuid(key!(e, "id"), &event.id);
    if let Some(response) = &event.response {
        number(
            key!(e, "duration"),
            response.duration_us.saturating_mul(1_000),
        );
    }
    if let Some(reason) = &event.reason {
        string(key!(e, "reason"), reason)?;
    }
    if let Some(position) = position {
        number(key!(e, "sequence"), position.seq);
    }
    e.end();
    Ok(())
}

/// `event.category` and `event.type`, from ECS's allowed values.
fn category_and_types(
    kind: &Kind<'_>,
    event: &AuditEvent,
) -> (&'static str, &'static [&'static str]) {
    match kind {
        Kind::Api => {
            let denied = event.outcome == Outcome::Denied;
            let method = event
                .request
                .as_ref()
                .map(|request| request.method.as_ref());
            let types: &'static [&'static str] = match (method, denied) {
                (Some("GET" | "HEAD"), false) => &["access"],
                (Some("GET" | "HEAD"), true) => &["access", "denied"],
                (Some("POST"), false) => &["creation"],
                (Some("POST"), true) => &["creation", "denied"],
                (Some("PUT" | "PATCH"), false) => &["change"],
                (Some("PUT" | "PATCH"), true) => &["change", "denied"],
                (Some("DELETE"), false) => &["deletion"],
                (Some("DELETE"), true) => &["deletion", "denied"],
                (_, false) => &["info"],
                (_, true) => &["info", "denied"],
            };
            ("api", types)
        }
        Kind::Login => ("authentication", &["start"]),
        Kind::Logout => ("authentication", &["end"]),
        Kind::OtherAuth => ("authentication", &["info"]),
        Kind::Account(AccountActivity::Create) => ("iam", &["user", "creation"]),
        Kind::Account(AccountActivity::Delete) => ("iam", &["user", "deletion"]),
        Kind::Account(_) | Kind::Privileges { .. } => ("iam", &["user", "change"]),
        Kind::Alert => ("intrusion_detection", &["info"]),
        Kind::Lifecycle(Lifecycle::Start) => ("process", &["start"]),
        Kind::Lifecycle(Lifecycle::Stop) => ("process", &["end"]),
        Kind::Lifecycle(Lifecycle::Other) => ("process", &["info"]),
    }
}

/// `user.*`: the actor; for account events, `user.target` (the account) and, for a grant,
/// `user.changes.roles`.
fn write_user(out: &mut Vec<u8>, event: &AuditEvent, kind: &Kind<'_>) -> serde_json::Result<()> {
    let actor = &event.actor;
    let mut user = Fields::new(out);
    let username = detail_str(event, "username");
    if actor.is_anonymous() {
        if let Some(name) = username {
            // A failed login's actor is nobody; the name tried is what SIEMs key on.
            string(key!(user, "name"), name)?;
        } else {
            string(key!(user, "id"), &actor.id)?;
        }
    } else {
        string(key!(user, "id"), &actor.id)?;
        if let Some(name) = actor.name.as_deref() {
            string(key!(user, "name"), name)?;
        }
    }
    if !actor.roles.is_empty() {
        string_list(key!(user, "roles"), &actor.roles)?;
    }
    if matches!(kind, Kind::Account(_) | Kind::Privileges { .. }) {
        let (uid, name) = subject_user(event);
        if !uid.is_empty() && (uid != actor.id || event.target.is_some()) {
            let mut target = Fields::new(key!(user, "target"));
            string(key!(target, "id"), uid)?;
            if let Some(name) = name {
                string(key!(target, "name"), name)?;
            }
            target.end();
        }
    }
    if let Kind::Privileges {
        granted: true,
        names,
    } = kind
    {
        let changes = key!(user, "changes");
        changes.extend_from_slice(b"{\"roles\":");
        string_list(changes, names)?;
        changes.push(b'}');
    }
    user.end();
    Ok(())
}

/// What ECS has no field for, under the `audit/1` names.
fn write_extra(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    let mut extra = Fields::new(out);
    plain(key!(extra, "category"), event.category.as_str());
    plain(key!(extra, "outcome"), event.outcome.as_str());
    if let Some(position) = position.filter(|position| !position.trail.is_empty()) {
        string(key!(extra, "trail"), position.trail)?;
    }
    if let Some(target) = &event.target {
        string(key!(extra, "target"), target)?;
    }
    if let Some(route) = event.request.as_ref().and_then(|r| r.route.as_ref()) {
        string(key!(extra, "route"), route)?;
    }
    if let Some(forwarded) = event.source.as_ref().and_then(|s| s.forwarded.as_ref()) {
        string_list(key!(extra, "forwarded"), forwarded)?;
    }
    write_free_form(&mut extra, event)?;
    extra.end();
    Ok(())
}
