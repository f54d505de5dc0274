//! What happens when the trail cannot keep up, and what is synced before a response.

use std::time::Duration;

use crate::event::Category;

/// How durable an event must be before its response leaves the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Synced to disk by every sink before the response leaves (group commit).
    Synced,
    /// Written at once, synced within the trail's sync interval.
    Batched,
}

/// What to do with an event the queue cannot take within the wait a [`FailurePolicy`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Sensitive handlers are refused (503); ordinary events keep waiting.
    FailClosed,
    /// Sensitive handlers are refused (503); ordinary events are dropped, counted, and
    /// recorded in an `audit.gap` event.
    DropWithGap,
}

/// What happens when the trail cannot keep up, and how durable events must be.
///
/// happens when the trail cannot keep up.
///
/// # Durability
///
/// | level | meaning | default for |
/// |---|---|---|
/// | [`Durability::Synced`] | on disk (`fdatasync` done by every sink) **before the response leaves**; concurrent requests share one sync (group commit) | categories `sensitive`, `auth`, `alert` |
/// | [`Durability::Batched`] | written at once, synced within the sync interval (100 ms) | everything else |
///
/// Levels are set per category ([`AuditTrailBuilder::durability`](crate::AuditTrailBuilder::durability))
/// and per route ([`AuditTrailBuilder::route_durability`](crate::AuditTrailBuilder::route_durability));
/// a route's level wins over its category's.
///
/// # Failure policies
///
/// When the queue is full, or a sink keeps failing so that it fills:
///
/// | policy | ordinary requests | sensitive handlers | pick it when |
/// |---|---|---|---|
/// | [`FailurePolicy::block`] (default) | wait for room | wait for room, and for their sync | no event may ever be missing, and the service may slow down or stall with its trail |
/// | [`FailurePolicy::block_for`] | wait up to the bound, then the overflow rule | wait up to the bound, then are refused | as above, but a stalled trail must not stall the service forever |
/// | [`FailurePolicy::fail_closed`] | are served; their events wait for room | are **not executed**: 503 with a clear body | an unaudited change is worse than an outage of the admin functions |
/// | [`FailurePolicy::drop_with_gap`] | are served; their events are dropped and counted, and an `audit.gap` event records the count and time range once the trail recovers | are not executed, as above | availability of ordinary traffic matters more than a complete record of it |
///
/// A sensitive handler's event is never dropped. A refused sensitive request is itself
/// recorded: its own event when there is room, otherwise counted in the next `audit.gap`.
/// A sensitive handler whose event cannot be made durable in time (the sink failed after the
/// handler ran) is answered 503, never 2xx; its event stays queued and is written when the
/// sink recovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    pub(crate) max_wait: Option<Duration>,
    pub(crate) overflow: Overflow,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self::block()
    }
}

impl FailurePolicy {
    /// Requests wait for room, without bound: nothing is ever dropped or refused.
    pub fn block() -> Self {
        Self {
            max_wait: None,
            overflow: Overflow::FailClosed,
        }
    }

    /// Requests wait for room for at most `max_wait`; then `then` applies.
    pub fn block_for(max_wait: Duration, then: Overflow) -> Self {
        Self {
            max_wait: Some(max_wait),
            overflow: then,
        }
    }

    /// Sensitive handlers are refused at once while the trail cannot take their event.
    pub fn fail_closed() -> Self {
        Self::block_for(Duration::ZERO, Overflow::FailClosed)
    }

    /// Ordinary events are dropped with a recorded gap at once when the queue is full;
    /// sensitive handlers are refused.
    pub fn drop_with_gap() -> Self {
        Self::block_for(Duration::ZERO, Overflow::DropWithGap)
    }

    /// Whether sensitive handlers are ever refused under this policy.
    pub(crate) fn may_refuse(&self) -> bool {
        self.max_wait.is_some()
    }
}

/// How events are delivered: which are durable, how long a full queue or a sync is waited
/// for, and what is let go then.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryPolicy {
    pub(crate) failure: FailurePolicy,
    pub(crate) durability: DurabilityRules,
    /// How long a response waits for its event's sync when the policy may refuse.
    pub(crate) durable_timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            failure: FailurePolicy::default(),
            durability: DurabilityRules::default(),
            durable_timeout: Duration::from_secs(10),
        }
    }
}

/// Durability by category and by route.
#[derive(Clone, Debug)]
pub(crate) struct DurabilityRules {
    pub(crate) categories: Vec<(Category, Durability)>,
    pub(crate) routes: Vec<(String, Durability)>,
}

impl Default for DurabilityRules {
    fn default() -> Self {
        Self {
            categories: vec![
                (Category::Sensitive, Durability::Synced),
                (Category::Auth, Durability::Synced),
                (Category::Alert, Durability::Synced),
            ],
            routes: Vec::new(),
        }
    }
}

impl DurabilityRules {
    /// The level of an event: its route's (matched pattern or path), else its category's,
    /// else batched.
    pub(crate) fn level(
        &self,
        category: Category,
        route: Option<&str>,
        path: Option<&str>,
    ) -> Durability {
        self.routes
            .iter()
            .find(|(r, _)| Some(r.as_str()) == route || Some(r.as_str()) == path)
            .map(|(_, d)| *d)
            .or_else(|| {
                self.categories
                    .iter()
                    .find(|(c, _)| *c == category)
                    .map(|(_, d)| *d)
            })
            .unwrap_or(Durability::Batched)
    }

    pub(crate) fn set_category(&mut self, category: Category, level: Durability) {
        self.categories.retain(|(c, _)| *c != category);
        self.categories.push((category, level));
    }

    pub(crate) fn set_route(&mut self, route: String, level: Durability) {
        self.routes.retain(|(r, _)| *r != route);
        self.routes.push((route, level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_win_over_categories() {
        let mut rules = DurabilityRules::default();
        assert_eq!(
            rules.level(Category::Sensitive, None, None),
            Durability::Synced
        );
        assert_eq!(
            rules.level(Category::Request, None, None),
            Durability::Batched
        );
        rules.set_route("/payments/{id}".into(), Durability::Synced);
        rules.set_route("/admin/bulk".into(), Durability::Batched);
        assert_eq!(
            rules.level(
                Category::Request,
                Some("/payments/{id}"),
                Some("/payments/7")
            ),
            Durability::Synced
        );
        assert_eq!(
            rules.level(Category::Sensitive, None, Some("/admin/bulk")),
            Durability::Batched
        );
        rules.set_category(Category::Auth, Durability::Batched);
        assert_eq!(rules.level(Category::Auth, None, None), Durability::Batched);
    }
}
