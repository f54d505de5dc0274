//! Spare events: the memory of written events, handed back for the next requests to fill.
//!
//! A request's event is allocated on a request thread and freed on the writer's: its box
//! and six strings (request id, path, route, query, user agent, actor id), seven
//! allocations that glibc serves from its slow paths, since the thread that frees a chunk is
//! not the one that allocated it. Instead, once every sink has an event, the writer keeps
//! its box and its emptied string buffers here, and the layer fills them for the next
//! request: a request whose strings fit the kept buffers allocates none of them.
//!
//! Only capacity is reused, never content: a spare's box holds [`empty_event`] and its
//! strings are cleared before it is handed back, and the layer writes every field of the
//! event anew.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use uuid::Uuid;

use crate::event::actor::{Actor, ActorKind};
use crate::event::{AuditEvent, Category, Outcome, Timestamp};

/// How many spares are kept: twice the events the writer takes in one round (512 by
/// default), since requests go on taking spares while a round is written (with 512, the
/// allocations bench counted 1.5 to 3 more allocations per request); and few enough that
/// the memory they hold stays bounded: an event is 592 bytes and its kept strings 3 KiB at
/// most, so about 1 MiB with typical strings and 4 MiB at most.
const MAX_SPARES: usize = 1024;

/// A string buffer that grew past this many bytes is freed rather than kept: one long
/// path or user agent should not hold its memory for as long as the trail lives.
const MAX_KEPT_CAPACITY: usize = 512;

/// Spare events, shared by the layer (which takes them) and the writer (which gives them
/// back).
#[derive(Default)]
pub(crate) struct SpareEvents {
    spares: Mutex<Vec<Spare>>,
}

impl fmt::Debug for SpareEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpareEvents")
            .field("spares", &self.len())
            .finish()
    }
}

impl SpareEvents {
    /// A spare to fill, or a new one when none is left.
    pub(crate) fn take(&self) -> Spare {
        let spare = self
            .spares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        spare.unwrap_or_else(|| Spare {
            event: Box::new(empty_event()),
            strings: EventStrings::default(),
        })
    }

    /// Keeps `returned` (leaving it empty), as many as there is room for; the rest are freed.
    fn give_back(&self, returned: &mut Vec<Spare>) {
        let mut spares = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_SPARES.saturating_sub(spares.len());
        let keep = returned.len().min(room);
        spares.extend(returned.drain(..keep));
        drop(spares);
        returned.clear();
    }

    /// Keeps a durable event whose request got its answer: emptied on the request's thread,
    /// where what it holds was allocated.
    pub(crate) fn put_back(&self, mut event: Box<AuditEvent>) {
        let strings = EventStrings::take_from(&mut event);
        *event = empty_event();
        let mut spares = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
        if spares.len() < MAX_SPARES {
            spares.push(Spare { event, strings });
        }
    }

    /// How many spares are kept.
    pub(crate) fn len(&self) -> usize {
        self.spares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// An event's box, holding [`empty_event`], and the emptied buffers of its strings.
pub(crate) struct Spare {
    pub(crate) event: Box<AuditEvent>,
    pub(crate) strings: EventStrings,
}

/// The string buffers of a request's event, empty.
#[derive(Default)]
pub(crate) struct EventStrings {
    pub(crate) request_id: String,
    pub(crate) path: String,
    pub(crate) route: String,
    pub(crate) query: String,
    pub(crate) user_agent: String,
    pub(crate) actor_id: String,
}

impl EventStrings {
    /// Takes the buffers out of a written event, cleared; one grown past
    /// [`MAX_KEPT_CAPACITY`] is left in the event, to be freed with it.
    fn take_from(event: &mut AuditEvent) -> Self {
        let mut strings = Self::default();
        if let Some(request) = &mut event.request {
            keep(&mut strings.request_id, &mut request.id);
            keep(&mut strings.path, &mut request.path);
            if let Some(route) = &mut request.route {
                keep(&mut strings.route, route);
            }
            if let Some(query) = &mut request.query {
                keep(&mut strings.query, query);
            }
        }
        if let Some(user_agent) = event.source.as_mut().and_then(|s| s.user_agent.as_mut()) {
            keep(&mut strings.user_agent, user_agent);
        }
        keep(&mut strings.actor_id, &mut event.actor.id);
        strings
    }
}

fn keep(buffer: &mut String, from: &mut String) {
    if from.capacity() <= MAX_KEPT_CAPACITY {
        *buffer = std::mem::take(from);
        buffer.clear();
    }
}

/// An event with nothing in it, which allocates nothing: what a spare's box holds.
pub(crate) fn empty_event() -> AuditEvent {
    AuditEvent::with_id(
        Uuid::nil(),
        Timestamp::from(UNIX_EPOCH),
        Category::Request,
        Cow::Borrowed(""),
        Outcome::Success,
        Actor::new(String::new(), ActorKind::Anonymous),
    )
}

/// The writer's side: keeps the boxes of the events it takes, and pairs them with the
/// strings of the events it is done with.
pub(crate) struct Recycler {
    spares: Arc<SpareEvents>,
    /// Boxes of received events, holding [`empty_event`].
    #[allow(clippy::vec_box)] // Kept for their allocation: the box is what is reused.
    boxes: Vec<Box<AuditEvent>>,
    /// Spares made this round, handed back together (one lock per round).
    returned: Vec<Spare>,
}

impl Recycler {
    pub(crate) fn new(spares: Arc<SpareEvents>) -> Self {
        Self {
            spares,
            boxes: Vec::new(),
            returned: Vec::new(),
        }
    }

    pub(crate) fn spare_events(&self) -> Arc<SpareEvents> {
        Arc::clone(&self.spares)
    }

    /// Moves a received event out of its box, and keeps the box.
    pub(crate) fn unbox(&mut self, mut boxed: Box<AuditEvent>) -> AuditEvent {
        let event = std::mem::replace(&mut *boxed, empty_event());
        self.boxes.push(boxed);
        event
    }

    /// Puts a durable event back in a box, to go back to its request.
    pub(crate) fn rebox(&mut self, event: AuditEvent) -> Box<AuditEvent> {
        match self.boxes.pop() {
            Some(mut boxed) => {
                *boxed = event;
                boxed
            }
            None => Box::new(event),
        }
    }

    /// An event every sink has: its strings and a box become a spare. What is not reused
    /// (details, states, labels) is freed here.
    pub(crate) fn recycle(&mut self, mut event: AuditEvent) {
        if let Some(boxed) = self.boxes.pop() {
            let strings = EventStrings::take_from(&mut event);
            self.returned.push(Spare {
                event: boxed,
                strings,
            });
        }
    }

    /// Hands this round's spares back to the layer, and keeps no more boxes than the
    /// events still pending can use.
    pub(crate) fn hand_back(&mut self, still_pending: usize) {
        if !self.returned.is_empty() {
            self.spares.give_back(&mut self.returned);
        }
        self.boxes.truncate(still_pending);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::{RequestInfo, Source};

    fn written_event(path: &str) -> AuditEvent {
        let mut event = empty_event();
        event.request = Some(RequestInfo {
            id: "req-1".to_owned(),
            method: Cow::Borrowed("GET"),
            path: path.to_owned(),
            route: Some("/users/{id}".to_owned()),
            query: Some("page=2".to_owned()),
            headers: BTreeMap::new(),
        });
        event.source = Some(Source {
            user_agent: Some("curl/8".to_owned()),
            ..Source::default()
        });
        event.actor = Actor::user("alice");
        event
    }

    #[test]
    fn spares_come_back_emptied_with_their_capacity() {
        let spares = Arc::new(SpareEvents::default());
        let mut recycler = Recycler::new(Arc::clone(&spares));
        let event = recycler.unbox(Box::new(written_event("/users/7")));
        assert_eq!(event.request_id(), Some("req-1"));
        recycler.recycle(event);
        assert_eq!(spares.len(), 0, "handed back once per round");
        recycler.hand_back(0);
        assert_eq!(spares.len(), 1);

        let Spare { event, strings } = spares.take();
        assert_eq!(*event, empty_event());
        for buffer in [
            &strings.request_id,
            &strings.path,
            &strings.route,
            &strings.query,
            &strings.user_agent,
            &strings.actor_id,
        ] {
            assert!(buffer.is_empty());
            assert!(buffer.capacity() > 0, "the buffer is kept");
        }
        // None left: the next one is new.
        let Spare { strings, .. } = spares.take();
        assert_eq!(strings.path.capacity(), 0);
    }

    #[test]
    fn long_buffers_are_freed_and_spares_are_bounded() {
        let spares = Arc::new(SpareEvents::default());
        let mut recycler = Recycler::new(Arc::clone(&spares));
        let long = format!("/{}", "x".repeat(MAX_KEPT_CAPACITY));
        let event = recycler.unbox(Box::new(written_event(&long)));
        recycler.recycle(event);
        recycler.hand_back(0);
        let Spare { strings, .. } = spares.take();
        assert_eq!(
            strings.path.capacity(),
            0,
            "a long path's buffer is not kept"
        );
        assert!(strings.route.capacity() > 0);

        let events: Vec<_> = (0..MAX_SPARES + 10)
            .map(|_| recycler.unbox(Box::new(written_event("/"))))
            .collect();
        for event in events {
            recycler.recycle(event);
        }
        recycler.hand_back(0);
        assert_eq!(spares.len(), MAX_SPARES);
        assert!(recycler.returned.is_empty());
        assert!(recycler.boxes.is_empty());
    }

    #[test]
    fn boxes_no_pending_event_can_use_are_freed() {
        let spares = Arc::new(SpareEvents::default());
        let mut recycler = Recycler::new(Arc::clone(&spares));
        for _ in 0..3 {
            let _ = recycler.unbox(Box::new(written_event("/")));
        }
        recycler.hand_back(2);
        assert_eq!(recycler.boxes.len(), 2);
        recycler.hand_back(0);
        assert!(recycler.boxes.is_empty());
    }

    #[test]
    fn a_durable_event_goes_back_boxed_and_is_kept_by_its_request() {
        let spares = Arc::new(SpareEvents::default());
        let mut recycler = Recycler::new(Arc::clone(&spares));
        let event = recycler.unbox(Box::new(written_event("/users/7")));
        let mut boxed = recycler.rebox(event);
        assert_eq!(boxed.request.as_ref().unwrap().path, "/users/7");
        assert!(recycler.boxes.is_empty(), "its box went with it");
        boxed.before = Some(serde_json::json!({"role": "viewer"}));

        spares.put_back(boxed);
        assert_eq!(spares.len(), 1);
        let Spare { event, strings } = spares.take();
        assert_eq!(
            *event,
            empty_event(),
            "nothing of the event is left but capacity"
        );
        assert!(strings.path.is_empty() && strings.path.capacity() > 0);
    }

    #[test]
    fn an_event_without_a_box_to_pair_with_is_freed() {
        let spares = Arc::new(SpareEvents::default());
        let mut recycler = Recycler::new(Arc::clone(&spares));
        // A detector's alert is made on the writer's thread: it never had a box here.
        recycler.recycle(written_event("/"));
        recycler.hand_back(0);
        assert_eq!(spares.len(), 0);
    }
}
