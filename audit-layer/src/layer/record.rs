//! What the layer captures when a request arrives, and how it becomes an event.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::USER_AGENT;
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::shared::Shared;
use crate::delivery::{EventStrings, Spare};
use crate::error::panic_message;
use crate::event::actor::{ANONYMOUS_ID, Actor, ActorKind};
use crate::event::{
    AuditEvent, Category, Outcome, RequestInfo, ResponseInfo, SCHEMA, Source, Timestamp, event_id,
};
use crate::layer::client_ip;
use crate::layer::config::{PendingActor, SharedResolver};
use crate::layer::context::AuditContext;
use crate::layer::request_id::RequestId;
use crate::redact::{REDACTED, Scrubbed, bound, bound_into, limits};

/// The default action of a request event.
pub(crate) const HTTP_REQUEST: &str = "http.request";

/// A request on its way through the inner service.
///
/// Its event is filled once, when the request arrives, in the memory of an event already
/// written when there is one (see `trail::spare`), and completed in place: the response
/// future and the queue then move a pointer, not the event's few hundred bytes.
pub(crate) struct InFlight {
    /// An async resolver's look-up of the actor, until it answers.
    pending_actor: Option<PendingActor>,
    pub(crate) shared: Arc<Shared>,
    start: Instant,
    /// Request fields filled in; outcome, actor and response are set when it completes.
    event: Box<AuditEvent>,
    /// The actor as known when the request arrived (extensions, resolver, header).
    request_actor: Option<Actor>,
    context: AuditContext,
    pub(crate) request_id: RequestId,
    /// Why the request was captured only in part (see [`InFlight::capture_failed`]).
    capture_error: Option<String>,
}

#[cfg(test)]
thread_local! {
    /// Makes the next capture on this thread panic halfway, as a bug in it would.
    pub(crate) static PANIC_IN_CAPTURE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl InFlight {
    /// Captures the request, and puts the [`RequestId`] and [`AuditContext`] in its
    /// extensions.
    pub(crate) fn begin(shared: Arc<Shared>, parts: &mut Parts) -> Self {
        let Arrival {
            start,
            now,
            id,
            request_id,
        } = Arrival::of(&shared, parts);
        let config = &shared.config;
        let client = client_ip::resolve(
            peer_addr(&parts.extensions),
            &parts.headers,
            &config.trusted_proxies,
            config.forwarded_header,
        );
        // The memory of an event already written, when there is one: its strings are
        // written into buffers it kept, without allocating.
        let Spare {
            mut event,
            strings:
                EventStrings {
                    request_id: mut request_id_text,
                    mut path,
                    route: mut route_text,
                    query: mut query_text,
                    user_agent: mut user_agent_text,
                    actor_id,
                },
        } = shared.intake.spare_events().take();
        #[cfg(test)]
        if PANIC_IN_CAPTURE.replace(false) {
            // Quoting the request, as some panics' messages do.
            panic!("injected capture fault at {}", parts.uri);
        }
        let source = Source {
            ip: client.ip,
            port: client.port,
            user_agent: parts.headers.get(USER_AGENT).map(|value| {
                header_text_into(&mut user_agent_text, value, limits::USER_AGENT);
                user_agent_text
            }),
            forwarded: client.forwarded,
        };
        request_id_text.push_str(request_id.as_str());
        let route = matched_route(&parts.extensions);
        let uri = client_uri(parts);
        // Copied as received: the scrub stage judges it against the route.
        path.push_str(uri.path());
        let request = RequestInfo {
            id: request_id_text,
            method: method_name(&parts.method),
            path,
            route: route.map(|route| {
                bound_into(&mut route_text, route, limits::ROUTE);
                route_text
            }),
            query: uri.query().map(|query| {
                query_text.push_str(query);
                query_text
            }),
            headers: recorded_headers(&config.recorded_headers, &parts.headers),
        };
        let extension_actor = parts.extensions.get::<Actor>();
        let actor_at_capture = extension_actor.is_some();
        let (resolved, pending_actor) = match extension_actor {
            Some(actor) => (Some(actor.clone()), None),
            None => ask_resolver(config.actor_resolver.as_ref(), parts),
        };
        let request_actor = resolved.or_else(|| {
            let value = parts.headers.get(config.actor_header.as_ref()?)?;
            Some(Actor::user(header_text(value, limits::ACTOR_FIELD)))
        });
        *event = AuditEvent {
            schema: Cow::Borrowed(SCHEMA),
            id,
            time: now,
            category: Category::Request,
            action: Cow::Borrowed(HTTP_REQUEST),
            outcome: Outcome::Success,
            // Set when the request completes: an empty buffer, kept for the anonymous
            // actor's id.
            actor: Actor::new(actor_id, ActorKind::Anonymous),
            source: Some(source),
            request: Some(request),
            response: None,
            target: None,
            reason: None,
            labels: config.labels.clone(),
            details: None,
            before: None,
            after: None,
            changes: None,
        };

        let context = hand_to_handlers(&shared, parts, &request_id, actor_at_capture);
        Self {
            pending_actor,
            start,
            event,
            request_actor,
            context,
            request_id,
            shared,
            capture_error: None,
        }
    }

    /// What is left to record of a request whose capture panicked, that is a bug in this
    /// crate: the request is still served and still recorded, with only what cannot carry
    /// a secret whatever the bug. Its path is the matched route, or [`REDACTED`]; its source
    /// the connection's peer; its query, user agent and headers are left out; its reason
    /// says what happened, but not the panic's message, which is logged: a message can
    /// quote the text being handled (slicing a `str` at a bad index does), the path or a
    /// header included. Its actor is still asked of the extensions and the resolver (whose
    /// panics are caught on their own), not read from the actor header. The response
    /// completes it as usual.
    pub(crate) fn capture_failed(
        shared: Arc<Shared>,
        parts: &mut Parts,
        payload: &(dyn Any + Send),
    ) -> Self {
        tracing::error!(
            target: "audit",
            panic = panic_message(payload),
            "capturing a request for its audit event panicked; a partial event is recorded"
        );
        let Arrival {
            start,
            now,
            id,
            request_id,
        } = Arrival::of(&shared, parts);
        let route = matched_route(&parts.extensions);
        let peer = peer_addr(&parts.extensions);
        let mut event = AuditEvent::with_id(
            id,
            now,
            Category::Request,
            Cow::Borrowed(HTTP_REQUEST),
            Outcome::Success,
            // Set when the request completes, as in `begin`.
            Actor::new(String::new(), ActorKind::Anonymous),
        );
        event.source = peer.map(|peer| Source {
            ip: Some(peer.ip()),
            port: Some(peer.port()),
            user_agent: None,
            forwarded: None,
        });
        event.request = Some(RequestInfo {
            id: request_id.as_str().to_owned(),
            method: method_name(&parts.method),
            path: route.map_or_else(|| REDACTED.to_owned(), |route| bound(route, limits::PATH)),
            route: route.map(|route| bound(route, limits::ROUTE)),
            query: None,
            headers: BTreeMap::new(),
        });
        event.labels = shared.config.labels.clone();

        let extension_actor = parts.extensions.get::<Actor>();
        let actor_at_capture = extension_actor.is_some();
        let (request_actor, pending_actor) = match extension_actor {
            Some(actor) => (Some(actor.clone()), None),
            None => ask_resolver(shared.config.actor_resolver.as_ref(), parts),
        };
        let context = hand_to_handlers(&shared, parts, &request_id, actor_at_capture);
        Self {
            pending_actor,
            start,
            event: Box::new(event),
            request_actor,
            context,
            request_id,
            capture_error: Some(CAPTURE_FAILED.to_owned()),
            shared,
        }
    }

    /// Polls the async resolver's look-up, if one is running: ready once it has answered
    /// (its actor then stands where a resolver's does), or when there is none.
    pub(crate) fn poll_actor(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(lookup) = &mut self.pending_actor else {
            return Poll::Ready(());
        };
        let answer = match panic::catch_unwind(AssertUnwindSafe(|| lookup.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(actor)) => actor,
            Err(payload) => {
                resolver_panicked(payload.as_ref());
                None
            }
        };
        self.pending_actor = None;
        if answer.is_some() {
            self.request_actor = answer;
        }
        Poll::Ready(())
    }

    /// Whether a sensitive handler refused this request because the trail could not take
    /// its event.
    pub(crate) fn refused(&self) -> bool {
        self.context.lock().refused
    }

    /// The event of a request answered with `status`, and the layer's state it goes to.
    pub(crate) fn respond(self, status: StatusCode, response_actor: Option<Actor>) -> Built {
        self.into_event(
            Some(status),
            Outcome::from_status(status),
            response_actor,
            None,
        )
    }

    /// The event of a request whose service failed or panicked.
    pub(crate) fn fail(self, status: Option<StatusCode>, reason: String) -> Built {
        self.into_event(status, Outcome::Error, None, Some(reason))
    }

    /// The event of a request abandoned before its response.
    pub(crate) fn cancel(self) -> Built {
        self.into_event(None, Outcome::Cancelled, None, None)
    }

    fn into_event(
        self,
        status: Option<StatusCode>,
        outcome: Outcome,
        response_actor: Option<Actor>,
        reason: Option<String>,
    ) -> Built {
        let duration_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let notes = self.context.take();
        let mut event = self.event;
        match response_actor.or(notes.actor).or(self.request_actor) {
            Some(actor) => event.actor = actor,
            // `Actor::anonymous()`, in the buffer `begin` left.
            None => event.actor.id.push_str(ANONYMOUS_ID),
        }
        event.labels.extend(notes.labels);
        event.details = notes.details;
        if let Some(category) = notes.category {
            event.category = category;
        }
        if let Some(action) = notes.action {
            event.action = action;
        }
        event.outcome = notes.outcome.unwrap_or(outcome);
        event.response = Some(ResponseInfo {
            status: status.map(|s| s.as_u16()),
            duration_us,
        });
        event.target = notes.target;
        let reason = match (notes.reason.or(reason), self.capture_error) {
            (Some(reason), Some(error)) => Some(format!("{reason}; {error}")),
            (reason, error) => reason.or(error),
        };
        event.reason = reason;
        event.before = notes.before;
        event.after = notes.after;
        event.changes = notes.changes;
        // `before`, `after` and `changes` can only come from a sensitive handler's
        // snapshots (`AuditContext` offers no other way to set them).
        let event = Scrubbed::with_snapshots(event, &self.shared.config.secret_names);
        (self.shared, event)
    }
}

/// A request's finished event, with the layer's state it is delivered through.
pub(crate) type Built = (Arc<Shared>, Scrubbed);

/// The reason a partial event gives (see [`InFlight::capture_failed`]).
const CAPTURE_FAILED: &str =
    "the audit layer failed to capture the request (a bug; its panic is in the server's log)";

/// When a request arrived, and the ids it is known by.
struct Arrival {
    start: Instant,
    now: Timestamp,
    /// The event's id.
    id: uuid::Uuid,
    /// The client's id when acceptable, else the event's.
    request_id: RequestId,
}

impl Arrival {
    fn of(shared: &Shared, parts: &Parts) -> Self {
        let start = Instant::now();
        let now = Timestamp::now();
        let id = event_id(now);
        let request_id =
            RequestId::from_header_or(parts.headers.get(&shared.config.request_id_header), id);
        Self {
            start,
            now,
            id,
            request_id,
        }
    }
}

/// Puts the request's [`AuditContext`] and [`RequestId`] in its extensions, for handlers
/// and middleware inside the layer (`actor_at_capture`: whether an `Actor` was already there);
/// returns the context.
fn hand_to_handlers(
    shared: &Arc<Shared>,
    parts: &mut Parts,
    request_id: &RequestId,
    actor_at_capture: bool,
) -> AuditContext {
    let context = AuditContext::new(Arc::clone(shared), actor_at_capture);
    parts.extensions.insert(context.clone());
    parts.extensions.insert(request_id.clone());
    context
}

/// The values of the headers the configuration records, by name, as received (the scrub
/// stage scans them as free text).
fn recorded_headers(recorded: &[HeaderName], headers: &HeaderMap) -> BTreeMap<String, String> {
    // Most trails record none: skip building the map (which costs even when empty).
    if recorded.is_empty() {
        return BTreeMap::new();
    }
    recorded
        .iter()
        .filter_map(|name| {
            let mut values = headers.get_all(name).iter();
            let first = values.next()?;
            let mut text = header_text(first, limits::HEADER_VALUE);
            for more in values {
                text.push_str(", ");
                text.push_str(&header_text(more, limits::HEADER_VALUE));
            }
            Some((name.as_str().to_owned(), text))
        })
        .collect()
}

/// The resolver's actor, or its look-up of it. The resolver is the application's code: one
/// that panics is logged and treated as not knowing, so that its bug does not drop the
/// request, nor the request's event.
fn ask_resolver(
    resolver: Option<&SharedResolver>,
    parts: &Parts,
) -> (Option<Actor>, Option<PendingActor>) {
    let asked = match resolver {
        None => return (None, None),
        Some(SharedResolver::Now(resolve)) => {
            panic::catch_unwind(AssertUnwindSafe(|| (resolve(parts), None)))
        }
        Some(SharedResolver::Later(look_up)) => {
            panic::catch_unwind(AssertUnwindSafe(|| (None, Some(look_up(parts)))))
        }
    };
    asked.unwrap_or_else(|payload| {
        resolver_panicked(payload.as_ref());
        (None, None)
    })
}

fn resolver_panicked(payload: &(dyn Any + Send)) {
    tracing::error!(
        target: "audit",
        panic = panic_message(payload),
        "the actor resolver panicked; the request is recorded without its actor"
    );
}

/// The connection peer: axum's `ConnectInfo<SocketAddr>`, or a plain `SocketAddr`.
fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<SocketAddr>().copied()
}

/// The URI as the client sent it: a router may pass the request on with a shorter one
/// (axum's `nest` strips its prefix, and keeps the original in `OriginalUri`).
pub(crate) fn client_uri(parts: &Parts) -> &Uri {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(uri)) =
        parts.extensions.get::<axum::extract::OriginalUri>()
    {
        return uri;
    }
    &parts.uri
}

/// The route pattern the router matched, if it says.
pub(crate) fn matched_route(extensions: &Extensions) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
        return Some(path.as_str());
    }
    let _ = extensions;
    None
}

fn method_name(method: &Method) -> Cow<'static, str> {
    Cow::Borrowed(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return Cow::Owned(bound(method.as_str(), limits::ACTION)),
    })
}

/// A header value as text (invalid UTF-8 replaced), bounded.
fn header_text(value: &HeaderValue, max: usize) -> String {
    let mut text = String::new();
    header_text_into(&mut text, value, max);
    text
}

/// Like [`header_text`], appending to `out`.
fn header_text_into(out: &mut String, value: &HeaderValue, max: usize) {
    // Marked by the application (tower-http's `SetSensitiveHeaders`): never copied.
    if value.is_sensitive() {
        out.push_str(REDACTED);
        return;
    }
    let bytes = value.as_bytes();
    let bytes = &bytes[..bytes.len().min(max * 2)];
    // Nearly every header value is valid UTF-8 (most are ASCII): checked as a whole first,
    // which costs less than the lossy conversion's walk.
    match std::str::from_utf8(bytes) {
        Ok(text) => bound_into(out, text, max),
        Err(_) => bound_into(out, &String::from_utf8_lossy(bytes), max),
    }
}

// Through axum: the handler reaches the context as an extractor.
#[cfg(all(test, feature = "axum"))]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::PANIC_IN_CAPTURE;
    use crate::sink::MemorySink;
    use crate::{Actor, AuditContext, AuditTrail, Outcome};

    /// A bug in capturing a request neither fails it nor loses its event, and the event it
    /// leaves holds nothing the bug could have left unredacted.
    #[tokio::test]
    async fn a_panic_in_capture_still_serves_and_records_the_request() {
        let sink = MemorySink::new();
        let trail = AuditTrail::builder()
            .sink(sink.clone())
            .label("service", "billing")
            .actor_resolver(|_| Some(Actor::user("alice")))
            .build()
            .unwrap();
        let app = Router::new()
            .route(
                "/reset/{token}",
                get(|context: AuditContext| async move {
                    context.set_reason("reset requested");
                    "ok"
                }),
            )
            .layer(trail.layer());
        let peer: SocketAddr = "203.0.113.9:4711".parse().unwrap();
        let request = |uri: &str| {
            Request::builder()
                .uri(uri)
                .header("user-agent", "UA-SECRET")
                .header("x-request-id", "req-7")
                .extension(ConnectInfo(peer))
                .body(Body::empty())
                .unwrap()
        };

        PANIC_IN_CAPTURE.set(true);
        let response = app
            .clone()
            .oneshot(request("/reset/PATH-SECRET?q=QUERY-SECRET"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-request-id"], "req-7");
        // The next request is captured as usual.
        let response = app.oneshot(request("/reset/again")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        trail.flush().await.unwrap();

        let events = sink.request_events();
        assert_eq!(events.len(), 2, "{events:?}");
        let partial = &events[0];
        let request = partial.request.as_ref().unwrap();
        assert_eq!(request.path, "/reset/{token}");
        assert_eq!(request.route.as_deref(), Some("/reset/{token}"));
        assert_eq!(request.id, "req-7");
        assert_eq!(request.query, None);
        let source = partial.source.as_ref().unwrap();
        assert_eq!(source.ip, Some(peer.ip()));
        assert_eq!(source.user_agent, None);
        assert_eq!(partial.actor.id, "alice");
        assert_eq!(partial.outcome, Outcome::Success);
        assert_eq!(partial.response.as_ref().unwrap().status, Some(200));
        assert_eq!(partial.labels["service"], "billing");
        assert_eq!(
            partial.reason.as_deref(),
            Some(
                "reset requested; the audit layer failed to capture the request \
                 (a bug; its panic is in the server's log)"
            )
        );
        let line = serde_json::to_string(partial).unwrap();
        assert!(!line.contains("SECRET"), "{line}");

        let full = &events[1];
        assert_eq!(full.request.as_ref().unwrap().path, "/reset/[REDACTED]");
        assert_eq!(
            full.source.as_ref().unwrap().user_agent.as_deref(),
            Some("UA-SECRET")
        );
        assert_eq!(full.reason.as_deref(), Some("reset requested"));
    }

    /// A bug in the scrub stage neither fails the request nor loses its event, and the event
    /// it leaves holds none of the request's text.
    #[tokio::test]
    async fn a_panic_in_scrub_still_records_the_request_without_its_text() {
        let sink = MemorySink::new();
        let trail = AuditTrail::builder().sink(sink.clone()).build().unwrap();
        let app = Router::new()
            .route(
                "/reset/{token}",
                get(|context: AuditContext| async move {
                    context.set_reason("REASON-SECRET");
                    context.label("tenant", "LABEL-SECRET");
                    "ok"
                }),
            )
            .layer(trail.layer());
        let peer: SocketAddr = "203.0.113.9:4711".parse().unwrap();
        let request = Request::builder()
            .uri("/reset/PATH-SECRET?q=QUERY-SECRET")
            .header("user-agent", "UA-SECRET")
            .header("x-request-id", "ID-SECRET")
            .extension(ConnectInfo(peer))
            .body(Body::empty())
            .unwrap();
        crate::redact::PANIC_IN_SCRUB.set(true);
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        trail.flush().await.unwrap();

        let events = sink.request_events();
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.action, "http.request");
        assert_eq!(event.response.as_ref().unwrap().status, Some(200));
        assert_eq!(event.source.as_ref().unwrap().ip, Some(peer.ip()));
        assert_eq!(event.request.as_ref().unwrap().method, "GET");
        assert!(event.reason.as_deref().unwrap().contains("failed to scrub"));
        let line = serde_json::to_string(event).unwrap();
        assert!(!line.contains("SECRET"), "{line}");
        trail.shutdown().await.unwrap();
    }
}
