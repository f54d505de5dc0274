//! What the layer needs to know to build an event, shared by every clone of the layer.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;

use crate::event::actor::Actor;
use crate::layer::client_ip::{ForwardedHeader, TrustedProxies};
use crate::redact::SecretNames;

/// The layer's configuration, built once by
/// [`AuditTrailBuilder`](crate::AuditTrailBuilder).
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) request_id_header: HeaderName,
    /// Paths and route patterns that are not recorded.
    pub(crate) skip: Vec<String>,
    pub(crate) secret_names: SecretNames,
    pub(crate) recorded_headers: Vec<HeaderName>,
    pub(crate) actor_resolver: Option<SharedResolver>,
    pub(crate) actor_header: Option<HeaderName>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) catch_panics: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::default(),
            forwarded_header: ForwardedHeader::default(),
            request_id_header: HeaderName::from_static("x-request-id"),
            skip: Vec::new(),
            secret_names: SecretNames::default(),
            recorded_headers: Vec::new(),
            actor_resolver: None,
            actor_header: None,
            labels: BTreeMap::new(),
            catch_panics: true,
        }
    }
}

impl Config {
    /// Whether a request to `path`, matched to `route`, is on the skip list.
    pub(crate) fn is_skipped(&self, path: &str, route: Option<&str>) -> bool {
        !self.skip.is_empty()
            && self
                .skip
                .iter()
                .any(|entry| entry == path || route == Some(entry.as_str()))
    }
}

/// The application's actor resolver: a closure over the request head, called once per
/// request when it arrives (see
/// [`AuditTrailBuilder::actor_resolver`](crate::AuditTrailBuilder::actor_resolver) and
/// [`actor_resolver_async`](crate::AuditTrailBuilder::actor_resolver_async)).
#[derive(Clone)]
pub(crate) enum SharedResolver {
    /// Knows at once.
    Now(Arc<Resolve<Option<Actor>>>),
    /// Looks the actor up (a session store): polled beside the inner service.
    Later(Arc<Resolve<PendingActor>>),
}

/// A closure over the request head.
type Resolve<T> = dyn Fn(&http::request::Parts) -> T + Send + Sync;

/// An async resolver's look-up of one request's actor.
pub(crate) type PendingActor =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<Actor>> + Send>>;

impl fmt::Debug for SharedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}
