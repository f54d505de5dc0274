//! Elastic Common Schema 8.17: each event as one ECS document. The mapping, field by
//! field, is in docs/siem.md; the tests check every field against ECS's published list.
//! What ECS has no field for is kept under `audit_layer.*`, outside ECS's names.

use crate::event::json::{Fields, address, number, plain, string, string_list, timestamp, uuid};
use crate::event::{AuditEvent, Outcome};
use crate::format::Position;
use crate::format::kind::{AccountActivity, Kind, Lifecycle, classify, detail_str, subject_user};

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
    timestamp(o.key(b"@timestamp"), event.time);
    o.key(b"ecs").extend_from_slice(b"{\"version\":\"8.17.0\"}");
    write_event(o.key(b"event"), event, &kind, position)?;
    write_user(o.key(b"user"), event, &kind)?;
    if let Some(source) = &event.source {
        if let Some(ip) = source.ip {
            let mut endpoint = Fields::new(o.key(b"source"));
            address(endpoint.key(b"ip"), ip)?;
            if let Some(port) = source.port {
                number(endpoint.key(b"port"), u64::from(port));
            }
            endpoint.end();
        }
        if let Some(agent) = &source.user_agent {
            let user_agent = o.key(b"user_agent");
            user_agent.extend_from_slice(b"{\"original\":");
            string(user_agent, agent)?;
            user_agent.push(b'}');
        }
    }
    if event.request.is_some() || event.response.is_some() {
        let mut http = Fields::new(o.key(b"http"));
        if let Some(request) = &event.request {
            let mut http_request = Fields::new(http.key(b"request"));
            string(http_request.key(b"id"), &request.id)?;
            string(http_request.key(b"method"), &request.method)?;
            http_request.end();
        }
        if let Some(code) = event.response.as_ref().and_then(|response| response.status) {
            let response = http.key(b"response");
            response.extend_from_slice(b"{\"status_code\":");
            number(response, u64::from(code));
            response.push(b'}');
        }
        http.end();
    }
    if let Some(request) = &event.request {
        let mut url = Fields::new(o.key(b"url"));
        string(url.key(b"path"), &request.path)?;
        if let Some(query) = &request.query {
            string(url.key(b"query"), query)?;
        }
        url.end();
    }
    if kind == Kind::Alert
        && let Some(detector) = detail_str(event, "detector")
    {
        let rule = o.key(b"rule");
        rule.extend_from_slice(b"{\"name\":");
        string(rule, detector)?;
        rule.push(b'}');
    }
    if !event.labels.is_empty() {
        crate::event::json::string_map(o.key(b"labels"), &event.labels)?;
    }
    write_extra(o.key(b"audit_layer"), event, position)?;
    o.end();
    Ok(())
}

fn write_event(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    kind: &Kind,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    let mut e = Fields::new(out);
    plain(
        e.key(b"kind"),
        if *kind == Kind::Alert {
            "alert"
        } else {
            "event"
        },
    );
    let (category, types) = category_and_types(kind, event);
    let list = e.key(b"category");
    list.push(b'[');
    plain(list, category);
    list.push(b']');
    let list = e.key(b"type");
    list.push(b'[');
    for (i, name) in types.iter().enumerate() {
        if i > 0 {
            list.push(b',');
        }
        plain(list, name);
    }
    list.push(b']');
    string(e.key(b"action"), &event.action)?;
    plain(
        e.key(b"outcome"),
        match event.outcome {
            Outcome::Success => "success",
            Outcome::Failure | Outcome::Denied | Outcome::Error => "failure",
            Outcome::Cancelled => "unknown",
        },
    );
    uuid(e.key(b"id"), &event.id);
    if let Some(response) = &event.response {
        number(
            e.key(b"duration"),
            response.duration_us.saturating_mul(1_000),
        );
    }
    if let Some(reason) = &event.reason {
        string(e.key(b"reason"), reason)?;
    }
    if let Some(position) = position {
        number(e.key(b"sequence"), position.seq);
    }
    e.end();
    Ok(())
}

/// `event.category` and `event.type`, from ECS's allowed values.
fn category_and_types(kind: &Kind, event: &AuditEvent) -> (&'static str, &'static [&'static str]) {
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
fn write_user(out: &mut Vec<u8>, event: &AuditEvent, kind: &Kind) -> serde_json::Result<()> {
    let actor = &event.actor;
    let mut user = Fields::new(out);
    let username = detail_str(event, "username");
    if actor.is_anonymous() {
        if let Some(name) = username {
            // A failed login's actor is nobody; the name tried is what SIEMs key on.
            string(user.key(b"name"), name)?;
        } else {
            string(user.key(b"id"), &actor.id)?;
        }
    } else {
        string(user.key(b"id"), &actor.id)?;
        if let Some(name) = actor.name.as_deref() {
            string(user.key(b"name"), name)?;
        }
    }
    if !actor.roles.is_empty() {
        string_list(user.key(b"roles"), &actor.roles)?;
    }
    if matches!(kind, Kind::Account(_) | Kind::Privileges { .. }) {
        let (uid, name) = subject_user(event);
        if !uid.is_empty() && (uid != actor.id || event.target.is_some()) {
            let mut target = Fields::new(user.key(b"target"));
            string(target.key(b"id"), uid)?;
            if let Some(name) = name {
                string(target.key(b"name"), name)?;
            }
            target.end();
        }
    }
    if let Kind::Privileges {
        granted: true,
        names,
    } = kind
    {
        let changes = user.key(b"changes");
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
    plain(extra.key(b"category"), event.category.as_str());
    plain(extra.key(b"outcome"), event.outcome.as_str());
    if let Some(position) = position.filter(|position| !position.trail.is_empty()) {
        string(extra.key(b"trail"), position.trail)?;
    }
    if let Some(target) = &event.target {
        string(extra.key(b"target"), target)?;
    }
    if let Some(route) = event.request.as_ref().and_then(|r| r.route.as_ref()) {
        string(extra.key(b"route"), route)?;
    }
    if let Some(forwarded) = event.source.as_ref().and_then(|s| s.forwarded.as_ref()) {
        string_list(extra.key(b"forwarded"), forwarded)?;
    }
    if let Some(details) = &event.details {
        serde_json::to_writer(&mut *extra.key(b"details"), details)?;
    }
    if let Some(before) = &event.before {
        serde_json::to_writer(&mut *extra.key(b"before"), before)?;
    }
    if let Some(after) = &event.after {
        serde_json::to_writer(&mut *extra.key(b"after"), after)?;
    }
    if let Some(changes) = &event.changes {
        serde_json::to_writer(&mut *extra.key(b"changes"), changes)?;
    }
    extra.end();
    Ok(())
}
