//! The one stage every event passes before it is queued: the layer's, those that
//! [`AuditTrail::record`](crate::AuditTrail::record) takes, detectors' alerts, and the
//! trail's own `audit.gap` and lifecycle events.
//!
//! The layer captures a request as it is (its path, query and header values are copied, not
//! judged) and this stage redacts and bounds every part of it, so that each rule is written
//! once. It works in place and allocates only to replace what it redacts or cuts: a request
//! with nothing to take out costs a walk over its fields.

use std::borrow::Cow;
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};

use super::bounds::{bound, bound_json, bound_keys, bound_string, limits};
use super::card::mask_card_numbers;
use super::json::{redact_json, redact_strings, scan_strings_in};
use super::names::{FORBIDDEN_HEADERS, SecretNames};
use super::request::{path_into, path_is_clean, query_is_clean, redact_query_into};
use super::text::{recorded_header_value, recorded_reason, recorded_text, scan_free_text};
use super::{REDACTED, TRUNCATED};
use crate::error::panic_message;
use crate::event::actor::Actor;
use crate::event::{AuditEvent, Change, RequestInfo, Source};

/// An event that has passed [`scrub`]: the only kind the delivery queue takes, so that no
/// way into the trail can skip the stage.
#[derive(Debug)]
pub(crate) struct Scrubbed(Box<AuditEvent>);

impl Scrubbed {
    /// Scrubs `event` (see [`scrub`]).
    pub(crate) fn new(mut event: Box<AuditEvent>, names: &SecretNames) -> Self {
        scrub_parts_or_keep(&mut event, names, Snapshots::Unknown);
        Self(event)
    }

    /// Scrubs a request's event whose `before`, `after` and `changes`, if any, are the
    /// sensitive handler's snapshots: those were scrubbed by these same rules with these
    /// same names when they were taken (they must be, there: only the unredacted values'
    /// fingerprints tell that a redacted field changed), so they are not walked again.
    pub(crate) fn with_snapshots(mut event: Box<AuditEvent>, names: &SecretNames) -> Self {
        scrub_parts_or_keep(&mut event, names, Snapshots::Taken);
        Self(event)
    }

    /// The event, to be written.
    pub(crate) fn into_inner(self) -> Box<AuditEvent> {
        self.0
    }
}

impl Deref for Scrubbed {
    type Target = AuditEvent;

    fn deref(&self) -> &AuditEvent {
        &self.0
    }
}

/// Redacts and bounds every part of an event, in place; see the [module docs](super) for
/// the rules. Running it again changes nothing.
///
/// The `reason`, the strings of `details` and recorded header values are free text, and lose
/// the common shapes of a secret; the `target` and the actor, identifiers, are bounded only.
pub(crate) fn scrub(event: &mut AuditEvent, names: &SecretNames) {
    scrub_parts_or_keep(event, names, Snapshots::Unknown);
}

/// The reason of an event whose scrubbing panicked (see [`keep_what_holds_no_text`]).
const SCRUB_FAILED: &str = "the audit trail failed to scrub this event (a bug; its panic is in \
     the server's log): only what holds no text is recorded";

/// [`scrub_parts`], or, if it panics (a bug), [`keep_what_holds_no_text`]: the event is
/// still recorded, and nothing the bug could have left unscrubbed is.
fn scrub_parts_or_keep(event: &mut AuditEvent, names: &SecretNames, snapshots: Snapshots) {
    let scrubbed = panic::catch_unwind(AssertUnwindSafe(|| {
        scrub_parts(event, names, snapshots);
    }));
    if let Err(payload) = scrubbed {
        tracing::error!(
            target: "audit",
            panic = panic_message(payload.as_ref()),
            "scrubbing an audit event panicked; a partial event is recorded"
        );
        keep_what_holds_no_text(event);
    }
}

/// Empties every part of `event` that holds text from a client or from application code,
/// keeping its id, time, category, outcome, the client's address and the response.
fn keep_what_holds_no_text(event: &mut AuditEvent) {
    // An action is an identifier (`user.role.change`): kept when it looks like one.
    let identifier =
        event.action.len() <= limits::ACTION && event.action.bytes().all(|b| b.is_ascii_graphic());
    if !identifier {
        event.action = Cow::Borrowed("audit.unscrubbable");
    }
    event.actor = Actor::anonymous();
    if let Some(source) = &mut event.source {
        source.user_agent = None;
        source.forwarded = None;
    }
    if let Some(request) = &mut event.request {
        *request = RequestInfo {
            id: event.id.to_string(),
            method: match &request.method {
                Cow::Borrowed(method) => Cow::Borrowed(method),
                Cow::Owned(_) => Cow::Borrowed("OTHER"),
            },
            path: REDACTED.to_owned(),
            route: None,
            query: None,
            headers: Default::default(),
        };
    }
    event.target = None;
    event.reason = Some(SCRUB_FAILED.to_owned());
    event.labels.clear();
    event.details = None;
    event.before = None;
    event.after = None;
    event.changes = None;
}

/// Where an event's `before`, `after` and `changes` come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Snapshots {
    /// Anyone: scrubbed here.
    Unknown,
    /// A sensitive handler's snapshots and their diff, scrubbed when taken.
    Taken,
}

#[cfg(test)]
thread_local! {
    /// Makes the next scrub on this thread panic, as a bug in it would.
    pub(crate) static PANIC_IN_SCRUB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn scrub_parts(event: &mut AuditEvent, names: &SecretNames, snapshots: Snapshots) {
    #[cfg(test)]
    if PANIC_IN_SCRUB.replace(false) {
        panic!(
            "injected scrub fault at {:?}",
            event.request.as_ref().map(|r| &r.path)
        );
    }
    // Every field named: a new one cannot be forgotten here.
    let AuditEvent {
        schema: _,
        id: _,
        time: _,
        category: _,
        action,
        outcome: _,
        actor,
        source,
        request,
        response: _,
        target,
        reason,
        labels,
        details,
        before,
        after,
        changes,
    } = event;
    bound_cow_in_place(action, limits::ACTION);
    scrub_actor(actor);
    if let Some(source) = source {
        scrub_source(source, names);
    }
    if let Some(request) = request {
        scrub_request(request, names);
    }
    if let Some(target) = target {
        *target = recorded_text(std::mem::take(target), names, limits::TARGET);
    }
    if let Some(reason) = reason {
        *reason = recorded_reason(std::mem::take(reason), names);
    }
    scrub_labels(labels, names);
    if let Some(details) = details {
        scrub_details(details, names);
    }
    if snapshots == Snapshots::Taken {
        return;
    }
    for state in [before, after].into_iter().flatten() {
        scrub_structured(state, names);
    }
    for change in changes.iter_mut().flatten() {
        scrub_change(change, names);
    }
}

fn bound_in_place(text: &mut String, max: usize) {
    if text.len() > max {
        *text = bound(text, max);
    }
}

fn bound_cow_in_place(text: &mut Cow<'static, str>, max: usize) {
    if text.len() > max {
        *text = Cow::Owned(bound(text, max));
    }
}

/// An actor with every field bounded.
fn scrub_actor(actor: &mut Actor) {
    bound_in_place(&mut actor.id, limits::ACTOR_FIELD);
    if let Some(name) = &mut actor.name {
        bound_in_place(name, limits::ACTOR_FIELD);
    }
    actor.roles.truncate(limits::ACTOR_ROLES);
    for role in &mut actor.roles {
        bound_in_place(role, limits::ACTOR_FIELD);
    }
}

/// The user agent and the forwarding chain are client input of any shape: scanned as free
/// text. A chain too long keeps its rightmost entries, those nearest the server.
fn scrub_source(source: &mut Source, names: &SecretNames) {
    if let Some(user_agent) = &mut source.user_agent {
        *user_agent = recorded_text(std::mem::take(user_agent), names, limits::USER_AGENT);
    }
    if let Some(forwarded) = &mut source.forwarded {
        if forwarded.len() > limits::FORWARDED_ENTRIES {
            forwarded.drain(..forwarded.len() - (limits::FORWARDED_ENTRIES - 1));
            forwarded.insert(0, TRUNCATED.to_owned());
        }
        for entry in forwarded {
            if entry != TRUNCATED {
                *entry = recorded_text(std::mem::take(entry), names, limits::FORWARDED_ENTRY);
            }
        }
    }
}

fn scrub_request(request: &mut RequestInfo, names: &SecretNames) {
    let RequestInfo {
        id,
        method,
        path,
        route,
        query,
        headers,
    } = request;
    bound_in_place(id, limits::REQUEST_ID);
    bound_cow_in_place(method, limits::ACTION);
    // The path is judged against the route as matched, before the route is cut.
    if !path_is_clean(path, route.as_deref(), names, limits::PATH) {
        let raw = std::mem::take(path);
        path_into(path, &raw, route.as_deref(), names, limits::PATH);
    }
    if let Some(route) = route {
        bound_in_place(route, limits::ROUTE);
    }
    if let Some(query) = query
        && !query_is_clean(query, names, limits::QUERY)
    {
        let raw = std::mem::take(query);
        redact_query_into(query, &raw, names, limits::QUERY);
    }
    // A card number has no name to be known by: it is found by its shape.
    for text in std::iter::once(&mut *path).chain(query.as_mut()) {
        if let Some(masked) = mask_card_numbers(text) {
            *text = masked;
        }
    }
    // Most requests record no header: the map is not walked.
    if !headers.is_empty() {
        headers.retain(|name, _| {
            let name = name.to_ascii_lowercase();
            !FORBIDDEN_HEADERS.contains(&name.as_str()) && !names.is_secret(&name)
        });
        bound_keys(headers, limits::HEADER_NAME);
        for value in headers.values_mut() {
            *value = recorded_header_value(std::mem::take(value), names);
        }
    }
}

/// Labels: [`REDACTED`] under a secret name, else scanned as free text, bounded; at most
/// [`limits::LABELS`] of them, the first by name.
fn scrub_labels(labels: &mut std::collections::BTreeMap<String, String>, names: &SecretNames) {
    while labels.len() > limits::LABELS {
        labels.pop_last();
    }
    for (key, value) in labels.iter_mut() {
        if names.is_secret(key) {
            if value != REDACTED {
                *value = REDACTED.to_owned();
            }
        } else {
            if let Some(redacted) = scan_free_text(value, names) {
                *value = redacted;
            }
            bound_in_place(value, limits::LABEL_VALUE);
        }
    }
    // Checked for secrets whole, then cut.
    bound_keys(labels, limits::LABEL_KEY);
}

/// `details`: secret-named fields redacted at any depth, every other string treated as
/// free text (as a `reason` is: `detail("error", e.to_string())` can quote a connection
/// string), strings and nesting bounded.
fn scrub_details(details: &mut serde_json::Map<String, serde_json::Value>, names: &SecretNames) {
    let mut value = serde_json::Value::Object(std::mem::take(details));
    redact_json(&mut value, names);
    redact_strings(&mut value, names);
    bound_json(&mut value, 0);
    if let serde_json::Value::Object(map) = value {
        *details = map;
    }
}

/// Structured data (`before`, `after`, a change's values): secret-named fields redacted,
/// every string scanned as free text, bounded.
fn scrub_structured(value: &mut serde_json::Value, names: &SecretNames) {
    redact_json(value, names);
    scan_strings_in(value, names);
    bound_json(value, 0);
}

fn scrub_change(change: &mut Change, names: &SecretNames) {
    // A dotted path is split into words too: `user.password` is a secret name. Checked
    // whole, before the cut could take the secret word off its end.
    let secret = names.is_secret(&change.field);
    change.field = bound_string(std::mem::take(&mut change.field), limits::CHANGE_FIELD);
    if secret {
        *change = Change::redacted(std::mem::take(&mut change.field));
        return;
    }
    let differed = change.old != change.new;
    for value in [&mut change.old, &mut change.new].into_iter().flatten() {
        scrub_structured(value, names);
    }
    // Only what was redacted differed: say that it changed, never what to, as a
    // snapshot's diff does, rather than show two equal values.
    if differed && change.old == change.new {
        *change = Change::redacted(std::mem::take(&mut change.field));
    }
}
