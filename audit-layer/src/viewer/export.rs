//! `/export.csv` and `/export.ndjson`: every event of a filtered view, streamed, each
//! export itself an audit event.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::html;
use super::params;
use super::{Shared, base};
use crate::AuditContext;
use crate::file::{Filter, Page};
use crate::index::search;

/// How many rows go to the client at a time.
const ROWS_PER_CHUNK: usize = 256;

const CSV_HEADER: &str =
    "seq,time,actor_id,actor_name,action,outcome,category,target,source_ip,request_id,reason\n";

pub(super) async fn csv(
    state: State<Arc<Shared>>,
    original: OriginalUri,
    uri: Uri,
    audit: AuditContext,
) -> Response {
    export(state, original, uri, audit, Format::Csv).await
}

pub(super) async fn ndjson(
    state: State<Arc<Shared>>,
    original: OriginalUri,
    uri: Uri,
    audit: AuditContext,
) -> Response {
    export(state, original, uri, audit, Format::Ndjson).await
}

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Ndjson,
}

async fn export(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    audit: AuditContext,
    format: Format,
) -> Response {
    let base = base(&original, &uri);
    let (name, content_type) = match format {
        Format::Csv => ("csv", "text/csv; charset=utf-8"),
        Format::Ndjson => ("ndjson", "application/x-ndjson"),
    };
    audit.set_action(super::EXPORT);
    audit.mark_sensitive();
    audit.detail("format", name);
    let filter = match params::filter(&params::pairs(uri.query())) {
        Ok(filter) => filter,
        Err(message) => return html::error(&base, StatusCode::BAD_REQUEST, &message),
    };
    // The trail as it stands now: not the events written while the export streams (its
    // own record among them).
    let newest = match super::events::find(&shared, Filter::default(), Page::newest(1)).await {
        Ok(lines) => lines.first().map(|line| line.seq),
        Err(message) => return html::error(&base, StatusCode::INTERNAL_SERVER_ERROR, &message),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
    let dir = shared.dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut chunk = String::new();
        if matches!(format, Format::Csv) {
            chunk.push_str(CSV_HEADER);
        }
        let mut rows = 0;
        let result = search(&dir, &filter, |line, event| {
            if event["seq"].as_u64() > newest {
                return ControlFlow::Break(());
            }
            match format {
                Format::Csv => csv_row(&mut chunk, event),
                Format::Ndjson => {
                    chunk.push_str(line);
                    chunk.push('\n');
                }
            }
            rows += 1;
            if rows % ROWS_PER_CHUNK == 0 {
                let full = std::mem::take(&mut chunk);
                // The client went away: stop reading the trail.
                if sender.blocking_send(Bytes::from(full)).is_err() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if let Err(error) = result {
            tracing::warn!(target: "audit", %error, "an export of the trail stopped");
            return;
        }
        let _ = sender.blocking_send(Bytes::from(chunk));
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), receiver))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let disposition = format!("attachment; filename=\"audit-export.{name}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// One event as a CSV row.
fn csv_row(out: &mut String, event: &Value) {
    let fields = [
        "/seq",
        "/time",
        "/actor/id",
        "/actor/name",
        "/action",
        "/outcome",
        "/category",
        "/target",
        "/source/ip",
        "/request/id",
        "/reason",
    ];
    for (n, pointer) in fields.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let value = match event.pointer(pointer) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        csv_cell(out, &value);
    }
    out.push('\n');
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break; and a cell a
/// spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, carriage return first)
/// starts with `'`, so that a hostile value stays text.
fn csv_cell(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = formula || value.contains([',', '"', '\n', '\r']);
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quoted {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let cell = |value: &str| {
            let mut out = String::new();
            csv_cell(&mut out, value);
            out
        };
        assert_eq!(cell("alice"), "alice");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1+2"), "\"'-1+2\"");
    }
}
