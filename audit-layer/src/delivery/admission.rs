//! One event's way into the queue: the whole delivery decision (room in the queue, the
//! failure policy's wait and overflow, durability, refusal) as one state that the response
//! future polls.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;

use super::policy::{Durability, Overflow};
use super::queue::{Intake, Item, Reserve, Synced, TryEnqueue, enqueue_detached};
use crate::event::AuditEvent;
use crate::redact::Scrubbed;

/// How an event's delivery ended, for its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Answer as the handler did: the event is queued (synced, if durable), or the policy let
    /// it go and counted it for the next `audit.gap` event.
    Accepted,
    /// Answer 503: the event is durable and could not be synced in time. It stays queued.
    NotDurable,
}

/// A request's event on its way into the queue.
///
/// Dropped before it got in, it still gets in: a task waits for room in its place.
pub(crate) struct Admission<S: AsRef<Intake> + Send + Sync + 'static> {
    owner: Arc<S>,
    stage: Stage,
}

enum Stage {
    /// The queue was full: waiting for room, at most until the deadline.
    Waiting {
        event: Scrubbed,
        plan: Plan,
        reserve: Reserve,
        deadline: Option<Pin<Box<Sleep>>>,
    },
    /// Queued: waiting for the sync, at most until the deadline.
    Syncing {
        synced: oneshot::Receiver<Synced>,
        deadline: Option<Pin<Box<Sleep>>>,
    },
    Decided(Delivered),
    Finished,
}

/// How one event is delivered.
#[derive(Clone, Copy)]
struct Plan {
    durable: bool,
    /// The event of a sensitive request refused because the trail could not take events.
    refused: bool,
}

impl<S: AsRef<Intake> + Send + Sync + 'static> Admission<S> {
    /// Puts `event` in the queue if there is room now; otherwise decides, by the policy, how
    /// to wait. `refused` marks the event of a sensitive request refused before its handler
    /// ran: it never waits.
    pub(crate) fn start(owner: Arc<S>, event: Scrubbed, refused: bool) -> Self {
        let intake = (*owner).as_ref();
        let plan = Plan::of(&event, intake, refused);
        let (ack, synced) = if plan.durable {
            let (ack, synced) = oneshot::channel();
            (Some(ack), Some(synced))
        } else {
            (None, None)
        };
        let stage = match intake.try_enqueue(event, ack) {
            Ok(()) => match synced {
                Some(synced) => Stage::Syncing {
                    synced,
                    deadline: sync_deadline(intake),
                },
                None => Stage::Decided(Delivered::Accepted),
            },
            Err(TryEnqueue::Full(event, _ack, reserve)) => {
                match intake.policy().failure.max_wait {
                    // A refusal answers at once; it is counted for the next gap event.
                    Some(wait) if !plan.refused && !wait.is_zero() => Stage::Waiting {
                        event,
                        plan,
                        reserve,
                        deadline: Some(Box::pin(tokio::time::sleep(wait))),
                    },
                    None if !plan.refused => Stage::Waiting {
                        event,
                        plan,
                        reserve,
                        deadline: None,
                    },
                    _ => overflow(&owner, event, plan, reserve),
                }
            }
        };
        Self { owner, stage }
    }

    /// Drives the delivery: ready once the event is queued (and synced, if durable), let go
    /// by the policy, or found not durable in time.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Delivered> {
        loop {
            let next = match &mut self.stage {
                Stage::Waiting {
                    reserve, deadline, ..
                } => match reserve.as_mut().poll(cx) {
                    Poll::Ready(room) => {
                        let Stage::Waiting { event, plan, .. } =
                            std::mem::replace(&mut self.stage, Stage::Finished)
                        else {
                            unreachable!("matched as Waiting")
                        };
                        self.send(room, event, plan)
                    }
                    Poll::Pending => match deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                        Some(Poll::Ready(())) => {
                            let Stage::Waiting {
                                event,
                                plan,
                                reserve,
                                ..
                            } = std::mem::replace(&mut self.stage, Stage::Finished)
                            else {
                                unreachable!("matched as Waiting")
                            };
                            overflow(&self.owner, event, plan, reserve)
                        }
                        _ => return Poll::Pending,
                    },
                },
                Stage::Syncing { synced, deadline } => {
                    let result = match Pin::new(synced).poll(cx) {
                        Poll::Ready(Ok(Synced { result, event })) => {
                            // Emptied here, on the thread that allocated what it holds,
                            // and kept for the next request.
                            if let Some(event) = event {
                                (*self.owner).as_ref().spare_events().put_back(event);
                            }
                            result.is_ok()
                        }
                        Poll::Ready(Err(_)) => false,
                        Poll::Pending => match deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                            Some(Poll::Ready(())) => false,
                            _ => return Poll::Pending,
                        },
                    };
                    Stage::Decided(if result {
                        Delivered::Accepted
                    } else {
                        Delivered::NotDurable
                    })
                }
                Stage::Decided(delivered) => {
                    let delivered = *delivered;
                    self.stage = Stage::Finished;
                    return Poll::Ready(delivered);
                }
                Stage::Finished => panic!("an audit event's delivery polled after it ended"),
            };
            self.stage = next;
        }
    }

    /// Queues the event with the room the reserve found.
    fn send(
        &self,
        room: Result<mpsc::OwnedPermit<Item>, mpsc::error::SendError<()>>,
        event: Scrubbed,
        plan: Plan,
    ) -> Stage {
        let intake = (*self.owner).as_ref();
        let Ok(permit) = room else {
            intake.lost(&event);
            return Stage::Decided(Delivered::Accepted);
        };
        if plan.durable {
            let (ack, synced) = oneshot::channel();
            intake.send_with(permit, event, Some(ack));
            Stage::Syncing {
                synced,
                deadline: sync_deadline(intake),
            }
        } else {
            intake.send_with(permit, event, None);
            Stage::Decided(Delivered::Accepted)
        }
    }
}

impl<S: AsRef<Intake> + Send + Sync + 'static> Drop for Admission<S> {
    fn drop(&mut self) {
        if let Stage::Waiting { event, .. } = std::mem::replace(&mut self.stage, Stage::Finished) {
            enqueue_detached(&self.owner, event);
        }
    }
}

impl Plan {
    fn of(event: &AuditEvent, intake: &Intake, refused: bool) -> Self {
        let request = event.request.as_ref();
        let level = intake.policy().durability.level(
            event.category,
            request.and_then(|r| r.route.as_deref()),
            request.map(|r| r.path.as_str()),
        );
        Self {
            durable: !refused && level == Durability::Synced,
            refused,
        }
    }
}

/// The queue stayed full for as long as the policy allows (or the event may not wait): what
/// becomes of the event. Ordinary events under `FailClosed` keep waiting, without a deadline.
fn overflow<S>(owner: &Arc<S>, event: Scrubbed, plan: Plan, reserve: Reserve) -> Stage
where
    S: AsRef<Intake> + Send + Sync + 'static,
{
    let intake = (**owner).as_ref();
    if plan.refused {
        intake.count_gap(&event, true);
        return Stage::Decided(Delivered::Accepted);
    }
    if plan.durable {
        // Never dropped: it waits on its own, and the client is told it is not durable.
        enqueue_detached(owner, event);
        return Stage::Decided(Delivered::NotDurable);
    }
    match intake.policy().failure.overflow {
        Overflow::DropWithGap => {
            intake.count_gap(&event, false);
            Stage::Decided(Delivered::Accepted)
        }
        _ => Stage::Waiting {
            event,
            plan,
            reserve,
            deadline: None,
        },
    }
}

/// How long a response waits for its sync: without bound under a blocking policy.
fn sync_deadline(intake: &Intake) -> Option<Pin<Box<Sleep>>> {
    let policy = intake.policy();
    policy
        .failure
        .may_refuse()
        .then(|| Box::pin(tokio::time::sleep(policy.durable_timeout)))
}
