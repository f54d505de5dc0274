//! `/status`: how far each follower is, and the routes coverage found unaudited.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;

use super::html::{self, escape};
use super::{Shared, base};
use crate::AuditContext;
use crate::follow::read_follower_statuses;

pub(super) async fn page(
    State(shared): State<Arc<Shared>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    audit: AuditContext,
) -> Response {
    let base = base(&original, &uri);
    super::viewed(&audit, "status");
    let looked = Arc::clone(&shared);
    let (followers, chain) = match tokio::task::spawn_blocking(move || {
        let chain = match looked.chain.lock() {
            Ok(mut chain) => chain.advance(&looked.dir),
            Err(poisoned) => poisoned.into_inner().advance(&looked.dir),
        };
        read_follower_statuses(&looked.dir).map(|followers| (followers, chain))
    })
    .await
    {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            return html::error(&base, StatusCode::INTERNAL_SERVER_ERROR, &error.to_string());
        }
        Err(_) => {
            return html::error(&base, StatusCode::INTERNAL_SERVER_ERROR, "cannot read");
        }
    };
    let mut body = String::from("<h2>The chain</h2>");
    match (&chain.fault, &chain.verified) {
        (Some(fault), _) => {
            let _ = write!(
                body,
                "<p class=\"failure\" role=\"alert\">The chain breaks: {}. Run <code>audit \
                 verify</code>.</p>",
                escape(fault)
            );
        }
        (None, Some((seq, time))) => {
            let _ = write!(
                body,
                "<p>Each line links to the one before it, up to seq {seq} ({}){}. Signed \
                 checkpoints: <code>audit verify</code>.</p>",
                escape(time),
                if chain.more {
                    "; checking goes on at the next look"
                } else {
                    ""
                }
            );
        }
        (None, None) => body.push_str("<p>The trail holds no line yet.</p>"),
    }
    body.push_str(
        "<h2>Followers</h2><table><caption>Each follower's copy of the trail</caption><thead>\
         <tr><th scope=\"col\">Follower</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Behind (events)</th><th scope=\"col\">Behind (seconds)</th>\
         <th scope=\"col\">Shipped</th><th scope=\"col\">As of</th></tr></thead><tbody>",
    );
    for follower in &followers {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            escape(&follower.name),
            escape(&format!("{:?}", follower.state).to_lowercase()),
            follower.behind_events,
            follower.behind.as_secs_f64(),
            follower.shipped,
            escape(&follower.at.to_string()),
        );
    }
    body.push_str("</tbody></table>");
    if followers.is_empty() {
        body.push_str("<p>No follower.</p>");
    }
    body.push_str("<h2>Coverage</h2>");
    match &shared.coverage {
        None => body.push_str(
            "<p>No route report given (<code>Viewer::coverage</code>, from \
             <code>coverage::Router::coverage</code>).</p>",
        ),
        Some(report) => {
            let gaps = report.gaps();
            let _ = write!(
                body,
                "<p>{} route(s); {} gap(s): sensitive-looking routes that record only their \
                 request.</p>",
                report.routes().len(),
                gaps.len()
            );
            if !gaps.is_empty() {
                body.push_str(
                    "<table><caption>Gaps</caption><thead><tr><th scope=\"col\">Method</th>\
                     <th scope=\"col\">Path</th><th scope=\"col\">Why it looks sensitive</th>\
                     </tr></thead><tbody>",
                );
                for gap in gaps {
                    let _ = write!(
                        body,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&gap.method),
                        escape(&gap.path),
                        escape(gap.sensitive_because.as_deref().unwrap_or_default())
                    );
                }
                body.push_str("</tbody></table>");
            }
        }
    }
    html::page(&base, "Audit trail: status", &body)
}
