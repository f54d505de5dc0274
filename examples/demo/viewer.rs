//! `GET /admin/audit`: the newest alerts and events of the trail, and whether it verifies;
//! `GET /admin/audit/coverage`: every route's audit status, and the gaps.

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::sync::Arc;

use audit_layer::file as query;
use audit_layer::file::{VerifyOptions, verify_trail};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::AppState;
use crate::auth::Admin;

/// How many of the newest events, and of the newest alerts, the page shows.
const SHOWN: usize = 200;

/// The coverage report as JSON: `{"routes": [..], "gaps": [..]}`.
pub(crate) async fn coverage_report(_admin: Admin, State(app): State<Arc<AppState>>) -> Response {
    match app.coverage.get() {
        Some(report) => Json(report).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not computed yet").into_response(),
    }
}

pub(crate) async fn audit_page(_admin: Admin, State(app): State<Arc<AppState>>) -> Response {
    let dir = app.audit_dir.clone();
    // Reading the files is blocking I/O: off the async workers.
    let page = tokio::task::spawn_blocking(move || {
        let status = match verify_trail(&dir, &VerifyOptions::default()) {
            Ok(report) => format!(
                "verified: {} events in {} file(s), {} checkpoint(s)",
                report.events, report.files, report.checkpoints
            ),
            Err(fault) => format!("VERIFICATION FAILED: {fault}"),
        };
        let mut newest = std::collections::VecDeque::with_capacity(SHOWN);
        let mut alerts = std::collections::VecDeque::with_capacity(SHOWN);
        let mut alert_count = 0usize;
        query::for_each_event(&dir, |_, event| {
            let row = query::table_row(event);
            if event["category"] == "alert" {
                alert_count += 1;
                if alerts.len() == SHOWN {
                    alerts.pop_front();
                }
                alerts.push_back(row.clone());
            }
            if newest.len() == SHOWN {
                newest.pop_front();
            }
            newest.push_back(row);
            ControlFlow::Continue(())
        })
        .map(|()| (status, (alert_count, alerts), newest))
    })
    .await;
    match page {
        Ok(Ok((status, (alert_count, alerts), rows))) => {
            let mut html = String::from(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <title>audit trail</title></head><body><h1>Audit trail</h1>",
            );
            let header = escape(&query::table_header());
            let _ = writeln!(html, "<p>{}</p>", escape(&status));
            // What the detectors raised (`security.*`), newest first, above everything else.
            let _ = writeln!(
                html,
                "<h2 id=\"alerts\">Alerts ({alert_count})</h2><pre>{header}"
            );
            for row in alerts.iter().rev() {
                let _ = writeln!(html, "{}", escape(row));
            }
            let _ = writeln!(html, "</pre><h2>Newest events</h2><pre>{header}");
            for row in rows.iter().rev() {
                let _ = writeln!(html, "{}", escape(row));
            }
            html.push_str("</pre></body></html>");
            Html(html).into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the audit trail",
        )
            .into_response(),
    }
}

/// Text as HTML: what the trail holds came from clients and must not become markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
