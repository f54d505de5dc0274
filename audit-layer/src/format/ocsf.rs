//! OCSF 1.8: each event as one object of the class its [`Kind`] names. The mapping, field
//! by field, is in docs/siem.md; the tests check every class against the published schema.

use crate::event::actor::ActorKind;
use crate::event::json::{Fields, address, needs_escape, number, plain, string, string_list, uuid};
use crate::event::{AuditEvent, Outcome};
use crate::format::Position;
use crate::format::kind::{AccountActivity, Kind, Lifecycle, classify, detail_str, subject_user};

/// The OCSF schema version the events follow.
pub(crate) const VERSION: &str = "1.8.0";

/// One OCSF event class.
struct Class {
    uid: u64,
    name: &'static str,
    category_uid: u64,
    category_name: &'static str,
}

const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};
const APPLICATION_LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
};
const AUTHENTICATION: Class = Class {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const ACCOUNT_CHANGE: Class = Class {
    uid: 3001,
    name: "Account Change",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const USER_ACCESS: Class = Class {
    uid: 3005,
    name: "User Access Management",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};

/// OCSF's "Other" activity: its name is then the event's own action.
const OTHER: u64 = 99;

/// Appends `event` as one OCSF JSON object (no newline).
pub(crate) fn write(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    let kind = classify(event);
    let (class, activity_id, caption) = class_and_activity(&kind, event);
    let mut o = Fields::new(out);
    number(o.key(b"class_uid"), class.uid);
    plain(o.key(b"class_name"), class.name);
    number(o.key(b"category_uid"), class.category_uid);
    plain(o.key(b"category_name"), class.category_name);
    number(o.key(b"activity_id"), activity_id);
    let activity_name = caption.unwrap_or(event.action.as_ref());
    string(o.key(b"activity_name"), activity_name)?;
    number(o.key(b"type_uid"), class.uid * 100 + activity_id);
    let type_name = o.key(b"type_name");
    if caption.is_some() || !needs_escape(activity_name.as_bytes()) {
        type_name.push(b'"');
        type_name.extend_from_slice(class.name.as_bytes());
        type_name.extend_from_slice(b": ");
        type_name.extend_from_slice(activity_name.as_bytes());
        type_name.push(b'"');
    } else {
        string(type_name, &format!("{}: {activity_name}", class.name))?;
    }
    number(o.key(b"time"), event.time.unix_micros() / 1_000);

    let (severity_id, severity) = match (&kind, event.outcome) {
        (Kind::Alert, _) => (4, "High"),
        (_, Outcome::Denied) => (2, "Low"),
        _ => (1, "Informational"),
    };
    number(o.key(b"severity_id"), severity_id);
    plain(o.key(b"severity"), severity);
    if kind == Kind::Alert {
        // A finding's status is its triage state, not the outcome of an action.
        number(o.key(b"status_id"), 1);
        plain(o.key(b"status"), "New");
        o.key(b"is_alert").extend_from_slice(b"true");
    } else {
        let (status_id, status) = match event.outcome {
            Outcome::Success => (1, "Success"),
            Outcome::Failure | Outcome::Denied | Outcome::Error => (2, "Failure"),
            Outcome::Cancelled => (OTHER, "Cancelled"),
        };
        number(o.key(b"status_id"), status_id);
        plain(o.key(b"status"), status);
    }
    if let Some(reason) = &event.reason {
        string(o.key(b"status_detail"), reason)?;
    }
    if let Some(response) = &event.response {
        number(o.key(b"duration"), response.duration_us / 1_000);
    }
    write_metadata(o.key(b"metadata"), event, position)?;
    write_actor(o.key(b"actor"), event)?;

    let network = !matches!(kind, Kind::Alert | Kind::Lifecycle(_));
    if network {
        write_network(&mut o, event, kind == Kind::Api)?;
    }
    if kind == Kind::Api {
        write_api(o.key(b"api"), event)?;
    }
    if matches!(kind, Kind::Api | Kind::Privileges { .. } | Kind::Alert)
        && let Some(target) = &event.target
    {
        let resources = o.key(b"resources");
        resources.push(b'[');
        let mut resource = Fields::new(resources);
        string(resource.key(b"uid"), target)?;
        if let Some((kind, _)) = target.split_once(':') {
            string(resource.key(b"type"), kind)?;
        }
        resource.end();
        resources.push(b']');
    }
    match &kind {
        Kind::Login | Kind::Logout | Kind::OtherAuth | Kind::Account(_) => {
            write_user(o.key(b"user"), event)?;
        }
        Kind::Privileges { names, .. } => {
            write_user(o.key(b"user"), event)?;
            string_list(o.key(b"privileges"), names)?;
        }
        Kind::Alert => write_finding(o.key(b"finding_info"), event)?,
        Kind::Lifecycle(_) => write_product(o.key(b"app")),
        Kind::Api => {}
    }
    write_unmapped(o.key(b"unmapped"), event, network)?;
    o.end();
    Ok(())
}

/// The class, activity id and activity caption (`None`: the event's action names an
/// activity OCSF has no id for).
fn class_and_activity(kind: &Kind, event: &AuditEvent) -> (Class, u64, Option<&'static str>) {
    match kind {
        Kind::Api => {
            let method = event
                .request
                .as_ref()
                .map(|request| request.method.as_ref());
            let (id, caption) = match method {
                Some("POST") => (1, "Create"),
                Some("GET" | "HEAD") => (2, "Read"),
                Some("PUT" | "PATCH") => (3, "Update"),
                Some("DELETE") => (4, "Delete"),
                _ => return (API_ACTIVITY, OTHER, None),
            };
            (API_ACTIVITY, id, Some(caption))
        }
        Kind::Login => (AUTHENTICATION, 1, Some("Logon")),
        Kind::Logout => (AUTHENTICATION, 2, Some("Logoff")),
        Kind::OtherAuth => (AUTHENTICATION, OTHER, None),
        Kind::Account(activity) => {
            let (id, caption) = match activity {
                AccountActivity::Create => (1, "Create"),
                AccountActivity::Enable => (2, "Enable"),
                AccountActivity::PasswordChange => (3, "Password Change"),
                AccountActivity::PasswordReset => (4, "Password Reset"),
                AccountActivity::Disable => (5, "Disable"),
                AccountActivity::Delete => (6, "Delete"),
                AccountActivity::Lock => (9, "Lock"),
                AccountActivity::Unlock => (12, "Unlock"),
                AccountActivity::Other => return (ACCOUNT_CHANGE, OTHER, None),
            };
            (ACCOUNT_CHANGE, id, Some(caption))
        }
        Kind::Privileges { granted: true, .. } => (USER_ACCESS, 1, Some("Assign Privileges")),
        Kind::Privileges { granted: false, .. } => (USER_ACCESS, 2, Some("Revoke Privileges")),
        Kind::Alert => (DETECTION_FINDING, 1, Some("Create")),
        Kind::Lifecycle(Lifecycle::Start) => (APPLICATION_LIFECYCLE, 3, Some("Start")),
        Kind::Lifecycle(Lifecycle::Stop) => (APPLICATION_LIFECYCLE, 4, Some("Stop")),
        Kind::Lifecycle(Lifecycle::Other) => (APPLICATION_LIFECYCLE, OTHER, None),
    }
}

fn write_product(out: &mut Vec<u8>) {
    out.extend_from_slice(
        concat!(
            "{\"name\":\"audit-layer\",\"vendor_name\":\"audit-layer\",\"version\":\"",
            env!("CARGO_PKG_VERSION"),
            "\"}"
        )
        .as_bytes(),
    );
}

fn write_metadata(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    let mut metadata = Fields::new(out);
    plain(metadata.key(b"version"), VERSION);
    write_product(metadata.key(b"product"));
    uuid(metadata.key(b"uid"), &event.id);
    plain(metadata.key(b"log_version"), crate::event::SCHEMA);
    if let Some(position) = position {
        if !position.trail.is_empty() {
            string(metadata.key(b"log_name"), position.trail)?;
        }
        number(metadata.key(b"sequence"), position.seq);
    }
    if let Some(request) = &event.request {
        string(metadata.key(b"correlation_uid"), &request.id)?;
    }
    if !event.labels.is_empty() {
        let tags = metadata.key(b"tags");
        tags.push(b'[');
        for (i, (name, value)) in event.labels.iter().enumerate() {
            if i > 0 {
                tags.push(b',');
            }
            tags.extend_from_slice(b"{\"name\":");
            string(tags, name)?;
            tags.extend_from_slice(b",\"value\":");
            string(tags, value)?;
            tags.push(b'}');
        }
        tags.push(b']');
    }
    metadata.end();
    Ok(())
}

fn write_actor(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let actor = &event.actor;
    out.extend_from_slice(b"{\"user\":");
    let mut user = Fields::new(out);
    string(user.key(b"uid"), &actor.id)?;
    if let Some(name) = &actor.name {
        string(user.key(b"name"), name)?;
    }
    let (type_id, type_name) = match actor.kind {
        ActorKind::User => (1, "User"),
        ActorKind::Service => (4, "Service"),
        ActorKind::Anonymous => (0, "Unknown"),
    };
    number(user.key(b"type_id"), type_id);
    plain(user.key(b"type"), type_name);
    if !actor.roles.is_empty() {
        let groups = user.key(b"groups");
        groups.push(b'[');
        for (i, role) in actor.roles.iter().enumerate() {
            if i > 0 {
                groups.push(b',');
            }
            groups.extend_from_slice(b"{\"name\":");
            string(groups, role)?;
            groups.push(b'}');
        }
        groups.push(b']');
    }
    user.end();
    out.push(b'}');
    Ok(())
}

/// `src_endpoint`, `http_request` and `http_response`; API Activity requires a source
/// endpoint, named `unknown` when the server gave no peer address.
fn write_network(o: &mut Fields<'_>, event: &AuditEvent, required: bool) -> serde_json::Result<()> {
    let ip = event.source.as_ref().and_then(|source| source.ip);
    if let Some(ip) = ip {
        let mut endpoint = Fields::new(o.key(b"src_endpoint"));
        address(endpoint.key(b"ip"), ip)?;
        if let Some(port) = event.source.as_ref().and_then(|source| source.port) {
            number(endpoint.key(b"port"), u64::from(port));
        }
        endpoint.end();
    } else if required {
        o.key(b"src_endpoint")
            .extend_from_slice(b"{\"name\":\"unknown\"}");
    }
    if let Some(request) = &event.request {
        let mut http = Fields::new(o.key(b"http_request"));
        string(http.key(b"http_method"), &request.method)?;
        string(http.key(b"uid"), &request.id)?;
        let mut url = Fields::new(http.key(b"url"));
        string(url.key(b"path"), &request.path)?;
        if let Some(query) = &request.query {
            string(url.key(b"query_string"), query)?;
        }
        url.end();
        if let Some(agent) = event.source.as_ref().and_then(|s| s.user_agent.as_ref()) {
            string(http.key(b"user_agent"), agent)?;
        }
        http.end();
    }
    if let Some(code) = event.response.as_ref().and_then(|response| response.status) {
        let response = o.key(b"http_response");
        response.extend_from_slice(b"{\"code\":");
        number(response, u64::from(code));
        response.push(b'}');
    }
    Ok(())
}

/// The API call: the application's action, or `METHOD route` for a plain request.
fn write_api(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let mut api = Fields::new(out);
    match &event.request {
        Some(request) if event.action == "http.request" => {
            let path = request.route.as_deref().unwrap_or(&request.path);
            string(api.key(b"operation"), &format!("{} {path}", request.method))?;
        }
        _ => string(api.key(b"operation"), &event.action)?,
    }
    if let Some(request) = &event.request {
        let uid = api.key(b"request");
        uid.extend_from_slice(b"{\"uid\":");
        string(uid, &request.id)?;
        uid.push(b'}');
    }
    api.end();
    Ok(())
}

/// The account an IAM event is about.
fn write_user(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let (uid, name) = subject_user(event);
    let mut user = Fields::new(out);
    if !uid.is_empty() || name.is_none() {
        string(
            user.key(b"uid"),
            if uid.is_empty() { &event.actor.id } else { uid },
        )?;
    }
    if let Some(name) = name {
        string(user.key(b"name"), name)?;
    }
    user.end();
    Ok(())
}

/// What a detector found: the rule, and the event that raised it.
fn write_finding(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let mut finding = Fields::new(out);
    uuid(finding.key(b"uid"), &event.id);
    string(finding.key(b"title"), &event.action)?;
    if let Some(reason) = &event.reason {
        string(finding.key(b"desc"), reason)?;
    }
    if let Some(detector) = detail_str(event, "detector") {
        let types = finding.key(b"types");
        types.push(b'[');
        string(types, detector)?;
        types.push(b']');
        let analytic = finding.key(b"analytic");
        analytic.extend_from_slice(b"{\"name\":");
        string(analytic, detector)?;
        analytic.extend_from_slice(b",\"type_id\":1,\"type\":\"Rule\"}");
    }
    if let Some(related) = detail_str(event, "event") {
        let events = finding.key(b"related_events");
        events.extend_from_slice(b"[{\"uid\":");
        string(events, related)?;
        events.extend_from_slice(b"}]");
    }
    finding.end();
    Ok(())
}

/// What OCSF has no field for, under the `audit/1` names. `network`: whether the class
/// took the source and request (the others keep them here).
fn write_unmapped(out: &mut Vec<u8>, event: &AuditEvent, network: bool) -> serde_json::Result<()> {
    let mut unmapped = Fields::new(out);
    plain(unmapped.key(b"category"), event.category.as_str());
    string(unmapped.key(b"action"), &event.action)?;
    plain(unmapped.key(b"outcome"), event.outcome.as_str());
    if let Some(target) = &event.target {
        string(unmapped.key(b"target"), target)?;
    }
    if network {
        if let Some(route) = event.request.as_ref().and_then(|r| r.route.as_ref()) {
            string(unmapped.key(b"route"), route)?;
        }
        if let Some(forwarded) = event.source.as_ref().and_then(|s| s.forwarded.as_ref()) {
            string_list(unmapped.key(b"forwarded"), forwarded)?;
        }
    } else {
        if let Some(source) = &event.source {
            serde_json::to_writer(&mut *unmapped.key(b"source"), source)?;
        }
        if let Some(request) = &event.request {
            serde_json::to_writer(&mut *unmapped.key(b"request"), request)?;
        }
        if let Some(response) = &event.response {
            serde_json::to_writer(&mut *unmapped.key(b"response"), response)?;
        }
    }
    if let Some(details) = &event.details {
        serde_json::to_writer(&mut *unmapped.key(b"details"), details)?;
    }
    if let Some(before) = &event.before {
        serde_json::to_writer(&mut *unmapped.key(b"before"), before)?;
    }
    if let Some(after) = &event.after {
        serde_json::to_writer(&mut *unmapped.key(b"after"), after)?;
    }
    if let Some(changes) = &event.changes {
        serde_json::to_writer(&mut *unmapped.key(b"changes"), changes)?;
    }
    unmapped.end();
    Ok(())
}
