//! The lists of events: all of them (`/`), the alerts, one actor's timeline and one
//! target's history, each filtered by the URL, newest first, a page at a time.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::html::{self, escape};
use super::params::{self, FIELDS};
use super::{Shared, base};
use crate::AuditContext;
use crate::file::{Filter, Page};
use crate::index::{IndexedLine, search_page};

/// What a list shows beyond the URL's filters.
struct List {
    /// The view, in the audit event's details.
    view: &'static str,
    title: String,
    /// Filters its path fixes (an actor's id), over the URL's.
    fixed: Vec<(String, String)>,
}

pub(super) async fn all(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    audit: AuditContext,
) -> Response {
    let list = List {
        view: "events",
        title: "Events".to_owned(),
        fixed: Vec::new(),
    };
    render(&shared, &original, &uri, &audit, list, String::new()).await
}

pub(super) async fn alerts(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    audit: AuditContext,
) -> Response {
    let list = List {
        view: "alerts",
        title: "Alerts".to_owned(),
        fixed: vec![("category".to_owned(), "alert".to_owned())],
    };
    render(&shared, &original, &uri, &audit, list, String::new()).await
}

pub(super) async fn actor(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    Path(actor): Path<String>,
    audit: AuditContext,
) -> Response {
    let list = List {
        view: "actor",
        title: format!("Timeline of {actor}"),
        fixed: vec![("actor".to_owned(), actor)],
    };
    render(&shared, &original, &uri, &audit, list, String::new()).await
}

/// A target's history, and its state as of a time (`?at=`, now without it), rebuilt from
/// the newest sensitive event on it at that time.
pub(super) async fn target(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    Path(target): Path<String>,
    audit: AuditContext,
) -> Response {
    let base = base(&original, &uri);
    let pairs = params::pairs(uri.query());
    let at = match params::value(&pairs, "at").filter(|at| !at.trim().is_empty()) {
        None => None,
        Some(at) => match crate::file::parse_time(at) {
            Ok(at) => Some(at),
            Err(error) => {
                return html::error(&base, StatusCode::BAD_REQUEST, &format!("at: {error}"));
            }
        },
    };
    let state = Filter {
        target: Some(target.clone()),
        category: Some("sensitive".to_owned()),
        until: at.map(|at| crate::event::Timestamp::from_unix_micros(at.unix_micros() + 1)),
        ..Filter::default()
    };
    let newest = match find(&shared, state, Page::newest(1)).await {
        Ok(lines) => lines.into_iter().next(),
        Err(message) => return html::error(&base, StatusCode::INTERNAL_SERVER_ERROR, &message),
    };
    let mut preface = format!(
        "<section aria-labelledby=\"state\"><h2 id=\"state\">State {}</h2>\
         <form method=\"get\" action=\"{}\"><label for=\"at\">As of (RFC 3339 or a day)\
         <input id=\"at\" name=\"at\" value=\"{}\"></label><button type=\"submit\">Show</button>\
         </form>",
        at.map_or_else(
            || "now".to_owned(),
            |at| format!("as of {}", escape(&at.to_string()))
        ),
        escape(original.path()),
        escape(params::value(&pairs, "at").unwrap_or_default()),
    );
    match newest {
        None => preface.push_str("<p>No sensitive event recorded its state by then.</p>"),
        Some(line) => {
            let event: Value = serde_json::from_str(&line.line).unwrap_or(Value::Null);
            let _ = write!(
                preface,
                "<p>As left by <a href=\"{}/events/{}\">event {}</a>: {} by {} at {}.</p>",
                escape(&base),
                line.seq,
                line.seq,
                escape(event["action"].as_str().unwrap_or_default()),
                escape(event["actor"]["id"].as_str().unwrap_or_default()),
                escape(event["time"].as_str().unwrap_or_default()),
            );
            match event.get("after") {
                Some(after) => {
                    let _ = write!(
                        preface,
                        "<pre>{}</pre>",
                        escape(&serde_json::to_string_pretty(after).unwrap_or_default())
                    );
                }
                None => preface.push_str("<p>It no longer existed (no state after it).</p>"),
            }
        }
    }
    preface.push_str("</section>");
    let list = List {
        view: "target",
        title: format!("History of {target}"),
        fixed: vec![("target".to_owned(), target)],
    };
    render(&shared, &original, &uri, &audit, list, preface).await
}

/// A page of matches, off the async workers (the index and the files are blocking I/O).
pub(super) async fn find(
    shared: &Shared,
    filter: Filter,
    page: Page,
) -> Result<Vec<IndexedLine>, String> {
    let dir = shared.dir.clone();
    match tokio::task::spawn_blocking(move || search_page(&dir, &filter, &page)).await {
        Ok(Ok(lines)) => Ok(lines),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("the search failed".to_owned()),
    }
}

async fn render(
    shared: &Shared,
    original: &Uri,
    uri: &Uri,
    audit: &AuditContext,
    list: List,
    preface: String,
) -> Response {
    let base = base(original, uri);
    let here = original.path();
    super::viewed(audit, list.view);
    let pairs = params::pairs(uri.query());
    let with_fixed: Vec<_> = pairs.iter().chain(&list.fixed).cloned().collect();
    let filter = match params::filter(&with_fixed) {
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
    let lines = match find(shared, filter, page).await {
        Ok(lines) => lines,
        Err(message) => return html::error(&base, StatusCode::INTERNAL_SERVER_ERROR, &message),
    };

    let mut body = format!("<h2>{}</h2>{preface}", escape(&list.title));
    form(&mut body, here, &pairs, &list.fixed);
    let exports = params::query_string(&with_fixed, &[]);
    let _ = write!(
        body,
        "<p>Export this view: <a href=\"{b}/export.csv?{q}\">CSV</a> · \
         <a href=\"{b}/export.ndjson?{q}\">NDJSON</a></p>",
        b = escape(&base),
        q = escape(&exports)
    );
    // The first page follows the trail as it grows (`/live`, through viewer.js).
    let live = match (before, lines.first()) {
        (None, newest) => {
            let after = newest.map_or_else(String::new, |line| line.seq.to_string());
            let mut extra = Vec::new();
            if !after.is_empty() {
                extra.push(("after", after));
            }
            format!(
                " data-live=\"{}/live?{}\"",
                escape(&base),
                escape(&params::query_string(&with_fixed, &extra))
            )
        }
        (Some(_), _) => String::new(),
    };
    body.push_str("<p id=\"live-status\" aria-live=\"polite\"></p>");
    let _ = write!(
        body,
        "<table{live}><caption>{}, newest first{}</caption><thead><tr>\
         <th scope=\"col\">Time</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">Outcome</th><th scope=\"col\">Target</th>\
         <th scope=\"col\">Source IP</th><th scope=\"col\">Changes</th></tr></thead><tbody>",
        escape(&list.title),
        if before.is_some() {
            " (older page)"
        } else {
            ""
        }
    );
    for line in &lines {
        row(&mut body, &base, line);
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
            escape(here),
            escape(&query)
        );
    }
    html::page(&base, &list.title, &body)
}

/// One event as a table row, its time linking to the event, its actor to their timeline, its
/// target to its history, and a sensitive event's changes in brief (`role: viewer → admin`).
pub(super) fn row(body: &mut String, base: &str, line: &IndexedLine) {
    let event: Value = serde_json::from_str(&line.line).unwrap_or(Value::Null);
    let text = |value: &Value| escape(value.as_str().unwrap_or_default());
    let link = |path: &str, value: &Value| match value.as_str() {
        Some(key) => format!(
            "<a href=\"{}/{path}/{}\">{}</a>",
            escape(base),
            escape(&params::encode(key)),
            escape(key)
        ),
        None => String::new(),
    };
    let actor = &event["actor"];
    let mut actor_cell = link("actors", &actor["id"]);
    if actor["name"].is_string() {
        let _ = write!(actor_cell, " ({})", text(&actor["name"]));
    }
    let outcome = text(&event["outcome"]);
    let _ = write!(
        body,
        "<tr><td><a href=\"{base}/events/{seq}\">{time}</a></td><td>{actor_cell}</td>\
         <td>{action}</td><td class=\"{outcome}\">{outcome}</td><td>{target}</td>\
         <td>{ip}</td><td class=\"changes\">{changes}</td></tr>",
        base = escape(base),
        seq = line.seq,
        time = text(&event["time"]),
        action = text(&event["action"]),
        target = link("targets", &event["target"]),
        ip = text(&event["source"]["ip"]),
        changes = changes(&event["changes"]),
    );
}

/// A sensitive event's changes on one line each: `field: old → new`, or `field: redacted`.
fn changes(changes: &Value) -> String {
    let mut cell = String::new();
    for change in changes.as_array().into_iter().flatten() {
        if !cell.is_empty() {
            cell.push_str("<br>");
        }
        let field = html::value(&change["field"]);
        if change["redacted"] == Value::Bool(true) {
            let _ = write!(cell, "{field}: <span class=\"redacted\">redacted</span>");
        } else {
            let _ = write!(
                cell,
                "{field}: {} → <span class=\"changed\">{}</span>",
                html::value(&change["old"]),
                html::value(&change["new"])
            );
        }
    }
    cell
}

/// The filter form, filled in with the current filters; fields its path fixes are not shown.
fn form(body: &mut String, action: &str, pairs: &[(String, String)], fixed: &[(String, String)]) {
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"{}\" role=\"search\" \
         aria-label=\"Filter the events\">",
        escape(action)
    );
    for (name, label) in FIELDS {
        if fixed.iter().any(|(fixed, _)| fixed == name) {
            continue;
        }
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
