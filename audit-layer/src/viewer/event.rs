//! `/events/{seq}`: one event in full; for a sensitive event, its changes field by field.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::html::{self, escape, value as shown};
use super::{Shared, base};
use crate::AuditContext;
use crate::file::{Filter, Page};
use crate::index::search_page;

pub(super) async fn page(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    Path(seq): Path<String>,
    audit: AuditContext,
) -> Response {
    let base = base(&original, &uri);
    super::viewed(&audit, "event");
    let Ok(seq) = seq.parse::<u64>() else {
        return html::error(
            &base,
            StatusCode::BAD_REQUEST,
            "an event is named by its seq",
        );
    };
    audit.detail("seq", seq);
    let page = Page {
        oldest_first: true,
        after: seq.checked_sub(1),
        limit: Some(1),
        ..Page::default()
    };
    let dir = shared.dir.clone();
    let found =
        tokio::task::spawn_blocking(move || search_page(&dir, &Filter::default(), &page)).await;
    let line = match found {
        Ok(Ok(lines)) => lines.into_iter().find(|line| line.seq == seq),
        Ok(Err(error)) => {
            return html::error(&base, StatusCode::INTERNAL_SERVER_ERROR, &error.to_string());
        }
        Err(_) => {
            return html::error(
                &base,
                StatusCode::INTERNAL_SERVER_ERROR,
                "the search failed",
            );
        }
    };
    let Some(line) = line else {
        return html::error(&base, StatusCode::NOT_FOUND, &format!("no event {seq}"));
    };
    let event: Value = serde_json::from_str(&line.line).unwrap_or(Value::Null);

    let mut body = format!("<h2>Event {seq}</h2><dl>");
    for (label, pointer) in [
        ("Id", "/id"),
        ("Time", "/time"),
        ("Category", "/category"),
        ("Action", "/action"),
        ("Outcome", "/outcome"),
        ("Actor", "/actor/id"),
        ("Actor name", "/actor/name"),
        ("Target", "/target"),
        ("Reason", "/reason"),
        ("Source IP", "/source/ip"),
        ("User agent", "/source/user_agent"),
        ("Request", "/request/id"),
        ("Method", "/request/method"),
        ("Path", "/request/path"),
        ("Status", "/response/status"),
    ] {
        if let Some(value) = event.pointer(pointer).filter(|v| !v.is_null()) {
            let _ = write!(body, "<dt>{label}</dt><dd>{}</dd>", shown(value));
        }
    }
    body.push_str("</dl>");
    if let Some(Value::Array(changes)) = event.get("changes") {
        body.push_str(
            "<table><caption>What changed</caption><thead><tr><th scope=\"col\">Field</th>\
             <th scope=\"col\">Before</th><th scope=\"col\">After</th></tr></thead><tbody>",
        );
        for change in changes {
            let field = shown(&change["field"]);
            if change["redacted"] == Value::Bool(true) {
                let _ = write!(
                    body,
                    "<tr><th scope=\"row\">{field}</th><td class=\"redacted\" colspan=\"2\">\
                     redacted: changed, values not recorded</td></tr>"
                );
            } else {
                let _ = write!(
                    body,
                    "<tr class=\"changed\"><th scope=\"row\">{field}</th><td>{}</td><td>{}</td></tr>",
                    shown(&change["old"]),
                    shown(&change["new"])
                );
            }
        }
        body.push_str("</tbody></table>");
    }
    for (label, member) in [
        ("Before", "before"),
        ("After", "after"),
        ("Details", "details"),
    ] {
        if let Some(value) = event.get(member) {
            let _ = write!(body, "<h3>{label}</h3><pre>{}</pre>", pretty(value));
        }
    }
    let _ = write!(body, "<h3>As stored</h3><pre>{}</pre>", pretty(&event));
    html::page(&base, &format!("Audit event {seq}"), &body)
}

fn pretty(value: &Value) -> String {
    escape(&serde_json::to_string_pretty(value).unwrap_or_default())
}
