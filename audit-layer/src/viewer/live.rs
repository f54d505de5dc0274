//! `/live`: server-sent events, one per new event matching the page's filters, as the
//! table row to put on top (rendered and escaped here, as every row is).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::events::{find, row};
use super::html;
use super::params;
use super::{Shared, base};
use crate::AuditContext;
use crate::file::{Filter, Page};

/// How often the trail is looked at for new events.
const POLL: Duration = Duration::from_secs(1);
/// The most rows sent per look.
const ROWS_PER_LOOK: usize = 200;

struct Live {
    shared: Arc<Shared>,
    filter: Filter,
    base: String,
    /// The newest seq sent (or shown on the page).
    last: u64,
    pending: VecDeque<Event>,
}

pub(super) async fn stream(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    audit: AuditContext,
) -> Response {
    let base = base(&original, &uri);
    super::viewed(&audit, "live");
    let pairs = params::pairs(uri.query());
    let filter = match params::filter(&pairs) {
        Ok(filter) => filter,
        Err(message) => return html::error(&base, StatusCode::BAD_REQUEST, &message),
    };
    let last = match params::value(&pairs, "after").map(str::parse::<u64>) {
        Some(Ok(seq)) => seq,
        Some(Err(_)) => return html::error(&base, StatusCode::BAD_REQUEST, "`after` is not a seq"),
        // From now: the newest event there is.
        None => match find(&shared, Filter::default(), Page::newest(1)).await {
            Ok(lines) => lines.first().map_or(0, |line| line.seq),
            Err(message) => {
                return html::error(&base, StatusCode::INTERNAL_SERVER_ERROR, &message);
            }
        },
    };
    let live = Live {
        shared,
        filter,
        base,
        last,
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(live, |mut live| async move {
        loop {
            if let Some(event) = live.pending.pop_front() {
                return Some((Ok::<_, Infallible>(event), live));
            }
            tokio::time::sleep(POLL).await;
            let page = Page {
                oldest_first: true,
                after: Some(live.last),
                limit: Some(ROWS_PER_LOOK),
                ..Page::default()
            };
            let lines = find(&live.shared, live.filter.clone(), page).await.ok()?;
            for line in lines {
                live.last = line.seq;
                let mut html = String::new();
                row(&mut html, &live.base, &line);
                live.pending.push_back(
                    Event::default()
                        .event("row")
                        .id(line.seq.to_string())
                        .data(html),
                );
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
