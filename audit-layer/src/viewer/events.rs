//! `/`: the events that match the filters in the URL, newest first, a page at a time.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::html::{self, escape};
use super::params::{self, FIELDS};
use super::{Shared, base, home};
use crate::AuditContext;
use crate::file::Page;
use crate::index::search_page;

pub(super) async fn page(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    audit: AuditContext,
) -> Response {
    let base = base(&original, &uri);
    audit.set_action("audit.view");
    audit.detail("view", "events");
    let pairs = params::pairs(uri.query());
    let filter = match params::filter(&pairs) {
        Ok(filter) => filter,
        Err(message) => return html::error(&base, StatusCode::BAD_REQUEST, &message),
    };
    let before = match params::value(&pairs, "before").map(str::parse::<u64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => {
            return html::error(&base, StatusCode::BAD_REQUEST, "`before` is not a seq");
        }
    };
    let mut page = Page::newest(shared.page_size);
    page.before = before;
    let dir = shared.dir.clone();
    let found = tokio::task::spawn_blocking(move || search_page(&dir, &filter, &page)).await;
    let lines = match found {
        Ok(Ok(lines)) => lines,
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

    let mut body = String::new();
    form(&mut body, &base, &pairs);
    let _ = write!(
        body,
        "<table><caption>Events, newest first{}</caption><thead><tr>\
         <th scope=\"col\">Time</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">Outcome</th><th scope=\"col\">Target</th>\
         <th scope=\"col\">Source IP</th></tr></thead><tbody>",
        if before.is_some() {
            " (older page)"
        } else {
            ""
        }
    );
    for line in &lines {
        let event: Value = serde_json::from_str(&line.line).unwrap_or(Value::Null);
        let text = |value: &Value| escape(value.as_str().unwrap_or_default());
        let actor = &event["actor"];
        let actor = if actor["name"].is_string() {
            format!("{} ({})", text(&actor["name"]), text(&actor["id"]))
        } else {
            text(&actor["id"])
        };
        let outcome = text(&event["outcome"]);
        let _ = write!(
            body,
            "<tr><td><a href=\"{base}/events/{seq}\">{time}</a></td><td>{actor}</td>\
             <td>{action}</td><td class=\"{outcome}\">{outcome}</td><td>{target}</td>\
             <td>{ip}</td></tr>",
            base = escape(&base),
            seq = line.seq,
            time = text(&event["time"]),
            action = text(&event["action"]),
            target = text(&event["target"]),
            ip = text(&event["source"]["ip"]),
        );
    }
    body.push_str("</tbody></table>");
    if lines.is_empty() {
        body.push_str("<p>No event matches.</p>");
    }
    if let Some(last) = lines.last().filter(|_| lines.len() == shared.page_size) {
        let query = params::query_string(&pairs, &[("before", last.seq.to_string())]);
        let _ = write!(
            body,
            "<nav aria-label=\"Pages\"><a href=\"{}?{}\" rel=\"next\">Older events</a></nav>",
            escape(&home(&base)),
            escape(&query)
        );
    }
    html::page(&base, "Audit trail", &body)
}

/// The filter form, filled in with the current filters.
fn form(body: &mut String, base: &str, pairs: &[(String, String)]) {
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"{}\" role=\"search\" \
         aria-label=\"Filter the events\">",
        escape(&home(base))
    );
    for (name, label) in FIELDS {
        let value = params::value(pairs, name).unwrap_or_default();
        let _ = write!(
            body,
            "<label for=\"f-{name}\">{label}<input id=\"f-{name}\" name=\"{name}\" \
             value=\"{}\"></label>",
            escape(value)
        );
    }
    body.push_str("<button type=\"submit\">Filter</button></form>");
}
