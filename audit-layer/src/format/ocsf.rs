//! OCSF 1.8: each event as one object of the class its [`Kind`] names. The mapping, field
//! by field, is in docs/siem.md; the tests check every class against the published schema.

use crate::event::actor::ActorKind;
use crate::event::json::{Fields, address, number, plain, string, string_list, string_parts, uuid};
use crate::event::{AuditEvent, Outcome};
use crate::format::kind::{AccountActivity, Kind, Lifecycle, classify, detail_str, subject_user};
use crate::format::{Position, write_free_form};

/// The OCSF schema version the events follow, as a literal for `concat!`.
macro_rules! version {
    () => {
        "1.8.0"
    };
}

/// The OCSF schema version the events follow.
pub(crate) const VERSION: &str = version!();

/// One OCSF event class.
struct Class {
    uid: u64,
    name: &'static str,
    /// The object's opening and its class and category members, spelled out at compile
    /// time.
    head: &'static str,
}

macro_rules! class {
    ($uid:literal, $name:literal, $category_uid:literal, $category_name:literal) => {
        Class {
            uid: $uid,
            name: $name,
            head: concat!(
                "{\"class_uid\":",
                $uid,
                ",\"class_name\":\"",
                $name,
                "\",\"category_uid\":",
                $category_uid,
                ",\"category_name\":\"",
                $category_name,
                "\""
            ),
        }
    };
}

const API_ACTIVITY: Class = class!(6003, "API Activity", 6, "Application Activity");
const APPLICATION_LIFECYCLE: Class =
    class!(6002, "Application Lifecycle", 6, "Application Activity");
const AUTHENTICATION: Class = class!(3002, "Authentication", 3, "Identity & Access Management");
const ACCOUNT_CHANGE: Class = class!(3001, "Account Change", 3, "Identity & Access Management");
const USER_ACCESS: Class = class!(
    3005,
    "User Access Management",
    3,
    "Identity & Access Management"
);
const DETECTION_FINDING: Class = class!(2004, "Detection Finding", 2, "Findings");

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
    out.extend_from_slice(class.head.as_bytes());
    let mut o = Fields::after(out);
    number(key!(o, "activity_id"), activity_id);
    let activity_name = caption.unwrap_or(event.action.as_ref());
    string(key!(o, "activity_name"), activity_name)?;
    number(key!(o, "type_uid"), class.uid * 100 + activity_id);
    string_parts(key!(o, "type_name"), &[class.name, ": ", activity_name])?;
    number(key!(o, "time"), event.time.unix_micros() / 1_000);

    // Severity and status, each id with its caption, as one fragment.
    let severity: &[u8] = match (&kind, event.outcome) {
        (Kind::Alert, _) => b"\"severity_id\":4,\"severity\":\"High\"",
        (_, Outcome::Denied) => b"\"severity_id\":2,\"severity\":\"Low\"",
        _ => b"\"severity_id\":1,\"severity\":\"Informational\"",
    };
    o.member(severity);
    let status: &[u8] = match (&kind, event.outcome) {
        // A finding's status is its triage state, not the outcome of an action.
        (Kind::Alert, _) => b"\"status_id\":1,\"status\":\"New\",\"is_alert\":true",
        (_, Outcome::Success) => b"\"status_id\":1,\"status\":\"Success\"",
        (_, Outcome::Failure | Outcome::Denied | Outcome::Error) => {
            b"\"status_id\":2,\"status\":\"Failure\""
        }
        (_, Outcome::Cancelled) => b"\"status_id\":99,\"status\":\"Cancelled\"",
    };
    o.member(status);
    if let Some(reason) = &event.reason {
        string(key!(o, "status_detail"), reason)?;
    }
    if let Some(response) = &event.response {
        number(key!(o, "duration"), response.duration_us / 1_000);
    }
    write_metadata(key!(o, "metadata"), event, position)?;
    write_actor(key!(o, "actor"), event)?;

    let network = !matches!(kind, Kind::Alert | Kind::Lifecycle(_));
    if network {
        write_network(&mut o, event, kind == Kind::Api)?;
    }
    if kind == Kind::Api {
        write_api(key!(o, "api"), event)?;
    }
    if matches!(kind, Kind::Api | Kind::Privileges { .. } | Kind::Alert)
        && let Some(target) = &event.target
    {
        let resources = key!(o, "resources");
        resources.push(b'[');
        let mut resource = Fields::new(resources);
        string(key!(resource, "uid"), target)?;
        if let Some((kind, _)) = target.split_once(':') {
            string(key!(resource, "type"), kind)?;
        }
        resource.end();
        resources.push(b']');
    }
    match &kind {
        Kind::Login | Kind::Logout | Kind::OtherAuth | Kind::Account(_) => {
            write_user(key!(o, "user"), event)?;
        }
        Kind::Privileges { names, .. } => {
            write_user(key!(o, "user"), event)?;
            string_list(key!(o, "privileges"), names)?;
        }
        Kind::Alert => write_finding(key!(o, "finding_info"), event)?,
        Kind::Lifecycle(_) => write_product(key!(o, "app")),
        Kind::Api => {}
    }
    write_unmapped(key!(o, "unmapped"), event, network)?;
    o.end();
    Ok(())
}

/// The class, activity id and activity caption (`None`: the event's action names an
/// activity OCSF has no id for).
fn class_and_activity(kind: &Kind<'_>, event: &AuditEvent) -> (Class, u64, Option<&'static str>) {
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

/// This crate, as an OCSF `product`.
macro_rules! product {
    () => {
        concat!(
            "{\"name\":\"audit-layer\",\"vendor_name\":\"audit-layer\",\"version\":\"",
            env!("CARGO_PKG_VERSION"),
            "\"}"
        )
    };
}
fn write_product(out: &mut Vec<u8>) {
    out.extend_from_slice(product!().as_bytes());
}

fn write_metadata(
    out: &mut Vec<u8>,
    event: &AuditEvent,
    position: Option<Position<'_>>,
) -> serde_json::Result<()> {
    // The constant members first, as one fragment.
    out.extend_from_slice(
        concat!(
            "{\"version\":\"",
            version!(),
            "\",\"log_version\":\"audit/1\",\"product\":",
            product!(),
            ",\"uid\":"
        )
        .as_bytes(),
    );
    uuid(out, &event.id);
    let mut metadata = Fields::after(out);
    if let Some(position) = position {
        if !position.trail.is_empty() {
            string(key!(metadata, "log_name"), position.trail)?;
        }
        number(key!(metadata, "sequence"), position.seq);
    }
    if let Some(request) = &event.request {
        string(key!(metadata, "correlation_uid"), &request.id)?;
    }
    if !event.labels.is_empty() {
        let tags = key!(metadata, "tags");
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
    out.extend_from_slice(b"{\"user\":{\"uid\":");
    string(out, &actor.id)?;
    let mut user = Fields::after(out);
    if let Some(name) = &actor.name {
        string(key!(user, "name"), name)?;
    }
    let (type_id, type_name) = match actor.kind {
        ActorKind::User => (1, "User"),
        ActorKind::Service => (4, "Service"),
        ActorKind::Anonymous => (0, "Unknown"),
    };
    number(key!(user, "type_id"), type_id);
    plain(key!(user, "type"), type_name);
    if !actor.roles.is_empty() {
        let roles = actor.roles.iter().map(String::as_str);
        objects_of(key!(user, "groups"), b"name", roles)?;
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
        let mut endpoint = Fields::new(key!(o, "src_endpoint"));
        address(key!(endpoint, "ip"), ip)?;
        if let Some(port) = event.source.as_ref().and_then(|source| source.port) {
            number(key!(endpoint, "port"), u64::from(port));
        }
        endpoint.end();
    } else if required {
        key!(o, "src_endpoint").extend_from_slice(b"{\"name\":\"unknown\"}");
    }
    if let Some(request) = &event.request {
        let mut http = Fields::new(key!(o, "http_request"));
        string(key!(http, "http_method"), &request.method)?;
        string(key!(http, "uid"), &request.id)?;
        let mut url = Fields::new(key!(http, "url"));
        string(key!(url, "path"), &request.path)?;
        if let Some(query) = &request.query {
            string(key!(url, "query_string"), query)?;
        }
        url.end();
        if let Some(agent) = event.source.as_ref().and_then(|s| s.user_agent.as_ref()) {
            string(key!(http, "user_agent"), agent)?;
        }
        http.end();
    }
    if let Some(code) = event.response.as_ref().and_then(|response| response.status) {
        let response = key!(o, "http_response");
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
            string_parts(key!(api, "operation"), &[&request.method, " ", path])?;
        }
        _ => string(key!(api, "operation"), &event.action)?,
    }
    if let Some(request) = &event.request {
        let uid = key!(api, "request");
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
            key!(user, "uid"),
            if uid.is_empty() { &event.actor.id } else { uid },
        )?;
    }
    if let Some(name) = name {
        string(key!(user, "name"), name)?;
    }
    user.end();
    Ok(())
}

/// An array of one-member objects: `[{"name":"admin"},{"name":"ops"}]`.
fn objects_of<'a>(
    out: &mut Vec<u8>,
    member: &[u8],
    values: impl Iterator<Item = &'a str>,
) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(member);
        out.extend_from_slice(b"\":");
        string(out, value)?;
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

/// What a detector found: the rule, and the events that raised it.
fn write_finding(out: &mut Vec<u8>, event: &AuditEvent) -> serde_json::Result<()> {
    let mut finding = Fields::new(out);
    uuid(key!(finding, "uid"), &event.id);
    string(key!(finding, "title"), &event.action)?;
    if let Some(reason) = &event.reason {
        string(key!(finding, "desc"), reason)?;
    }
    if let Some(rule) = detail_str(event, "rule") {
        let types = key!(finding, "types");
        types.push(b'[');
        string(types, rule)?;
        types.push(b']');
        let analytic = key!(finding, "analytic");
        analytic.extend_from_slice(b"{\"name\":");
        string(analytic, rule)?;
        analytic.extend_from_slice(b",\"type_id\":1,\"type\":\"Rule\"}");
    }
    let related = event.details.as_ref().and_then(|d| d.get("events"));
    if let Some(serde_json::Value::Array(ids)) = related {
        let ids = ids.iter().filter_map(serde_json::Value::as_str);
        objects_of(key!(finding, "related_events"), b"uid", ids)?;
    }
    finding.end();
    Ok(())
}

/// What OCSF has no field for, under the `audit/1` names. `network`: whether the class
/// took the source and request (the others keep them here).
fn write_unmapped(out: &mut Vec<u8>, event: &AuditEvent, network: bool) -> serde_json::Result<()> {
    let mut unmapped = Fields::new(out);
    plain(key!(unmapped, "category"), event.category.as_str());
    string(key!(unmapped, "action"), &event.action)?;
    plain(key!(unmapped, "outcome"), event.outcome.as_str());
    if let Some(target) = &event.target {
        string(key!(unmapped, "target"), target)?;
    }
    if network {
        if let Some(route) = event.request.as_ref().and_then(|r| r.route.as_ref()) {
            string(key!(unmapped, "route"), route)?;
        }
        if let Some(forwarded) = event.source.as_ref().and_then(|s| s.forwarded.as_ref()) {
            string_list(key!(unmapped, "forwarded"), forwarded)?;
        }
    } else {
        if let Some(source) = &event.source {
            serde_json::to_writer(&mut *key!(unmapped, "source"), source)?;
        }
        if let Some(request) = &event.request {
            serde_json::to_writer(&mut *key!(unmapped, "request"), request)?;
        }
        if let Some(response) = &event.response {
            serde_json::to_writer(&mut *key!(unmapped, "response"), response)?;
        }
    }
    write_free_form(&mut unmapped, event)?;
    unmapped.end();
    Ok(())
}
